"""Fixtures of the inferox-mlpkg tests: registries holding the in-process reference plugin. Model
folders and the Hub server are shared fixtures (:mod:`tests.support.fixtures`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def ref_plugin() -> Iterator[Any]:
    """The process registry with the ``mlpkgref`` numpy backend and its ``mlp`` registered."""
    from inferox.core.plugins import get_registry, reset_registry

    from . import mlpkg_refplugin

    reset_registry()
    reg = get_registry()
    reg.register_plugin(mlpkg_refplugin, name="mlpkg-ref")
    yield reg
    reset_registry()


@pytest.fixture
def only_ref_backend(ref_plugin: Any) -> Any:
    """The registry with *only* the reference backend (torch/jax entry points blocked)."""
    from inferox.core import plugins
    from inferox.core.plugins import PluginRegistry

    from . import mlpkg_refplugin

    reg = PluginRegistry()
    reg.register_plugin(mlpkg_refplugin, name="mlpkg-ref")
    plugins._registry = reg
    return reg


@pytest.fixture
def no_backends() -> Iterator[Any]:
    """A registry with no plugins at all."""
    from inferox.core import plugins
    from inferox.core.plugins import PluginRegistry, reset_registry

    reset_registry()
    plugins._registry = PluginRegistry()
    yield plugins._registry
    reset_registry()
