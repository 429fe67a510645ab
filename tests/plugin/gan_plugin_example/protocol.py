"""A named evaluation protocol of your own: the counts, reference split and extractor your paper reports, cited by
name (`evaluate.py --protocol fid10_train_example`). Ten images is a size for tests; a real protocol fixes yours."""

from gan_lightning.metrics.protocols import PROTOCOLS, Protocol

PROTOCOLS.register("fid10_train_example")(
    Protocol(
        "fid10_train_example",
        "FID of 10 generated images against the training split, FID Inception",
        10,
        "train",
        "inception_fid",
        kid_subsets=5,
    )  # fmt: skip
)
