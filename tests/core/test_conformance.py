"""The conformance suite run against the NumPy reference backend registered in a private registry.

This runs even where only inferox-core is installed (the nox ``core`` session): the plugin's
modules come from its source folder and its entry point from a real ``PathDistribution``
(see conftest.py). The installed-distribution run lives in tests/plugins/inferox-numpy/tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from inferox.core import Backend, DType, Model, ModelMetadata
from inferox.core.plugins import PluginRegistry
from inferox.core.testing import BackendConformance, Capabilities
from tests.support.linear_model import LinearModel


class TestNumpyBackendConformance(BackendConformance):
    backend_name = "numpy"
    capabilities = Capabilities(device_kinds=frozenset({"cpu"}), dtypes=frozenset(DType), dlpack=True, zero_copy_numpy=True)

    @pytest.fixture
    def registry(self, numpy_registry: PluginRegistry) -> PluginRegistry:
        return numpy_registry

    def make_tiny_model(self, backend: Backend, weight: np.ndarray, bias: np.ndarray) -> Model:
        return LinearModel(backend=backend, metadata=ModelMetadata("tiny"), weight=weight, bias=bias)


class TestNumpyReportedDtypesConformance(TestNumpyBackendConformance):
    """``dtypes=None``: the suite checks every dtype the backend itself reports."""

    capabilities = Capabilities(device_kinds=frozenset({"cpu"}), dtypes=None, dlpack=True)
