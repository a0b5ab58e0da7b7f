"""TorchBackend: devices, memory, dtypes, transfers, casts, numpy export and error wrapping."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch

from inferox.core import (
    BackendError,
    DeviceError,
    DeviceId,
    DeviceUnavailableError,
    DType,
    DTypeError,
    InvalidInputError,
    MemoryInfo,
    OutOfMemoryError,
)
from inferox.core.tensor import Tensor, TensorBuilder
from inferox.torch import TorchBackend, TorchTensor, device_id_of, torch_device, torch_errors, wrap_torch_error

_PROBE = TorchBackend()
HAS_CUDA = _PROBE.is_device_available("cuda:0")
HAS_MPS = _PROBE.is_device_available("mps")
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device on this machine")
needs_no_cuda = pytest.mark.skipif(HAS_CUDA, reason="checks the error for an absent CUDA device")


# -- identity and devices -------------------------------------------------------------------------
def test_identity(backend: TorchBackend) -> None:
    assert backend.name == "torch"
    assert backend.device_kinds == frozenset({"cpu", "cuda", "mps"})
    assert backend.supports_dlpack
    assert backend.version == torch.__version__
    assert repr(backend) == f"<TorchBackend torch {torch.__version__}>"


def test_devices_list_the_cpu_with_memory(backend: TorchBackend) -> None:
    devices = backend.devices()
    cpu = devices[0]
    assert cpu.id == DeviceId.cpu() and cpu.backend == "torch" and cpu.available
    assert cpu.kind == "cpu" and str(cpu) == "torch:cpu"
    assert isinstance(cpu.memory, MemoryInfo) and cpu.memory.total > 0
    assert cpu.properties["threads"] == torch.get_num_threads()
    kinds = [d.kind for d in devices]
    assert kinds.count("cuda") == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert ("mps" in kinds) == bool(torch.backends.mps.is_available())


def test_default_device_is_first_accelerator_else_cpu(backend: TorchBackend) -> None:
    default = backend.default_device()
    if HAS_CUDA:
        assert default == DeviceId.cuda(0)  # pragma: gpu
    elif HAS_MPS:
        assert default == DeviceId("mps")  # pragma: gpu
    else:
        assert default == DeviceId.cpu()
    assert backend.check_device(None) == default
    assert backend.tensor_builder().device == default


def test_is_device_available(backend: TorchBackend) -> None:
    assert backend.is_device_available("cpu")
    assert backend.is_device_available("cuda:0") == (torch.cuda.is_available() and torch.cuda.device_count() > 0)
    assert not backend.is_device_available(f"cuda:{torch.cuda.device_count()}")
    assert backend.is_device_available("mps") == torch.backends.mps.is_available()
    assert not backend.is_device_available("mps:1")
    assert not backend.is_device_available("tpu:0")


@pytest.mark.parametrize("bad", ["cuda:x", "", "cuda:-1", "cpu:1", "gpu::0", "CUDA 0", "0"])
def test_malformed_device_strings(backend: TorchBackend, bad: str) -> None:
    with pytest.raises(DeviceError) as ei:
        backend.check_device(bad)
    assert ei.value.code == "DEVICE_ERROR"
    assert ei.value.device == bad


@pytest.mark.parametrize("kind", ["tpu:0", "xla:1"])
def test_kind_torch_never_supports(backend: TorchBackend, kind: str) -> None:
    with pytest.raises(DeviceError) as ei:
        backend.tensor_builder(kind)
    assert type(ei.value) is DeviceError and ei.value.code == "DEVICE_ERROR"
    assert ei.value.device == kind and ei.value.backend == "torch"
    with pytest.raises(DeviceError) as ei:
        backend.supported_dtypes(kind)
    assert ei.value.device == kind


def test_unavailable_device(backend: TorchBackend) -> None:
    absent = f"cuda:{torch.cuda.device_count() + 3}"
    for call in (backend.check_device, backend.tensor_builder, backend.memory_info, backend.synchronize):
        with pytest.raises(DeviceUnavailableError) as ei:
            call(absent)
        assert ei.value.code == "DEVICE_UNAVAILABLE"
        assert ei.value.device == absent and ei.value.backend == "torch"
        assert ei.value.http_status == 503


def test_gpu_alias_names_cuda(backend: TorchBackend) -> None:
    # "gpu:0" is JAX's spelling of cuda:0; the torch backend understands it the same way.
    if HAS_CUDA:
        assert backend.check_device("gpu:0") == DeviceId.cuda(0)  # pragma: gpu
    else:
        with pytest.raises(DeviceUnavailableError) as ei:
            backend.check_device("gpu:0")
        assert ei.value.device == "cuda:0"


def test_torch_device_mapping() -> None:
    assert torch_device("cpu") == torch.device("cpu")
    assert torch_device("cuda:1") == torch.device("cuda", 1)
    assert torch_device("gpu") == torch.device("cuda", 0)
    assert torch_device(DeviceId("mps")) == torch.device("mps")
    assert device_id_of(torch.zeros(1)) == DeviceId.cpu()


# -- memory -----------------------------------------------------------------------------------------
def test_memory_info_cpu(backend: TorchBackend) -> None:
    info = backend.memory_info("cpu")
    assert isinstance(info, MemoryInfo)
    assert info.total > 0 and 0 < info.free <= info.total
    assert info.used == info.total - info.free
    assert 0.0 <= info.utilization <= 1.0


@needs_cuda
def test_memory_info_cuda(backend: TorchBackend) -> None:  # pragma: gpu
    info = backend.memory_info("cuda:0")
    assert info is not None and info.total > 0 and info.free <= info.total
    cuda = next(d for d in backend.devices() if d.kind == "cuda")
    assert cuda.name and cuda.memory is not None and "capability" in cuda.properties


def test_synchronize_cpu_is_a_noop(backend: TorchBackend) -> None:
    """On the CPU there is nothing to wait for: it returns at once; a device it cannot wait on is a typed error."""
    t = backend.tensor_builder("cpu").from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert backend.synchronize("cpu") is None and backend.synchronize() is None
    assert t.numpy().tolist() == [[0, 1, 2], [3, 4, 5]]  # the data is there without waiting
    absent = f"cuda:{torch.cuda.device_count()}"  # one past the last CUDA device: never present
    with pytest.raises(DeviceUnavailableError) as ei:
        backend.synchronize(absent)
    assert ei.value.code == "DEVICE_UNAVAILABLE" and ei.value.device == absent
    with pytest.raises(DeviceError) as ei2:
        backend.synchronize("tpu:0")
    assert ei2.value.code == "DEVICE_ERROR" and ei2.value.device == "tpu:0" and "tpu" in str(ei2.value)


# -- dtypes -----------------------------------------------------------------------------------------
def test_supported_dtypes_per_device(backend: TorchBackend) -> None:
    assert backend.supported_dtypes("cpu") == frozenset(DType)
    assert backend.supported_dtypes("cuda:0") == frozenset(DType)  # the device need not be present
    assert backend.supported_dtypes("mps") == frozenset(DType) - {DType.F64}
    assert backend.supported_dtypes(None) == backend.supported_dtypes(backend.default_device())


@pytest.mark.parametrize("dtype", list(DType), ids=lambda d: d.value)
def test_cast_from_f32_to_every_dtype(backend: TorchBackend, dtype: DType) -> None:
    source = backend.tensor_builder("cpu").from_numpy(np.array([0.0, 1.0, 2.0, 100.0], np.float32))
    cast = backend.cast(source, dtype)
    assert isinstance(cast, TorchTensor) and cast.dtype is dtype
    assert np.array_equal(cast.numpy(), np.array([0, 1, 2, 100]).astype(dtype.to_numpy()))
    assert source.astype(dtype.value).dtype is dtype


def test_cast_accepts_names_and_native_tensors(backend: TorchBackend) -> None:
    assert backend.cast(torch.arange(3), "float16").native.dtype == torch.float16
    assert backend.cast(torch.arange(3), torch.float64).dtype is DType.F64
    with pytest.raises(DTypeError) as ei:
        backend.cast(torch.arange(3), "complex128")
    assert ei.value.code == "INVALID_DTYPE" and ei.value.actual == "complex128"


def test_f64_refused_on_mps_by_declaration(backend: TorchBackend) -> None:
    # The check runs before torch is asked: an MPS tensor cannot be f64, so the builder refuses it.
    with pytest.raises(DTypeError) as ei:
        backend._check_dtype_on(DType.F64, DeviceId("mps"))
    assert ei.value.code == "INVALID_DTYPE"
    assert ei.value.actual == "f64" and "f64" not in ei.value.expected


# -- wrap / native / to_numpy ------------------------------------------------------------------------
def test_is_native_and_wrap(backend: TorchBackend) -> None:
    native = torch.ones(2)
    assert backend.is_native(native)
    assert not backend.is_native(np.ones(2))
    wrapped = backend.wrap(native)
    assert wrapped.native is native and backend.wrap(wrapped) is wrapped
    with pytest.raises(InvalidInputError) as ei:
        backend.wrap(np.ones(2))
    assert ei.value.code == "INVALID_INPUT"
    assert ei.value.expected == "torch.Tensor" and ei.value.actual == "ndarray"


def test_to_numpy_shares_memory_and_detaches(backend: TorchBackend) -> None:
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    arr = backend.to_numpy(t)
    assert arr.__array_interface__["data"][0] == t.data_ptr()
    grad = torch.ones(3, requires_grad=True)
    out = backend.to_numpy(grad * 2)
    assert out.tolist() == [2.0, 2.0, 2.0]
    neg = torch.arange(3.0)._neg_view()  # lazily negated view: resolved before export
    assert backend.to_numpy(neg).tolist() == [-0.0, -1.0, -2.0]
    transposed = backend.to_numpy(t.T)
    assert transposed.tolist() == [[0, 3], [1, 4], [2, 5]]


def test_to_numpy_bf16_keeps_bf16(backend: TorchBackend) -> None:
    t = torch.tensor([1.0, -0.5, 256.0], dtype=torch.bfloat16)
    arr = backend.to_numpy(t)
    assert arr.dtype == np.dtype(ml_dtypes.bfloat16)
    assert arr.astype(np.float32).tolist() == [1.0, -0.5, 256.0]
    assert arr.__array_interface__["data"][0] == t.data_ptr()


def test_to_numpy_of_non_tensor(backend: TorchBackend) -> None:
    with pytest.raises(InvalidInputError) as ei:
        backend.to_numpy([1, 2])
    assert ei.value.code == "INVALID_INPUT"
    assert ei.value.actual == "list"


def test_to_numpy_of_a_tensor_numpy_cannot_hold_is_a_backend_error(backend: TorchBackend) -> None:
    sparse = torch.eye(3).to_sparse()
    with pytest.raises(BackendError) as ei:
        backend.to_numpy(sparse)
    assert ei.value.code == "BACKEND_ERROR" and ei.value.backend == "torch"
    assert isinstance(ei.value.__cause__, (RuntimeError, TypeError))


class _HostTensor(Tensor):
    """Another backend's tensor (a real numpy array) behind the core face."""

    backend_name = "host"

    @property
    def backend(self):  # type: ignore[no-untyped-def]
        class _B:
            name = "host"

        return _B()

    @property
    def device(self) -> DeviceId:
        return DeviceId.cpu()

    def numpy(self) -> np.ndarray:
        return self._native  # type: ignore[no-any-return]


def test_foreign_tensor_goes_through_dlpack(backend: TorchBackend) -> None:
    data = np.arange(4, dtype=np.int32)
    foreign = _HostTensor(data)
    moved = backend.to_device(foreign, "cpu")
    assert moved.data_ptr == data.__array_interface__["data"][0]
    assert backend.cast(foreign, "f32").numpy().tolist() == [0.0, 1.0, 2.0, 3.0]
    assert isinstance(backend.tensor_builder("cpu"), TensorBuilder)


def test_as_native(backend: TorchBackend) -> None:
    native = backend.as_native([[1, 2], [3, 4]], dtype=DType.I64, device=DeviceId.cpu())
    assert isinstance(native, torch.Tensor) and native.dtype == torch.int64
    arr = np.ones((2, 2), np.float32)
    shared = backend.as_native(arr, dtype=DType.F32)
    assert shared.data_ptr() == arr.__array_interface__["data"][0]
    widened = backend.as_native(arr, dtype=DType.F64)
    assert widened.dtype == torch.float64


# -- transfers ---------------------------------------------------------------------------------------
def test_transfer_cpu_to_cpu_is_the_same_tensor(backend: TorchBackend) -> None:
    tensor = backend.tensor_builder("cpu").from_numpy(np.arange(3, dtype=np.float32))
    moved = backend.to_device(tensor, DeviceId.cpu())
    assert moved.device == DeviceId.cpu() and moved.data_ptr == tensor.data_ptr
    assert tensor.to("cpu").numpy().tolist() == [0.0, 1.0, 2.0]


@needs_no_cuda
def test_transfer_to_absent_cuda(backend: TorchBackend) -> None:
    tensor = backend.tensor_builder("cpu").zeros((2,))
    with pytest.raises(DeviceUnavailableError) as ei:
        tensor.to("cuda:0")
    assert ei.value.code == "DEVICE_UNAVAILABLE" and ei.value.device == "cuda:0"


@needs_cuda
def test_transfer_cpu_cuda_round_trip(backend: TorchBackend) -> None:  # pragma: gpu
    data = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    on_gpu = backend.tensor_builder("cpu").from_numpy(data).to("cuda:0")
    assert on_gpu.device == DeviceId.cuda(0) and on_gpu.native.is_cuda
    assert np.array_equal(on_gpu.numpy(), data)
    back = on_gpu.to("cpu")
    assert back.device == DeviceId.cpu() and np.array_equal(back.numpy(), data)
    built = backend.tensor_builder("cuda:0").from_numpy(data)
    assert built.device == DeviceId.cuda(0)
    bf16 = backend.cast(built, "bf16")
    assert backend.to_numpy(bf16.native).dtype == np.dtype(ml_dtypes.bfloat16)
    backend.synchronize("cuda:0")


# -- error wrapping -----------------------------------------------------------------------------------
def test_cpu_allocation_failure_is_out_of_memory() -> None:
    with pytest.raises(OutOfMemoryError) as ei, torch_errors(device="cpu"):
        torch.empty(2**60, dtype=torch.uint8)  # a real allocator failure, no memory is touched
    err = ei.value
    assert err.code == "OUT_OF_MEMORY" and err.backend == "torch" and err.http_status == 507
    assert isinstance(err, MemoryError)
    assert type(err.__cause__) is RuntimeError and "allocate" in str(err.__cause__)


@needs_no_cuda
def test_cuda_on_a_cpu_build_is_device_unavailable() -> None:
    with pytest.raises(DeviceUnavailableError) as ei, torch_errors(device="cuda:0"):
        torch.zeros(1).to("cuda")
    err = ei.value
    assert err.code == "DEVICE_UNAVAILABLE" and err.device == "cuda:0" and err.backend == "torch"
    assert err.__cause__ is not None and "CUDA" in str(err.__cause__)


def test_other_torch_errors_are_backend_errors() -> None:
    with pytest.raises(BackendError) as ei, torch_errors(model="m"):
        torch.zeros(2, 3) @ torch.zeros(4, 5)
    err = ei.value
    assert type(err) is BackendError and err.code == "BACKEND_ERROR"
    assert err.backend == "torch" and err.model == "m"
    assert type(err.__cause__) is RuntimeError and "cannot be multiplied" in str(err.__cause__)


def test_torch_out_of_memory_error_class_is_recognised() -> None:
    # torch raises torch.OutOfMemoryError only on accelerators; the class itself is real here.
    cause = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with pytest.raises(OutOfMemoryError) as ei, torch_errors(device="cuda:0", model="big"):
        raise cause
    assert ei.value.code == "OUT_OF_MEMORY" and ei.value.model == "big" and ei.value.backend == "torch"
    assert ei.value.__cause__ is cause and "cuda:0" in str(ei.value)


def test_wrap_torch_error_passes_inferox_errors_through() -> None:
    original = InvalidInputError("x", name="a")
    assert wrap_torch_error(original) is original
    oom = wrap_torch_error(MemoryError("boom"), device="cpu")
    assert isinstance(oom, OutOfMemoryError) and "cpu" in str(oom)
    with pytest.raises(InvalidInputError), torch_errors():
        raise original
