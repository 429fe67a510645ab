"""Named evaluation protocols, the names papers cite: each fixes the sample count, the reference images, the feature
extractor (and so its resize) and the KID/PRDC sizes that define a score, so two scores under one name compare.

`evaluate.py --protocol fid50k_full` expands the name, prints the expansion and records it with every score; an
explicit flag that contradicts it is refused in one line. A protocol of your own is one `Protocol` registered in a
plugin (`PROTOCOLS.register(name)(Protocol(...))`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from gan_lightning.core.registry import Registry

PAPERS_FEATURES = 50_000
PR_REFERENCE = 200_000  # StyleGAN2-ADA's max_real of pr50k3_full


@dataclass(frozen=True)
class Protocol:
    """How a named score is measured: `num` generated images against the reference `split` (all of it, or the
    first `num_reference`), in `extractor`'s features; KID and precision/recall/density/coverage on at most
    `max_features` features a side, KID as the mean over `kid_subsets` subsets of `kid_subset_size`; `resize` names
    the extractor's input resize where it offers a choice (None: its only one)."""

    name: str
    description: str
    num: int
    split: str
    extractor: str
    num_reference: int | None = None
    max_features: int = 10_000
    kid_subsets: int = 50
    kid_subset_size: int = 1000
    resize: str | None = None

    def fields(self) -> dict[str, Any]:
        """The expansion, as printed and recorded (`protocol_name` first)."""
        fields = asdict(self)
        return {"protocol_name": fields.pop("name"), **fields}

    def scoring(self) -> dict[str, int]:
        """The scorer's options this protocol sets."""
        return {"max_features": self.max_features, "kid_subsets": self.kid_subsets,
                "kid_subset_size": self.kid_subset_size}  # fmt: skip


PROTOCOLS: Registry[Protocol] = Registry("evaluation protocol")


def _register(protocol: Protocol) -> None:
    PROTOCOLS.register(protocol.name)(protocol)


# StyleGAN2-ADA's metric_main names: `_full` is the whole training set as the reference.
_register(Protocol("fid50k_full", "FID of 50,000 generated images against the whole training set, FID Inception "
                   "(StyleGAN2-ADA's fid50k_full)", 50_000, "train", "inception_fid",
                   resize="tf_bilinear"))  # fmt: skip
_register(Protocol("fid10k_test", "FID of 10,000 generated images against the dataset's held-out split (CIFAR-10's "
                   "10,000 test images; MNIST's 5,000 digits held out of its training set, CelebA's validation "
                   "partition, a folder's 5%), FID Inception", 10_000, "val", "inception_fid",
                   resize="tf_bilinear"))  # fmt: skip
_register(Protocol("kid50k_full", "KID of 50,000 generated images against the whole training set, 100 subsets of "
                   "1,000 on up to 50,000 features a side, FID Inception (StyleGAN2-ADA's kid50k_full; it keeps up "
                   "to 1,000,000 reference features)", 50_000, "train", "inception_fid", max_features=PAPERS_FEATURES,
                   kid_subsets=100, resize="tf_bilinear"))  # fmt: skip
# StyleGAN2-ADA's pr50k3_full (metric_main.py: compute_pr(max_real=200000, num_gen=50000, nhood_size=3)): NVlabs'
# VGG16 features of the dataset's first 200,000 images against 50,000 generated; every reference feature kept, so
# the radii and ball tests see all of them (the k-NN distances are chunked: O(chunk x 200,000) memory).
_register(Protocol("pr50k3_full", "precision and recall with k = 3 of 50,000 generated images against the first "
                   "200,000 training images (all of them when fewer), every feature kept, in the 4096 fc2 features "
                   "of NVlabs' VGG16 (vgg16.pt), distances in float32 (StyleGAN2-ADA's pr50k3_full, which rounds "
                   "features and distances to float16)", 50_000, "train", "vgg16",
                   num_reference=PR_REFERENCE, max_features=PR_REFERENCE))  # fmt: skip
# dgm-eval's FD-DINOv2 (Stein et al. 2023): 50,000 generated images against the training set, the class token of
# DINOv2 ViT-L/14 at 224 px, torchvision's bicubic resize of the PIL image; the Frechet distance is reported as `fid`.
_register(Protocol("fd_dinov2_50k", "FD-DINOv2 of 50,000 generated images against the whole training set: Frechet "
                   "distance in DINOv2 ViT-L/14 class tokens, images resized as dgm-eval does (reported as fid)",
                   50_000, "train", "dinov2", resize="pil_bicubic"))  # fmt: skip
