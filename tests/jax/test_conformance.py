"""The inferox-core conformance suite, run against the jax backend."""

from __future__ import annotations

import numpy as np

from inferox.core import Backend, DeviceKind, DType, Model
from inferox.core.testing import BackendConformance, Capabilities

from .conftest import make_linear


class TestJaxConformance(BackendConformance):
    backend_name = "jax"
    # Its mlp and bert compute in f16 and bf16 too: their numbers are checked in both.
    model_dtypes = (DType.F16, DType.BF16)
    capabilities = Capabilities(
        device_kinds=frozenset({DeviceKind.CPU, DeviceKind.CUDA, DeviceKind.TPU}),
        dtypes=None,  # what supported_dtypes("cpu") reports: ten without JAX_ENABLE_X64, thirteen with it
        dlpack=True,
        # JAX adopts a host buffer only when it is 64-byte aligned, which numpy does not promise for
        # small arrays, so unconditional zero-copy is not declared; test_tensor.py checks the
        # aligned case by pointer.
        zero_copy_numpy=False,
    )

    def make_tiny_model(self, backend: Backend, weight: np.ndarray, bias: np.ndarray) -> Model:
        return make_linear(backend, weight, bias)  # type: ignore[arg-type]
