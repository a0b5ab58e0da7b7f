"""Hook specifications: everything a plugin can contribute, in one module.

Plugins are modules named by an entry point in the ``inferox`` group. They implement any of these
hooks with the :data:`hookimpl` marker and contribute through the ``register`` callback they are
given (as simonw/llm plugins do), so a plugin never touches the plugin manager itself. A plugin
module must not import its framework at import time: it registers *lazy* specs, and the framework is
imported the first time the backend or architecture is used.

A plugin contributes two kinds of things, separately: **architectures** (an
:class:`~inferox.core.ArchitectureSchema`: what the model is, the same for every backend) and
**backends**, with an *implementation* (a factory) per architecture each backend implements. A
complete plugin that brings a backend ``mylib`` and implements the standard ``mlp`` on it::

    from inferox.core import CONTRACT_VERSION, BackendSpec, hookimpl

    @hookimpl
    def inferox_contract_version():
        return CONTRACT_VERSION

    @hookimpl
    def inferox_register_backends(register):
        register(BackendSpec("mylib", loader="inferox_mylib.backend:MylibBackend", requires=("mylib",)))

    @hookimpl
    def inferox_register_implementations(register):
        register("mylib", "mlp", "inferox_mylib.models:create_mlp")

A plugin bringing a new architecture adds ``inferox_register_schemas`` (contract 1.1); with a
:class:`~inferox.core.Definition` in its schema it runs on every backend that runs definitions
(contract 1.2), and a backend that declares an array namespace registers
``BackendSpec(..., definitions=True)`` and no factory at all.

Contract versions: 1.0 had backends and ``inferox_register_architectures``; 1.1 added
``inferox_register_schemas``; 1.2 named the implementations hook for what it registers,
``inferox_register_implementations``, keeping ``inferox_register_architectures`` as an alias that
works unchanged, and added architecture definitions and ``BackendSpec(definitions=True)``. Core
accepts every 1.x plugin (:data:`~inferox.core.constants.CONTRACT_VERSION`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

from inferox.core.constants import PROJECT_NAME

if TYPE_CHECKING:
    from inferox.core.plugins import BackendSpec
    from inferox.core.schema import ArchitectureSchema

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def inferox_contract_version() -> str:  # type: ignore[empty-body]
    """Return the plugin contract version this plugin was written for (``"1.2"``).

    The plugin manager calls each plugin's implementation separately and refuses a plugin whose
    major version differs from core's :data:`~inferox.core.constants.CONTRACT_VERSION`, or whose
    minor version is newer, with an error naming both versions. A plugin that does not implement
    this hook is refused as well. The conformance suite reads it too: a check added in a later
    minor version only warns for a plugin that declares an older one.
    """


@hookspec
def inferox_register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Register backends by calling ``register(BackendSpec(...))`` once per backend.

    A :class:`~inferox.core.plugins.BackendSpec` is lazy: it names the backend, the distributions
    whose versions describe it, and a ``"module:attribute"`` loader. Listing backends never imports
    the loader; it is imported when the backend is first used.
    """


@hookspec
def inferox_register_schemas(register: Callable[[ArchitectureSchema], None]) -> None:
    """Register architectures by calling ``register(ArchitectureSchema(...))`` once per architecture (contract 1.1).

    The schema is what the architecture *is* for every backend: config parsing, weight names and
    shapes, input/output specs, default outputs, the ``model_type`` values that recognise it in a
    Hugging Face folder, golden inputs and an optional NumPy reference. ``inferox pack``,
    ``inferox verify``, the engine and the conformance suite find architectures here only. Two
    plugins registering the same name, or claiming the same ``model_type``, is an error naming both.
    It registers *what* an architecture is; :func:`inferox_register_implementations` registers a
    backend's code that runs it.
    """


@hookspec
def inferox_register_implementations(register: Callable[..., None]) -> None:
    """Register backends' implementations of architectures by calling ``register(backend, architecture, factory)`` (contract 1.2).

    ``factory`` is a callable or a lazy ``"module:attribute"`` string naming one, with the signature
    ``factory(*, backend, config, weights, metadata, device, dtype, **options) -> Model``:
    ``config`` is the package's ``config.json`` (a dict), ``weights`` a path to a safetensors file
    (or a mapping of names to numpy arrays), ``metadata`` a :class:`~inferox.core.ModelMetadata`,
    ``device`` ``None`` (the backend's default) or a device id, ``dtype`` ``None`` (the weights' own
    float dtype) or the float dtype to hold parameters and compute in — inputs and outputs keep the
    dtypes the specs declare, and a dtype the model cannot compute in is a ``DTypeError`` naming
    ``dtype``. ``options`` are the package's recorded options (``preprocessing``) and the caller's
    keyword options; a factory ignores those it does not know. Registering the same (backend,
    architecture) from two plugins is an error naming both, and so is registering it twice from one.

    ``register(backend, architecture, factory, speed={"cpu": 1.5})`` also declares how fast the
    backend runs the architecture on each device kind: throughput relative to inferox-torch's
    implementation on that kind (1.0). With no backend named, the engine serves a model on the
    installed backend declaring the highest speed for its architecture and device kind (one
    declaring none ranks last); ``benchmarks/engine/bench_backend_choice.py`` checks declarations.

    The backend need not be the plugin's own: a plugin may implement an architecture for another
    plugin's backend (listed only while that backend is registered: not blocked, installed).
    """


@hookspec
def inferox_register_architectures(register: Callable[..., None]) -> None:
    """The 1.0 name of :func:`inferox_register_implementations`, kept as an alias: it works unchanged.

    It registers implementations (factories), not architectures — those are schemas, registered with
    :func:`inferox_register_schemas` — hence the new name. A plugin implements one of the two; both are
    read, in the same way.
    """


@hookspec
def inferox_plugin_info() -> dict[str, Any]:  # type: ignore[empty-body]
    """Optionally describe the plugin (``{"description": ..., "homepage": ...}``) for ``inferox backends``."""
