"""The entry point: ``[project.entry-points.inferox] numpy = "inferox_numpy.plugin"``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from inferox.core import BackendSpec, hookimpl


@hookimpl
def inferox_contract_version() -> str:
    return "1.0"


@hookimpl
def inferox_register_backends(register: Callable[[BackendSpec], None]) -> None:
    # Lazy: the loader string is imported only when the backend is first used.
    register(BackendSpec("numpy", loader="inferox_numpy.backend:NumpyBackend", requires=("numpy",), description="NumPy reference backend (CPU)"))


@hookimpl
def inferox_register_architectures(register: Callable[..., None]) -> None:
    register("numpy", "linear", "inferox_numpy.models:create_linear")
    register("numpy", "mlp", "inferox_numpy.models:create_mlp")  # the standard schema of inferox.core.architectures


@hookimpl
def inferox_plugin_info() -> dict[str, Any]:
    return {"description": "NumPy reference backend", "homepage": "https://example.invalid/inferox-numpy"}
