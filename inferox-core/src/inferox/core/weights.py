"""Reading safetensors weights with errors that name the file — shared by every backend.

safetensors is a dependency of the backends, not of core, so it is imported on first use.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from inferox.core.errors import PackageFormatError, from_os_error

__all__ = ["load_safetensors"]


def load_safetensors(path: str | os.PathLike[str], *, framework: str = "numpy") -> dict[str, Any]:
    """The tensors of a safetensors file, loaded by safetensors' ``framework`` loader ("numpy", "torch").

    A missing or unreadable file becomes :class:`~inferox.core.errors.PackageNotFoundError` /
    :class:`~inferox.core.errors.InferoxIOError`, and a truncated or malformed one a
    :class:`~inferox.core.errors.PackageFormatError` — each naming ``path``.
    """
    source = os.fspath(path)
    from safetensors import SafetensorError

    load_file = importlib.import_module(f"safetensors.{framework}").load_file
    try:
        return dict(load_file(source))
    except OSError as exc:
        raise from_os_error(exc, path=source) from exc
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise PackageFormatError(f"cannot read safetensors weights: {exc}", path=source, field="weights") from exc
