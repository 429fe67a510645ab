"""Truncation at sampling time: StyleGAN's psi and BigGAN's threshold, through LatentSpace, GAN.sample, sample.py
and evaluate.py."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from test_extensions import labelled_loader
from weights_files import mnist_classifier_file

from gan_lightning import GAN
from gan_lightning.commands.evaluate import main as evaluate_main
from gan_lightning.commands.sample import load_gan
from gan_lightning.commands.sample import main as sample_main
from gan_lightning.core.errors import ConfigError
from gan_lightning.training.latents import LatentSpace, Prior, Truncation, normal_noise

from conftest import cpu_trainer

PNG = b"\x89PNG\r\n\x1a\n"


def rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A one-iteration MLP GAN with normal noise, saved as a run's last.ckpt (RUN/checkpoints/last.ckpt)."""
    run = tmp_path_factory.mktemp("run")
    gan = GAN("mlp", latent_dim=8, noise="normal")
    trainer = cpu_trainer(run, max_steps=gan.optimizer_steps(1))
    trainer.fit(gan, labelled_loader())
    (run / "checkpoints").mkdir()
    trainer.save_checkpoint(run / "checkpoints" / "last.ckpt")
    return run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """An untrained MNIST classifier in the format evaluate.py reads: features enough to score with."""
    path = tmp_path_factory.mktemp("clf") / "classifier.pt"
    mnist_classifier_file(path)
    return path


# ------------------------------------------------------------------------------------------------ the latents
@pytest.mark.parametrize("noise", ["normal", "uniform"])
def test_psi_one_and_no_reachable_threshold_are_bit_identical(noise):
    gan = GAN("mlp", latent_dim=8, noise=noise)
    plain = gan.sample(6, rng=rng(3))
    assert torch.equal(gan.sample(6, rng=rng(3), truncation=1.0), plain)
    inputs = gan.latents.draw(6, rng(3)).input
    assert torch.equal(gan.sample(latents=inputs, truncation=1.0, rng=rng(9)), plain)
    latents = gan.latents.draw(6, rng(3))
    assert gan.latents.truncate(latents, rng(0), 1.0) is latents
    if noise == "uniform":  # U(-1, 1) lies within any threshold >= its half-width 1: nothing to redraw
        stream = rng(5)
        assert torch.equal(gan.sample(6, rng=rng(3), truncation_threshold=1.0), plain)
        assert torch.equal(gan.latents.truncate(latents, stream, threshold=7.0).input, latents.input)
        assert torch.equal(stream.get_state(), rng(5).get_state())  # and nothing drawn


def test_psi_scales_the_noise_toward_the_centre_exactly():
    space = LatentSpace(4, "normal")
    z = torch.tensor([[2.0, -1.0, 0.5, -4.0]])
    truncated = space.truncate(space.draw(1, rng(), z=z), rng(), psi=0.5)
    assert torch.equal(truncated.z, torch.tensor([[1.0, -0.5, 0.25, -2.0]]))
    assert torch.equal(truncated.input, truncated.z)
    # a prior centred elsewhere moves toward its own centre: 2 + 0.25 (z - 2)
    shifted = Prior(normal_noise, centre=2.0)
    assert torch.equal(shifted.truncate(torch.tensor([3.0, 1.0, 2.0, 6.0]), rng(), psi=0.25),
                       torch.tensor([2.25, 1.75, 2.0, 3.0]))  # fmt: skip
    # GAN.sample feeds the generator exactly the scaled noise
    gan = GAN("mlp", latent_dim=8, noise="normal")
    inputs = gan.latents.draw(5, rng(1)).input
    assert torch.equal(gan.sample(latents=inputs, truncation=0.7), gan.sample(latents=0.7 * inputs))


@pytest.mark.parametrize(("noise", "threshold"), [("normal", 0.5), ("normal", 1.0), ("uniform", 0.3)])
def test_threshold_bounds_the_noise_and_keeps_what_was_within(noise, threshold):
    space = LatentSpace(8, noise)
    latents = space.draw(2000, rng(0))
    z = space.truncate(latents, rng(1), threshold=threshold).z
    assert z.abs().max() <= threshold
    within = latents.z.abs() <= threshold
    assert torch.equal(z[within], latents.z[within])  # coordinates already within are untouched
    assert (~within).sum() > 100 and (z[~within] != latents.z[~within]).all()  # the others were redrawn
    if noise == "normal" and threshold == 1.0:
        # redrawn from the prior, not clamped: E|z| of N(0, 1) truncated to [-1, 1] is
        # 2 (phi(0) - phi(1)) / (2 Phi(1) - 1) = 2 (0.398942 - 0.241971) / 0.682689 = 0.45986 (clamping: ~0.63)
        assert z.abs().mean().item() == pytest.approx(0.45986, abs=0.01)
        assert (z.abs() > 0.99).float().mean() < 0.01  # no mass piled at the bound


def test_threshold_then_psi_bound_the_noise_by_their_product():
    space = LatentSpace(8, "normal")
    z = space.truncate(space.draw(500, rng(0)), rng(1), psi=0.5, threshold=0.8).z
    assert z.abs().max() <= 0.4 and z.abs().max() > 0.35


def test_labels_and_codes_are_untouched():
    conditional = LatentSpace(4, "normal", num_classes=10)
    labels = torch.arange(40) % 10
    latents = conditional.draw(40, rng(0), labels=labels)
    truncated = conditional.truncate(latents, rng(1), psi=0.5, threshold=0.5)
    assert torch.equal(truncated.labels, labels)
    assert torch.equal(truncated.input[:, 4:], latents.input[:, 4:])  # the one-hot labels, bit for bit
    assert not torch.equal(truncated.z, latents.z) and truncated.z.abs().max() <= 0.25
    infogan = LatentSpace(4, "uniform", n_cat=10, n_cont=2)
    latents = infogan.draw(40, rng(0))
    assert latents.cont.abs().max() > 0.2  # the codes would be changed if they were truncated
    truncated = infogan.truncate(latents, rng(1), psi=0.5, threshold=0.2)
    assert torch.equal(truncated.input[:, 4:], latents.input[:, 4:])
    assert torch.equal(truncated.cat, latents.cat) and torch.equal(truncated.cont, latents.cont)
    assert torch.equal(truncated.input[:, :4], truncated.z) and truncated.z.abs().max() <= 0.1


def test_the_same_seed_truncates_the_same_way():
    gan = GAN("mlp", latent_dim=8, noise="normal", conditional=True)
    a, b, c = (gan.sample(16, rng=rng(s), truncation=0.6, truncation_threshold=0.5) for s in (4, 4, 5))
    assert torch.equal(a, b) and not torch.equal(a, c)
    inputs = gan.latents.draw(16, rng(0)).input
    redraws = [gan.latents.truncate(gan.latents.split(inputs), rng(s), threshold=0.5).z for s in (1, 1, 2)]
    assert torch.equal(redraws[0], redraws[1]) and not torch.equal(redraws[0], redraws[2])


def test_sample_takes_a_truncation_as_its_two_keywords():
    gan = GAN("mlp", latent_dim=8, noise="normal")
    keywords = gan.sample(16, rng=rng(3), truncation=0.6, truncation_threshold=0.5)
    assert torch.equal(gan.sample(16, rng=rng(3), truncation=Truncation(0.6, 0.5)), keywords)
    with pytest.raises(ValueError, match="give the threshold once"):
        gan.sample(16, rng=rng(3), truncation=Truncation(0.6, 0.5), truncation_threshold=1.0)


def test_bad_truncation_is_one_line():
    space = LatentSpace(4, "normal")
    latents = space.draw(3, rng())
    for psi in (0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(ConfigError, match=r"^--truncation must lie in \(0, 1\]"):
            space.truncate(latents, rng(), psi=psi)
    for threshold in (0.0, -1.0):
        with pytest.raises(ConfigError, match="^--truncation-threshold must be positive"):
            space.truncate(latents, rng(), threshold=threshold)
    with pytest.raises(ConfigError, match="too narrow"):  # almost no N(0, 1) draw lands within 1e-9
        space.truncate(latents, rng(), threshold=1e-9)
    with pytest.raises(ConfigError, match="declares no centre"):
        Prior(normal_noise, centre=None).truncate(latents.z, rng(), psi=0.5)


# ------------------------------------------------------------------------------------------------- commands
def test_a_truncation_that_changes_nothing_says_so_in_one_line():
    uniform, normal = LatentSpace(8, "uniform"), LatentSpace(8, "normal")
    assert uniform.truncation_notice(None, 1.0) == ("--truncation-threshold 1 redraws nothing: the uniform prior never "
                                                    "draws farther than 1 from its centre: the samples are the "
                                                    "untruncated ones")  # fmt: skip
    assert uniform.truncation_notice(None, 0.9) is None and normal.truncation_notice(None, 3.0) is None
    assert normal.truncation_notice(1.0, None).startswith("--truncation 1 keeps the noise as drawn")
    assert normal.truncation_notice(0.7, None) is None


def test_sample_command_truncates_and_saves_the_truncated_latents(tmp_path, ckpt, capsys):
    base = ["--ckpt", str(ckpt), "-n", "6", "--seed", "2"]
    assert sample_main([*base, "--out", str(tmp_path / "t.pt"), "--truncation", "0.5",
                        "--save-latents", str(tmp_path / "z.pt")]) == 0  # fmt: skip
    gan = load_gan(ckpt)
    drawn = gan.latents.draw(6, rng(2)).input
    torch.testing.assert_close(torch.load(tmp_path / "z.pt", weights_only=True), 0.5 * drawn, rtol=0, atol=0)
    torch.testing.assert_close(torch.load(tmp_path / "t.pt", weights_only=True),
                               gan.sample(latents=drawn, truncation=0.5))  # fmt: skip
    capsys.readouterr()
    assert sample_main([*base, "--out", str(tmp_path / "one.pt"), "--truncation", "1"]) == 0
    assert "note: --truncation 1 keeps the noise as drawn" in capsys.readouterr().err
    assert sample_main([*base, "--out", str(tmp_path / "plain.pt")]) == 0
    assert "note:" not in capsys.readouterr().err
    one, plain = (torch.load(tmp_path / f, weights_only=True) for f in ("one.pt", "plain.pt"))
    assert torch.equal(one, plain)
    out = tmp_path / "grid.png"
    assert sample_main([*base, "--out", str(out), "--truncation-threshold", "0.5", "--truncation", "0.8"]) == 0
    assert out.read_bytes()[:8] == PNG
    walk = tmp_path / "walk.png"
    assert sample_main(["--ckpt", str(ckpt), "--out", str(walk), "--interpolate", "--pairs", "2", "--steps", "3",
                        "--truncation", "0.7"]) == 0  # fmt: skip
    assert walk.read_bytes()[:8] == PNG


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--truncation", "1.5"], "--truncation must lie in (0, 1]"),
        (["--truncation", "0"], "--truncation must lie in (0, 1]"),
        (["--truncation-threshold", "-1"], "--truncation-threshold must be positive"),
        (["--truncation", "0.5", "--arithmetic", "a.pt"], "--arithmetic reuses saved ones"),
    ],
)
def test_sample_command_refuses_bad_truncation_in_one_line(tmp_path, ckpt, capsys, flags, message):
    out = tmp_path / "out"
    assert sample_main(["--ckpt", str(ckpt), "--out", str(out / "s.pt"), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_evaluate_scores_each_psi_and_plots_them(tmp_path, ckpt, classifier, fake_mnist_dir, capsys):
    run = ckpt.parent.parent
    common = ["-n", "64", "--classifier", str(classifier), "--data-dir", str(fake_mnist_dir)]
    assert evaluate_main([str(run), *common]) == 0
    plain = json.loads((run / "evaluation.json").read_text())
    assert evaluate_main([str(run), *common, "--truncation", "0.5", "1"]) == 0
    rows = list(csv.DictReader(open(run / "evaluation.csv")))
    assert [float(r["truncation"]) for r in rows] == [0.5, 1.0]
    table = json.loads((run / "evaluation.json").read_text())
    assert [r["truncation"] for r in table] == [0.5, 1.0]
    assert {"fid", "precision", "recall"} <= set(table[0])
    assert table[1]["fid"] == plain[0]["fid"]  # psi = 1 is the untruncated score, exactly
    assert table[0]["fid"] != table[1]["fid"]
    assert (run / "evaluation_truncation.png").read_bytes()[:8] == PNG
    assert (run / "evaluation.png").read_bytes()[:8] == PNG
    capsys.readouterr()
    plot = tmp_path / "psi.png"
    assert evaluate_main(["--ckpt", str(ckpt), *common, "--truncation", "0.5", "1", "--plot", str(plot)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert [x["truncation"] for x in lines] == [0.5, 1.0]
    assert lines[1]["fid"] == round(plain[0]["fid"], 4)
    assert plot.read_bytes()[:8] == PNG


def test_evaluate_truncates_by_threshold_and_records_it(tmp_path, ckpt, classifier, fake_mnist_dir, capsys):
    common = ["--ckpt", str(ckpt), "-n", "64", "--classifier", str(classifier), "--data-dir", str(fake_mnist_dir)]

    def scores(*flags: str) -> list[dict]:
        assert evaluate_main([*common, *flags]) == 0
        return [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]

    [plain] = scores()
    [cut] = scores("--truncation-threshold", "0.5")
    assert cut["truncation_threshold"] == 0.5 and "truncation" not in cut
    assert cut["protocol"]["truncation_threshold"] == 0.5 and plain["protocol"]["truncation_threshold"] is None
    assert cut["fid"] != plain["fid"]
    assert scores("--truncation-threshold", "0.5")[0]["fid"] == cut["fid"]  # redraws from the seeded stream
    assert scores("--truncation-threshold", "1e9")[0]["fid"] == plain["fid"]  # never reached: untruncated, exactly
    both = scores("--truncation", "0.5", "1", "--truncation-threshold", "0.5")
    assert [(x["truncation"], x["truncation_threshold"]) for x in both] == [(0.5, 0.5), (1.0, 0.5)]
    assert both[1]["fid"] == cut["fid"]


def test_evaluate_refuses_bad_psi_before_writing(tmp_path, ckpt, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(ckpt.read_bytes())
    assert evaluate_main([str(run), "--truncation", "0.5", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--truncation must lie in (0, 1]" in err[0]
    assert sorted(p.name for p in run.rglob("*")) == ["checkpoints", "last.ckpt"]
    assert evaluate_main([str(run), "--truncation-threshold", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--truncation-threshold must be positive" in err[0]
    assert sorted(p.name for p in run.rglob("*")) == ["checkpoints", "last.ckpt"]
