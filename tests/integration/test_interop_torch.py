"""Zero-copy exchange torch ↔ numpy ↔ jax, checked by pointer, and the explicit conversions where a
framework cannot share (bf16 into numpy's DLPack, 64-bit types into JAX without x64).

Pointers: ``tensor.data_ptr()`` (torch), ``array.__array_interface__['data'][0]`` (numpy),
``array.unsafe_buffer_pointer()`` (jax).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from inferox.core import DType, DTypeError  # noqa: E402
from inferox.core.plugins import get_registry, reset_registry  # noqa: E402
from inferox.jax import jax_dtype  # noqa: E402
from inferox.torch import TorchBackend, TorchTensor, torch_dtype  # noqa: E402

# Dtypes JAX holds without 64-bit mode, with a torch tensor of each.
_JAX32 = [DType.BOOL, DType.U8, DType.U16, DType.U32, DType.I8, DType.I16, DType.I32, DType.F16, DType.BF16, DType.F32]
_X64 = bool(jax.config.jax_enable_x64)
needs_no_x64 = pytest.mark.skipif(_X64, reason="checks the narrowing JAX does without 64-bit mode")


def np_ptr(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


def torch_sample(dtype: DType) -> torch.Tensor:
    values = torch.arange(24).reshape(4, 6)  # torch's allocator aligns to 64 bytes: jax can adopt it
    return (values % 2 == 0) if dtype is DType.BOOL else values.to(torch_dtype(dtype))


@pytest.fixture
def tb() -> TorchBackend:
    return TorchBackend()


@pytest.fixture
def jax_backend():  # type: ignore[no-untyped-def]
    reset_registry()
    reg = get_registry()
    if "jax" not in reg.backend_names():
        pytest.skip("no jax backend plugin installed")
    yield reg.get_backend("jax")
    reset_registry()


# -- torch ↔ numpy --------------------------------------------------------------------------------
def test_numpy_torch_numpy_is_one_buffer(tb: TorchBackend) -> None:
    source = np.arange(12, dtype=np.float64).reshape(3, 4)
    tensor = tb.tensor_builder("cpu").from_numpy(source)
    assert tensor.data_ptr == np_ptr(source)
    back = tensor.numpy()
    assert np_ptr(back) == np_ptr(source)
    via_dlpack = np.from_dlpack(tensor)
    assert np_ptr(via_dlpack) == np_ptr(source)
    imported = tb.tensor_builder("cpu").from_dlpack(source)
    assert imported.data_ptr == np_ptr(source)


def test_bf16_into_numpy_is_the_explicit_view(tb: TorchBackend) -> None:
    t = torch.tensor([0.5, -3.0, 1024.0], dtype=torch.bfloat16)
    # numpy's DLPack importer has no bfloat16: the implicit route fails loudly, never upcasts...
    with pytest.raises((BufferError, TypeError, RuntimeError)):
        np.from_dlpack(t)
    # ...and the documented route gives ml_dtypes.bfloat16 over the same bits.
    arr = tb.to_numpy(t)
    assert arr.dtype == np.dtype(ml_dtypes.bfloat16)
    assert np_ptr(arr) == t.data_ptr()
    assert arr.astype(np.float32).tolist() == [0.5, -3.0, 1024.0]


# -- torch ↔ jax (frameworks' own DLPack) -----------------------------------------------------------
@pytest.mark.parametrize("dtype", _JAX32, ids=lambda d: d.value)
def test_torch_to_jax_shares_memory(dtype: DType) -> None:
    t = torch_sample(dtype)
    j = jnp.from_dlpack(t)
    assert str(j.dtype) == dtype.numpy_name
    assert j.unsafe_buffer_pointer() == t.data_ptr()
    assert np.array_equal(np.asarray(j).astype(np.float64), t.to(torch.float64).numpy())


@pytest.mark.parametrize("dtype", _JAX32, ids=lambda d: d.value)
def test_jax_to_torch_shares_memory(tb: TorchBackend, dtype: DType) -> None:
    j = jnp.arange(24).reshape(4, 6).astype(jax_dtype(dtype))
    tensor = tb.tensor_builder("cpu").from_dlpack(j)
    assert isinstance(tensor, TorchTensor) and tensor.dtype is dtype
    assert tensor.data_ptr == j.unsafe_buffer_pointer()
    # and on to numpy (bf16 through the explicit view), still one buffer
    assert np_ptr(tensor.numpy()) == j.unsafe_buffer_pointer()


def test_torch_jax_torch_round_trip_is_one_buffer(tb: TorchBackend) -> None:
    t = torch.randn(8, 8)
    back = tb.tensor_builder("cpu").from_dlpack(jnp.from_dlpack(t))
    assert back.data_ptr == t.data_ptr()
    assert torch.equal(back.native, t)


# -- through the backends -----------------------------------------------------------------------------
def test_backends_exchange_without_copies(tb: TorchBackend, jax_backend) -> None:  # type: ignore[no-untyped-def]
    # A torch-allocated tensor (64-byte aligned, which XLA needs to adopt a buffer) crosses both ways.
    t = tb.wrap(torch.randn(16, 16))
    as_jax = jax_backend.tensor_builder("cpu").from_array(t)
    assert as_jax.backend.name == "jax"
    assert as_jax.native.unsafe_buffer_pointer() == t.data_ptr
    back = tb.tensor_builder("cpu").from_array(as_jax)
    assert back.data_ptr == t.data_ptr
    assert np.array_equal(np.asarray(as_jax.native), t.numpy())


def test_seeded_randn_is_the_same_on_both_backends(tb: TorchBackend, jax_backend) -> None:  # type: ignore[no-untyped-def]
    # Drawn in core with numpy's Generator, so torch and jax hold the same numbers.
    t = tb.tensor_builder("cpu").randn((4, 4), seed=11)
    j = jax_backend.tensor_builder("cpu").randn((4, 4), seed=11)
    expected = np.random.default_rng(11).standard_normal((4, 4)).astype(np.float32)
    assert np.array_equal(t.numpy(), expected) and np.array_equal(j.numpy(), expected)
    # Built from a small numpy array, the torch tensor shares numpy's buffer, which may be only
    # 16-byte aligned: the jax builder then copies (see inferox.jax.tensor), values unchanged.
    converted = jax_backend.tensor_builder("cpu").from_array(t)
    assert np.array_equal(converted.numpy(), expected)


@needs_no_x64
def test_i64_into_jax_without_x64_is_refused_then_narrowed_explicitly(tb: TorchBackend, jax_backend) -> None:  # type: ignore[no-untyped-def]
    ids = torch.tensor([[101, 2023, 102]], dtype=torch.int64)
    # JAX's own DLPack import would silently make this int32; the jax builder refuses instead.
    with pytest.raises(DTypeError) as ei:
        jax_backend.tensor_builder("cpu").from_array(tb.wrap(ids))
    assert ei.value.code == "INVALID_DTYPE" and ei.value.actual == "i64"
    # The explicit, range-checked narrowing the engine uses for token ids:
    narrowed = jax_backend.as_native(ids.numpy(), dtype=DType.I64)
    assert str(narrowed.dtype) == "int32" and np.asarray(narrowed).tolist() == [[101, 2023, 102]]
    too_big = torch.tensor([2**40], dtype=torch.int64)
    with pytest.raises(DTypeError) as ei:
        jax_backend.as_native(too_big.numpy(), dtype=DType.I64)
    assert ei.value.code == "INVALID_DTYPE"
    assert str(2**40) in str(ei.value.actual) and str(2**31 - 1) in str(ei.value.expected)


@needs_no_x64
def test_f64_into_jax_without_x64_is_refused(tb: TorchBackend, jax_backend) -> None:  # type: ignore[no-untyped-def]
    values = torch.tensor([0.1, 0.2], dtype=torch.float64)
    with pytest.raises(DTypeError) as ei:
        jax_backend.tensor_builder("cpu").from_array(tb.wrap(values))
    assert ei.value.code == "INVALID_DTYPE" and ei.value.actual == "f64"


def test_jax_64bit_dtype_into_torch_keeps_its_width(tb: TorchBackend) -> None:
    # Torch has every width, so what JAX holds arrives unchanged (here int32, JAX's default int).
    j = jnp.asarray([1, 2, 3])
    tensor = tb.tensor_builder("cpu").from_dlpack(j)
    assert tensor.dtype is DType.parse(str(j.dtype))
    assert tensor.data_ptr == j.unsafe_buffer_pointer()
