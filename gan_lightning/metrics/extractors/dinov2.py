"""DINOv2 image features (Oquab et al. 2023), the space of FD-DINOv2, which Stein et al. (NeurIPS 2023, dgm-eval)
found to agree with human judgement where Inception FID does not: the class token of ViT-L/14 at 224 px.

The network is timm's `VisionTransformer` (the implementation timm uses for its own DINOv2 models) built from
Meta's published file (`dinov2_vitl14_pretrain.pth`, a plain state_dict; nothing is downloaded). Meta publishes
no hash for it, so `checked` means Meta's ViT-L/14 layout, key for key and shape for shape; every score records
the file's SHA-256. `--fid-weights-unchecked` takes any DINOv2 ViT of that layout at another size (ViT-S/B/L,
random weights in tests).

Images go in as dgm-eval feeds Meta's `torch.hub` model: uint8 RGB (grey repeated), resized to 224x224 (by default
`pil_bicubic`, dgm-eval's torchvision `Resize` of the PIL image), scaled to [0, 1] and normalised with ImageNet's
mean and std; the 518-px position embedding is interpolated to 16x16 patches as Meta's model does at every
forward (bicubic with its 0.1 offset, no antialiasing), here once at load.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from gan_lightning.core.errors import ConfigError, DataError, first_line
from gan_lightning.core.files import load_weights_file
from gan_lightning.metrics.extractors.base import EXTRACTORS, FeatureExtractor, PathLike, to_uint8
from gan_lightning.metrics.extractors.resizers import RESIZES

Tensor = torch.Tensor

INPUT_SIZE = 224  # dgm-eval's; Meta's models are trained at 518 and run at any multiple of the patch
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Meta's ViT-L/14 (dinov2_vitl14_pretrain.pth): width, depth, patch, MLP width, position grid
VIT_L_14 = {"embed_dim": 1024, "depth": 24, "patch_size": 14, "mlp_dim": 4096, "grid": 37}
META_FILE = "dinov2_vitl14_pretrain.pth"
RESIZE_DEFAULT = "pil_bicubic"
TIMM_HINT = (
    'the dinov2 extractor needs the timm package, which is not installed; install it with pip install -e ".[dinov2]"'
)


def interpolate_pos_embed(pos_embed: Tensor, grid: int, offset: float = 0.1) -> Tensor:
    """Meta's `interpolate_pos_encoding` for a square `grid` of patches: the patch positions (1, 1 + M*M, D)
    resampled bicubically by the scale factor (grid + offset) / M, without antialiasing; the class position kept."""
    cls, patches = pos_embed[:, :1], pos_embed[:, 1:].float()
    m, dim = int(round((patches.shape[1]) ** 0.5)), patches.shape[-1]
    if m == grid:
        return pos_embed
    scale = (grid + offset) / m
    x = patches.reshape(1, m, m, dim).permute(0, 3, 1, 2)  # (1, D, M, M)
    x = F.interpolate(x, scale_factor=(scale, scale), mode="bicubic", antialias=False)  # (1, D, grid, grid)
    return torch.cat((cls, x.permute(0, 2, 3, 1).reshape(1, grid * grid, dim).to(pos_embed.dtype)), dim=1)


def dinov2_layout(state: Any) -> dict[str, int]:
    """Width, depth, patch, MLP width and position grid of a DINOv2 ViT state_dict in Meta's keys; ValueError
    naming what does not fit."""
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"it holds a {type(state).__name__}, not a state_dict of tensors")
    for key in ("cls_token", "pos_embed", "mask_token", "patch_embed.proj.weight", "norm.weight"):
        if key not in state:
            raise ValueError(f"no {key!r}, so not a DINOv2 ViT state_dict in Meta's keys")
    if "register_tokens" in state or any(".mlp.w12." in k for k in state):
        raise ValueError("a DINOv2 with registers or SwiGLU (ViT-g); FD-DINOv2 uses ViT-L/14 without registers")
    if "blocks.0.mlp.fc1.weight" not in state:  # Meta's training checkpoints group blocks as blocks.<chunk>.<i>
        raise ValueError("its blocks are not keyed blocks.<i> (a training checkpoint with block chunks?); pass the "
                         "published backbone file")  # fmt: skip
    depth = len({m.group(1) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    positions = state["pos_embed"].shape[1] - 1
    grid = int(round(positions**0.5))
    if depth == 0 or grid * grid != positions:
        raise ValueError("its blocks or position grid are not a DINOv2 ViT's")
    return {"embed_dim": int(state["cls_token"].shape[-1]), "depth": depth,
            "patch_size": int(state["patch_embed.proj.weight"].shape[-1]),
            "mlp_dim": int(state["blocks.0.mlp.fc1.weight"].shape[0]), "grid": grid}  # fmt: skip


def build_vit(layout: dict[str, int], img_size: int, initialise: bool = True) -> Any:
    """timm's VisionTransformer of a DINOv2 layout at `img_size`: class token, LayerScale, heads of width 64;
    `initialise=False` skips timm's random initialisation (weights loaded next overwrite it)."""
    try:
        from timm.models.vision_transformer import VisionTransformer
    except ImportError:
        raise ConfigError(TIMM_HINT) from None
    dim = layout["embed_dim"]
    return VisionTransformer(img_size=img_size, patch_size=layout["patch_size"], embed_dim=dim, depth=layout["depth"],
                             num_heads=max(dim // 64, 1), mlp_ratio=layout["mlp_dim"] / dim, init_values=1.0,
                             num_classes=0, global_pool="token", weight_init="" if initialise else "skip")  # fmt: skip


class DINOv2Features(FeatureExtractor):
    """The class token (B, D) of a DINOv2 ViT after its final norm: D = 1024 for ViT-L/14."""

    def __init__(self, net: torch.nn.Module, layout: dict[str, int], resize: str = RESIZE_DEFAULT) -> None:
        super().__init__()
        self.net = net
        self.num_features = layout["embed_dim"]
        # Which ViT: a score under fd_dinov2_50k with --fid-weights-unchecked may come from a smaller one
        self.architecture = (f"ViT/{layout['patch_size']}, width {layout['embed_dim']}, {layout['depth']} blocks"
                             + (" (ViT-L/14)" if layout == VIT_L_14 else ""))  # fmt: skip
        self.resize_name = resize
        self.resize = (f"{resize}: uint8 RGB (grey repeated), {RESIZES.get(resize).description}, to {INPUT_SIZE}x"
                       f"{INPUT_SIZE}, /255, ImageNet mean/std")  # fmt: skip
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    def protocol(self) -> dict[str, str | None]:
        """The extractor's protocol and its network's `extractor_architecture`."""
        return {**super().protocol(), "extractor_architecture": self.architecture}

    def pixels(self, x: Tensor) -> Tensor:
        """The network's input (B, 3, 224, 224) from images (B, 1 or 3, H, W) in [-1, 1], as dgm-eval makes it."""
        x = RESIZES.get(self.resize_name)(to_uint8(x), INPUT_SIZE).float() / 255  # (B, 3, 224, 224)
        return (x - self.mean) / self.std

    def forward(self, x: Tensor) -> Tensor:
        """Class tokens (B, D) of images (B, 1 or 3, H, W) in [-1, 1]."""
        return self.net(self.pixels(x))  # (B, D)


def load_dinov2(path: PathLike, checked: bool = True, resize: str | None = None) -> DINOv2Features:
    """The DINOv2 ViT in Meta's file at `path` (ViT-L/14 unless `checked=False`), fed by the resize `resize`
    (a name in `RESIZES`; default dgm-eval's); one-line errors for a missing, foreign or unreadable file."""
    resize = resize or RESIZE_DEFAULT
    RESIZES.get(resize)  # an unknown name fails with the choices before the file is read
    hint = f"pass Meta's {META_FILE} (see docs/evaluation.md; nothing is downloaded)"
    state = load_weights_file(path, "DINOv2 weights file", hint)
    try:
        layout = dinov2_layout(state)
    except ValueError as err:
        raise DataError(f"{path} is not a DINOv2 weights file ({err}); {hint}") from None
    if checked and layout != VIT_L_14:
        raise DataError(
            f"{path} is a DINOv2 ViT of another layout ({layout}), not ViT-L/14; {hint}, or "
            "--fid-weights-unchecked to use these weights anyway (scores then are not comparable)"
        )
    net = build_vit(layout, INPUT_SIZE, initialise=False)
    grid = INPUT_SIZE // layout["patch_size"]
    state = {k: v for k, v in state.items() if k != "mask_token"}  # masked-image training only
    state["pos_embed"] = interpolate_pos_embed(state["pos_embed"], grid)
    try:
        net.load_state_dict(state)
    except RuntimeError as err:  # torch's first line names the class; the next, what differs
        detail = ([line.strip() for line in str(err).splitlines()[1:] if line.strip()] or [first_line(err)])[0]
        raise DataError(f"{path}: its tensors do not fit a DINOv2 ViT ({detail[:120]}); {hint}") from None
    return DINOv2Features(net.float(), layout, resize)


@EXTRACTORS.register("dinov2")
def _dinov2(path: PathLike, checked: bool = True, resize: str | None = None) -> FeatureExtractor:
    return load_dinov2(path, checked, resize)


def write_random_dinov2_file(path: PathLike, seed: int = 0, embed_dim: int = 64, depth: int = 1,
                             patch_size: int = 14, grid: int = 37) -> Path:  # fmt: skip
    """A seeded random DINOv2 ViT in Meta's file format (its keys, a 518-px position grid by default) at `path`,
    small by default, for tests and measurements where the published file is absent (`embed_dim=1024, depth=24`:
    ViT-L/14's shapes)."""
    layout = {"embed_dim": embed_dim, "depth": depth, "patch_size": patch_size, "mlp_dim": 4 * embed_dim,
              "grid": grid}  # fmt: skip
    with torch.random.fork_rng():  # the caller's global stream is left where it was
        torch.manual_seed(seed)
        state = build_vit(layout, patch_size * grid).state_dict()
        for key, value in state.items():  # LayerScale and the tokens away from their constant initialisation
            if key.endswith(".gamma") or key in ("cls_token", "pos_embed"):
                value.copy_(torch.rand_like(value) + 0.5 if key.endswith(".gamma") else torch.randn_like(value))
        state["mask_token"] = torch.zeros(1, embed_dim)
    torch.save(state, path)
    return Path(path)
