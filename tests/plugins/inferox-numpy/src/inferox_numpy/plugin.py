"""The entry point: ``[project.entry-points.inferox] numpy = "inferox_numpy.plugin"``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from inferox.core import ArchitectureSchema, BackendSpec, hookimpl


@hookimpl
def inferox_contract_version() -> str:
    return "1.2"  # the contract this plugin was written for: 1.2 runs architecture definitions on array backends


@hookimpl
def inferox_register_backends(register: Callable[[BackendSpec], None]) -> None:
    # Lazy: the loader string is imported only when the backend is first used. definitions=True: an
    # ArrayBackend runs every architecture's definition, so this plugin registers no factory at all.
    register(BackendSpec("numpy", loader="inferox_numpy.backend:NumpyBackend", requires=("numpy",), description="NumPy reference backend (CPU)", definitions=True))


@hookimpl
def inferox_register_schemas(register: Callable[[ArchitectureSchema], None]) -> None:
    from inferox_numpy.linear import LINEAR  # NumPy and core only: no framework

    register(LINEAR)


@hookimpl
def inferox_plugin_info() -> dict[str, Any]:
    return {"description": "NumPy reference backend", "homepage": "https://example.invalid/inferox-numpy"}
