"""The model registry: name -> builder returning a (generator, discriminator) pair, and the options every model has.

A builder takes `latent_dim`, `channels`, `image_size` and the options it declares itself (`describe(options=...)`,
e.g. the widths `ngf` / `ndf`), and says which image sizes it builds (`describe(image_sizes=...)`; None: any).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from torch import nn

from gan_lightning.core.options import Option, Options, declared
from gan_lightning.core.registry import Registry
from gan_lightning.models.base import Discriminator


class ModelBuilder(Protocol):
    """Builds a (generator, discriminator) pair from the shape options and the builder's own options."""

    def __call__(
        self, *, latent_dim: int, channels: int, image_size: int, **options: object
    ) -> tuple[nn.Module, Discriminator]: ...


MODELS: Registry[ModelBuilder] = Registry("model")

# Options of every model: which one, and the image shape it maps to (the data's, by default).
# fmt: off
options = (
    Option("model", "mlp", "architecture", choices=MODELS.names, resume="refuse"),
    Option("image_size", 28, "image side in pixels", positive=True, resume="refuse",
           default_text="the dataset's native size (64 for folders) if the model builds it, else the next larger "
           "size it builds, or its largest"),
    Option("channels", 1, "image channels", choices=(1, 3), type=int, resume="refuse", default_text="the dataset's"),
)
# fmt: on
# Widths of the models that have them (the same option for each: declared once here, listed by each builder).
# fmt: off
WIDTHS = (
    Option("ngf", 64, "generator width", positive=True, resume="refuse"),
    Option("ndf", 64, "discriminator width", positive=True, resume="refuse"),
)
# fmt: on

F = TypeVar("F", bound=Callable[..., object])


def describe(*, options: Sequence[Option] = (), image_sizes: Sequence[int] | None = None) -> Callable[[F], F]:
    """Decorator: a builder's own options and the image sizes it builds (None: any)."""

    def decorator(builder: F) -> F:
        builder.options = tuple(options)  # type: ignore[attr-defined]
        builder.image_sizes = None if image_sizes is None else tuple(image_sizes)  # type: ignore[attr-defined]
        return builder

    return decorator


def model_options() -> Options:
    """The shared model options plus every registered builder's own."""
    import sys

    return Options(declared(sys.modules[__name__]), *(declared(MODELS.get(name)) for name in MODELS.names()))


def builder_options(name: str) -> list[str]:
    """The names of the options model `name` takes beyond the shape: those it declares (`describe`), else the
    widths, as every builder received them before builders declared options."""
    builder = MODELS.get(name)
    return [o.name for o in (builder.options if hasattr(builder, "options") else WIDTHS)]


def default_image_size(name: str, native: int | None) -> int:
    """The dataset's `native` size if model `name` builds it, else the next size it does (64 for `native` None)."""
    sizes = getattr(MODELS.get(name), "image_sizes", None)
    if native is None:
        native = 64
    if sizes is None or native in sizes:
        return native
    return min((s for s in sizes if s >= native), default=max(sizes))
