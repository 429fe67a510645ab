"""GAN objectives by name (`OBJECTIVES`): the Objective base with both phases (`base.py`) and the adversarial
losses (`losses.py`); a new loss is one file here or in a plugin, imported automatically."""

from gan_lightning.core.registry import import_submodules
from gan_lightning.training.batch import Batch, PhaseLoss
from gan_lightning.training.objectives.base import (
    OBJECTIVES,
    Objective,
    add_terms,
    build_objective,
    get_objective,
    gradient_penalty,
    mutual_information_loss,
)
from gan_lightning.training.objectives.losses import (
    Hinge,
    LeastSquares,
    Minimax,
    NonSaturating,
    RelativisticPairing,
    WassersteinGP,
)

__all__ = ["OBJECTIVES", "Batch", "Hinge", "LeastSquares", "Minimax", "NonSaturating", "Objective", "PhaseLoss",
           "RelativisticPairing", "WassersteinGP", "add_terms", "build_objective", "get_objective",
           "gradient_penalty", "mutual_information_loss"]  # fmt: skip

import_submodules(__name__)  # every loss file registers itself
