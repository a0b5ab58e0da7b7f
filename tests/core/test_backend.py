"""The Backend base class's shared behaviour: devices, availability, default selection, narrowing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from inferox_numpy.backend import NumpyBackend

from inferox.core import Device, DeviceError, DeviceId, DeviceUnavailableError, DType, DTypeError, MemoryInfo
from inferox.core.backend import narrow_checked


class AcceleratedBackend(NumpyBackend):
    """The NumPy backend reporting extra devices, to exercise selection logic that only GPUs reach."""

    name = "numpy-accel"
    device_kinds = frozenset({"cpu", "cuda", "npu"})

    def __init__(self, devices: list[tuple[str, bool]]) -> None:
        self._extra = [Device(DeviceId.parse(d), self.name, available=a) for d, a in devices]

    def devices(self) -> list[Device]:
        return [*super().devices(), *self._extra]


class Narrow(NumpyBackend):
    """A backend without 64-bit types on the CPU (as JAX without x64)."""

    name = "numpy-narrow"

    def supported_dtypes(self, device: Any = None) -> frozenset[DType]:
        return frozenset(DType) - {DType.I64, DType.U64, DType.F64, DType.BF16, DType.F16, DType.U32}


def test_numpy_backend_devices(backend: NumpyBackend) -> None:
    (cpu,) = backend.devices()
    assert cpu.id == DeviceId.cpu() and cpu.available and cpu.backend == "numpy"
    assert isinstance(cpu.memory, MemoryInfo) and cpu.memory.total > 0
    assert backend.default_device() == DeviceId.cpu()
    assert backend.is_device_available("cpu")
    assert not backend.is_device_available("cuda:0")
    assert "numpy" in repr(backend) and np.__version__ in repr(backend)


def test_default_device_prefers_an_available_accelerator() -> None:
    assert AcceleratedBackend([("cuda:0", False), ("npu:1", True)]).default_device() == DeviceId("npu", 1)
    assert AcceleratedBackend([("cuda:0", True), ("cuda:1", True)]).default_device() == DeviceId.cuda(0)
    assert AcceleratedBackend([("cuda:0", False)]).default_device() == DeviceId.cpu()


def test_check_device() -> None:
    backend = AcceleratedBackend([("cuda:0", True), ("cuda:1", False)])
    assert backend.check_device(None) == DeviceId.cuda(0)
    assert backend.check_device("gpu:0") == DeviceId.cuda(0)
    assert backend.check_device(DeviceId.cpu()) == DeviceId.cpu()
    with pytest.raises(DeviceUnavailableError) as ei:
        backend.check_device("cuda:1")
    err = ei.value
    assert (err.code, err.device, err.backend) == ("DEVICE_UNAVAILABLE", "cuda:1", "numpy-accel")
    assert "cpu, cuda:0" in str(err)
    assert isinstance(err, DeviceError)
    with pytest.raises(DeviceError) as ei2:
        backend.check_device("tpu:0")
    assert (ei2.value.code, ei2.value.device, ei2.value.backend) == ("DEVICE_ERROR", "tpu:0", "numpy-accel")
    assert "cpu, cuda, npu" in str(ei2.value)


def test_tensor_builder_on_an_unavailable_device(backend: NumpyBackend) -> None:
    with pytest.raises(DeviceError) as ei:
        backend.tensor_builder("mps")
    assert ei.value.code == "DEVICE_ERROR" and ei.value.device == "mps:0"
    with pytest.raises(DeviceError) as ei:
        backend.tensor_builder().zeros((1,)).to("cuda:0")
    assert ei.value.device == "cuda:0"


def test_memory_info_and_synchronize_defaults() -> None:
    backend = AcceleratedBackend([])
    info = backend.memory_info()
    assert isinstance(info, MemoryInfo) and info.total >= info.free
    assert backend.synchronize() is None


def test_as_native_narrows_with_a_range_check() -> None:
    backend = Narrow()
    assert backend.narrowed_dtype(DType.I64) is DType.I32
    assert backend.narrowed_dtype(DType.F64) is DType.F32
    assert backend.narrowed_dtype(DType.U32) is DType.I32
    assert backend.narrowed_dtype(DType.I32) is DType.I32
    native = backend.as_native(np.array([1, -2, 2**31 - 1], np.int64), dtype=DType.I64)
    assert native.dtype == np.int32 and native.tolist() == [1, -2, 2**31 - 1]
    tensor = backend.tensor_builder().from_numpy(np.array([3, 4], np.int32))
    assert backend.as_native(tensor, dtype=DType.I64).dtype == np.int32
    with pytest.raises(DTypeError) as ei:
        backend.as_native(np.array([0, 2**40], np.int64), dtype=DType.I64)
    err = ei.value
    assert err.code == "INVALID_DTYPE"
    assert err.expected == f"[{-(2**31)}, {2**31 - 1}]" and err.actual == f"[0, {2**40}]"


def test_narrowed_dtype_without_a_fallback() -> None:
    class Tiny(NumpyBackend):
        def supported_dtypes(self, device: Any = None) -> frozenset[DType]:
            return frozenset({DType.F32})

    with pytest.raises(DTypeError) as ei:
        Tiny().narrowed_dtype(DType.I8)
    assert (ei.value.code, ei.value.expected, ei.value.actual) == ("INVALID_DTYPE", "f32", "i8")


def test_narrow_checked() -> None:
    arr = np.array([1, 2], np.int32)
    assert narrow_checked(arr, DType.I32) is arr
    assert narrow_checked(np.array([1.5], np.float64), DType.F32).dtype == np.float32
    assert narrow_checked(np.zeros(0, np.int64), DType.I8).dtype == np.int8
    with pytest.raises(DTypeError) as ei:
        narrow_checked(np.array([-1], np.int64), DType.U8)
    assert ei.value.actual == "[-1, -1]" and ei.value.expected == "[0, 255]"


def test_base_memory_info_is_unknown(backend: NumpyBackend) -> None:
    from inferox.core import Backend

    assert Backend.memory_info(backend, "cpu") is None


def test_narrowing_fallback_that_is_itself_unsupported() -> None:
    class IntsOnly(NumpyBackend):
        def supported_dtypes(self, device: Any = None) -> frozenset[DType]:
            return frozenset({DType.I32, DType.I8})

    with pytest.raises(DTypeError) as ei:
        IntsOnly().narrowed_dtype(DType.F16)  # f16 → f32 is the fallback, and f32 is missing too
    assert (ei.value.actual, ei.value.expected) == ("f16", "i32, i8")
