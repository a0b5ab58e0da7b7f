"""The inferox-core conformance suite, run against the onnx backend."""

from __future__ import annotations

import numpy as np

from inferox.core import Backend, DeviceKind, Model
from inferox.core.testing import BackendConformance, Capabilities

from .conftest import make_linear


class TestOnnxConformance(BackendConformance):
    backend_name = "onnx"
    capabilities = Capabilities(
        device_kinds=frozenset({DeviceKind.CPU, DeviceKind.CUDA}),
        dtypes=None,  # every dtype backend.supported_dtypes("cpu") reports: all thirteen (numpy arrays)
        dlpack=True,
        zero_copy_numpy=True,  # a CPU tensor of this backend is the numpy array itself
    )

    def make_tiny_model(self, backend: Backend, weight: np.ndarray, bias: np.ndarray) -> Model:
        return make_linear(backend, weight, bias)  # type: ignore[arg-type]
