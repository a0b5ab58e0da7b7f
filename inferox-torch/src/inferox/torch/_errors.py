"""Turning PyTorch exceptions into Inferox errors.

:func:`torch_errors` extends :func:`inferox.core.errors.backend_errors` with what only torch's
messages reveal: a CPU allocator failure (``DefaultCPUAllocator: can't allocate memory``, a plain
``RuntimeError``) is an :class:`~inferox.core.errors.OutOfMemoryError`, and a build or machine
without the requested accelerator (``Torch not compiled with CUDA enabled``, ``No CUDA GPUs are
available``, an operator missing for the ``MPS`` backend) is a
:class:`~inferox.core.errors.DeviceUnavailableError` naming the device. Everything else becomes a
:class:`~inferox.core.errors.BackendError`; the torch exception is always kept as ``__cause__``.
This module imports no framework.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from inferox.core.errors import DeviceUnavailableError, InferoxError, OutOfMemoryError, wrap_backend_error
from inferox.torch.plugin import BACKEND_NAME

__all__ = ["torch_errors", "wrap_torch_error"]

# Lower-cased fragments of torch messages that mean "this device does not exist here".
_DEVICE_MISSING = (
    "not compiled with cuda",
    "no cuda gpus are available",
    "cuda driver initialization failed",
    "found no nvidia driver",
    "invalid device ordinal",
    "from the 'mps' backend",
    "mps backend is not available",
    "the mps backend is supported on macos",
)
# torch reports a failed CPU allocation as a RuntimeError, not as torch.OutOfMemoryError.
_OUT_OF_MEMORY = ("can't allocate memory", "cannot allocate memory", "out of memory")


def wrap_torch_error(exc: BaseException, *, device: str | None = None, model: str | None = None) -> InferoxError:
    """The Inferox error for a torch exception (``exc`` kept as ``__cause__``)."""
    if isinstance(exc, InferoxError):
        return exc
    text = str(exc).lower()
    err: InferoxError
    if type(exc).__name__ == "OutOfMemoryError" or isinstance(exc, MemoryError) or any(s in text for s in _OUT_OF_MEMORY):
        err = OutOfMemoryError(f"{BACKEND_NAME}: out of memory{f' on {device}' if device else ''}: {exc}", backend=BACKEND_NAME, model=model)
    elif any(s in text for s in _DEVICE_MISSING):
        where = device or "the requested device"
        err = DeviceUnavailableError(f"{where} is not available to backend {BACKEND_NAME!r}: {exc}", device=device, backend=BACKEND_NAME)
    else:
        return wrap_backend_error(exc, backend=BACKEND_NAME, model=model)
    err.__cause__ = exc
    return err


@contextmanager
def torch_errors(*, device: str | None = None, model: str | None = None) -> Iterator[None]:
    """Re-raise anything torch raises inside the block as an Inferox error (see :func:`wrap_torch_error`)."""
    try:
        yield
    except InferoxError:
        raise
    except Exception as exc:
        raise wrap_torch_error(exc, device=device, model=model) from exc
