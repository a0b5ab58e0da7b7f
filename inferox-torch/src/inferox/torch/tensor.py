"""``TorchTensor`` and ``TorchTensorBuilder``: torch tensors behind the common tensor face.

All validation and random draws happen in :class:`inferox.core.TensorBuilder`; this module only
turns a validated numpy array, or a DLPack producer, into a ``torch.Tensor`` on the builder's device.

Memory sharing (checked by pointer in ``tests/torch/test_tensor.py``):

* ``_from_numpy`` is ``torch.from_numpy`` — the same memory on the CPU. It copies only when torch
  cannot alias the array, and says so here rather than warning at run time:

  - a **read-only** array is copied (``torch.from_numpy`` would alias it and warn that writing is
    undefined behaviour; a model writing in place could then corrupt or crash on read-only pages);
  - **negative strides** (``a[::-1]``) and **non-native byte order** (``>f4``) are copied into a
    contiguous native-order array, because torch has no representation for them.

  ``ml_dtypes.bfloat16`` arrays are aliased through an ``int16`` view of their bits and re-viewed
  as ``torch.bfloat16`` (zero-copy).
* ``_from_dlpack`` is ``torch.from_dlpack`` — the same memory as the producer (numpy, JAX, CuPy …),
  then moved to the builder's device only if the producer lives elsewhere.
"""

from __future__ import annotations

from inferox.torch import _threads  # noqa: F401 - first: it sets OpenMP's environment before torch loads

# isort: split
from typing import TYPE_CHECKING, Any

import ml_dtypes
import numpy as np
import torch
from torch.utils.dlpack import from_dlpack

from inferox.core.device import DeviceId
from inferox.core.dtype import DType
from inferox.core.tensor import Tensor, TensorBuilder
from inferox.torch._errors import torch_errors
from inferox.torch.plugin import BACKEND_NAME

if TYPE_CHECKING:
    from inferox.torch.backend import TorchBackend

__all__ = ["TorchTensor", "TorchTensorBuilder", "numpy_to_torch", "torch_dtype"]

_BF16 = np.dtype(ml_dtypes.bfloat16)


def torch_dtype(dtype: DType | str) -> torch.dtype:
    """The ``torch.dtype`` of an Inferox dtype (``"f32"`` → ``torch.float32``).

    Core maps dtypes to one spelling, numpy's (:attr:`~inferox.core.DType.numpy_name`), which torch
    shares; the framework object is looked up here, in the backend, so core never names torch."""
    return getattr(torch, DType.parse(dtype).numpy_name)  # type: ignore[no-any-return]


def numpy_to_torch(array: np.ndarray) -> torch.Tensor:
    """A CPU ``torch.Tensor`` sharing ``array``'s memory, copying only in the cases listed in the
    module docstring (read-only, negative strides, non-native byte order)."""
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if not array.flags.writeable or any(s < 0 for s in array.strides):
        array = np.array(array, copy=True, order="C")
    if array.dtype == _BF16:
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


class TorchTensor(Tensor):
    """A ``torch.Tensor`` behind :class:`inferox.core.Tensor`."""

    __slots__ = ("_backend",)

    backend_name = BACKEND_NAME

    def __init__(self, native: torch.Tensor, backend: TorchBackend) -> None:
        super().__init__(native)
        self._backend = backend

    @property
    def native(self) -> torch.Tensor:
        return self._native  # type: ignore[no-any-return]

    @property
    def backend(self) -> TorchBackend:
        return self._backend

    @property
    def device(self) -> DeviceId:
        from inferox.torch.backend import device_id_of

        return device_id_of(self._native)

    @property
    def data_ptr(self) -> int:
        """Address of the first element (for checking that two tensors share memory)."""
        return int(self._native.data_ptr())

    def __dlpack__(self, *args: Any, **kwargs: Any) -> Any:
        # torch refuses to export a tensor that requires grad; inference never needs the graph.
        return self._native.detach().__dlpack__(*args, **kwargs)

    def numpy(self) -> np.ndarray:
        """The same memory for CPU tensors; bf16 as ``ml_dtypes.bfloat16`` (see :meth:`TorchBackend.to_numpy`)."""
        return self._backend.to_numpy(self._native)

    def to(self, device: DeviceId | str) -> TorchTensor:
        return self._backend.to_device(self, device)

    def astype(self, dtype: Any) -> TorchTensor:
        return self._backend.cast(self, dtype)


class TorchTensorBuilder(TensorBuilder):
    """Builds ``torch.Tensor``\\ s on one device (see the module docstring for when it copies)."""

    backend: TorchBackend

    def _from_numpy(self, array: np.ndarray) -> torch.Tensor:
        with torch_errors(device=str(self.device)):
            return self._place(numpy_to_torch(array))

    def _from_dlpack(self, obj: Any) -> torch.Tensor:
        with torch_errors(device=str(self.device)):
            return self._place(from_dlpack(obj))

    def _place(self, native: torch.Tensor) -> torch.Tensor:
        if self.device.is_cpu and native.device.type == "cpu":
            return native
        from inferox.torch.backend import torch_device  # pragma: gpu

        return native.to(torch_device(self.device))  # pragma: gpu
