"""The inferox-core conformance suite, run against the torch backend."""

from __future__ import annotations

import numpy as np

from inferox.core import Backend, DeviceKind, DType, Model
from inferox.core.testing import BackendConformance, Capabilities

from .conftest import make_linear


class TestTorchConformance(BackendConformance):
    backend_name = "torch"
    # Its mlp and bert compute in f16 and bf16 too: their numbers are checked in both.
    model_dtypes = (DType.F16, DType.BF16)
    capabilities = Capabilities(
        device_kinds=frozenset({DeviceKind.CPU, DeviceKind.CUDA, DeviceKind.MPS}),
        dtypes=None,  # every dtype backend.supported_dtypes("cpu") reports: all thirteen
        dlpack=True,
        zero_copy_numpy=True,
    )

    def make_tiny_model(self, backend: Backend, weight: np.ndarray, bias: np.ndarray) -> Model:
        return make_linear(backend, weight, bias)  # type: ignore[arg-type]
