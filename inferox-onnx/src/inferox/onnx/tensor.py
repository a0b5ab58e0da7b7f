"""``OnnxTensor`` and ``OnnxTensorBuilder``: the ONNX backend's tensors.

ONNX Runtime's Python API takes and returns numpy arrays, so on the CPU a tensor of this backend
*is* a numpy array (zero-copy both ways: ``numpy()`` returns the array itself, DLPack exports it
through numpy). On a CUDA device a tensor is an ``onnxruntime.OrtValue`` holding device memory;
``numpy()`` copies it to the host. ``bfloat16`` arrays are ``ml_dtypes.bfloat16`` on the host.

All validation and random draws happen in :class:`inferox.core.TensorBuilder`; this module only
places a validated numpy array, or a DLPack producer, on the builder's device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from inferox.core.device import DeviceId
from inferox.core.tensor import Tensor, TensorBuilder
from inferox.onnx._errors import onnx_errors
from inferox.onnx.plugin import BACKEND_NAME

if TYPE_CHECKING:
    from inferox.onnx.backend import OnnxBackend

__all__ = ["OnnxTensor", "OnnxTensorBuilder", "device_id_of"]


def device_id_of(native: Any) -> DeviceId:
    """The Inferox device of a native tensor: ``cpu`` for numpy arrays, the OrtValue's device else."""
    if isinstance(native, np.ndarray):
        return DeviceId.cpu()
    name = str(native.device_name()).lower()  # pragma: gpu
    return DeviceId.cpu() if name == "cpu" else DeviceId("cuda", 0)  # pragma: gpu


class OnnxTensor(Tensor):
    """A numpy array (cpu) or an ``OrtValue`` (cuda) behind :class:`inferox.core.Tensor`."""

    __slots__ = ("_backend", "_device")

    backend_name = BACKEND_NAME

    def __init__(self, native: Any, backend: OnnxBackend, device: DeviceId | None = None) -> None:
        super().__init__(native)
        self._backend = backend
        self._device = device if device is not None else device_id_of(native)

    @property
    def backend(self) -> OnnxBackend:
        return self._backend

    @property
    def device(self) -> DeviceId:
        return self._device

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in (self._native.shape if isinstance(self._native, np.ndarray) else self._native.shape()))

    @property
    def dtype(self) -> Any:
        if isinstance(self._native, np.ndarray):
            return super().dtype
        from inferox.core.dtype import DType  # pragma: gpu

        return DType.parse(self.numpy().dtype)  # pragma: gpu

    def __dlpack__(self, *args: Any, **kwargs: Any) -> Any:
        return self.numpy().__dlpack__(*args, **kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return self.numpy().__dlpack_device__()

    def numpy(self) -> np.ndarray:
        """The array itself on the CPU (no copy); a host copy of a CUDA ``OrtValue``."""
        return self._backend.to_numpy(self._native)

    def to(self, device: DeviceId | str) -> OnnxTensor:
        return self._backend.to_device(self, device)

    def astype(self, dtype: Any) -> OnnxTensor:
        return self._backend.cast(self, dtype)


class OnnxTensorBuilder(TensorBuilder):
    """Builds numpy arrays (cpu) or ``OrtValue``\\ s (cuda) on one device."""

    backend: OnnxBackend

    def _from_numpy(self, array: np.ndarray) -> Any:
        return self._place(array)

    def _from_dlpack(self, obj: Any) -> Any:
        with onnx_errors(device=str(self.device)):
            return self._place(np.from_dlpack(obj))

    def _wrap(self, native: Any) -> OnnxTensor:
        return OnnxTensor(native, self.backend, self.device)

    def _place(self, array: np.ndarray) -> Any:
        if self.device.is_cpu:
            return array
        return self.backend.to_ortvalue(array, self.device)  # pragma: gpu
