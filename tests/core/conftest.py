"""Fixtures for the inferox-core tests.

The core tests need a real backend but must run where only inferox-core is installed (the nox
``core`` session has neither torch nor jax). They use the NumPy reference backend of the
third-party plugin in ``tests/plugins/inferox-numpy`` (the session installs it, as a user would),
registered into a private registry through a REAL ``importlib.metadata.PathDistribution`` (see
:func:`make_distribution`).
"""

from __future__ import annotations

import importlib.metadata as md
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from inferox_numpy.backend import NumpyBackend

from inferox.core.plugins import PluginRegistry
from tests.support.plugins import make_distribution


@pytest.fixture
def unique() -> str:
    """A fresh suffix for module names, so no test sees another's cached module."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A site-packages-like folder on ``sys.path``; modules imported from it are forgotten afterwards."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        module = sys.modules.get(name)
        if module is not None and str(getattr(module, "__file__", "") or "").startswith(str(folder)):
            del sys.modules[name]


@pytest.fixture
def numpy_registry(tmp_path: Path) -> PluginRegistry:
    """A private registry that discovered the NumPy plugin through a real distribution's entry point."""
    dist = make_distribution(tmp_path / "np-site", "inferox-numpy", {"numpy": "inferox_numpy.plugin"}, version="0.1.0")
    registry = PluginRegistry()
    registry.load_entry_points([dist], blocked=())
    assert registry.failures == [], registry.failures
    return registry


@pytest.fixture
def backend(numpy_registry: PluginRegistry) -> NumpyBackend:
    backend = numpy_registry.get_backend("numpy")
    assert isinstance(backend, NumpyBackend)
    return backend


@pytest.fixture
def make_dist(site: Path) -> Callable[..., md.PathDistribution]:
    def make(name: str, entry_points: Mapping[str, str], **kwargs: object) -> md.PathDistribution:
        return make_distribution(site, name, entry_points, **kwargs)  # type: ignore[arg-type]

    return make
