"""inferox-numpy runs the Inferox backend conformance suite against itself."""

from __future__ import annotations

import numpy as np
import pytest

from inferox.core import Backend, DType, Model, ModelMetadata
from inferox.core.testing import BackendConformance, Capabilities

pytest.importorskip("inferox_numpy", reason="the inferox-numpy distribution is not installed in this environment")

from inferox_numpy.linear import LinearModel  # after the importorskip on purpose


class TestNumpyConformance(BackendConformance):
    backend_name = "numpy"
    capabilities = Capabilities(device_kinds=frozenset({"cpu"}), dtypes=frozenset(DType), dlpack=True, zero_copy_numpy=True)

    def make_tiny_model(self, backend: Backend, weight: np.ndarray, bias: np.ndarray) -> Model:
        return LinearModel(backend=backend, metadata=ModelMetadata("tiny-linear", architecture="linear"), weight=weight, bias=bias)
