"""The ``onnx`` entry point of the ``inferox`` plugin group (``onnx = "inferox.onnx.plugin"``).

Registers the ONNX Runtime backend as a *lazy* spec that runs architecture definitions
(``definitions=True``): every architecture with a definition — the standard ones and any plugin's —
is traced into an ONNX graph through the registry's generic factory, so this plugin registers no
factory of its own. Importing this module imports neither ``onnx`` nor ``onnxruntime``: they are
imported only when the backend is first used.

Every backend distribution of this repository follows the same template (see docs/plugin-guide.md,
"The backend template"): ``plugin.py`` holds the constants :data:`DISTRIBUTION`,
:data:`BACKEND_NAME` and :data:`ARCHITECTURES` and the four hooks below.
"""

from __future__ import annotations

import importlib.metadata as md
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
DISTRIBUTION = "inferox-onnx"
#: The registry name of the backend.
BACKEND_NAME = "onnx"
#: ``(architecture, "module:factory")`` pairs registered for the backend, imported on first use.
#: Empty: onnx traces every architecture's definition (``BackendSpec.definitions``).
ARCHITECTURES: tuple[tuple[str, str], ...] = ()
#: Speed per architecture (or schema family: every encoder family) and device kind, relative to
#: inferox-torch's (see ``BackendSpec.speed``), from ``benchmarks/results/onnx.md``: the fused
#: encoder graph costs 0.4x to 0.95x torch's CPU time per sequence (most at small batches, where
#: serving lives).
#: ``benchmarks/engine/bench_backend_choice.py`` checks the ranking these give on a machine.
SPEED: dict[str, dict[str, float]] = {
    "mlp": {"cpu": 1.2},
    "encoder": {"cpu": 1.5},
}
#: Distributions that provide the ``onnxruntime`` module: the CPU build, or one of the GPU builds
#: (which are published under their own names and replace the CPU one).
_RUNTIME_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino")


def _runtime_distribution() -> str:
    """The installed distribution that provides ``onnxruntime`` (metadata only; nothing imported).

    ``"onnxruntime"`` when none is installed, so discovery reports that one as missing.
    """
    for name in _RUNTIME_DISTRIBUTIONS:
        try:
            md.version(name)
        except md.PackageNotFoundError:
            continue
        return name
    return _RUNTIME_DISTRIBUTIONS[0]


@hookimpl
def inferox_contract_version() -> str:
    """The plugin contract this plugin was written for."""
    return CONTRACT_VERSION


@hookimpl
def inferox_register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Register the ``onnx`` backend as a lazy spec (no onnx / onnxruntime import)."""
    register(
        BackendSpec(
            BACKEND_NAME,
            loader="inferox.onnx.backend:OnnxBackend",
            requires=("onnx", _runtime_distribution()),
            description="ONNX Runtime: graphs traced from the architecture definitions, fused operators, int8, cpu and cuda:N",
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
    return {"description": "The ONNX Runtime backend for Inferox", "version": distribution_version(DISTRIBUTION)}
