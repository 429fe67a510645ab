"""The generator's input space: a noise prior, plus class labels (conditional GAN) or codes (InfoGAN).

`LatentSpace.draw` returns `Latents`, a named bundle of the parts and the concatenated generator input, so
nothing downstream indexes a tuple. Every draw takes an explicit `rng` (a `torch.Generator`): the training loop
passes its seeded private stream, sampling and grids pass their own. `NOISES` holds each prior as a `Prior` that
declares its centre (and half-width when bounded), which `LatentSpace.truncate` needs for the truncation trick.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gan_lightning.core.errors import ConfigError
from gan_lightning.core.options import Option
from gan_lightning.training.priors import (
    MAX_RESAMPLING_ROUNDS,
    NOISES,
    Prior,
    Truncation,
    normal_noise,
    slerp,
    truncation_options,
    uniform_noise,
)

__all__ = ["MAX_RESAMPLING_ROUNDS", "NOISES", "LatentSpace", "Latents", "Prior", "Truncation", "normal_noise",
           "slerp", "truncation_options", "uniform_noise"]  # fmt: skip


Tensor = torch.Tensor


def comma_names(text: str) -> list[str]:
    """`--class-names a,b,c` -> ["a", "b", "c"]."""
    return [name.strip() for name in text.split(",")]


def check_class_names(names: list[str]) -> None:
    """One-line ConfigError unless `names` are distinct non-empty strings."""
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"--class-names must be non-empty names separated by commas, got {names!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"--class-names must be distinct, got {', '.join(names)}")


@dataclass
class Latents:
    """One batch of generator inputs: `input` (B, input_dim) and the parts it was built from."""

    input: Tensor  # (B, dim + num_classes + n_cat + n_cont), what G consumes
    z: Tensor  # (B, dim) noise
    labels: Tensor | None = None  # (B,) class labels of a conditional GAN
    cat: Tensor | None = None  # (B,) InfoGAN categorical code
    cont: Tensor | None = None  # (B, n_cont) InfoGAN continuous codes in [-1, 1]

    def __len__(self) -> int:
        return self.input.shape[0]


class LatentSpace:
    """Noise of `dim` dimensions from a named prior, followed by one-hot labels or InfoGAN codes."""

    # fmt: off
    options = (
        Option("latent_dim", 96, "noise dimension", positive=True, resume="refuse", aliases=("--nz",)),
        Option("noise", "uniform", "noise prior", choices=NOISES.names),
        Option("conditional", False, "class-conditional GAN: one-hot labels into G, a projection term in D",
               resume="refuse"),
        Option("num_classes", 10, "classes of a conditional GAN", positive=True, resume="refuse",
               default_text="the dataset's"),
        Option("class_names", None, "names of a conditional GAN's classes in label order, comma-separated (shown "
               "with the sample grids, for sample.py --class)", type=comma_names, resume="refuse", metavar="A,B,..",
               check=check_class_names, default_text="the dataset's: a folder's class subfolders"),
        Option("infogan", False, "InfoGAN: an --n-cat-way categorical and --n-cont continuous codes into G, a Q head "
               "on D", resume="refuse"),
        Option("n_cat", 10, "InfoGAN categorical code values", positive=True, resume="refuse"),
        Option("n_cont", 2, "InfoGAN continuous codes", minimum=0, resume="refuse"),
    )
    # fmt: on

    @classmethod
    def from_options(cls, options: dict) -> LatentSpace:
        """The latent space the declared `options` describe."""
        if options["conditional"] and options["infogan"]:
            raise ConfigError("choose one of --conditional and --infogan")
        conditional = options["conditional"]
        if options.get("class_names") is not None and not conditional:
            raise ConfigError("--class-names names the classes of a conditional GAN; add --conditional or drop it")
        return cls(options["latent_dim"], options["noise"],
                   num_classes=options["num_classes"] if conditional else 0,
                   n_cat=options["n_cat"] if options["infogan"] else 0,
                   n_cont=options["n_cont"] if options["infogan"] else 0,
                   class_names=options.get("class_names") if conditional else None)  # fmt: skip

    def __init__(
        self,
        dim: int,
        prior: str = "uniform",
        *,
        num_classes: int = 0,
        n_cat: int = 0,
        n_cont: int = 0,
        class_names: list[str] | None = None,
    ) -> None:
        if dim < 1 or num_classes < 0 or n_cat < 0 or n_cont < 0:
            raise ConfigError(f"latent sizes must be positive (dim={dim}) or zero (classes, codes)")
        if num_classes and (n_cat or n_cont):
            raise ConfigError("a latent space is conditional (class labels) or InfoGAN (codes), not both")
        if class_names is not None and len(class_names) != num_classes:
            raise ConfigError(f"--class-names names {len(class_names)} classes but the GAN has {num_classes} "
                              "(--num-classes, with --conditional); give one name per class")  # fmt: skip
        self.dim, self.prior, self.num_classes, self.n_cat, self.n_cont = dim, prior, num_classes, n_cat, n_cont
        prior_spec = NOISES.get(prior)
        # a bare drawing function registered by an earlier release's convention still draws; it has no centre
        self._prior = prior_spec if isinstance(prior_spec, Prior) else Prior(prior_spec, centre=None)
        self.class_names = list(class_names) if class_names is not None else None

    def mixing_latent(self, z: Tensor, rng: torch.Generator) -> Tensor:
        """A second z for style mixing (z: G's latent without class labels, (B, dim + InfoGAN code columns)): fresh
        noise from the prior, drawn from `rng`, beside the same InfoGAN codes, which Q is asked to recover."""
        noise = self._prior((z.shape[0], self.dim), device=rng.device, rng=rng).to(z.device)  # (B, dim)
        return torch.cat([noise, z[:, self.dim :]], dim=1)  # (B, dim + codes)

    @property
    def code_dim(self) -> int:
        """Dimensions after the noise: one-hot labels, or the one-hot categorical and continuous codes."""
        return self.num_classes + self.n_cat + self.n_cont

    @property
    def input_dim(self) -> int:
        """The generator's input width."""
        return self.dim + self.code_dim

    @property
    def infogan(self) -> bool:
        """Whether the space carries InfoGAN codes."""
        return bool(self.n_cat or self.n_cont)

    def label_of(self, name: str) -> int:
        """The label of the class called `name`; one-line ConfigError when there is no such class."""
        if not self.class_names:
            raise ConfigError("this GAN has no class names (a conditional folder run records them, or pass "
                              "--class-names when training); give labels as numbers instead")  # fmt: skip
        if name not in self.class_names:
            shown = ", ".join(self.class_names[:20]) + (", ..." if len(self.class_names) > 20 else "")
            raise ConfigError(f"no class named {name!r}; the classes are: {shown}")
        return self.class_names.index(name)

    def noise(self, n: int, rng: torch.Generator, device: torch.device | str | None = None) -> Tensor:
        """(n, dim) noise from the prior, drawn on `rng`'s device and moved to `device`."""
        z = self._prior((n, self.dim), device=rng.device, rng=rng)
        return z if device is None else z.to(device)

    def draw(
        self,
        n: int,
        rng: torch.Generator,
        device: torch.device | str | None = None,
        *,
        z: Tensor | None = None,
        labels: Tensor | None = None,
        cat: Tensor | None = None,
        cont: Tensor | None = None,
    ) -> Latents:
        """n latents on `device`; the parts given are used as they are and the missing ones are drawn from `rng`."""
        device = device if device is not None else rng.device

        def ints(high: int) -> Tensor:
            return torch.randint(high, (n,), device=rng.device, generator=rng).to(device)

        z = z.to(device) if z is not None else self.noise(n, rng, device)
        if not self.code_dim:
            return Latents(z, z)  # no concatenation on the plain GAN's hot path
        parts = [z]
        if self.num_classes:
            labels = labels.to(device) if labels is not None else ints(self.num_classes)
            parts.append(F.one_hot(labels, self.num_classes).to(z.dtype))  # (n, num_classes)
        if self.n_cat:
            cat = cat.to(device) if cat is not None else ints(self.n_cat)
            parts.append(F.one_hot(cat, self.n_cat).to(z.dtype))  # (n, n_cat)
        if self.n_cont:
            if cont is None:
                cont = uniform_noise((n, self.n_cont), device=rng.device, rng=rng)
            cont = cont.to(device)
            parts.append(cont)  # (n, n_cont)
        return Latents(torch.cat(parts, dim=1), z, labels, cat, cont)

    def interpolate(self, a: Tensor, b: Tensor, t: Tensor) -> Tensor:
        """Noise (..., dim) between a and b at fractions t, as the prior walks (`Prior.interpolate`)."""
        return self._prior.interpolate(a, b, t)

    def truncation_notice(self, psi: float | None, threshold: float | None) -> str | None:
        """One line saying which of the given truncation settings changes nothing for this prior, or None."""
        idle = []
        if psi == 1:
            idle.append("--truncation 1 keeps the noise as drawn")
        width = self._prior.half_width
        if threshold is not None and width is not None and threshold >= width:
            idle.append(f"--truncation-threshold {threshold:g} redraws nothing: the {self.prior} prior never draws "
                        f"farther than {width:g} from its centre")  # fmt: skip
        return "; ".join(idle) + ": the samples are the untruncated ones" if idle else None

    def truncate(
        self, latents: Latents | Tensor, rng: torch.Generator, psi: float | None = None, threshold: float | None = None
    ) -> Latents | Tensor:
        """`latents` (a `Latents`, or full generator inputs, which are `split`) with the noise truncated
        (`Prior.truncate`: `threshold` redraws from `rng`, then `psi`) and the labels or codes untouched; without
        truncation (psi None or 1, no threshold) the same `latents`."""
        for option, value in zip(truncation_options, (psi, threshold), strict=True):
            option.validate(value)
        if (psi is None or psi == 1) and threshold is None:
            return latents
        latents = latents if isinstance(latents, Latents) else self.split(latents)
        if self._prior.centre is None:
            raise ConfigError(f"the {self.prior!r} noise prior declares no centre, so it cannot be truncated; register "
                              "it as Prior(draw, centre=...)")  # fmt: skip
        z = self._prior.truncate(latents.z, rng, psi, threshold)  # (B, dim)
        if not self.code_dim:
            return Latents(z, z)
        inputs = torch.cat([z, latents.input[:, self.dim :]], dim=1)  # the codes' columns exactly as they were
        return Latents(inputs, z, latents.labels, latents.cat, latents.cont)

    def split(self, inputs: Tensor) -> Latents:
        """The parts of full generator inputs (B, input_dim), e.g. latents saved by `scripts/sample.py`."""
        if inputs.ndim != 2 or inputs.shape[1] != self.input_dim:
            raise ConfigError(f"latents must have shape (N, {self.input_dim}), got {tuple(inputs.shape)}")
        z, rest = inputs[:, : self.dim], inputs[:, self.dim :]
        labels = rest[:, : self.num_classes].argmax(1) if self.num_classes else None
        cat = rest[:, : self.n_cat].argmax(1) if self.n_cat else None
        cont = rest[:, self.n_cat :] if self.n_cont else None
        return Latents(inputs, z, labels, cat, cont)

    def grid(
        self, n: int, rng: torch.Generator, device: torch.device | str | None = None
    ) -> dict[str, tuple[Latents, int]]:
        """Fixed inputs for sample grids, by tag suffix: (latents, images per row).

        InfoGAN: one row per categorical value, columns sweeping one continuous code over [-1, 1] (one grid per
        code, the others at 0). Conditional: one row per class. Otherwise a square-ish grid of noise.
        """
        device = device if device is not None else rng.device
        if self.infogan:
            cols = max(2, n // self.n_cat)
            z = self.noise(self.n_cat, rng, device).repeat_interleave(cols, dim=0)  # one z per row
            cat = torch.arange(self.n_cat, device=device).repeat_interleave(cols)
            grids = {}
            for j in range(max(1, self.n_cont)):
                cont = torch.zeros(len(z), self.n_cont, device=device)
                if self.n_cont:
                    cont[:, j] = torch.linspace(-1, 1, cols, device=device).repeat(self.n_cat)
                grids["" if j == 0 else f"/code{j}"] = (self.draw(len(z), rng, device, z=z, cat=cat, cont=cont), cols)
            return grids
        if self.num_classes:
            cols = max(1, n // self.num_classes)
            labels = torch.arange(self.num_classes, device=device).repeat_interleave(cols)
            return {"": (self.draw(len(labels), rng, device, labels=labels), cols)}
        return {"": (self.draw(n, rng, device), max(1, round(n**0.5)))}
