"""The two things every backend distribution's ``__init__`` needs: its version and lazy exports.

A backend package (``inferox.torch``, ``inferox.jax``, a third party's) must not import its framework
when it is imported, yet should offer its public names at the top level. :func:`lazy_exports` builds
the PEP 562 ``__getattr__`` / ``__dir__`` pair that imports a name's module on first access, and
:func:`distribution_version` reads the installed version from the distribution's metadata, so no
``_version.py`` is kept by hand.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["distribution_version", "lazy_exports"]


def distribution_version(distribution: str) -> str:
    """The installed version of ``distribution`` (``"0+unknown"`` when it is not installed, e.g. run from a source tree)."""
    try:
        return md.version(distribution)
    except md.PackageNotFoundError:
        return "0+unknown"


def lazy_exports(package: str, exports: Mapping[str, str], *, eager: Iterable[str] = ()) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: each name in ``exports`` is imported from the module
    it maps to the first time it is read, then kept in the package's namespace.

    ``eager`` names the attributes the package defines itself (``__version__``), listed by ``dir()``.
    Usage, in ``inferox/x/__init__.py``::

        __getattr__, __dir__ = lazy_exports(__name__, {"XBackend": "inferox.x.backend"}, eager=["__version__"])
    """
    table = dict(exports)
    names = sorted(set(table) | set(eager))

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return list(names)

    return __getattr__, __dir__
