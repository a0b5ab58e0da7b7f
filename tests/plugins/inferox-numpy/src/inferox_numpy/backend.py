"""``NumpyBackend``: numpy arrays are the native tensors; the host CPU is the only device."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from inferox.core import Backend, Device, DeviceId, DType, MemoryInfo, Tensor, TensorBuilder

__all__ = ["NumpyBackend", "NumpyTensor", "NumpyTensorBuilder"]


class NumpyTensor(Tensor):
    """A numpy array behind Inferox's tensor face."""

    __slots__ = ("_backend",)
    backend_name = "numpy"

    def __init__(self, native: np.ndarray, backend: NumpyBackend) -> None:
        super().__init__(native)
        self._backend = backend

    @property
    def backend(self) -> NumpyBackend:
        return self._backend

    @property
    def device(self) -> DeviceId:
        return DeviceId.cpu()

    def numpy(self) -> np.ndarray:
        # The native array itself: numpy tensors are already host arrays (zero-copy).
        return self._native  # type: ignore[no-any-return]


class NumpyTensorBuilder(TensorBuilder):
    """Validation, constructors and random draws come from core; only the two hooks are here."""

    def _from_numpy(self, array: np.ndarray) -> np.ndarray:
        return array

    def _from_dlpack(self, obj: Any) -> np.ndarray:
        return np.from_dlpack(obj)


class NumpyBackend(Backend):
    """The NumPy reference backend: CPU only, every Inferox dtype (bf16 via ``ml_dtypes``)."""

    name = "numpy"
    device_kinds = frozenset({"cpu"})
    supports_dlpack = True

    @property
    def version(self) -> str:
        return np.__version__

    def devices(self) -> list[Device]:
        return [Device(DeviceId.cpu(), self.name, name="host", available=True, memory=self.memory_info())]

    def memory_info(self, device: DeviceId | str | None = None) -> MemoryInfo | None:
        try:
            page = os.sysconf("SC_PAGE_SIZE")
            return MemoryInfo.from_total_free(os.sysconf("SC_PHYS_PAGES") * page, os.sysconf("SC_AVPHYS_PAGES") * page)
        except (AttributeError, ValueError, OSError):  # pragma: no cover - platforms without sysconf
            return None

    def supported_dtypes(self, device: DeviceId | str | None = None) -> frozenset[DType]:
        return frozenset(DType)

    def tensor_builder(self, device: DeviceId | str | None = None) -> NumpyTensorBuilder:
        return NumpyTensorBuilder(self, self.check_device(device))

    def is_native(self, obj: Any) -> bool:
        return isinstance(obj, np.ndarray)

    def wrap(self, native: Any) -> NumpyTensor:
        return NumpyTensor(np.asarray(native), self)

    def to_device(self, tensor: Tensor, device: DeviceId) -> NumpyTensor:
        self.check_device(device)
        return self.wrap(tensor.numpy())

    def cast(self, tensor: Tensor, dtype: DType) -> NumpyTensor:
        return self.wrap(tensor.numpy().astype(dtype.to_numpy()))

    def to_numpy(self, native: Any) -> np.ndarray:
        return np.asarray(native)
