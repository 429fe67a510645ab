"""Output parity of `--model r3gan` with brownvc/R3GAN's networks (`scripts/parity_r3gan.py`).

Builds the reference's Generator and Discriminator (`R3GAN/Networks.py` of a checkout given as `--reference`) at a
small configuration and at its CIFAR-10 configuration (train.py, preset CIFAR10), draws every reference weight
afresh from a seeded generator (the reference's zeroed branch layers and zero biases would leave its residual
branches untested), copies them into ours by name, feeds both the same noise, labels and images, and prints one
JSON line of the largest absolute differences, beside the scale of what is compared:

- `image`: our G's `unbounded` output against the reference's G output; `tanh_image`: our G against tanh of it.
- `logit`: our unconditional D against the reference's unconditional D.
- `cond_image`: the same with class labels (G's label embedding concatenated to the noise).
- `cond_logit`: the reference's conditional D (basis Linear W, label embedding E, logit <W h, E y>) against ours
  as the package builds it for conditional runs (`Critic` with a projection head), with the head set to 0 and the
  projection's embedding to W^T E: the same function, parameterised differently (see `models/r3gan.py`).

The reference's CUDA ops fall back to their pure-PyTorch versions on the CPU, where this runs.

    python scripts/parity_r3gan.py --reference /tmp/R3GAN
"""

from __future__ import annotations

import json
import re
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gan_lightning.commands.base import Parser, run_command, seed
from gan_lightning.core.errors import ConfigError
from gan_lightning.models import build_models
from gan_lightning.models.heads import Critic

# (image size, width, blocks per stage, expansion, cardinality, noise, G's and D's condition embeddings)
CONFIGS = {
    "small": {"image_size": 16, "width": 32, "blocks": 1, "expansion": 2, "cardinality": 4, "noise": 16,
              "g_embedding": 16, "d_embedding": 32},
    "cifar10": {"image_size": 32, "width": 768, "blocks": 2, "expansion": 2, "cardinality": 96, "noise": 64,
                "g_embedding": 64, "d_embedding": 768},
}  # fmt: skip
NUM_CLASSES = 10
BLOCK = {"LinearLayer1.Layer": "expand", "LinearLayer2.Layer": "grouped", "LinearLayer3.Layer": "compress",
         "NonLinearity1.Bias": "act1.bias", "NonLinearity2.Bias": "act2.bias"}  # fmt: skip


def build_parser() -> Parser:
    """The script's flags."""
    p = Parser(prog="parity_r3gan.py", description="max |difference| of --model r3gan's images and logits against "
               "brownvc/R3GAN's networks with the same weights and inputs")  # fmt: skip
    p.add_argument("--reference", required=True, help="a checkout of brownvc/R3GAN (the folder holding R3GAN/)")
    p.add_argument("--batch-size", type=int, default=4, help="samples compared per configuration (default 4)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the weights and inputs (default 0)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return p


def load_reference(folder: str) -> types.ModuleType:
    """`R3GAN.Networks` of the checkout `folder`; `requests` and `pkg_resources`, which its utilities import but
    the networks never call, are stood in for when not installed."""
    if not (Path(folder) / "R3GAN" / "Networks.py").is_file():
        raise ConfigError(f"--reference {folder} has no R3GAN/Networks.py; pass a checkout of brownvc/R3GAN")
    sys.path.insert(0, str(Path(folder).resolve()))
    for name in ("requests", "pkg_resources"):
        try:
            __import__(name)
        except ImportError:
            stand_in = sys.modules[name] = types.ModuleType(name)
            if name == "pkg_resources":  # conv2d_gradfix compares torch's version with it at import
                import packaging.version

                stand_in.parse_version = packaging.version.parse  # type: ignore[attr-defined]
    import R3GAN.Networks

    return R3GAN.Networks


def our_name(ref_name: str, network: str) -> str | None:
    """Our parameter name for the reference's `ref_name` in G or D (None: the resamplers' constant kernels)."""
    if ref_name.endswith("Resampler.Kernel"):
        return None
    fixed = {"EmbeddingLayer.weight": "embed.weight", "AggregationLayer.Layer.weight": "to_image.weight",
             "ExtractionLayer.Layer.weight": "body.from_image.weight"}  # fmt: skip
    if ref_name in fixed:
        return fixed[ref_name]
    stage, layer, rest = re.fullmatch(r"MainLayers\.(\d+)\.Layers\.(\d+)\.(.+)", ref_name).groups()  # type: ignore[union-attr]
    block = int(layer) - 1 if network == "G" else int(layer)  # G's stages open with their transition, D's end in it
    if rest in ("Basis", "LinearLayer.weight") and network == "G":
        return {"Basis": "basis.basis", "LinearLayer.weight": "basis.linear.weight"}[rest]
    if rest in ("Basis.weight", "LinearLayer.weight"):
        return {"Basis.weight": "body.basis.basis.weight", "LinearLayer.weight": "head.weight"}[rest]
    prefix = f"stages.{stage}.{block}." if network == "G" else f"body.stages.{stage}.{block}."
    part, _, leaf = rest.rpartition(".")
    return prefix + (BLOCK[rest] if rest in BLOCK else f"{BLOCK[part]}.{leaf}")


def redraw(module: nn.Module, rng: torch.Generator) -> None:
    """Every parameter of `module` drawn afresh: weights N(0, 1 / fan_in), G's basis N(0, 1), biases N(0, 0.1^2)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            std = 1.0 if name.endswith("Basis") else 0.1 if p.ndim == 1 else p[0].numel() ** -0.5
            p.copy_(torch.randn(p.shape, generator=rng) * std)


def copy_into(ours: nn.Module, ref: nn.Module, network: str, extra: dict[str, torch.Tensor] | None = None) -> None:
    """Load the reference's weights into ours by name (and `extra` by our names); every name must be matched."""
    state = {our_name(k, network): v for k, v in ref.state_dict().items()}
    state.pop(None, None)
    ours.load_state_dict({**state, **(extra or {})}, strict=True)


def compare(net: types.ModuleType, name: str, batch: int, rng: torch.Generator) -> dict[str, Any]:
    """Differences at configuration `name` of CONFIGS."""
    c = CONFIGS[name]
    stages = c["image_size"].bit_length() - 2  # 4x4 doubled to the image size: 4 at 32 px
    widths, cards, blocks = [c["width"]] * stages, [c["cardinality"]] * stages, [c["blocks"]] * stages
    shape = {"channels": 3, "image_size": c["image_size"], "ngf": c["width"], "ndf": c["width"],
             "r3gan_blocks": c["blocks"], "r3gan_expansion": c["expansion"],
             "r3gan_group_channels": c["width"] * c["expansion"] // c["cardinality"]}  # fmt: skip
    ref_g = net.Generator(c["noise"], widths, cards, blocks, c["expansion"])
    ref_cg = net.Generator(c["noise"], widths, cards, blocks, c["expansion"], ConditionDimension=NUM_CLASSES,
                           ConditionEmbeddingDimension=c["g_embedding"])  # fmt: skip
    ref_d = net.Discriminator(widths, cards, blocks, c["expansion"])
    ref_cd = net.Discriminator(widths, cards, blocks, c["expansion"], ConditionDimension=NUM_CLASSES,
                               ConditionEmbeddingDimension=c["d_embedding"])  # fmt: skip
    for module in (ref_g, ref_cg, ref_d, ref_cd):
        redraw(module, rng)
    g, d = build_models("r3gan", latent_dim=c["noise"], **shape)
    cg, _ = build_models("r3gan", latent_dim=c["noise"] + NUM_CLASSES, num_classes=NUM_CLASSES,
                         r3gan_embedding=c["g_embedding"], **shape)  # fmt: skip
    critic = Critic.build(build_models("r3gan", latent_dim=c["noise"], **shape)[1], num_classes=NUM_CLASSES)
    copy_into(g, ref_g, "G")
    copy_into(cg, ref_cg, "G")
    copy_into(d, ref_d, "D")
    # The reference's conditional logit <W h, E y> is ours with no head and the projection's embedding W^T E.
    w, e = ref_cd.MainLayers[-1].Layers[-1].LinearLayer, ref_cd.EmbeddingLayer  # (Demb, w), (Demb, K) weights
    del ref_cd.MainLayers[-1].Layers[-1].LinearLayer, ref_cd.EmbeddingLayer  # copied into the heads below
    copy_into(critic.net, ref_cd, "D", {"head.weight": torch.zeros_like(critic.net.head.weight)})
    critic.projection.load_state_dict({"embed.weight": (w.weight.T @ e.weight).T.detach()})  # (K, w)
    ref_cd.MainLayers[-1].Layers[-1].LinearLayer, ref_cd.EmbeddingLayer = w, e
    z = torch.randn(batch, c["noise"], generator=rng)
    labels = torch.randint(NUM_CLASSES, (batch,), generator=rng)
    onehot = nn.functional.one_hot(labels, NUM_CLASSES).float()
    images = torch.rand(batch, 3, c["image_size"], c["image_size"], generator=rng) * 2 - 1
    with torch.no_grad():
        ref_image, ref_cond = ref_g(z), ref_cg(z, onehot)
        out = {
            "image": (g.unbounded(z) - ref_image).abs().max(),
            "tanh_image": (g(z) - ref_image.tanh()).abs().max(),
            "cond_image": (cg.unbounded(torch.cat([z, onehot], 1)) - ref_cond).abs().max(),
            "logit": (d(images) - ref_d(images)).abs().max(),
            "cond_logit": (critic(images, labels).logits - ref_cd(images, onehot)).abs().max(),
            "image_scale": ref_image.abs().max(), "logit_scale": ref_d(images).abs().max(),
            "cond_logit_scale": ref_cd(images, onehot).abs().max(),
        }  # fmt: skip
    params = {"g_params": sum(p.numel() for p in g.parameters()), "d_params": sum(p.numel() for p in d.parameters())}
    return {**{k: float(v) for k, v in out.items()}, **params}


def run(cfg) -> int:  # noqa: ANN001
    """Compare both configurations and print one JSON line."""
    if cfg.batch_size < 1:
        raise ConfigError(f"--batch-size must be positive, got {cfg.batch_size}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    net = load_reference(cfg.reference)
    rng = torch.Generator().manual_seed(cfg.seed)
    result = {name: compare(net, name, cfg.batch_size, rng) for name in CONFIGS}
    print(json.dumps({"batch_size": cfg.batch_size, "seed": cfg.seed, **result}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `scripts/parity_r3gan.py`."""
    return run_command(build_parser, run, argv)
