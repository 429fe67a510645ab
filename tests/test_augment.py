"""DiffAugment: policy parsing, seeded randomness, differentiability, and each transform's exact effect."""

from __future__ import annotations

import re

import pytest
import torch

from gan_lightning.augment import TRANSFORMS, DiffAugment, color, cutout, translation
from gan_lightning.core.errors import ConfigError

ALL = "color,translation,cutout"


def rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_policy_parsing():
    assert DiffAugment(" color , cutout").policy == "color,cutout"
    for bad in ("", "colour", "color,,cutout", "color,color"):
        # the message lists every registered transform (a new transform file adds itself to it)
        with pytest.raises(ConfigError, match=re.escape(", ".join(TRANSFORMS.names()))):
            DiffAugment(bad)


def test_seeded_private_randomness():
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    state = torch.get_rng_state()
    a, b = DiffAugment(ALL)(x, rng(1)), DiffAugment(ALL)(x, rng(1))
    assert torch.equal(a, b) and not torch.equal(a, DiffAugment(ALL)(x, rng(2)))
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is never drawn from


def test_generator_receives_gradient_through_every_transform():
    G = torch.nn.Linear(4, 16 * 16)
    fake = G(torch.randn(6, 4)).view(6, 1, 16, 16)
    DiffAugment(ALL)(fake, rng()).square().sum().backward()
    assert G.weight.grad is not None and G.weight.grad.abs().sum() > 0


def shifted(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """`img` (H, W) moved down dy and right dx pixels, zeros where nothing moved in (a reference by slicing)."""
    h, w = img.shape
    out = torch.zeros_like(img)
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = img[max(-dy, 0) : h - max(dy, 0),
                                                                         max(-dx, 0) : w - max(dx, 0)]  # fmt: skip
    return out


def test_translation_shifts_each_image_by_up_to_an_eighth_with_zero_fill():
    x = torch.arange(1.0, 65.0).view(1, 1, 8, 8).repeat(64, 1, 1, 1)  # no zero pixel in the input
    out = translation(x, rng())
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]  # up to 1/8 of 8 pixels either way
    shifts = []
    for img in out[:, 0]:
        matches = [o for o in offsets if torch.equal(img, shifted(x[0, 0], *o))]
        assert len(matches) == 1, img  # exactly one integer shift, the uncovered border zero, no wrap-around
        shifts.append(matches[0])
    assert set(shifts) == set(offsets)  # drawn per image: every shift, (0, 0) included, among 64 draws


def test_cutout_zeroes_one_half_size_square():
    x = torch.ones(32, 2, 8, 8)
    out = cutout(x, rng())
    full = 0
    for img in out:
        assert torch.equal(img[0], img[1])  # the same square in every channel
        zeros = torch.nonzero(img[0] == 0)
        rows, cols = zeros[:, 0], zeros[:, 1]
        top, bottom, left, right = int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())
        h, w = bottom - top + 1, right - left + 1
        assert len(zeros) == h * w  # one filled rectangle
        # a 4x4 square, shorter only where the border clips it
        assert h == 4 or (h < 4 and (top == 0 or bottom == 7)), (top, bottom)
        assert w == 4 or (w < 4 and (left == 0 or right == 7)), (left, right)
        full += (h, w) == (4, 4)
        assert set(img.unique().tolist()) <= {0.0, 1.0}
    assert full > 0  # centres drawn anywhere: some squares lie wholly inside


def test_color_scales_brightness_saturation_and_contrast_per_image():
    # color's output is x + b, then the pixels' deviation from their channel mean scaled by s, then the deviation
    # from the image mean by c: out = c*s*(x - chan_mean) + c*(chan_mean - mean) + mean + b. Each image's b, c and
    # c*s are read back from the output by least squares, and the output must be that formula exactly.
    x = torch.rand(256, 3, 4, 4) * 2 - 1
    out = color(x, rng())
    chan_mean, mean = x.mean(1, keepdim=True), x.mean((1, 2, 3), keepdim=True)
    d, e = x - chan_mean, (chan_mean - mean).expand_as(x)
    d_out = out - out.mean(1, keepdim=True)
    e_out = (out.mean(1, keepdim=True) - out.mean((1, 2, 3), keepdim=True)).expand_as(x)
    cs = (d_out * d).sum((1, 2, 3)) / (d * d).sum((1, 2, 3))
    c = (e_out * e).sum((1, 2, 3)) / (e * e).sum((1, 2, 3))
    b = (out - x).mean((1, 2, 3))
    view = (-1, 1, 1, 1)
    assert torch.allclose(out, cs.view(view) * d + c.view(view) * e + mean + b.view(view), atol=1e-5)
    s = cs / c
    # brightness U(-0.5, 0.5), saturation U(0, 2), contrast U(0.5, 1.5), each drawn per image over its whole range
    for value, low, high in ((b, -0.5, 0.5), (s, 0.0, 2.0), (c, 0.5, 1.5)):
        span = high - low
        assert value.min() >= low - 1e-4 and value.max() <= high + 1e-4
        assert value.min() < low + 0.05 * span and value.max() > high - 0.05 * span


def test_xflip_and_rotate90_are_one_of_their_pixel_permutations_per_image():
    x = torch.rand(64, 2, 5, 5)
    cases = {
        "xflip": lambda img: [img, img.flip(2)],
        "rotate90": lambda img: [torch.rot90(img, k, (1, 2)) for k in range(4)],
    }
    for name, candidates in cases.items():
        out = TRANSFORMS.get(name)(x, rng())
        drawn = []
        for img, result in zip(x, out, strict=True):
            matches = [i for i, candidate in enumerate(candidates(img)) if torch.equal(result, candidate)]
            assert len(matches) == 1, name
            drawn.append(matches[0])
        assert set(drawn) == set(range(len(candidates(x[0])))), name  # every orientation among 64 draws


def test_each_sample_gets_its_own_transform():
    x = torch.rand(1, 3, 16, 16).repeat(4, 1, 1, 1)
    out = DiffAugment(ALL)(x, rng())
    assert not torch.equal(out[0], out[1]) and not torch.equal(out[2], out[3])


def test_bf16_and_channels_last():
    x = (torch.rand(4, 3, 16, 16) * 2 - 1).to(torch.bfloat16)
    assert DiffAugment(ALL)(x, rng()).dtype == torch.bfloat16
    cl = torch.rand(4, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(DiffAugment(ALL)(cl, rng(5)), DiffAugment(ALL)(cl.contiguous(), rng(5)))


def test_diffaugment_probability_per_image():
    """--diffaug-p: p = 0 is the identity, p = 1 the original DiffAugment (same draws), in between some images only."""
    x = torch.rand(64, 1, 8, 8) * 2 - 1
    rng = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(DiffAugment("translation,cutout", p=0.0)(x, rng()), x)
    assert torch.equal(DiffAugment("translation,cutout", p=1.0)(x, rng()), DiffAugment("translation,cutout")(x, rng()))
    half = DiffAugment("cutout", p=0.5)(x, rng())
    changed = (half != x).flatten(1).any(1)  # cutout zeroes a square of every image it hits
    assert 16 < int(changed.sum()) < 48
    # the mask is the first draw: images whose uniform falls below p, and only those, were cut out
    assert torch.equal(changed, torch.rand(64, generator=rng()) < 0.5)


def test_fixed_diffaugment_p_is_not_checkpoint_state():
    """A fixed augmentation's p comes from its option or the schedule: old checkpoints (no p) still load."""
    assert "p" not in DiffAugment("color").state_dict()
    with pytest.raises(ConfigError, match="--diffaug-p is a probability"):
        DiffAugment("color", p=1.5)
