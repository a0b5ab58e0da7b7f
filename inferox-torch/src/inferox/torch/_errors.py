"""Turning PyTorch exceptions into Inferox errors: torch's own wording, for core's :class:`~inferox.core.FrameworkErrors`.

What only torch's messages reveal: a CPU allocator failure (``DefaultCPUAllocator: can't allocate
memory``, a plain ``RuntimeError``) is an :class:`~inferox.core.errors.OutOfMemoryError`, and a build
or machine without the requested accelerator (``Torch not compiled with CUDA enabled``, ``No CUDA GPUs
are available``, an operator missing for the ``MPS`` backend) is a
:class:`~inferox.core.errors.DeviceUnavailableError` naming the device. The rules (everything else a
:class:`~inferox.core.errors.BackendError`, the torch exception kept as ``__cause__``) are core's.
This module imports no framework.
"""

from __future__ import annotations

from inferox.core.errors import FrameworkErrors
from inferox.torch.plugin import BACKEND_NAME

__all__ = ["TORCH_ERRORS", "torch_errors", "wrap_torch_error"]

TORCH_ERRORS = FrameworkErrors(
    BACKEND_NAME,
    # torch reports a failed CPU allocation as a RuntimeError, not as torch.OutOfMemoryError.
    out_of_memory=("can't allocate memory", "cannot allocate memory"),
    device_missing=(
        "not compiled with cuda",
        "no cuda gpus are available",
        "cuda driver initialization failed",
        "found no nvidia driver",
        "invalid device ordinal",
        "from the 'mps' backend",
        "mps backend is not available",
        "the mps backend is supported on macos",
    ),
)
#: The Inferox error for a torch exception (``exc`` kept as ``__cause__``).
wrap_torch_error = TORCH_ERRORS.wrap
#: Re-raise anything torch raises inside the block as an Inferox error (see :func:`wrap_torch_error`).
torch_errors = TORCH_ERRORS.context
