"""Fixtures of the inferox-mlpkg tests: registries holding the NumPy reference backend of the
third-party example distribution ``tests/plugins/inferox-numpy`` (backend ``numpy``, architectures
``linear`` and ``mlp``). Model folders and the Hub server are shared fixtures
(:mod:`tests.support.fixtures`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def ref_plugin() -> Iterator[Any]:
    """The process registry, with the ``numpy`` backend (discovered when installed, else registered)."""
    import inferox_numpy.plugin

    from inferox.core.plugins import get_registry, reset_registry

    reset_registry()
    reg = get_registry()
    if "numpy" not in reg.backend_names():
        reg.register_plugin(inferox_numpy.plugin, name="inferox-numpy")
    yield reg
    reset_registry()


@pytest.fixture
def only_ref_backend(ref_plugin: Any) -> Any:
    """A process registry with *only* the ``numpy`` backend (torch and jax not registered)."""
    import inferox_numpy.plugin

    from inferox.core import plugins
    from inferox.core.plugins import PluginRegistry

    reg = PluginRegistry()
    reg.register_plugin(inferox_numpy.plugin, name="inferox-numpy")
    plugins._registry = reg
    return reg


@pytest.fixture
def no_backends() -> Iterator[Any]:
    """A registry where no backend implements any architecture: builds record the backends they
    name (torch, jax: known, as a package may be built on a machine that cannot run it) but compute
    no golden outputs, and loading finds no factory."""
    import types

    from inferox.core import CONTRACT_VERSION, BackendSpec, hookimpl, plugins
    from inferox.core.plugins import PluginRegistry, reset_registry

    names_only = types.ModuleType("names_only_plugin")
    names_only.inferox_contract_version = hookimpl(lambda: CONTRACT_VERSION)  # type: ignore[attr-defined]

    def register_backends(register: Any) -> None:
        register(BackendSpec("torch", loader="inferox.torch.backend:TorchBackend", requires=("torch",)))
        register(BackendSpec("jax", loader="inferox.jax.backend:JaxBackend", requires=("jax",)))

    names_only.inferox_register_backends = hookimpl(register_backends)  # type: ignore[attr-defined]
    reset_registry()
    plugins._registry = PluginRegistry()
    plugins._registry.register_plugin(names_only, name="names-only")
    yield plugins._registry
    reset_registry()
