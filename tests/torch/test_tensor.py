"""Tensor creation on the torch backend: every declared dtype, every constructor, memory sharing."""

from __future__ import annotations

import math
import warnings

import ml_dtypes
import numpy as np
import pytest
import torch

from inferox.core import DeviceId, DType, DTypeError, InvalidInputError, Tensor
from inferox.torch import TorchBackend, TorchTensor, TorchTensorBuilder, numpy_to_torch, torch_dtype

ALL_DTYPES = list(DType)


def sample(dtype: DType, shape: tuple[int, ...] = (2, 3)) -> np.ndarray:
    """Values that use each dtype's range (extremes included) so a lossy path would show."""
    n = math.prod(shape)
    np_dtype = dtype.to_numpy()
    if dtype is DType.BOOL:
        values: list[object] = [i % 3 == 0 for i in range(n)]
    elif dtype.is_int:
        info = np.iinfo(np_dtype)
        values = [int(info.min), int(info.max), 0, 1, int(info.max) // 5, 9][:n]
    else:
        fmax = float(ml_dtypes.finfo(np_dtype).max)
        values = [-2.5, 0.0, 0.375, fmax, -fmax, 1.0][:n]
    values += [0] * (n - len(values))
    return np.array(values, dtype=np_dtype).reshape(shape)


def ptr(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])


def test_backend_declares_all_thirteen_dtypes_on_cpu(backend: TorchBackend) -> None:
    assert backend.supported_dtypes("cpu") == frozenset(DType)
    assert len(backend.supported_dtypes("cpu")) == 13


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: d.value)
def test_from_numpy_every_dtype_shares_memory(cpu_builder: TorchTensorBuilder, dtype: DType) -> None:
    source = sample(dtype)
    tensor = cpu_builder.from_numpy(source)
    assert isinstance(tensor, TorchTensor) and isinstance(tensor.native, torch.Tensor)
    assert tensor.dtype is dtype
    assert tensor.native.dtype == torch_dtype(dtype)
    assert tensor.shape == (2, 3) and tensor.ndim == 2 and tensor.size == 6
    assert tensor.nbytes == 6 * dtype.itemsize
    assert tensor.device == DeviceId.cpu()
    # Same memory, checked by address (bf16 goes through an int16 view of the same bits).
    assert tensor.data_ptr == ptr(source)
    back = tensor.numpy()
    assert back.dtype == source.dtype
    assert np.array_equal(back, source)
    assert ptr(back) == ptr(source)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: d.value)
def test_from_list_nested_and_flat_every_dtype(cpu_builder: TorchTensorBuilder, dtype: DType) -> None:
    expected = sample(dtype)
    as_lists = expected.tolist() if dtype.is_int or dtype.is_bool else expected.astype(np.float64).tolist()
    nested = cpu_builder.from_list(as_lists, dtype=dtype)
    assert nested.dtype is dtype and np.array_equal(nested.numpy(), expected)
    flat = np.asarray(as_lists, dtype=object).reshape(-1).tolist()
    built = cpu_builder.build_from_vec(flat, shape=(2, 3), dtype=dtype)
    assert built.shape == (2, 3) and np.array_equal(built.numpy(), expected)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: d.value)
def test_from_buffer_every_dtype(cpu_builder: TorchTensorBuilder, dtype: DType) -> None:
    expected = sample(dtype)
    raw = bytearray(expected.tobytes())  # writable buffer: shared, not copied
    tensor = cpu_builder.from_buffer(raw, shape=(2, 3), dtype=dtype)
    assert tensor.dtype is dtype and np.array_equal(tensor.numpy(), expected)
    tensor.native.view(torch.uint8)[0] ^= 0xFF  # write through the tensor...
    assert raw[0] == expected.tobytes()[0] ^ 0xFF  # ...and the buffer sees it: the same memory
    # bytes are read-only: the builder copies them rather than alias read-only memory.
    frozen = bytes(expected.tobytes())
    copy = cpu_builder.from_buffer(frozen, shape=(2, 3), dtype=dtype)
    assert np.array_equal(copy.numpy(), expected)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: d.value)
def test_from_dlpack_every_dtype(cpu_builder: TorchTensorBuilder, dtype: DType) -> None:
    expected = sample(dtype)
    producer = torch.from_numpy(expected.view(np.int16)).view(torch.bfloat16) if dtype is DType.BF16 else torch.from_numpy(expected)
    tensor = cpu_builder.from_dlpack(producer)
    assert tensor.dtype is dtype
    assert tensor.data_ptr == producer.data_ptr() == ptr(expected)
    assert np.array_equal(tensor.numpy(), expected)
    if dtype is not DType.BF16:  # numpy has no DLPack bf16; that path is to_numpy's int16 view
        from_np = cpu_builder.from_dlpack(expected)
        assert from_np.data_ptr == ptr(expected)
        assert np.from_dlpack(tensor).__array_interface__["data"][0] == ptr(expected)


def test_bf16_numpy_round_trip_is_explicit_view(cpu_builder: TorchTensorBuilder, backend: TorchBackend) -> None:
    source = np.array([1.5, -2.0, 3.140625], dtype=ml_dtypes.bfloat16)
    tensor = cpu_builder.from_numpy(source)
    assert tensor.native.dtype == torch.bfloat16
    assert tensor.data_ptr == ptr(source)
    out = backend.to_numpy(tensor.native)
    # Never a silent float32 upcast: bf16 comes back as ml_dtypes.bfloat16, same bits, same memory.
    assert out.dtype == np.dtype(ml_dtypes.bfloat16)
    assert ptr(out) == ptr(source)
    assert out.view(np.int16).tolist() == source.view(np.int16).tolist()
    # Asking for f32 is an explicit cast.
    assert tensor.astype("f32").numpy().dtype == np.float32


def test_read_only_array_is_copied_without_warning(cpu_builder: TorchTensorBuilder) -> None:
    source = np.arange(6, dtype=np.float32)
    source.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = cpu_builder.from_numpy(source)
    assert tensor.data_ptr != ptr(source)
    assert np.array_equal(tensor.numpy(), source)
    tensor.native.add_(1)  # the copy is writable and the original is untouched
    assert source.tolist() == [0, 1, 2, 3, 4, 5]


def test_negative_strides_and_byte_order_are_copied(cpu_builder: TorchTensorBuilder) -> None:
    base = np.arange(6, dtype=np.int32)
    reversed_ = base[::-1]
    tensor = cpu_builder.from_numpy(reversed_)
    assert tensor.numpy().tolist() == [5, 4, 3, 2, 1, 0]
    big_endian = np.arange(4, dtype=">f4")
    tensor = cpu_builder.from_numpy(big_endian)
    assert tensor.dtype is DType.F32 and tensor.numpy().tolist() == [0.0, 1.0, 2.0, 3.0]
    # Positive non-contiguous strides are shared, not copied.
    strided = np.arange(12, dtype=np.float64)[::2]
    shared = cpu_builder.from_numpy(strided)
    assert shared.data_ptr == ptr(strided)


def test_numpy_to_torch_helper_shares_memory() -> None:
    a = np.arange(5, dtype=np.int64)
    t = numpy_to_torch(a)
    t[0] = 42
    assert a[0] == 42


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: d.value)
def test_zeros_ones_full_empty_every_dtype(cpu_builder: TorchTensorBuilder, dtype: DType) -> None:
    np_dtype = dtype.to_numpy()
    zeros = cpu_builder.zeros((2, 3), dtype=dtype)
    assert zeros.dtype is dtype and np.array_equal(zeros.numpy(), np.zeros((2, 3), np_dtype))
    ones = cpu_builder.ones((4,), dtype=dtype)
    assert np.array_equal(ones.numpy(), np.ones(4, np_dtype))
    value = True if dtype is DType.BOOL else 5
    full = cpu_builder.full((1, 2), value, dtype=dtype)
    assert np.array_equal(full.numpy(), np.full((1, 2), value, np_dtype))
    empty = cpu_builder.empty((3,), dtype=dtype)
    assert empty.shape == (3,) and np.array_equal(empty.numpy(), np.zeros(3, np_dtype))


@pytest.mark.parametrize("dtype", [DType.F16, DType.BF16, DType.F32, DType.F64], ids=lambda d: d.value)
def test_randn_matches_numpy_default_rng(cpu_builder: TorchTensorBuilder, dtype: DType) -> None:
    tensor = cpu_builder.randn((3, 4), seed=2024, dtype=dtype)
    expected = np.random.default_rng(2024).standard_normal((3, 4)).astype(dtype.to_numpy())
    assert tensor.dtype is dtype
    assert np.array_equal(tensor.numpy(), expected)
    other = cpu_builder.randn((3, 4), seed=2025, dtype=dtype)
    assert not np.array_equal(other.numpy(), expected)


def test_randn_needs_float_dtype(cpu_builder: TorchTensorBuilder) -> None:
    with pytest.raises(DTypeError) as ei:
        cpu_builder.randn((2,), seed=0, dtype="i32")
    assert ei.value.code == "INVALID_DTYPE"
    assert ei.value.name == "dtype" and ei.value.actual == "i32"


@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0, 4), ()])
def test_zero_size_and_scalar_shapes(cpu_builder: TorchTensorBuilder, shape: tuple[int, ...]) -> None:
    zeros = cpu_builder.zeros(shape, dtype="f32")
    assert zeros.shape == shape and tuple(zeros.native.shape) == shape
    assert zeros.size == math.prod(shape) and zeros.numpy().shape == shape
    from_np = cpu_builder.from_numpy(np.zeros(shape, np.int64))
    assert from_np.shape == shape
    assert cpu_builder.from_list([], shape=(0, 2), dtype="i32").shape == (0, 2)


def test_size_mismatch_names_expected_and_actual(cpu_builder: TorchTensorBuilder) -> None:
    with pytest.raises(InvalidInputError) as ei:
        cpu_builder.from_list([1, 2, 3, 4, 5], shape=(2, 3), dtype="i64")
    assert ei.value.code == "INVALID_INPUT"
    assert ei.value.name == "data"
    assert ei.value.expected == "6 elements for shape (2, 3)" and ei.value.actual == "5 elements"
    with pytest.raises(InvalidInputError) as ei:
        cpu_builder.from_buffer(b"\x00" * 10, shape=(3,), dtype="f32")
    assert ei.value.code == "INVALID_INPUT"
    assert ei.value.name == "buffer"
    assert ei.value.expected == "12 bytes for (3,) f32" and ei.value.actual == "10 bytes"


@pytest.mark.parametrize(("shape", "actual"), [((2, -1), -1), ((-4,), -4), (-2, -2)])
def test_negative_dimensions(cpu_builder: TorchTensorBuilder, shape: object, actual: int) -> None:
    with pytest.raises(InvalidInputError) as ei:
        cpu_builder.zeros(shape)  # type: ignore[arg-type]
    assert ei.value.code == "INVALID_INPUT"
    assert ei.value.name == "shape"
    assert ei.value.expected == "non-negative int" and ei.value.actual == actual


@pytest.mark.parametrize("dim", [1.5, "2", None, False, 2.0])
def test_non_integer_dimensions(cpu_builder: TorchTensorBuilder, dim: object) -> None:
    with pytest.raises(InvalidInputError) as ei:
        cpu_builder.ones((3, dim))  # type: ignore[arg-type]
    assert ei.value.code == "INVALID_INPUT"
    assert ei.value.name == "shape"
    assert ei.value.expected == "non-negative int" and ei.value.actual == repr(dim)


def test_shape_that_is_not_a_sequence(cpu_builder: TorchTensorBuilder) -> None:
    with pytest.raises(InvalidInputError) as ei:
        cpu_builder.zeros({"a": 1}.keys())  # type: ignore[arg-type]
    assert ei.value.code == "INVALID_INPUT"
    assert ei.value.actual == "dict_keys"


def test_from_dlpack_rejects_non_producers(cpu_builder: TorchTensorBuilder) -> None:
    with pytest.raises(InvalidInputError) as ei:
        cpu_builder.from_dlpack((1, 2))
    assert ei.value.code == "INVALID_INPUT"
    assert ei.value.expected == "an object with __dlpack__" and ei.value.actual == "tuple"


def test_unsupported_numpy_dtype(cpu_builder: TorchTensorBuilder) -> None:
    with pytest.raises(DTypeError) as ei:
        cpu_builder.from_numpy(np.array(["a", "b"]))
    assert ei.value.code == "INVALID_DTYPE"
    assert ei.value.actual == "<U1"


def test_from_array_accepts_every_array_like(cpu_builder: TorchTensorBuilder) -> None:
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    native = torch.from_numpy(data)
    assert cpu_builder.from_array(native).data_ptr == ptr(data)  # a native tensor is wrapped, not copied
    wrapped = cpu_builder.from_array(data)
    assert cpu_builder.from_array(wrapped) is wrapped
    assert cpu_builder.from_array(data, dtype="f64").dtype is DType.F64
    assert cpu_builder.from_array([[1, 2], [3, 4]], dtype="i32").numpy().tolist() == [[1, 2], [3, 4]]
    assert cpu_builder.from_array(native, dtype="i64").numpy().tolist() == [[0, 1, 2], [3, 4, 5]]


def test_torch_tensor_face(cpu_builder: TorchTensorBuilder, backend: TorchBackend) -> None:
    tensor = cpu_builder.from_list([[1.0, 2.0]], dtype="f32")
    assert isinstance(tensor, Tensor)
    assert tensor.backend is backend and tensor.backend_name == "torch"
    assert repr(tensor) == "TorchTensor(shape=(1, 2), dtype=f32, device=cpu)"
    assert tensor.__dlpack_device__() == (1, 0)  # kDLCPU
    assert np.asarray(tensor).tolist() == [[1.0, 2.0]]
    assert np.asarray(tensor, dtype=np.int32).dtype == np.int32
    moved = tensor.to("cpu")
    assert moved.device == DeviceId.cpu() and moved.data_ptr == tensor.data_ptr


def test_unsupported_torch_dtype_is_a_dtype_error(backend: TorchBackend) -> None:
    tensor = backend.wrap(torch.zeros(2, dtype=torch.complex64))
    with pytest.raises(DTypeError) as ei:
        _ = tensor.dtype
    assert ei.value.code == "INVALID_DTYPE"
    assert ei.value.actual == "torch.complex64"


def test_dlpack_export_of_a_grad_tensor_detaches(backend: TorchBackend) -> None:
    x = torch.arange(4.0).requires_grad_(True)
    with pytest.raises(BufferError):
        np.from_dlpack(x)  # torch itself refuses
    exported = np.from_dlpack(backend.wrap(x))  # the Tensor face detaches first: same memory
    assert exported.__array_interface__["data"][0] == x.data_ptr()
    assert exported.tolist() == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize("dtype", list(DType), ids=[d.value for d in DType])
def test_torch_dtype_is_the_backends_one_mapping(dtype: DType) -> None:
    # Core maps DType to numpy's spelling only; the torch object is looked up here, in the backend.
    native = torch_dtype(dtype)
    assert isinstance(native, torch.dtype)
    assert torch_dtype(dtype.value) is native and DType.parse(native) is dtype
    assert torch.zeros(1, dtype=native).element_size() == dtype.itemsize
    with pytest.raises(DTypeError) as ei:
        torch_dtype("f128")
    assert ei.value.code == "INVALID_DTYPE" and ei.value.actual == "f128"
