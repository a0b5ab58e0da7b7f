"""Turning ONNX Runtime exceptions into Inferox errors.

ONNX Runtime raises its own exception classes (``Fail``, ``InvalidArgument``, ``RuntimeException``
… from ``onnxruntime.capi.onnxruntime_pybind11_state``) whose messages carry what went wrong.
:func:`onnx_errors` extends :func:`inferox.core.errors.backend_errors` with what only those
messages reveal: a failed allocation (``Failed to allocate memory``, ``bad allocation``) is an
:class:`~inferox.core.errors.OutOfMemoryError`, and a missing CUDA provider or GPU a
:class:`~inferox.core.errors.DeviceUnavailableError` naming the device. Everything else becomes a
:class:`~inferox.core.errors.BackendError`, with the runtime's exception kept as ``__cause__``.
This module imports no framework.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from inferox.core.errors import DeviceUnavailableError, InferoxError, OutOfMemoryError, wrap_backend_error
from inferox.onnx.plugin import BACKEND_NAME

__all__ = ["onnx_errors", "wrap_onnx_error"]

# Lower-cased fragments of ONNX Runtime messages that mean "this device is not usable here".
_DEVICE_MISSING = (
    "cudaexecutionprovider is not in available provider",
    "cuda failure 100",  # cudaErrorNoDevice
    "no cuda-capable device",
    "invalid device ordinal",
    "libcudart",
    "libcublas",
)
# ORT reports an allocation failure through its generic exception types.
_OUT_OF_MEMORY = ("failed to allocate memory", "bad allocation", "bad_alloc", "out of memory")


def wrap_onnx_error(exc: BaseException, *, device: str | None = None, model: str | None = None) -> InferoxError:
    """The Inferox error for an ONNX Runtime exception (``exc`` kept as ``__cause__``)."""
    if isinstance(exc, InferoxError):
        return exc
    text = str(exc).lower()
    err: InferoxError
    if isinstance(exc, MemoryError) or any(s in text for s in _OUT_OF_MEMORY):
        err = OutOfMemoryError(f"{BACKEND_NAME}: out of memory{f' on {device}' if device else ''}: {exc}", backend=BACKEND_NAME, model=model)
    elif any(s in text for s in _DEVICE_MISSING):
        where = device or "the requested device"
        err = DeviceUnavailableError(f"{where} is not available to backend {BACKEND_NAME!r}: {exc}", device=device, backend=BACKEND_NAME)
    else:
        return wrap_backend_error(exc, backend=BACKEND_NAME, model=model)
    err.__cause__ = exc
    return err


@contextmanager
def onnx_errors(*, device: str | None = None, model: str | None = None) -> Iterator[None]:
    """Re-raise anything ONNX Runtime raises inside the block as an Inferox error (see :func:`wrap_onnx_error`)."""
    try:
        yield
    except InferoxError:
        raise
    except Exception as exc:
        raise wrap_onnx_error(exc, device=device, model=model) from exc
