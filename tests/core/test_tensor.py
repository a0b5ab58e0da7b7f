"""TensorBuilder validation and the Tensor face, on the NumPy reference backend (core does the work)."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest
from inferox_numpy.backend import NumpyBackend

from inferox.core import ArrayTensor as NumpyTensor
from inferox.core import DeviceId, DType, DTypeError, InvalidInputError, Tensor
from inferox.core.tensor import validate_shape


class OtherNumpyBackend(NumpyBackend):
    """A second backend (another name) so tensors can cross backends."""

    name = "numpy-other"


class NoDLPack:
    """Claims DLPack but cannot export (like a bf16 array or a device numpy cannot reach)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __dlpack__(self, *args: Any, **kwargs: Any) -> Any:
        raise BufferError("cannot export")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.array


@pytest.mark.parametrize("dtype", list(DType), ids=lambda d: d.value)
def test_build_from_vec_every_dtype(backend: NumpyBackend, dtype: DType) -> None:
    """The Rust plan's ``build_from_vec``: a flat list plus a shape, for every dtype."""
    builder = backend.tensor_builder()
    values = [0, 1, 0, 1, 1, 0] if dtype is DType.BOOL else [0, 1, 2, 3, 4, 5]
    tensor = builder.build_from_vec(values, shape=(2, 3), dtype=dtype)
    assert tensor.shape == (2, 3)
    assert tensor.dtype is dtype
    assert tensor.device == DeviceId.cpu()
    assert np.array_equal(tensor.numpy(), np.array(values).astype(dtype.to_numpy()).reshape(2, 3))


@pytest.mark.parametrize("shape", [(), (1,), (3,), (2, 3), (2, 3, 4), (1, 1, 1, 1, 5), (0,), (3, 0, 2)])
def test_shape_accessors(backend: NumpyBackend, shape: tuple[int, ...]) -> None:
    tensor = backend.tensor_builder().zeros(shape, dtype=DType.I16)
    assert tensor.shape == shape
    assert tensor.ndim == len(shape)
    assert tensor.size == int(np.prod(shape))
    assert tensor.nbytes == tensor.size * 2
    assert repr(tensor) == f"ArrayTensor(shape={shape}, dtype=i16, device=cpu)"


def test_from_slice_and_buffer(backend: NumpyBackend) -> None:
    builder = backend.tensor_builder("cpu")
    data = np.arange(6, dtype=np.int32)
    from_buf = builder.from_buffer(memoryview(data.tobytes()), shape=(3, 2), dtype="i32")
    assert np.array_equal(from_buf.numpy(), data.reshape(3, 2))
    from_bytearray = builder.from_buffer(bytearray(data.tobytes()), shape=[6], dtype=DType.I32)
    assert np.array_equal(from_bytearray.numpy(), data)
    assert builder.from_buffer(b"", shape=(0, 4), dtype=DType.F64).shape == (0, 4)


def test_from_numpy_with_cast(backend: NumpyBackend) -> None:
    builder = backend.tensor_builder()
    tensor = builder.from_numpy(np.array([1.5, 2.5], np.float64), dtype="f16")
    assert tensor.dtype is DType.F16
    assert np.array_equal(tensor.numpy(), np.array([1.5, 2.5], np.float16))
    bf = builder.from_numpy(np.array([1.0, 3.0], np.float32), dtype=DType.BF16)
    assert bf.numpy().dtype == np.dtype(ml_dtypes.bfloat16)


def test_size_mismatch_names_both_sizes(backend: NumpyBackend) -> None:
    builder = backend.tensor_builder()
    with pytest.raises(InvalidInputError) as ei:
        builder.from_list([1, 2, 3, 4, 5], shape=(2, 3), dtype=DType.I64)
    err = ei.value
    assert err.code == "INVALID_INPUT"
    assert err.name == "data"
    assert err.expected == "6 elements for shape (2, 3)" and err.actual == "5 elements"
    with pytest.raises(InvalidInputError) as ei:
        builder.from_buffer(b"\x00" * 7, shape=(2,), dtype=DType.F32)
    assert (ei.value.name, ei.value.expected, ei.value.actual) == ("buffer", "8 bytes for (2,) f32", "7 bytes")


@pytest.mark.parametrize(
    ("shape", "actual"),
    [((2, -1), -1), ((-5,), -5), (-1, -1), ((1, np.int64(-2)), -2)],
)
def test_negative_dimensions(backend: NumpyBackend, shape: Any, actual: int) -> None:
    with pytest.raises(InvalidInputError) as ei:
        backend.tensor_builder().zeros(shape)
    err = ei.value
    assert err.code == "INVALID_INPUT"
    assert err.name == "shape"
    assert err.expected == "non-negative int" and err.actual == actual


@pytest.mark.parametrize("bad", [2.0, "2", None, True, [2]])
def test_non_integer_dimensions(backend: NumpyBackend, bad: Any) -> None:
    with pytest.raises(InvalidInputError) as ei:
        backend.tensor_builder().ones((3, bad))
    err = ei.value
    assert err.code == "INVALID_INPUT"
    assert (err.name, err.expected, err.actual) == ("shape", "non-negative int", repr(bad))


@pytest.mark.parametrize("bad", [3.0, "2x3", None, {1: 2}])
def test_shape_that_is_not_a_sequence(bad: Any) -> None:
    with pytest.raises(InvalidInputError) as ei:
        validate_shape(bad)
    assert ei.value.code == "INVALID_INPUT"
    assert ei.value.name == "shape"


def test_validate_shape_accepts_ints_and_arrays() -> None:
    assert validate_shape(4) == (4,)
    assert validate_shape(np.int32(0)) == (0,)
    assert validate_shape(np.array([2, 3])) == (2, 3)
    assert validate_shape([]) == ()
    assert all(type(d) is int for d in validate_shape((np.int64(2), np.uint8(3))))


def test_constructors(backend: NumpyBackend) -> None:
    builder = backend.tensor_builder()
    assert np.array_equal(builder.full((2, 2), 3, dtype="u8").numpy(), np.full((2, 2), 3, np.uint8))
    assert np.array_equal(builder.full((2,), True, dtype=DType.BOOL).numpy(), np.array([True, True]))
    assert builder.zeros(3).shape == (3,)
    assert builder.ones([2, 1]).dtype is DType.F32
    assert np.array_equal(builder.empty((0, 2)).numpy(), np.zeros((0, 2), np.float32))
    with pytest.raises(InvalidInputError) as ei:
        builder.full((2,), 300, dtype=DType.U8)
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == "value" and "255" in ei.value.expected
    with pytest.raises(DTypeError) as ei2:
        builder.full((2,), 0.5, dtype=DType.I32)
    assert ei2.value.code == "INVALID_DTYPE" and ei2.value.name == "value"


def test_randn_is_reproducible_and_matches_numpy(backend: NumpyBackend) -> None:
    builder = backend.tensor_builder()
    for dtype in (DType.F16, DType.BF16, DType.F32, DType.F64):
        expected = np.random.default_rng(5).standard_normal((4, 2)).astype(dtype.to_numpy())
        got = builder.randn((4, 2), seed=5, dtype=dtype).numpy()
        assert got.dtype == expected.dtype and np.array_equal(got, expected)
    unseeded = builder.randn((100,))
    assert unseeded.shape == (100,) and float(np.std(unseeded.numpy())) > 0.5
    with pytest.raises(DTypeError) as ei:
        builder.randn((2,), dtype=DType.BOOL)
    assert (ei.value.code, ei.value.name, ei.value.actual) == ("INVALID_DTYPE", "dtype", "bool")


def test_unsupported_dtype_on_a_restricted_backend(backend: NumpyBackend) -> None:
    class NoF64(NumpyBackend):
        def supported_dtypes(self, device: Any = None) -> frozenset[DType]:
            return frozenset(DType) - {DType.F64, DType.I64}

    builder = NoF64().tensor_builder()
    for call in (
        lambda: builder.zeros((1,), dtype=DType.F64),
        lambda: builder.from_numpy(np.zeros(2, np.int64)),
        lambda: builder.from_list([1, 2], dtype="i64"),
        lambda: builder.from_buffer(b"\x00" * 8, shape=(1,), dtype=DType.F64),
        lambda: builder.randn((1,), dtype=DType.F64),
        lambda: builder.from_dlpack(np.zeros(1, np.float64)),
        lambda: builder.from_array(builder.zeros((1,)), dtype=DType.F64),
    ):
        with pytest.raises(DTypeError) as ei:
            call()
        assert ei.value.code == "INVALID_DTYPE"
        assert ei.value.actual in ("f64", "i64")
        assert "f32" in ei.value.expected and "f64" not in ei.value.expected.split(", ")


def test_from_numpy_rejects_non_arrays(backend: NumpyBackend) -> None:
    with pytest.raises(InvalidInputError) as ei:
        backend.tensor_builder().from_numpy((1, 2))  # type: ignore[arg-type]
    assert (ei.value.code, ei.value.expected, ei.value.actual) == ("INVALID_INPUT", "numpy.ndarray", "tuple")


def test_from_dlpack(backend: NumpyBackend) -> None:
    builder = backend.tensor_builder()
    source = np.arange(4, dtype=np.int64)
    tensor = builder.from_dlpack(source)
    assert np.shares_memory(tensor.numpy(), source)
    with pytest.raises(InvalidInputError) as ei:
        builder.from_dlpack(object())
    assert (ei.value.code, ei.value.actual) == ("INVALID_INPUT", "object")


def test_from_dlpack_or_copy_falls_back_to_a_host_copy(backend: NumpyBackend) -> None:
    builder = backend.tensor_builder()
    bf16 = np.array([1.0, 2.0], ml_dtypes.bfloat16)  # numpy cannot export bf16 through DLPack
    tensor = builder.from_dlpack_or_copy(bf16)
    assert tensor.dtype is DType.BF16 and np.array_equal(tensor.numpy(), bf16)
    copied = builder.from_dlpack_or_copy(NoDLPack(np.array([3, 4], np.int16)))
    assert copied.dtype is DType.I16 and np.array_equal(copied.numpy(), [3, 4])
    with pytest.raises(InvalidInputError) as ei:  # validation errors are not swallowed by the fallback
        builder.from_dlpack_or_copy(object())
    assert ei.value.code == "INVALID_INPUT"


def test_from_array_every_kind_of_input(backend: NumpyBackend) -> None:
    builder = backend.tensor_builder()
    arr = np.array([[1.0, 2.0]], np.float32)
    own = builder.from_numpy(arr)
    assert builder.from_array(own) is own
    assert np.array_equal(builder.from_array(arr).numpy(), arr)
    assert np.array_equal(builder.from_array(arr, dtype="f64").numpy(), arr.astype(np.float64))
    assert np.array_equal(builder.from_array([[1, 2]]).numpy(), arr)  # lists default to f32
    assert builder.from_array(7, dtype=DType.I8).numpy().dtype == np.int8
    assert builder.from_array(own.native, dtype=DType.F16).dtype is DType.F16
    # A tensor of another backend crosses over through DLPack.
    other = OtherNumpyBackend().tensor_builder().from_numpy(np.array([5, 6], np.uint16))
    crossed = builder.from_array(other)
    assert crossed.backend is backend and crossed.dtype is DType.U16 and np.array_equal(crossed.numpy(), [5, 6])
    # Any other DLPack producer.
    producer = NoDLPack(np.array([1.0], np.float64))
    assert builder.from_array(producer).dtype is DType.F64


def test_tensor_face(backend: NumpyBackend) -> None:
    tensor = backend.tensor_builder().from_numpy(np.array([[1, 2, 3]], np.int32))
    assert isinstance(tensor, Tensor) and isinstance(tensor, NumpyTensor)
    assert tensor.backend is backend and tensor.backend_name == "numpy"
    assert tensor.native is tensor.numpy()
    assert np.array_equal(np.asarray(tensor), [[1, 2, 3]])
    assert np.asarray(tensor, dtype=np.float64).dtype == np.float64
    assert tensor.astype("f32").dtype is DType.F32
    assert tensor.to("cpu").device == DeviceId.cpu()
    assert tensor.__dlpack_device__() == (1, 0)  # kDLCPU
    assert np.array_equal(np.from_dlpack(tensor), [[1, 2, 3]])


class PlacedTensor(NumpyTensor):
    """A numpy tensor that says which device it is on (numpy arrays only live on the host)."""

    __slots__ = ("_device",)

    def __init__(self, native: np.ndarray, backend: NumpyBackend, device: DeviceId) -> None:
        super().__init__(native, backend)
        self._device = device

    @property
    def device(self) -> DeviceId:
        return self._device


class TwoDevices(NumpyBackend):
    """Host memory presented as two devices, so that from_array's device move is exercised."""

    name = "numpy-two"
    device_kinds = frozenset({"cpu", "npu"})

    def devices(self) -> list[Any]:
        from inferox.core import Device

        return [*super().devices(), Device(DeviceId("npu", 0), self.name)]

    def is_native(self, obj: Any) -> bool:
        return False  # numpy arrays are foreign here: from_array must take its numpy path

    def to_device(self, tensor: Tensor, device: DeviceId) -> PlacedTensor:
        return PlacedTensor(tensor.numpy(), self, self.check_device(device))


def test_from_array_moves_tensors_to_the_builders_device() -> None:
    backend = TwoDevices()
    on_cpu = backend.tensor_builder("cpu").from_numpy(np.array([1, 2], np.int8))
    assert on_cpu.device == DeviceId.cpu()
    moved = backend.tensor_builder("npu:0").from_array(on_cpu)
    assert moved.device == DeviceId("npu", 0) and np.array_equal(moved.numpy(), [1, 2])
    assert backend.tensor_builder("npu:0").from_array(np.zeros(2, np.float32)).dtype is DType.F32
