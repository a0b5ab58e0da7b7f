"""The ``jax`` plugin module: registers the JAX backend and its architectures *lazily*.

This module is what the ``inferox`` entry point ``jax = "inferox.jax.plugin"`` names. It imports
no framework: the backend is a :class:`~inferox.core.BackendSpec` whose loader string is imported
the first time the backend is used, and each architecture is a ``"module:factory"`` string.
Listing backends therefore never imports jax, and a broken jax install shows up as
"backend 'jax' unavailable: why" rather than as an import crash during discovery.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from inferox.core import CONTRACT_VERSION, BackendSpec, hookimpl

__all__ = ["ARCHITECTURES", "BACKEND_NAME", "inferox_contract_version", "inferox_register_architectures", "inferox_register_backends"]

BACKEND_NAME = "jax"

#: ``(architecture, "module:factory")`` pairs this plugin registers for the ``jax`` backend.
#: Model implementations append their entry here (the factories are imported only when used).
ARCHITECTURES: list[tuple[str, str]] = [
    ("mlp", "inferox.jax.models.mlp:create_model"),
    ("bert", "inferox.jax.models.bert:create_model"),
]


@hookimpl
def inferox_contract_version() -> str:
    """The plugin contract this plugin was written for."""
    return CONTRACT_VERSION


@hookimpl
def inferox_register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Register the ``jax`` backend as a lazy spec (no jax import)."""
    register(
        BackendSpec(
            BACKEND_NAME,
            loader="inferox.jax.backend:JaxBackend",
            requires=("jax", "jaxlib"),
            description="JAX/XLA: jit-compiled models on CPU, CUDA GPUs and TPUs",
        )
    )


@hookimpl
def inferox_register_architectures(register: Callable[..., Any]) -> None:
    """Register every architecture in :data:`ARCHITECTURES` for the ``jax`` backend."""
    for arch, factory in ARCHITECTURES:
        register(BACKEND_NAME, arch, factory)
