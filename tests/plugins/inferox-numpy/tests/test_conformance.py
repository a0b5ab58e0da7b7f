"""inferox-numpy runs the Inferox backend conformance suite against itself."""

from __future__ import annotations

import numpy as np
import pytest

from inferox.core import Backend, DType, Model, ModelMetadata, get_registry
from inferox.core.testing import BackendConformance, Capabilities

pytest.importorskip("inferox_numpy", reason="the inferox-numpy distribution is not installed in this environment")


class TestNumpyConformance(BackendConformance):
    backend_name = "numpy"
    capabilities = Capabilities(device_kinds=frozenset({"cpu"}), dtypes=frozenset(DType), dlpack=True, zero_copy_numpy=True)

    def make_tiny_model(self, backend: Backend, weight: np.ndarray, bias: np.ndarray) -> Model:
        # The plugin's own linear architecture, through the factory the registry gives every
        # architecture with a definition: the plugin has no model class of its own.
        factory = get_registry().architecture_factory("numpy", "linear")
        config = {"model_type": "linear", "in_features": int(weight.shape[0]), "out_features": int(weight.shape[1])}
        return factory(backend=backend, config=config, weights={"weight": weight, "bias": bias}, metadata=ModelMetadata("tiny-linear", architecture="linear"))
