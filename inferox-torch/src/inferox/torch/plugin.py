"""The ``torch`` entry point of the ``inferox`` plugin group (``torch = "inferox.torch.plugin"``).

Registers the PyTorch backend as a *lazy* spec that runs architecture definitions
(``definitions=True``): every architecture with a definition — the standard ones and any plugin's —
runs on torch through the registry's generic factory, so this plugin registers no factory of its
own. Importing this module imports no framework: torch is imported only when the backend is first
used.

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
DISTRIBUTION = "inferox-torch"
#: The registry name of the backend.
BACKEND_NAME = "torch"
#: ``(architecture, "module:factory")`` pairs registered for the backend, imported on first use.
#: Empty: torch runs every architecture's definition (``BackendSpec.definitions``).
ARCHITECTURES: tuple[tuple[str, str], ...] = ()
#: Speed per architecture (or schema family: every encoder family) and device kind, relative to
#: this backend's (1.0 by definition): the reference the other backends declare theirs against
#: (see ``BackendSpec.speed``).
SPEED: dict[str, dict[str, float]] = {
    "mlp": {"cpu": 1.0, "cuda": 1.0, "mps": 1.0},
    "encoder": {"cpu": 1.0, "cuda": 1.0, "mps": 1.0},
}


@hookimpl
def inferox_contract_version() -> str:
    """The plugin contract this plugin was written for."""
    return CONTRACT_VERSION


@hookimpl
def inferox_register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Register the ``torch`` backend as a lazy spec (no torch import)."""
    register(
        BackendSpec(
            BACKEND_NAME,
            loader="inferox.torch.backend:TorchBackend",
            requires=("torch",),
            description="PyTorch: cpu, cuda:N and mps devices; DLPack zero-copy exchange",
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
    return {"description": "The PyTorch backend for Inferox", "version": distribution_version(DISTRIBUTION)}
