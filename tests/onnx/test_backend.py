"""OnnxBackend: devices, dtypes, tensors, transfers and how ONNX Runtime errors become Inferox errors."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from inferox.core import DeviceId, DType, host_memory_info
from inferox.core.errors import (
    BackendError,
    DeviceError,
    DeviceUnavailableError,
    InferoxError,
    InvalidInputError,
    OutOfMemoryError,
)
from inferox.onnx import CPU_PROVIDER, CUDA_PROVIDER, OnnxBackend, OnnxTensor, providers_for, wrap_onnx_error
from inferox.onnx._errors import onnx_errors


def test_identity(backend: OnnxBackend) -> None:
    assert backend.name == "onnx"
    assert backend.version == ort.__version__
    assert backend.available_providers == ort.get_available_providers()
    assert CPU_PROVIDER in backend.available_providers


def test_devices_list_the_cpu_with_memory_and_providers(backend: OnnxBackend) -> None:
    devices = backend.devices()
    assert devices[0].id == DeviceId.cpu() and devices[0].available
    assert devices[0].memory is not None and devices[0].memory.total > 0
    assert devices[0].properties["providers"] == ort.get_available_providers()
    # The CPU build has no CUDA provider: no cuda device is listed and cpu is the default.
    assert [d.id for d in devices] == [DeviceId.cpu()]
    assert backend.default_device() == DeviceId.cpu()


def test_cuda_is_a_declared_kind_but_absent_here(backend: OnnxBackend) -> None:
    assert backend.is_device_available("cpu") and not backend.is_device_available("cuda:0")
    assert not backend.is_device_available("mps")
    with pytest.raises(DeviceUnavailableError) as ei:
        backend.check_device("cuda:0")
    assert ei.value.code == "DEVICE_UNAVAILABLE" and ei.value.device == "cuda:0" and ei.value.backend == "onnx"
    with pytest.raises(DeviceError) as ei2:
        backend.check_device("mps")
    assert ei2.value.code == "DEVICE_ERROR" and ei2.value.device == "mps:0" and "mps" in str(ei2.value)


def test_providers_for_cpu() -> None:
    assert providers_for(DeviceId.cpu()) == [CPU_PROVIDER]
    assert CUDA_PROVIDER == "CUDAExecutionProvider"


def test_memory_info(backend: OnnxBackend) -> None:
    info = backend.memory_info("cpu")
    assert info is not None and 0 < info.free <= info.total
    assert backend.memory_info("cpu").total == host_memory_info().total  # type: ignore[union-attr]  # core's one helper


def test_supported_dtypes_are_all_thirteen(backend: OnnxBackend) -> None:
    assert backend.supported_dtypes() == frozenset(DType)
    assert backend.supported_dtypes("cpu") == frozenset(DType)


def test_wrap_and_is_native(backend: OnnxBackend) -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = backend.wrap(a)
    assert isinstance(t, OnnxTensor) and t.native is a and backend.wrap(t) is t
    assert backend.is_native(a) and not backend.is_native([1, 2])
    with pytest.raises(InvalidInputError) as ei:
        backend.wrap([1, 2])
    assert ei.value.code == "INVALID_INPUT" and ei.value.actual == "list"


def test_to_numpy_is_the_array_itself(backend: OnnxBackend) -> None:
    a = np.ones((2, 2), np.float32)
    assert backend.to_numpy(a) is a
    assert backend.to_numpy(backend.wrap(a)) is a
    assert backend.to_numpy([1, 2]).tolist() == [1, 2]


@pytest.mark.parametrize("dtype", [d for d in DType if d is not DType.BOOL])
def test_cast_from_f32_to_every_dtype(backend: OnnxBackend, dtype: DType) -> None:
    t = backend.tensor_builder("cpu").from_numpy(np.array([1.0, 2.0], np.float32))
    cast = backend.cast(t, dtype)
    assert cast.dtype is dtype and cast.numpy().astype(np.float32).tolist() == [1.0, 2.0]
    assert backend.cast(t.native, dtype.value).dtype is dtype  # a native array and a dtype name


def test_transfer_cpu_to_cpu_is_the_same_tensor(backend: OnnxBackend) -> None:
    t = backend.tensor_builder("cpu").from_numpy(np.zeros(3, np.float32))
    assert backend.to_device(t, "cpu") is t
    with pytest.raises(DeviceUnavailableError) as ei:
        t.to("cuda:0")
    assert ei.value.code == "DEVICE_UNAVAILABLE" and ei.value.device == "cuda:0"


def test_foreign_tensor_moves_through_numpy(backend: OnnxBackend) -> None:
    from inferox.core.testing import sample_array

    class Foreign(OnnxTensor):  # another backend's tensor face: only numpy() is used
        pass

    expected = sample_array(DType.I32)
    moved = backend.to_device(Foreign(expected, backend), "cpu")
    assert moved.numpy().tolist() == expected.tolist()


# -- errors ---------------------------------------------------------------------------------------
def _ort_failure(message: str) -> Exception:
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail

    return Fail(message)


def test_allocation_failure_is_out_of_memory() -> None:
    err = wrap_onnx_error(_ort_failure("Failed to allocate memory for requested buffer of size 123"), device="cpu", model="m")
    assert isinstance(err, OutOfMemoryError) and err.code == "OUT_OF_MEMORY"
    assert err.backend == "onnx" and err.model == "m" and "cpu" in str(err)
    assert isinstance(err.__cause__, Exception) and not isinstance(err.__cause__, InferoxError)


def test_missing_cuda_provider_is_device_unavailable() -> None:
    err = wrap_onnx_error(_ort_failure("CUDAExecutionProvider is not in available provider names"), device="cuda:0")
    assert isinstance(err, DeviceUnavailableError) and err.code == "DEVICE_UNAVAILABLE"
    assert err.device == "cuda:0" and err.backend == "onnx"


def test_other_runtime_errors_are_backend_errors() -> None:
    with pytest.raises(BackendError) as ei, onnx_errors(model="m"):
        raise _ort_failure("Non-zero status code returned while running MatMul node")
    assert ei.value.code == "BACKEND_ERROR" and ei.value.backend == "onnx" and ei.value.model == "m"
    assert type(ei.value.__cause__).__name__ == "Fail"


def test_inferox_errors_pass_through() -> None:
    original = InvalidInputError("bad", name="x")
    assert wrap_onnx_error(original) is original
    with pytest.raises(InvalidInputError) as ei, onnx_errors():
        raise original
    assert ei.value is original
