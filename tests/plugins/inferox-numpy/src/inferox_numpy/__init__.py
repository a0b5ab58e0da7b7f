"""inferox-numpy: a NumPy reference backend for Inferox, published as a third-party plugin.

Importing this package imports nothing heavy; the plugin module (``inferox_numpy.plugin``) is what
the ``inferox`` entry point names.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
