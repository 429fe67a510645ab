"""Regularizers, one file each, all on one interface (`base.py`): a phase context in, a term out.

A new regularizer is one file here or in a plugin: a `Regularizer` subclass with its `options` (flags, `--help`,
validation, `config.yaml` and the resume rule all come from them), `from_options` returning None when its options
switch it off, and `@REGULARIZERS.register(name)`. Files in this package are imported automatically.
"""

from gan_lightning.core.registry import import_submodules
from gan_lightning.regularizers.base import (
    REGULARIZERS,
    PhaseContext,
    Regularizer,
    Term,
    build_regularizers,
    due,
    regularizer_keys,
)

__all__ = ["REGULARIZERS", "PhaseContext", "Regularizer", "Term", "build_regularizers", "due", "regularizer_keys"]

import_submodules(__name__)  # every regularizer file registers itself
