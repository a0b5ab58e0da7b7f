"""What the torch architectures share: reading weights and checking that they are usable."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from inferox.core.errors import PackageFormatError
from inferox.core.weights import load_safetensors
from inferox.torch.model import load_state_dict

__all__ = ["check_float", "on_meta", "read_weights"]


class _SkipInit(TorchFunctionMode):
    """Turns the ``torch.nn.init`` calls of module constructors into no-ops.

    A module built on the ``meta`` device still runs its ``reset_parameters``; on meta tensors
    ``nn.init.normal_`` / ``uniform_`` go through Python decompositions that import
    ``torch._dynamo`` (and sympy with it) — about 70 MB of resident memory that no unload can give
    back, since Python never unloads a module. The weights are replaced right after construction,
    so the initial values are never used. A torch-function mode is per thread: other threads
    constructing modules meanwhile initialise as usual.
    """

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs.get("tensor")
        return func(*args, **kwargs)


@contextlib.contextmanager
def on_meta() -> Iterator[None]:
    """Build modules on the ``meta`` device, skipping their (unused) parameter initialisation."""
    with torch.device("meta"), _SkipInit():
        yield


def read_weights(weights: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], str | None]:
    """Weights as host torch tensors (from a safetensors file or a mapping), and their source path.

    A non-float tensor among them is kept (buffers such as BERT's ``position_ids`` are integers);
    :func:`check_float` rejects one where a parameter is expected.
    """
    if isinstance(weights, Mapping):
        # Copy: the module is built with assign=True, and must not alias arrays the caller still owns.
        return {k: v.clone() for k, v in load_state_dict(weights).items()}, None
    source = os.fspath(weights)
    return load_safetensors(source, framework="torch"), source


def check_float(tensors: Mapping[str, torch.Tensor], source: str | None) -> dict[str, torch.Tensor]:
    """Parameters must be floating point: an integer or bool one is a :class:`PackageFormatError` naming it.

    Returns the tensors in one dtype (f32 when the file mixes float types), so every layer agrees.
    """
    for name, t in tensors.items():
        if not t.is_floating_point():
            raise PackageFormatError(f"weight {name!r} has dtype {t.dtype}, expected a float type", path=source, field=name)
    if len({t.dtype for t in tensors.values()}) > 1:
        return {k: v.float() for k, v in tensors.items()}
    return dict(tensors)
