"""An example gan_lightning plugin: each component is one file of this package, registered when it is imported.

The entry point (pyproject.toml) names this module; importing it imports every file beside it.
"""

from gan_lightning.core.registry import import_submodules

__version__ = "0.1.0"

import_submodules(__name__)
