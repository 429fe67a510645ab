"""scripts/sample.py: safe loading, every output mode, interpolation, arithmetic, conditional labels."""

from __future__ import annotations

import pickle

import pytest
import torch
from PIL import Image
from test_extensions import labelled_loader

from gan_lightning import GAN
from gan_lightning.commands.sample import load_gan, main
from gan_lightning.training.latents import NOISES, LatentSpace, slerp

from conftest import cpu_trainer


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A briefly trained MLP GAN with normal noise and EMA."""
    tmp = tmp_path_factory.mktemp("ckpt")
    gan = GAN("mlp", latent_dim=8, noise="normal", ema_decay=0.9)
    trainer = cpu_trainer(tmp, max_steps=gan.optimizer_steps(2))
    trainer.fit(gan, labelled_loader())
    trainer.save_checkpoint(tmp / "gan.ckpt")
    return tmp / "gan.ckpt"


def test_grid_png_is_reproducible(tmp_path, ckpt):
    assert main(["--ckpt", str(ckpt), "--out", str(tmp_path / "a.png"), "-n", "16", "--seed", "3"]) == 0
    assert main(["--ckpt", str(ckpt), "--out", str(tmp_path / "b.png"), "-n", "16", "--seed", "3"]) == 0
    assert main(["--ckpt", str(ckpt), "--out", str(tmp_path / "c.png"), "-n", "16", "--seed", "4"]) == 0
    a, b, c = (Image.open(tmp_path / f"{x}.png") for x in "abc")
    assert a.size == (4 * 28 + 5 * 2, 4 * 28 + 5 * 2)
    assert a.tobytes() == b.tobytes() and a.tobytes() != c.tobytes()


def test_tensor_and_individual_pngs(tmp_path, ckpt):
    assert main(["--ckpt", str(ckpt), "--out", str(tmp_path / "s.pt"), "-n", "10"]) == 0
    images = torch.load(tmp_path / "s.pt", weights_only=True)
    assert images.shape == (10, 1, 28, 28) and images.min() >= -1 and images.max() <= 1
    assert main(["--ckpt", str(ckpt), "--out", str(tmp_path / "pngs"), "-n", "5"]) == 0
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == [f"{i:05d}.png" for i in range(5)]
    assert Image.open(tmp_path / "pngs" / "00000.png").size == (28, 28)


def test_ema_switch(tmp_path, ckpt):
    assert main(["--ckpt", str(ckpt), "--out", str(tmp_path / "ema.pt"), "-n", "4"]) == 0
    assert main(["--ckpt", str(ckpt), "--out", str(tmp_path / "raw.pt"), "-n", "4", "--no-ema"]) == 0
    ema, raw = (torch.load(tmp_path / f, weights_only=True) for f in ("ema.pt", "raw.pt"))
    assert not torch.allclose(ema, raw)
    gan = load_gan(ckpt)
    z = gan.latents.draw(4, torch.Generator().manual_seed(0)).input
    torch.testing.assert_close(ema, gan.sample(latents=z, ema=True))


def test_interpolation_rows_walk_from_seeded_endpoints_to_seeded_endpoints(tmp_path, ckpt):
    walk = ["--ckpt", str(ckpt), "--interpolate", "--pairs", "3", "--steps", "5", "--seed", "7"]
    assert main([*walk, "--out", str(tmp_path / "interp.png")]) == 0
    assert Image.open(tmp_path / "interp.png").size == (5 * 28 + 6 * 2, 3 * 28 + 4 * 2)  # 3 rows of 5, 2 px padding
    assert main([*walk, "--out", str(tmp_path / "interp.pt"), "--save-latents", str(tmp_path / "z.pt")]) == 0
    images, z = (torch.load(tmp_path / f, weights_only=True) for f in ("interp.pt", "z.pt"))
    gan = load_gan(ckpt)
    rng = torch.Generator().manual_seed(7)
    start, end = (gan.latents.draw(3, rng).input for _ in range(2))  # the seeded endpoints, row by row
    rows = z.view(3, 5, -1)
    torch.testing.assert_close(rows[:, 0], start, rtol=0, atol=1e-6)
    torch.testing.assert_close(rows[:, -1], end, rtol=0, atol=1e-6)
    assert all(not torch.allclose(row[i], row[i + 1]) for row in rows for i in range(4))  # every step of every row
    torch.testing.assert_close(images, gan.sample(latents=z, ema=True))  # each image is its latent's sample


def test_slerp_keeps_norm_and_hits_endpoints():
    a, b = torch.randn(4, 16), torch.randn(4, 16)
    torch.testing.assert_close(slerp(a, b, torch.tensor(0.0)), a)
    torch.testing.assert_close(slerp(a, b, torch.tensor(1.0)), b)
    a, b = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    mid = slerp(a, b, torch.tensor(0.5))
    torch.testing.assert_close(mid.norm(dim=1), torch.ones(4))  # lerp would shrink it
    assert (torch.lerp(a, b, 0.5).norm(dim=1) < 1 - 1e-3).all()


@pytest.mark.parametrize("noise", NOISES.names())
def test_each_prior_walks_its_own_way(noise):
    space, prior = LatentSpace(16, noise), NOISES.get(noise)
    a, b = torch.randn(4, 16), torch.randn(4, 16)
    t = torch.linspace(0, 1, 5).view(1, 5, 1)
    walk = space.interpolate(a[:, None], b[:, None], t)  # (4, 5, 16)
    torch.testing.assert_close(walk[:, 0], a), torch.testing.assert_close(walk[:, -1], b)
    chord = slerp if getattr(prior, "spherical", False) else torch.lerp
    torch.testing.assert_close(walk, chord(a[:, None], b[:, None], t))


def test_gaussian_noise_walks_great_circles_uniform_noise_straight_lines():
    a, b = torch.randn(4, 16), torch.randn(4, 16)
    a, b = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    half = torch.tensor(0.5)
    torch.testing.assert_close(LatentSpace(16, "normal").interpolate(a, b, half).norm(dim=1), torch.ones(4))
    torch.testing.assert_close(LatentSpace(16, "uniform").interpolate(a, b, half), (a + b) / 2)


def test_latent_arithmetic_from_saved_groups(tmp_path, ckpt):
    lat = tmp_path / "all.pt"
    assert main(["--ckpt", str(ckpt), "--out", str(tmp_path / "g.png"), "-n", "9", "--save-latents", str(lat)]) == 0
    everything = torch.load(lat, weights_only=True)
    for name, idx in (("a", "0,1,2"), ("b", "3,4,5"), ("c", "6,7,8")):
        argv = ["--ckpt", str(ckpt), "--out", str(tmp_path / "g.png"), "-n", "9", "--save-latents",
                str(tmp_path / f"{name}.pt"), "--select", idx]  # fmt: skip
        assert main(argv) == 0
    a = torch.load(tmp_path / "a.pt", weights_only=True)
    torch.testing.assert_close(a, everything[:3])
    out = tmp_path / "arith.pt"
    argv = ["--ckpt", str(ckpt), "--out", str(out), "--arithmetic", str(tmp_path / "a.pt"), "-",
            str(tmp_path / "b.pt"), "+", str(tmp_path / "c.pt")]  # fmt: skip
    assert main(argv) == 0
    images = torch.load(out, weights_only=True)
    assert images.shape == (3 + 8, 1, 28, 28)  # three group means, the result and 7 jittered results
    gan = load_gan(ckpt)
    expected = everything[:3].mean(0) - everything[3:6].mean(0) + everything[6:].mean(0)
    torch.testing.assert_close(images[3], gan.sample(latents=expected[None])[0])


def test_conditional_labels(tmp_path):
    gan = GAN("mlp", latent_dim=8, conditional=True)
    trainer = cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(1))
    trainer.fit(gan, labelled_loader())
    trainer.save_checkpoint(tmp_path / "c.ckpt")
    out = tmp_path / "c.pt"
    assert main(["--ckpt", str(tmp_path / "c.ckpt"), "--out", str(out), "-n", "6", "--labels", "2,5", "--save-latents",
                 str(tmp_path / "l.pt")]) == 0  # fmt: skip
    latents = torch.load(tmp_path / "l.pt", weights_only=True)
    assert latents[:, 8:].argmax(1).tolist() == [2, 5, 2, 5, 2, 5]
    assert main(["--ckpt", str(tmp_path / "c.ckpt"), "--out", str(out), "--labels", "12"]) == 2


def test_refuses_checkpoints_that_need_arbitrary_code(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.ckpt"
    with open(bad, "wb") as f:
        pickle.dump({"state_dict": {}, "hyper_parameters": {"model": "mlp"}, "x": Payload()}, f)
    assert main(["--ckpt", str(bad), "--out", str(tmp_path / "x.png")]) == 2
    captured = capsys.readouterr()
    assert "refusing to load" in captured.err and "pwned" not in captured.out
    assert main(["--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "x.png")]) == 2
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--select", "0,a", "--save-latents", "LAT"], "--select takes comma-separated integers"),
        (["--select", "0,9", "--save-latents", "LAT"], "--select indices must lie in [0, 4)"),
        (["--select", "0"], "give --save-latents too"),
        (["--nrow", "-1"], "--nrow must be positive"),
        (["--arithmetic", "DAMAGED", "+", "DAMAGED"], "damaged.pt: not a plain weights file"),
    ],
)
def test_bad_sampling_input_is_one_line_before_any_file(tmp_path, ckpt, capsys, flags, message):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "damaged.pt").write_bytes(b"not a tensor file")
    swap = {"LAT": str(tmp_path / "out" / "lat.pt"), "DAMAGED": str(tmp_path / "in" / "damaged.pt")}
    (tmp_path / "out").mkdir()
    argv = ["--ckpt", str(ckpt), "--out", str(tmp_path / "out" / "grid.png"), "-n", "4"]
    assert main([*argv, *(swap.get(f, f) for f in flags)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert list((tmp_path / "out").iterdir()) == []


def test_labels_that_are_not_integers_are_one_line(tmp_path, capsys):
    gan = GAN("mlp", latent_dim=8, conditional=True)
    trainer = cpu_trainer(tmp_path, max_steps=gan.optimizer_steps(1))
    trainer.fit(gan, labelled_loader())
    trainer.save_checkpoint(tmp_path / "c.ckpt")
    assert main(["--ckpt", str(tmp_path / "c.ckpt"), "--out", str(tmp_path / "c.png"), "--labels", "1,"]) == 2
    assert "--labels takes comma-separated integers" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()
