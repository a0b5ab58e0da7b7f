"""Turning ONNX Runtime exceptions into Inferox errors: ORT's own wording, for core's :class:`~inferox.core.FrameworkErrors`.

ONNX Runtime raises its own exception classes (``Fail``, ``InvalidArgument``, ``RuntimeException``
… from ``onnxruntime.capi.onnxruntime_pybind11_state``) whose messages carry what went wrong. What
only those messages reveal: a failed allocation (``Failed to allocate memory``, ``bad allocation``)
is an :class:`~inferox.core.errors.OutOfMemoryError`, and a missing CUDA provider or GPU a
:class:`~inferox.core.errors.DeviceUnavailableError` naming the device. The rules (everything else a
:class:`~inferox.core.errors.BackendError`, the runtime's exception kept as ``__cause__``) are
core's. This module imports no framework.
"""

from __future__ import annotations

from inferox.core.errors import FrameworkErrors
from inferox.onnx.plugin import BACKEND_NAME

__all__ = ["ONNX_ERRORS", "onnx_errors", "wrap_onnx_error"]

ONNX_ERRORS = FrameworkErrors(
    BACKEND_NAME,
    # ORT reports an allocation failure through its generic exception types.
    out_of_memory=("failed to allocate memory", "bad allocation", "bad_alloc"),
    device_missing=(
        "cudaexecutionprovider is not in available provider",
        "cuda failure 100",  # cudaErrorNoDevice
        "no cuda-capable device",
        "invalid device ordinal",
        "libcudart",
        "libcublas",
    ),
)
#: The Inferox error for an ONNX Runtime exception (``exc`` kept as ``__cause__``).
wrap_onnx_error = ONNX_ERRORS.wrap
#: Re-raise anything ONNX Runtime raises inside the block as an Inferox error (see :func:`wrap_onnx_error`).
onnx_errors = ONNX_ERRORS.context
