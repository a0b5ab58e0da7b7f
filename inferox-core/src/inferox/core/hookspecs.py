"""Hook specifications: everything a plugin can contribute, in one module.

Plugins are modules named by an entry point in the ``inferox`` group. They implement any of these
hooks with the :data:`hookimpl` marker and contribute through the ``register`` callback they are
given (as simonw/llm plugins do), so a plugin never touches the plugin manager itself. A plugin
module must not import its framework at import time: it registers *lazy* specs, and the framework is
imported the first time the backend or architecture is used.

A complete plugin::

    from inferox.core import BackendSpec, hookimpl

    @hookimpl
    def inferox_contract_version():
        return "1.0"

    @hookimpl
    def inferox_register_backends(register):
        register(BackendSpec("onnx", loader="inferox_onnx.backend:OnnxBackend", requires=("onnxruntime",)))

    @hookimpl
    def inferox_register_architectures(register):
        register("onnx", "mlp", "inferox_onnx.models:create_mlp")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

from inferox.core.constants import PROJECT_NAME

if TYPE_CHECKING:
    from inferox.core.plugins import BackendSpec

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def inferox_contract_version() -> str:  # type: ignore[empty-body]
    """Return the plugin contract version this plugin was written for (``"1.0"``).

    The plugin manager calls each plugin's implementation separately and refuses a plugin whose
    major version differs from core's :data:`~inferox.core.constants.CONTRACT_VERSION`, or whose
    minor version is newer, with an error naming both versions. A plugin that does not implement
    this hook is refused as well.
    """


@hookspec
def inferox_register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Register backends by calling ``register(BackendSpec(...))`` once per backend.

    A :class:`~inferox.core.plugins.BackendSpec` is lazy: it names the backend, the distributions
    whose versions describe it, and a ``"module:attribute"`` loader. Listing backends never imports
    the loader; it is imported when the backend is first used.
    """


@hookspec
def inferox_register_architectures(register: Callable[..., None]) -> None:
    """Register architecture factories by calling ``register(backend, architecture, factory)``.

    ``factory`` is a callable or a lazy ``"module:attribute"`` string naming one, with the signature
    ``factory(*, backend, config, weights, metadata, device, dtype, **options) -> Model``:
    ``config`` is the package's ``config.json`` (a dict), ``weights`` a path to a safetensors file
    (or a mapping of names to numpy arrays), ``metadata`` a :class:`~inferox.core.ModelMetadata`.
    Registering the same (backend, architecture) from two plugins is an error naming both.
    """


@hookspec
def inferox_plugin_info() -> dict[str, Any]:  # type: ignore[empty-body]
    """Optionally describe the plugin (``{"description": ..., "homepage": ...}``) for ``inferox backends``."""
