"""The ``jax`` entry point of the ``inferox`` plugin group (``jax = "inferox.jax.plugin"``).

Registers the JAX backend as a *lazy* spec that runs architecture definitions
(``definitions=True``): every architecture with a definition runs on jax, jit-compiled, through the
registry's generic factory, so this plugin registers no factory of its own. Importing this module
imports no framework: jax is imported only when the backend is first used, so a broken jax install
shows up as "backend 'jax' unavailable: why" rather than as an import crash during discovery.

Every backend distribution of this repository follows the same template (see docs/plugin-guide.md,
"The backend template"): ``plugin.py`` holds the constants :data:`DISTRIBUTION`,
:data:`BACKEND_NAME` and :data:`ARCHITECTURES` and the four hooks below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from inferox.core import CONTRACT_VERSION, BackendSpec, distribution_version, hookimpl

__all__ = [
    "ARCHITECTURES",
    "BACKEND_NAME",
    "DISTRIBUTION",
    "SPEED",
    "inferox_contract_version",
    "inferox_plugin_info",
    "inferox_register_backends",
    "inferox_register_implementations",
]

#: The distribution this plugin ships in (its version is the plugin's version).
DISTRIBUTION = "inferox-jax"
#: The registry name of the backend.
BACKEND_NAME = "jax"
#: ``(architecture, "module:factory")`` pairs registered for the backend, imported on first use.
#: Empty: jax runs every architecture's definition (``BackendSpec.definitions``).
ARCHITECTURES: tuple[tuple[str, str], ...] = ()
#: Speed per architecture (or schema family: every encoder family) and device kind, relative to
#: inferox-torch's (see ``BackendSpec.speed``), from ``benchmarks/results/minilm.md``: XLA:CPU
#: costs 1.06x to 1.3x torch's CPU time on BERT (one thread).
#: ``benchmarks/engine/bench_backend_choice.py`` checks the ranking these give on a machine.
SPEED: dict[str, dict[str, float]] = {
    "mlp": {"cpu": 0.8},
    "encoder": {"cpu": 0.85},
}


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
            definitions=True,
            speed=SPEED,
        )
    )


@hookimpl
def inferox_register_implementations(register: Callable[..., None]) -> None:
    """Register a factory for every architecture in :data:`ARCHITECTURES`."""
    for arch, factory in ARCHITECTURES:
        register(BACKEND_NAME, arch, factory, speed=SPEED.get(arch))


@hookimpl
def inferox_plugin_info() -> dict[str, Any]:
    """What ``inferox backends`` shows about this plugin."""
    return {"description": "The JAX backend for Inferox", "version": distribution_version(DISTRIBUTION)}
