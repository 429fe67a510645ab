"""StyleGAN2 output parity (`scripts/parity_stylegan2.py`): `--model stylegan2` against NVlabs' stylegan2-ada-pytorch
`training/networks.py`, imported from a checkout of it, with the same weights.

For a small configuration (every D architecture, two mbstd channels, no conv clamp) and the reference's cifar one
(32 px, z = w = 512, channel_max 512, 2 mapping layers, D 'orig', mbstd group 32, conv_clamp 256): build the
reference's G (unconditional and conditional) and D, copy their state dicts into ours by name (`b4.out` -> `head`,
D's blocks under `body.`), then feed both the same z, labels and images. Compared, as max |difference|: images with
the constant noise (the reference's noise_mode 'const') untruncated and truncated in W, the W average after one
training-mode mapping, and D's logits. The last line printed is one JSON object; exit status 1 when a difference
exceeds `--tolerance`.

    python scripts/parity_stylegan2.py --reference /path/to/stylegan2-ada-pytorch
"""

from __future__ import annotations

import importlib
import json
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gan_lightning.commands.base import Parser, run_command
from gan_lightning.core.errors import ConfigError
from gan_lightning.models import build_models

Tensor = torch.Tensor
# fmt: off
CONFIGS: dict[str, dict[str, Any]] = {
    "small": dict(image_size=16, channels=3, z_dim=16, num_classes=5, w_dim=32, mapping_layers=3, channel_base=256,
                  channel_max=32, mbstd_group=2, mbstd_channels=2, conv_clamp=None,
                  architectures=("resnet", "orig", "skip")),
    "cifar": dict(image_size=32, channels=3, z_dim=512, num_classes=10, w_dim=512, mapping_layers=2,
                  channel_base=32768, channel_max=512, mbstd_group=32, mbstd_channels=1, conv_clamp=256.0,
                  architectures=("orig",)),
}
# fmt: on


def build_parser() -> Parser:
    """The parity check's flags."""
    p = Parser(prog="parity_stylegan2.py", description="max |difference| of --model stylegan2's images and logits "
               "from NVlabs' stylegan2-ada-pytorch networks with the same weights")  # fmt: skip
    p.add_argument("--reference", required=True, type=Path, help="a checkout of NVlabs/stylegan2-ada-pytorch")
    p.add_argument("--batch-size", type=int, default=4, help="samples compared per configuration (default 4)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest accepted difference (default 1e-4)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    return p


def load_reference(root: Path) -> types.ModuleType:
    """The reference's `training.networks`, imported from the checkout `root`."""
    if not (root / "training" / "networks.py").is_file():
        raise ConfigError(f"--reference {root} is not a stylegan2-ada-pytorch checkout (no training/networks.py)")
    # dnnlib imports requests for its downloads, which building the networks never uses
    if importlib.util.find_spec("requests") is None:
        sys.modules["requests"] = types.ModuleType("requests")
    sys.path.insert(0, str(root))
    return importlib.import_module("training.networks")


def ours_key(key: str, discriminator: bool) -> str:
    """Our state-dict name of the reference's `key`."""
    if not discriminator:
        return key
    return key.replace("b4.out.", "head.", 1) if key.startswith("b4.out.") else "body." + key


def copy_weights(reference: nn.Module, ours: nn.Module, discriminator: bool = False) -> None:
    """Load the reference's parameters and buffers into `ours` by name; every entry of both must match."""
    state = {ours_key(k, discriminator): v for k, v in reference.state_dict().items() if "resample_filter" not in k}
    ours.load_state_dict(state, strict=True)


def max_diff(a: Tensor, b: Tensor) -> float:
    """max |a - b|."""
    return float((a.double() - b.double()).abs().max())


def compare(ref: types.ModuleType, cfg: dict[str, Any], batch: int, device: torch.device) -> dict[str, float]:
    """The differences of one configuration."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(batch, cfg["z_dim"], generator=g).to(device)
    k = cfg["num_classes"]
    c = torch.eye(k)[torch.arange(batch) % k].to(device)  # (B, K) one-hot
    images = (torch.rand(batch, cfg["channels"], cfg["image_size"], cfg["image_size"], generator=g) * 2 - 1).to(device)
    names = ("channels", "image_size", "w_dim", "mapping_layers", "channel_base", "mbstd_group", "mbstd_channels")
    shape = {n: cfg[n] for n in names} | {"ngf": cfg["channel_max"], "ndf": cfg["channel_max"]}
    shape["conv_clamp"] = cfg["conv_clamp"]
    synthesis = dict(channel_base=cfg["channel_base"], channel_max=cfg["channel_max"], conv_clamp=cfg["conv_clamp"])
    out: dict[str, float] = {}
    for c_dim, suffix in ((0, ""), (k, "_conditional")):
        ref_g = ref.Generator(z_dim=cfg["z_dim"], c_dim=c_dim, w_dim=cfg["w_dim"], img_resolution=cfg["image_size"],
                              img_channels=cfg["channels"], mapping_kwargs={"num_layers": cfg["mapping_layers"]},
                              synthesis_kwargs=synthesis).to(device)  # fmt: skip
        ref_g.mapping.w_avg.normal_(generator=torch.Generator(device).manual_seed(1))  # a W average to truncate to
        our_g, _ = build_models("stylegan2", latent_dim=cfg["z_dim"] + c_dim, num_classes=c_dim, **shape)
        our_g = our_g.to(device)
        copy_weights(ref_g, our_g)
        inputs = torch.cat([z, c], dim=1) if c_dim else z  # the package's G input: labels last
        ref_c = c if c_dim else None
        ref_g.eval(), our_g.eval()
        with torch.no_grad():
            for psi, cutoff, name in ((1.0, None, "images"), (0.7, None, "truncated"), (0.5, 2, "truncated_cutoff")):
                expected = ref_g(z, ref_c, truncation_psi=psi, truncation_cutoff=cutoff, noise_mode="const")
                raw = our_g.synthesis(our_g.mapping(z, ref_c, psi, cutoff))  # unclamped, as the reference's
                out[name + suffix] = max_diff(raw, expected)
            expected = ref_g(z, ref_c, noise_mode="const")
            out["images_tanh" + suffix] = max_diff(our_g(inputs), expected.tanh())
            out["image_scale" + suffix] = float(expected.abs().max())
            ref_g.train(), our_g.train()  # the reference's training mode convolves unfused, as ours always does
            expected = ref_g(z, ref_c, noise_mode="const")  # its mapping updates the W average once
            out["images_train" + suffix] = max_diff(our_g.synthesis(our_g.mapping(z, ref_c)), expected)
            out["w_avg" + suffix] = max_diff(our_g.mapping.w_avg, ref_g.mapping.w_avg)
    for arch in cfg["architectures"]:
        ref_d = ref.Discriminator(c_dim=0, img_resolution=cfg["image_size"], img_channels=cfg["channels"],
                                  architecture=arch, channel_base=cfg["channel_base"], channel_max=cfg["channel_max"],
                                  conv_clamp=cfg["conv_clamp"], epilogue_kwargs={"mbstd_group_size": cfg["mbstd_group"],
                                  "mbstd_num_channels": cfg["mbstd_channels"]}).to(device)  # fmt: skip
        _, our_d = build_models("stylegan2", latent_dim=cfg["z_dim"], d_architecture=arch, **shape)
        our_d = our_d.to(device)
        copy_weights(ref_d, our_d, discriminator=True)
        with torch.no_grad():
            expected = ref_d(images, None).squeeze(1)
            out[f"logits_{arch}"] = max_diff(our_d(images), expected)
            out[f"logit_scale_{arch}"] = float(expected.abs().max())
    return out


def run(cfg: Any) -> int:
    """Compare both configurations and print one JSON line."""
    if cfg.batch_size < 2:
        raise ConfigError(f"--batch-size must be at least 2 (minibatch standard deviation), got {cfg.batch_size}")
    ref = load_reference(cfg.reference)
    device = torch.device(cfg.device)
    # TF32 convolutions and matmuls would differ from the reference by ~1e-3 on their own: fp32 for both
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)  # the reference's weights come from the global generator
    result: dict[str, Any] = {"device": str(device), "batch_size": cfg.batch_size}
    for name, config in CONFIGS.items():
        result[name] = compare(ref, config, cfg.batch_size, device)
    result["max"] = max(v for name in CONFIGS for key, v in result[name].items() if "scale" not in key)
    result["tolerance"] = cfg.tolerance
    print(json.dumps(result))
    return 0 if result["max"] <= cfg.tolerance else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `scripts/parity_stylegan2.py`."""
    return run_command(build_parser, run, argv)
