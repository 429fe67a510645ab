"""Sampling from a trained GAN: safe checkpoint loading, grids, interpolation and latent vector arithmetic."""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import make_grid, save_image

from gan_lightning.commands.base import Parser, run_command, seed
from gan_lightning.core import plugins
from gan_lightning.core.errors import ConfigError, DataError, WriteError
from gan_lightning.core.files import (
    atomic_write,
    check_writable_dir,
    check_writable_file,
    load_weights_file,
    save_torch,
)
from gan_lightning.training.gan import GAN
from gan_lightning.training.latents import truncation_options

Tensor = torch.Tensor


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint's dict, loaded without unpickling arbitrary objects (weights_only); `load_gan` upgrades its
    state to this release."""
    hint = "pass a gan_lightning checkpoint (checkpoints/last.ckpt)"
    ckpt = load_weights_file(path, "checkpoint", hint, map_location)
    if not isinstance(ckpt, dict):
        raise DataError(f"{path} is not a gan_lightning checkpoint (it holds a {type(ckpt).__name__})")
    plugins.require(plugins.recorded_in(ckpt), f"the checkpoint {path}")
    hparams = ckpt.get("hyper_parameters", {})
    if "state_dict" not in ckpt or "model" not in hparams:
        raise DataError(f"{path} is not a gan_lightning checkpoint (no state_dict / model hyperparameters)")
    return ckpt


def load_gan(path: str | Path, map_location: str | torch.device = "cpu", ckpt: dict[str, Any] | None = None) -> GAN:
    """Rebuild a registry-model GAN from a checkpoint file (or its already-read dict `ckpt`), weights_only."""
    ckpt = read_checkpoint(path, map_location) if ckpt is None else ckpt
    hparams = dict(ckpt["hyper_parameters"])
    accepted = {*GAN.declared_options().names(), *inspect.signature(GAN.__init__).parameters}
    gan = GAN(**{k: v for k, v in hparams.items() if k in accepted})
    gan.upgrade_checkpoint(ckpt)
    try:
        gan.load_state_dict(ckpt["state_dict"])
    except RuntimeError:
        raise ConfigError(
            f"{path} does not match the registry model {hparams['model']!r}: was it trained with your own networks? "
            "Then load it with GAN.load_from_checkpoint(path, generator=..., discriminator=...)"
        ) from None
    return gan.to(map_location).eval()


def interpolate(gan: GAN, pairs: int, steps: int, rng: torch.Generator, psi: float | None = None,
                threshold: float | None = None) -> tuple[Tensor, int]:  # fmt: skip
    """Latents for `pairs` rows of `steps` images walking between two random endpoints, as the prior walks
    (`Prior.interpolate`: slerp for normal noise).

    Truncation (`psi`, `threshold`) applies to the endpoints, so each row is still one smooth walk."""
    start, end = (gan.latents.truncate(gan.latents.draw(pairs, rng, gan.device), rng, psi, threshold).input
                  for _ in range(2))  # fmt: skip
    z_dim = gan.latents.dim
    t = torch.linspace(0, 1, steps).view(1, steps, 1)  # (1, S, 1)
    a, b = start[:, None, :z_dim], end[:, None, :z_dim]  # (P, 1, Z): only the noise moves; codes stay per row
    walk = gan.latents.interpolate(a, b, t)  # (P, S, Z)
    codes = start[:, None, z_dim:].expand(-1, steps, -1)
    return torch.cat([walk, codes], dim=2).reshape(pairs * steps, -1), steps


def arithmetic(gan: GAN, groups: Sequence[Tensor], signs: Sequence[int], extra: int, rng: torch.Generator) -> Tensor:
    """The DCGAN paper's vector arithmetic: sum of sign * mean(group), plus `extra` jittered copies (noise 0.25)."""
    means = [g.mean(dim=0) for g in groups]  # each (latent + code dims,)
    result = sum(s * m for s, m in zip(signs, means, strict=True))
    jitter = torch.zeros(extra + 1, result.shape[0])
    jitter[1:, : gan.latents.dim] = 0.25 * torch.randn(extra, gan.latents.dim, generator=rng)
    return torch.stack([*means, *(result + jitter)])  # the group means first, then the results


def _parse_arithmetic(terms: Sequence[str]) -> tuple[list[Path], list[int]]:
    files, signs, sign = [], [], 1
    for term in terms:
        if term in "+-":
            sign = 1 if term == "+" else -1
            continue
        files.append(Path(term))
        signs.append(sign)
        sign = 1
    if not files:
        raise ConfigError("--arithmetic needs latent files, e.g. --arithmetic smiling_woman.pt - woman.pt + man.pt")
    return files, signs


def _load_latents(path: Path, dim: int) -> Tensor:
    latents = load_weights_file(path, "latent file", "save one with sample.py --save-latents")
    if not isinstance(latents, Tensor) or latents.ndim != 2 or latents.shape[1] != dim:
        raise DataError(f"{path} must hold a (N, {dim}) tensor of generator inputs, as --save-latents writes")
    return latents


def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise ConfigError(f"{flag} takes comma-separated integers, e.g. 0,3,7; got {text!r}") from None


def check_device(name: str) -> None:
    """Refuse, in one line, a `--device` torch cannot parse or this machine does not have (before the checkpoint is
    read: torch.load would otherwise blame the file)."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name} is not a device: pass cpu, cuda, cuda:N or mps") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {name}: sampling runs on cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s); pass "
                          "--device cpu or another index")  # fmt: skip
    if device.type == "mps" and (not torch.backends.mps.is_available() or (device.index or 0) > 0):
        raise ConfigError(f"--device {name}: Apple's MPS is not available here; pass --device cpu")


def stale_images(folder: Path, count: int) -> list[Path]:
    """The numbered PNGs in `folder` that writing `count` images would not replace (an earlier, larger sample)."""
    if not folder.is_dir():
        return []
    return sorted(
        (p for p in folder.glob("*.png") if p.stem.isdigit() and int(p.stem) >= count), key=lambda p: int(p.stem)
    )


def build_parser() -> Parser:
    """The sample command's argument parser."""
    p = Parser(prog="sample.py", description="Generate images from a gan_lightning checkpoint.")
    p.add_argument("--ckpt", required=True, help="checkpoint (e.g. lightning_logs/mlp/version_0/checkpoints/last.ckpt)")
    p.add_argument("--out", required=True, help="grid.png, a directory (one PNG per image), or samples.pt (a tensor)")
    p.add_argument("-n", "--num", type=int, default=64, help="images to generate (default 64)")
    p.add_argument("--nrow", type=int, help="images per grid row (default: square)")
    p.add_argument("--seed", type=seed, default=0, help="seed for the noise (default 0)")
    p.add_argument("--labels", help="conditional models: comma-separated class labels, cycled over --num")
    p.add_argument("--class", dest="class_names", metavar="NAME[,NAME]",
                   help="conditional models with class names (a conditional folder run): classes by name, cycled "
                   "over --num")  # fmt: skip
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                   help="use the EMA generator (default: when the checkpoint has one)")  # fmt: skip
    p.add_argument("--interpolate", action="store_true", help="rows walking between random latent endpoints")
    p.add_argument("--pairs", type=int, default=8, help="--interpolate: rows (default 8)")
    p.add_argument("--steps", type=int, default=10, help="--interpolate: images per row (default 10)")
    p.add_argument("--arithmetic", nargs="+", metavar="TERM",
                   help="latent arithmetic on saved groups: A.pt - B.pt + C.pt (group means)")  # fmt: skip
    p.add_argument("--save-latents", help="also save the generator inputs used, for later --arithmetic")
    p.add_argument("--select", help="with --save-latents: keep only these comma-separated image indices")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    for option in truncation_options:
        option.add_to(p)
    return p


def run(cfg: argparse.Namespace) -> None:
    """Generate as configured, write the output and say where."""
    for name in ("num", "pairs", "steps", "nrow"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise ConfigError(f"--{name} must be positive, got {getattr(cfg, name)}")
    if cfg.select and not cfg.save_latents:
        raise ConfigError("--select keeps some of the latents --save-latents writes: give --save-latents too")
    select = _int_list(cfg.select, "--select") if cfg.select else None
    for option in truncation_options:
        option.validate(getattr(cfg, option.name))
    psi, threshold = cfg.truncation, cfg.truncation_threshold
    if cfg.arithmetic and (psi is not None or threshold is not None):
        raise ConfigError("--truncation applies to drawn latents; --arithmetic reuses saved ones: pass --truncation "
                          "when saving them with --save-latents")  # fmt: skip
    if (cfg.labels or cfg.class_names) and (cfg.interpolate or cfg.arithmetic):
        mode = "--interpolate" if cfg.interpolate else "--arithmetic"
        raise ConfigError(f"{'--labels' if cfg.labels else '--class'} chooses the classes of drawn images; {mode} "
                          "makes its own inputs: drop one")  # fmt: skip
    check_device(cfg.device)
    out = Path(cfg.out)
    to_folder = out.suffix not in (".pt", ".png")  # one PNG per image
    if to_folder:
        check_writable_dir(out, "--out")
    else:
        check_writable_file(out, "--out")
    if cfg.save_latents:
        check_writable_file(cfg.save_latents, "--save-latents")
    gan = load_gan(cfg.ckpt, cfg.device)
    notice = gan.latents.truncation_notice(psi, threshold)
    if notice:
        print(f"note: {notice}", file=sys.stderr)
    rng = torch.Generator(gan.device).manual_seed(cfg.seed)
    nrow = cfg.nrow
    if cfg.interpolate:
        latents, nrow = interpolate(gan, cfg.pairs, cfg.steps, rng, psi, threshold)
    elif cfg.arithmetic:
        files, signs = _parse_arithmetic(cfg.arithmetic)
        dim = gan.latents.input_dim
        groups = [_load_latents(f, dim) for f in files]
        latents = arithmetic(gan, groups, signs, extra=7, rng=torch.Generator().manual_seed(cfg.seed))
        nrow = len(latents)
    else:
        labels = None
        if cfg.labels and cfg.class_names:
            raise ConfigError("give --labels or --class, not both")
        if cfg.labels or cfg.class_names:
            flag = "--labels" if cfg.labels else "--class"
            if not gan.hparams.conditional:
                raise ConfigError(f"{flag} needs a conditional checkpoint (trained with --conditional)")
            if cfg.labels:
                given = torch.tensor(_int_list(cfg.labels, "--labels"))
            else:
                given = torch.tensor([gan.latents.label_of(name) for name in cfg.class_names.split(",")])
            if given.min() < 0 or given.max() >= gan.hparams.num_classes:
                raise ConfigError(f"--labels must lie in [0, {gan.hparams.num_classes})")
            labels = given.repeat((cfg.num + len(given) - 1) // len(given))[: cfg.num]
        # truncated here rather than inside gan.sample, so --save-latents keeps the inputs the images came from
        latents = gan.latents.truncate(gan.latents.draw(cfg.num, rng, gan.device, labels=labels), rng, psi, threshold)
        latents = latents.input
    if select is not None and not all(0 <= i < len(latents) for i in select):
        raise ConfigError(f"--select indices must lie in [0, {len(latents)}), the images generated")
    stale = stale_images(out, len(latents)) if to_folder else []
    if stale:
        raise ConfigError(f"--out {out} holds {len(stale)} image(s) from an earlier sample ({stale[0].name} on) that "
                          f"these {len(latents)} would not replace: give an empty folder or remove them")  # fmt: skip
    images = gan.sample(latents=latents.to(gan.device), ema=cfg.ema).cpu()  # (N, C, H, W) in [-1, 1]
    if out.suffix == ".pt":
        atomic_write(out, lambda p: save_torch(images, p), "the samples")
    elif out.suffix == ".png":
        nrow = nrow or max(1, round(len(images) ** 0.5))
        grid = make_grid(images, nrow=nrow, normalize=True, value_range=(-1, 1))  # (C, H', W')
        atomic_write(out, lambda p: save_image(grid, p, format="png"), "the sample grid")
    else:
        for i, image in enumerate(images):
            try:
                atomic_write(out / f"{i:05d}.png",
                             lambda p, image=image: save_image(image, p, format="png", normalize=True,
                                                               value_range=(-1, 1)), "the image")  # fmt: skip
            except WriteError as err:
                raise WriteError(f"{err}; {i} of {len(images)} images were written before it") from None
    if cfg.save_latents:
        keep = latents.cpu()
        if select is not None:
            keep = keep[select]
        atomic_write(cfg.save_latents, lambda p: save_torch(keep, p), "the latents")
    print(f"wrote {out}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `scripts/sample.py`: 0 on success, 2 on bad input."""
    return run_command(build_parser, run, argv)
