"""DINOv2 features (`--extractor dinov2`, FD-DINOv2): the input resizes equal Pillow's, the features equal a forward
written from Meta's model definition on dgm-eval's input pipeline (PIL resize, torchvision transforms), the
Fréchet distance equals dgm-eval's formula, and a foreign file, a missing timm or a contradicting flag is one line.
Random weights in Meta's file format: the published file cannot be had offline."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms as TF
from PIL import Image
from test_fid_protocol import setup  # noqa: F401  (an RGB folder, a trained checkpoint)

from gan_lightning.commands.evaluate import main as evaluate_main
from gan_lightning.core.errors import DataError
from gan_lightning.metrics import file_sha256, load_extractor
from gan_lightning.metrics.extractors.dinov2 import write_random_dinov2_file
from gan_lightning.metrics.extractors.resizers import RESIZES
from gan_lightning.metrics.quality import SampleQualityMetrics

pytest.importorskip("timm")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_random_dinov2_file(tmp_path_factory.mktemp("dinov2") / "dinov2.pth", seed=0, embed_dim=64, depth=2)


def uint8_images(n: int, seed: int, size: tuple[int, int] = (20, 20), channels: int = 3) -> torch.Tensor:
    return torch.randint(0, 256, (n, channels, *size), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)  # fmt: skip


def signed(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1  # the [-1, 1] images every extractor here takes


def pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(image.permute(1, 2, 0).numpy())


@pytest.mark.parametrize(
    "size, out",
    [((28, 28), 224), ((32, 32), 224), ((64, 64), 224), ((300, 300), 224), ((300, 260), 224), ((37, 23), 50)],
)
def test_pil_bicubic_is_pillows_resize_bit_for_bit(size, out):
    images = uint8_images(2, 0, size)
    expected = torch.stack([torch.from_numpy(np.array(pil(x).resize((out, out), Image.BICUBIC))).permute(2, 0, 1)
                            for x in images])  # fmt: skip
    assert torch.equal(RESIZES.get("pil_bicubic")(images, out), expected.double())


@pytest.mark.parametrize("size, out", [((32, 32), 224), ((300, 300), 224), ((300, 260), 224)])
def test_clean_is_pillows_float_resize_per_channel(size, out):
    images = uint8_images(2, 1, size)
    expected = torch.stack([torch.stack([torch.from_numpy(np.array(
        Image.fromarray(x[c].float().numpy(), mode="F").resize((out, out), Image.BICUBIC)).clip(0, 255))
        for c in range(3)]) for x in images])  # fmt: skip
    # Pillow sums each pixel's taps in double one by one, a matrix product in another order: the float32 results
    # differ at most in their last bit (2**-16 between 128 and 255)
    torch.testing.assert_close(RESIZES.get("clean")(images, out), expected, rtol=0, atol=2**-16)


def reference_forward(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Meta's `DinoVisionTransformer.forward` (dinov2/models/vision_transformer.py, hub defaults) written out:
    patch embedding, class token, the 518-px positions interpolated by (w0 + 0.1) / M bicubic, pre-norm blocks with
    LayerScale, final norm, class token."""
    dim, patch = state["cls_token"].shape[-1], state["patch_embed.proj.weight"].shape[-1]
    heads = dim // 64
    tokens = F.conv2d(x, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=patch)
    b, _, h0, w0 = tokens.shape
    tokens = torch.cat((state["cls_token"].expand(b, -1, -1), tokens.flatten(2).transpose(1, 2)), dim=1)
    m = math.isqrt(state["pos_embed"].shape[1] - 1)
    grid = state["pos_embed"][:, 1:].reshape(1, m, m, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((w0 + 0.1) / m, (h0 + 0.1) / m), mode="bicubic", antialias=False)
    x = tokens + torch.cat((state["pos_embed"][:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, dim)), dim=1)
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    for i in range(depth):
        p = {k[len(f"blocks.{i}.") :]: v for k, v in state.items() if k.startswith(f"blocks.{i}.")}
        y = F.layer_norm(x, (dim,), p["norm1.weight"], p["norm1.bias"], eps=1e-6)
        q, k, v = F.linear(y, p["attn.qkv.weight"], p["attn.qkv.bias"]).reshape(b, -1, 3, heads, 64).unbind(2)
        attn = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q, k) / 8.0, dim=-1)
        y = torch.einsum("bhqk,bkhd->bqhd", attn, v).reshape(b, -1, dim)
        x = x + p["ls1.gamma"] * F.linear(y, p["attn.proj.weight"], p["attn.proj.bias"])
        y = F.layer_norm(x, (dim,), p["norm2.weight"], p["norm2.bias"], eps=1e-6)
        y = F.gelu(F.linear(y, p["mlp.fc1.weight"], p["mlp.fc1.bias"]))
        y = F.linear(y, p["mlp.fc2.weight"], p["mlp.fc2.bias"])
        x = x + p["ls2.gamma"] * y
    return F.layer_norm(x, (dim,), state["norm.weight"], state["norm.bias"], eps=1e-6)[:, 0]


def dgm_eval_pixels(images: torch.Tensor) -> torch.Tensor:
    """dgm-eval's DINOv2 input: the PIL image converted to RGB, torchvision's bicubic Resize to 224, ToTensor,
    ImageNet normalisation (its `DINOv2Encoder.transform`, clean_resize off)."""
    normalize = TF.Normalize(np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))
    transform = TF.Compose([TF.Resize((224, 224), TF.InterpolationMode.BICUBIC), TF.ToTensor(), normalize])
    grey = images.shape[1] == 1
    return torch.stack([transform((Image.fromarray(x[0].numpy()) if grey else pil(x)).convert("RGB")) for x in images])


@pytest.mark.parametrize("channels", [1, 3])
def test_features_equal_a_forward_written_from_metas_definition_on_dgm_evals_input(weights, channels):
    ours = load_extractor("dinov2", weights, checked=False)
    images = uint8_images(3, 2, (28, 28), channels)
    state = torch.load(weights, weights_only=True)
    with torch.no_grad():
        expected = reference_forward(state, dgm_eval_pixels(images))
        features, probs = ours.extract(signed(images))
    assert probs is None and features.shape == (3, ours.num_features) == (3, 64)
    torch.testing.assert_close(features, expected)
    protocol = ours.protocol()
    assert protocol["extractor"] == "dinov2" and protocol["extractor_sha256"] == file_sha256(weights)
    assert protocol["resize"].startswith("pil_bicubic: ")
    assert protocol["extractor_architecture"] == "ViT/14, width 64, 2 blocks"  # not ViT-L/14's: said with the score


def test_each_resize_feeds_the_network_its_own_pixels(weights):
    images = uint8_images(2, 5, (28, 28))
    mean, std = (
        torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
    )
    seen = {}
    for name in RESIZES.names():
        pixels = load_extractor("dinov2", weights, checked=False, resize=name).pixels(signed(images))
        torch.testing.assert_close(pixels, (RESIZES.get(name)(images, 224).float() / 255 - mean) / std)
        seen[name] = pixels
    assert not torch.equal(seen["pil_bicubic"], seen["clean"]) and not torch.equal(seen["clean"], seen["tf_bilinear"])


def dgm_eval_fd(a: np.ndarray, b: np.ndarray) -> float:
    """dgm-eval's `compute_FD_with_reps`: np.cov statistics and |mu1 - mu2|^2 + tr(S1 + S2 - 2 sqrt(S1 S2)).
    dgm-eval takes the trace of scipy's sqrtm of S1 S2 (scipy is not installed here); it equals the trace of the
    square root of the symmetric S1^1/2 S2 S1^1/2, computed here from two eigendecompositions in numpy, another
    route than the eigenvalues of the product that the scorer takes."""
    (mu1, s1), (mu2, s2) = ((x.mean(0), np.cov(x, rowvar=False)) for x in (a, b))
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ s2 @ root1), 0, None)).sum()
    return float((mu1 - mu2).dot(mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt)


def test_fd_dinov2_equals_dgm_evals_computation(weights):
    extractor = load_extractor("dinov2", weights, checked=False)
    metrics = SampleQualityMetrics(extractor, kid_subset_size=10)
    real, fake = uint8_images(80, 3), uint8_images(80, 4) // 2  # fakes: darker images
    metrics.update(signed(real), real=True)
    metrics.update(signed(fake), real=False)
    state = torch.load(weights, weights_only=True)
    with torch.no_grad():
        a, b = (reference_forward(state, dgm_eval_pixels(x)).double().numpy() for x in (real, fake))
    by_dgm_eval = dgm_eval_fd(a, b)
    assert by_dgm_eval > 1e-3
    assert metrics.compute()["fid"] == pytest.approx(by_dgm_eval, rel=1e-4)  # features equal to float32 rounding


def test_a_foreign_or_other_sized_file_is_one_line(weights, tmp_path):
    with pytest.raises(DataError) as caught:
        load_extractor("dinov2", weights)  # checked: Meta's ViT-L/14 only
    message = str(caught.value)
    assert "\n" not in message and "not ViT-L/14" in message and "--fid-weights-unchecked" in message
    state = torch.load(weights, weights_only=True)
    state["register_tokens"] = torch.zeros(1, 4, 64)
    torch.save(state, tmp_path / "reg.pth")
    with pytest.raises(DataError, match="with registers"):
        load_extractor("dinov2", tmp_path / "reg.pth", checked=False)
    chunked = {k.replace("blocks.", "blocks.0.", 1): v for k, v in state.items() if k != "register_tokens"}
    torch.save(chunked, tmp_path / "chunked.pth")  # Meta's training checkpoints: blocks.<chunk>.<i>
    with pytest.raises(DataError, match="not keyed blocks.<i>"):
        load_extractor("dinov2", tmp_path / "chunked.pth", checked=False)
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(DataError, match="holds a Tensor, not a state_dict"):
        load_extractor("dinov2", tmp_path / "tensor.pth", checked=False)
    del state["blocks.1.mlp.fc2.weight"], state["register_tokens"]
    torch.save(state, tmp_path / "cut.pth")
    with pytest.raises(DataError, match=r"do not fit a DINOv2 ViT \(Missing key"):
        load_extractor("dinov2", tmp_path / "cut.pth", checked=False)


def score(setup, weights, *flags):  # noqa: F811
    run = setup["run"]
    return evaluate_main(["--ckpt", str(run / "checkpoints" / "last.ckpt"), "--dataset", "folder", "--data-dir",
                          str(setup["data"]), "--extractor-weights", str(weights), *flags])  # fmt: skip


def test_evaluate_scores_in_dinov2_features_with_the_resize_recorded(setup, weights, capsys):  # noqa: F811
    resize = "clean"  # not the default: the flag reaches the extractor (each resize's pixels: the test above)
    flags = ["--extractor", "dinov2", "--fid-weights-unchecked", "--extractor-resize", resize, "-n", "10",
             "--reference", "train"]  # fmt: skip
    assert score(setup, weights, *flags) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["fid"] > 0 and row["protocol"]["extractor"] == "dinov2"
    assert row["protocol"]["resize"].startswith(f"{resize}: ")


@pytest.mark.parametrize("flags, message", [
    (["--protocol", "fd_dinov2_50k", "--extractor-resize", "clean"],
     "--protocol fd_dinov2_50k resizes with pil_bicubic, not clean: drop --extractor-resize"),
    (["--protocol", "fd_dinov2_50k", "--extractor", "clip"], "scores in dinov2's features, not clip's"),
    (["--extractor", "inception_torchvision", "--extractor-resize", "clean"],
     "--extractor-resize clean: the inception_torchvision extractor resizes its input one fixed way"),
    (["--extractor", "dinov2", "--extractor-resize", "bilinear"], "argument --extractor-resize: invalid choice"),
])  # fmt: skip
def test_a_contradicting_or_unknown_resize_is_one_line(setup, weights, flags, message, capsys):  # noqa: F811
    try:
        status = score(setup, weights, *flags)
    except SystemExit as stop:  # argparse's own refusal of an unknown choice
        status = stop.code
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_the_protocol_without_its_weights_is_one_line(tmp_path, capsys):
    assert evaluate_main(["--ckpt", str(tmp_path / "none.ckpt"), "--protocol", "fd_dinov2_50k"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "scores in dinov2's features: pass --extractor-weights PATH" in err[0], err


def test_without_timm_the_extractor_says_how_to_install_it(setup, weights, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setitem(sys.modules, "timm.models.vision_transformer", None)  # what a missing package raises
    assert score(setup, weights, "--extractor", "dinov2", "--fid-weights-unchecked", "-n", "10") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install -e ".[dinov2]"' in err[0], err
