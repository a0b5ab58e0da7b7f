"""JaxTensor and JaxTensorBuilder: construction, dtypes, shape errors and memory sharing by pointer."""

from __future__ import annotations

import array
import math

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from inferox.core import BackendError, DeviceId, DType, DTypeError, InvalidInputError, OutOfMemoryError
from inferox.core.testing import sample_array, to_python_list
from inferox.jax import JaxBackend, JaxTensor, aligned_empty, is_zero_copy_eligible, jax_dtype

from .conftest import aligned_copy

NO_X64 = pytest.mark.skipif(jax.config.jax_enable_x64, reason="checks the default (no 64-bit mode) rule")
SUPPORTED = [DType.BOOL, DType.U8, DType.U16, DType.U32, DType.I8, DType.I16, DType.I32, DType.F16, DType.BF16, DType.F32]
SIXTY_FOUR = [DType.I64, DType.U64, DType.F64]


def ptr(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


# -- creation for every declared dtype ----------------------------------------------------------------
@pytest.mark.parametrize("dtype", SUPPORTED, ids=str)
def test_from_numpy_every_dtype(builder, dtype: DType) -> None:
    expected = sample_array(dtype, (3, 4))
    t = builder.from_numpy(expected)
    assert isinstance(t, JaxTensor) and isinstance(t.native, jax.Array)
    assert t.dtype is dtype and t.shape == (3, 4) and t.ndim == 2 and t.size == 12 and t.nbytes == 12 * dtype.itemsize
    assert t.device == DeviceId.cpu() and t.backend.name == "jax"
    assert t.native.dtype == dtype.to_numpy()
    out = t.numpy()
    assert out.dtype == expected.dtype and np.array_equal(out, expected)


@pytest.mark.parametrize("dtype", SUPPORTED, ids=str)
def test_from_nested_and_flat_lists_every_dtype(builder, dtype: DType) -> None:
    expected = sample_array(dtype, (2, 3))
    nested = builder.from_list(to_python_list(expected), dtype=dtype)
    flat = builder.build_from_vec(to_python_list(expected.reshape(-1)), shape=(2, 3), dtype=dtype)
    for t in (nested, flat):
        assert t.dtype is dtype and t.shape == (2, 3)
        assert np.array_equal(t.numpy(), expected)


@pytest.mark.parametrize("dtype", SUPPORTED, ids=str)
def test_from_buffer_every_dtype(builder, dtype: DType) -> None:
    expected = sample_array(dtype, (2, 3))
    t = builder.from_buffer(bytearray(expected.tobytes()), shape=(2, 3), dtype=dtype)
    assert t.dtype is dtype and np.array_equal(t.numpy(), expected)


def test_from_python_array_buffer(builder) -> None:
    """build_from_slice: any buffer-protocol object, e.g. the stdlib ``array``."""
    buf = array.array("i", [1, -2, 3, -4, 5, -6])
    t = builder.from_buffer(buf, shape=(3, 2), dtype="i32")
    assert t.dtype is DType.I32 and t.numpy().tolist() == [[1, -2], [3, -4], [5, -6]]


@pytest.mark.parametrize("dtype", [d for d in SUPPORTED if d is not DType.BF16], ids=str)
def test_from_dlpack_every_dtype_shares_aligned_memory(builder, dtype: DType) -> None:
    source = aligned_copy(sample_array(dtype, (4, 16)))
    t = builder.from_dlpack(source)
    assert t.dtype is dtype and np.array_equal(t.numpy(), source)
    assert t.data_ptr() == ptr(source), "JAX copied a 64-byte aligned numpy array it could adopt"


def test_bf16_numpy_has_no_dlpack_code_so_it_is_copied(builder) -> None:
    """numpy cannot export bfloat16 through DLPack: from_dlpack says so, from_array copies explicitly."""
    source = aligned_copy(sample_array(DType.BF16, (2, 3)))
    with pytest.raises(BackendError) as ei:
        builder.from_dlpack(source)
    assert ei.value.code == "BACKEND_ERROR" and ei.value.backend == "jax"
    assert isinstance(ei.value.__cause__, BufferError)
    t = builder.from_dlpack_or_copy(source)
    assert t.dtype is DType.BF16 and np.array_equal(t.numpy(), source)
    # from_numpy of the same array takes jax.device_put, which adopts aligned bf16 memory too.
    assert builder.from_numpy(source).data_ptr() == ptr(source)


def test_tensor_face(builder) -> None:
    t = builder.from_list([[1.0, 2.0, 3.0]])
    assert t.shape == (1, 3) and t.dtype is DType.F32
    assert t.device == DeviceId.cpu() and str(t.device) == "cpu"
    assert repr(t) == "JaxTensor(shape=(1, 3), dtype=f32, device=cpu)"
    assert t.block_until_ready() is t
    assert np.array_equal(np.asarray(t), [[1.0, 2.0, 3.0]])
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    assert t.__dlpack_device__() == (1, 0)
    assert np.array_equal(np.from_dlpack(t), [[1.0, 2.0, 3.0]])


@pytest.mark.parametrize("shape", [(7,), (2, 3), (2, 3, 4), (2, 1, 3, 2)], ids=["1d", "2d", "3d", "4d"])
def test_shapes_1d_to_4d(builder, shape: tuple[int, ...]) -> None:
    n = math.prod(shape)
    t = builder.build_from_vec(list(range(n)), shape=shape, dtype="f32")
    assert t.shape == shape and t.ndim == len(shape)
    assert np.array_equal(t.numpy(), np.arange(n, dtype=np.float32).reshape(shape))


# -- constructors --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", SUPPORTED, ids=str)
def test_zeros_ones_full_empty(builder, dtype: DType) -> None:
    np_dtype = dtype.to_numpy()
    for t, expected in [
        (builder.zeros((2, 3), dtype=dtype), np.zeros((2, 3), np_dtype)),
        (builder.ones((3,), dtype=dtype), np.ones((3,), np_dtype)),
        (builder.empty((1, 2), dtype=dtype), np.zeros((1, 2), np_dtype)),
        (builder.full((2, 2), True if dtype is DType.BOOL else 5, dtype=dtype), np.full((2, 2), True if dtype is DType.BOOL else 5, np_dtype)),
    ]:
        assert t.dtype is dtype and t.device == DeviceId.cpu()
        out = t.numpy()
        assert out.dtype == expected.dtype and np.array_equal(out, expected)


def test_full_value_must_fit_the_dtype(builder) -> None:
    with pytest.raises(InvalidInputError) as ei:
        builder.full((2,), 300, dtype="u8")
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == "value"
    assert "255" in str(ei.value.expected) and "300" in str(ei.value.actual)
    with pytest.raises(DTypeError) as ei:
        builder.full((2,), 1.5, dtype="i32")
    assert ei.value.code == "INVALID_DTYPE" and ei.value.name == "value"


@pytest.mark.parametrize("dtype", [DType.F32, DType.F16, DType.BF16], ids=str)
def test_randn_same_numbers_as_numpy(builder, dtype: DType) -> None:
    expected = np.random.default_rng(2024).standard_normal((4, 5)).astype(dtype.to_numpy())
    t = builder.randn((4, 5), seed=2024, dtype=dtype)
    assert t.dtype is dtype and np.array_equal(t.numpy(), expected)


@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0), (2, 0, 5)], ids=["0", "0x3", "3x0", "2x0x5"])
def test_zero_size_shapes(builder, shape: tuple[int, ...]) -> None:
    for t in (builder.zeros(shape), builder.randn(shape, seed=1), builder.from_numpy(np.ones(shape, np.int8)), builder.from_list([], shape=shape)):
        assert t.shape == shape and t.size == 0 and t.nbytes == 0 and t.numpy().shape == shape


def test_large_tensor_scaled_to_just_over_1gib(builder) -> None:
    """Phase 4 ">1GB tensor": built on the device by jnp.full, no host copy of the gigabyte."""
    n = (1 << 28) + 1  # f32: 1 GiB + 4 bytes
    t = builder.full((n,), 2.5)
    try:
        assert t.shape == (n,) and t.nbytes == (1 << 30) + 4
        assert float(t.native[-1]) == 2.5 and float(t.native[0]) == 2.5
    finally:
        t.native.delete()


def test_out_of_memory_is_typed(builder) -> None:
    """A real allocation XLA cannot satisfy (128 TiB) → OutOfMemoryError with JAX's error as the cause."""
    with pytest.raises(OutOfMemoryError) as ei:
        builder.zeros((1 << 45,)).block_until_ready()
    assert ei.value.code == "OUT_OF_MEMORY" and ei.value.backend == "jax"
    assert "RESOURCE_EXHAUSTED" in str(ei.value.__cause__)


# -- shape errors -----------------------------------------------------------------------------------------
def test_size_mismatch_names_both_sizes(builder) -> None:
    with pytest.raises(InvalidInputError) as ei:
        builder.from_list([1, 2, 3, 4, 5], shape=(2, 3), dtype="i32")
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == "data"
    assert ei.value.expected == "6 elements for shape (2, 3)" and ei.value.actual == "5 elements"
    with pytest.raises(InvalidInputError) as ei:
        builder.from_buffer(b"\x00" * 10, shape=(3,), dtype="f32")
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == "buffer"
    assert "12 bytes" in ei.value.expected and ei.value.actual == "10 bytes"


@pytest.mark.parametrize("shape,actual", [((2, -1), -1), ((-4,), -4), (-2, -2)], ids=["2x-1", "-4", "scalar-2"])
def test_negative_dims(builder, shape, actual) -> None:
    for make in (builder.zeros, builder.randn, lambda s: builder.from_list([], shape=s)):
        with pytest.raises(InvalidInputError) as ei:
            make(shape)
        assert ei.value.code == "INVALID_INPUT" and ei.value.name == "shape"
        assert ei.value.actual == actual and ei.value.expected == "non-negative int"


@pytest.mark.parametrize("bad", [2.0, "2", None, False], ids=["float", "str", "none", "bool"])
def test_non_integer_dims(builder, bad) -> None:
    with pytest.raises(InvalidInputError) as ei:
        builder.ones((3, bad))
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == "shape"
    assert ei.value.actual == repr(bad) and ei.value.expected == "non-negative int"
    with pytest.raises(InvalidInputError) as ei:
        aligned_empty((bad,))
    assert ei.value.code == "INVALID_INPUT"


# -- 64-bit dtypes without x64 -----------------------------------------------------------------------------
@NO_X64
@pytest.mark.parametrize("dtype", SIXTY_FOUR, ids=str)
def test_64bit_dtypes_are_refused_not_narrowed(builder, dtype: DType) -> None:
    source = np.arange(6).astype(dtype.to_numpy())
    attempts = [
        lambda: builder.from_numpy(source),
        lambda: builder.from_list([1, 2], dtype=dtype),
        lambda: builder.zeros((2,), dtype=dtype),
        lambda: builder.from_buffer(source.tobytes(), shape=(6,), dtype=dtype),
        lambda: builder.from_dlpack(source),
        lambda: builder.from_array(source),
    ]
    for attempt in attempts:
        with pytest.raises(DTypeError) as ei:
            attempt()
        assert ei.value.code == "INVALID_DTYPE"
        assert ei.value.actual == dtype.value
        assert dtype.value in str(ei.value)


@NO_X64
def test_dlpack_producer_without_dtype_attribute_is_still_checked(builder) -> None:
    """JAX would import an int64 capsule as int32 silently; the builder looks at the producer first."""

    class Producer:
        def __init__(self, a: np.ndarray) -> None:
            self._a = a

        def __dlpack__(self, **kwargs):  # type: ignore[no-untyped-def]
            return self._a.__dlpack__(**kwargs)

        def __dlpack_device__(self):  # type: ignore[no-untyped-def]
            return self._a.__dlpack_device__()

    with pytest.raises(DTypeError) as ei:
        builder.from_dlpack(Producer(np.arange(4, dtype=np.int64)))
    assert ei.value.code == "INVALID_DTYPE" and ei.value.actual == "i64"
    ok = builder.from_dlpack(Producer(aligned_copy(np.arange(4, dtype=np.int32))))
    assert ok.dtype is DType.I32 and ok.numpy().tolist() == [0, 1, 2, 3]


def test_unknown_and_complex_dtypes(builder) -> None:
    with pytest.raises(DTypeError) as ei:
        builder.zeros((2,), dtype="float7")
    assert ei.value.code == "INVALID_DTYPE" and ei.value.actual == "float7"
    with pytest.raises(DTypeError) as ei:
        builder.from_numpy(np.zeros(2, np.complex64))
    assert ei.value.code == "INVALID_DTYPE" and ei.value.actual == "complex64"
    with pytest.raises(DTypeError) as ei:
        builder.randn((2,), dtype="i32")
    assert ei.value.code == "INVALID_DTYPE" and ei.value.actual == "i32"


# -- memory sharing, by pointer ----------------------------------------------------------------------------
def test_from_numpy_shares_aligned_memory(builder) -> None:
    source = aligned_empty((16, 16), "f32")
    source[...] = np.arange(256, dtype=np.float32).reshape(16, 16)
    assert is_zero_copy_eligible(source)
    t = builder.from_numpy(source)
    assert t.data_ptr() == ptr(source)
    back = t.numpy()
    assert ptr(back) == ptr(source), "to_numpy of a CPU jax array copied"
    assert not back.flags.writeable, "JAX arrays are immutable: the numpy view must be read-only"


def test_from_numpy_copies_unaligned_or_strided_memory(builder) -> None:
    raw = aligned_empty((65,), "f32")
    raw[...] = np.arange(65, dtype=np.float32)
    unaligned = raw[1:]  # 4 bytes past a 64-byte boundary
    assert not is_zero_copy_eligible(unaligned)
    t = builder.from_numpy(unaligned)
    assert t.data_ptr() != ptr(unaligned)
    assert np.array_equal(t.numpy(), unaligned)
    strided = aligned_empty((8, 8), "f32").T
    assert not is_zero_copy_eligible(strided)
    assert not is_zero_copy_eligible(aligned_empty((4,), "f32"), "cuda:0")


def test_aligned_empty(builder) -> None:
    for dtype in ("u8", "bf16", "f32", DType.I16):
        a = aligned_empty((3, 5), dtype)
        assert a.shape == (3, 5) and a.dtype == DType.parse(dtype).to_numpy() and ptr(a) % 64 == 0
        assert a.flags.c_contiguous
    assert aligned_empty(0).shape == (0,)
    assert aligned_empty((2,), np.int8, alignment=128).ctypes.data % 128 == 0


def test_jax_to_numpy_dlpack_shares_memory(builder) -> None:
    t = builder.randn((8, 8), seed=3)
    view = np.from_dlpack(t)
    assert ptr(view) == t.data_ptr()
    assert np.array_equal(view, np.random.default_rng(3).standard_normal((8, 8)).astype(np.float32))


def test_bf16_to_numpy_is_ml_dtypes(builder) -> None:
    t = builder.from_list([1.5, -2.0], dtype="bf16")
    out = t.numpy()
    assert out.dtype == np.dtype(ml_dtypes.bfloat16) and out.astype(np.float32).tolist() == [1.5, -2.0]
    assert ptr(out) == t.data_ptr()


# -- from_array dispatch -------------------------------------------------------------------------------------
def test_from_array_dispatch(builder, backend: JaxBackend) -> None:
    native = jnp.arange(6, dtype=jnp.int32).reshape(2, 3)
    assert builder.from_array(native).native is native
    t = builder.from_array(native, dtype="f32")
    assert t.dtype is DType.F32 and t.numpy().tolist() == [[0, 1, 2], [3, 4, 5]]
    assert builder.from_array(backend.wrap(native)).native is native
    assert builder.from_array(7).shape == () and builder.from_array([[1, 2]], dtype="u8").dtype is DType.U8
    assert builder.from_array(np.ones(3, np.float16)).dtype is DType.F16


@pytest.mark.parametrize("dtype", list(DType), ids=[d.value for d in DType])
def test_jax_dtype_is_the_backends_one_mapping(dtype: DType) -> None:
    # Core maps DType to numpy's spelling only; the jax.numpy object is looked up here, in the backend.
    native = jax_dtype(dtype)
    assert native is getattr(jnp, dtype.numpy_name) and jax_dtype(dtype.value) is native
    assert DType.parse(native) is dtype and DType.parse(jnp.dtype(native)) is dtype
    assert jnp.dtype(native).itemsize == dtype.itemsize
    with pytest.raises(DTypeError) as ei:
        jax_dtype("f128")
    assert ei.value.code == "INVALID_DTYPE" and ei.value.actual == "f128"
