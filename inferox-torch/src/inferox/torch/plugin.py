"""The ``torch`` entry point of the ``inferox`` plugin group.

Registers the PyTorch backend as a *lazy* spec and the torch implementations of the standard
architectures as ``"module:factory"`` strings. Importing this module imports no framework: torch is
imported only when the backend or an architecture factory is first used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from inferox.core.constants import CONTRACT_VERSION
from inferox.core.hookspecs import hookimpl
from inferox.core.plugins import BackendSpec
from inferox.torch._version import __version__

__all__ = [
    "inferox_contract_version",
    "inferox_plugin_info",
    "inferox_register_architectures",
    "inferox_register_backends",
]

BACKEND = "torch"


@hookimpl
def inferox_contract_version() -> str:
    return CONTRACT_VERSION


@hookimpl
def inferox_register_backends(register: Callable[[BackendSpec], None]) -> None:
    register(
        BackendSpec(
            BACKEND,
            loader="inferox.torch.backend:TorchBackend",
            requires=("torch",),
            description="PyTorch: cpu, cuda:N and mps devices; DLPack zero-copy exchange",
        )
    )


@hookimpl
def inferox_register_architectures(register: Callable[..., None]) -> None:
    # (architecture, "module:factory") pairs, imported lazily on first use. Append new ones here.
    architectures: list[tuple[str, str]] = [
        ("mlp", "inferox.torch.models.mlp:create_model"),
        ("bert", "inferox.torch.models.bert:create_model"),
    ]
    for arch, factory in architectures:
        register(BACKEND, arch, factory)


@hookimpl
def inferox_plugin_info() -> dict[str, Any]:
    return {"description": "The PyTorch backend for Inferox", "version": __version__}
