"""The jax backend's side of DLPack exchange jax ↔ numpy ↔ torch, checked by pointer.

Pointers: ``JaxTensor.data_ptr()`` (``unsafe_buffer_pointer``), torch ``data_ptr()``, numpy
``__array_interface__['data'][0]``. Where JAX must copy (a buffer that is not 64-byte aligned) or
must not import (64-bit types without x64), the tests pin down the documented, explicit behaviour
(see ``inferox.jax.tensor``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")

import jax.numpy as jnp  # noqa: E402

from inferox.core import AnyModel, Backend, DType, DTypeError, ModelMetadata, Tensor, TensorSpec  # noqa: E402
from inferox.core.plugins import get_registry, reset_registry  # noqa: E402
from inferox.jax import JaxBackend, JaxModel, JaxTensor, aligned_empty  # noqa: E402
from inferox.torch import torch_dtype  # noqa: E402

JAX32 = [DType.BOOL, DType.U8, DType.U16, DType.U32, DType.I8, DType.I16, DType.I32, DType.F16, DType.BF16, DType.F32]
# numpy's DLPack exporter has no bfloat16 code; torch's has.
NUMPY_DLPACK = [d for d in JAX32 if d is not DType.BF16]
NO_X64 = pytest.mark.skipif(bool(jax.config.jax_enable_x64), reason="checks the default (no 64-bit mode) rule")


def np_ptr(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


def torch_sample(dtype: DType, n: int = 24) -> Any:
    values = torch.arange(n).reshape(4, n // 4)
    return (values % 2 == 0) if dtype is DType.BOOL else values.to(torch_dtype(dtype))


@pytest.fixture
def backends() -> Iterator[tuple[JaxBackend, Backend]]:
    """The jax and torch backends, both found through discovery."""
    reset_registry()
    reg = get_registry()
    missing = {"jax", "torch"} - set(reg.backend_names())
    if missing:
        pytest.skip(f"backend plugin(s) not installed: {sorted(missing)}")
    jb, tb = reg.get_backend("jax"), reg.get_backend("torch")
    assert isinstance(jb, JaxBackend)
    yield jb, tb
    reset_registry()


# -- torch → jax ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", JAX32, ids=str)
def test_torch_tensor_into_jax_builder_shares_memory(backends, dtype: DType) -> None:
    jb, _ = backends
    t = torch_sample(dtype)
    assert t.data_ptr() % 64 == 0  # torch's CPU allocator aligns to 64 bytes
    j = jb.tensor_builder("cpu").from_dlpack(t)
    assert isinstance(j, JaxTensor) and j.dtype is dtype and j.shape == tuple(t.shape)
    assert j.data_ptr() == t.data_ptr(), f"{dtype}: torch → jax copied"
    assert np.array_equal(j.numpy(), t.numpy() if dtype is not DType.BF16 else t.float().numpy().astype(j.numpy().dtype))


def test_torch_tensor_face_into_jax(backends) -> None:
    jb, tb = backends
    t = tb.wrap(torch.arange(16, dtype=torch.float32).reshape(4, 4))  # torch-allocated: 64-byte aligned
    via_array = jb.tensor_builder("cpu").from_array(t)
    via_to_device = jb.to_device(t, "cpu")
    via_as_native = jb.as_native(t, dtype=DType.F32)
    for j in (via_array.native, via_to_device.native, via_as_native):
        assert isinstance(j, jax.Array) and j.unsafe_buffer_pointer() == t.native.data_ptr()
    assert np.array_equal(via_array.numpy(), np.arange(16, dtype=np.float32).reshape(4, 4))


def test_unaligned_torch_storage_is_copied_by_jax(backends) -> None:
    """A view 4 bytes into a buffer cannot be adopted by XLA's CPU client: JAX copies, values intact."""
    jb, _ = backends
    base = torch.arange(65, dtype=torch.float32)
    view = base[1:]
    assert view.data_ptr() % 64 != 0
    j = jb.tensor_builder("cpu").from_dlpack(view)
    assert j.data_ptr() != view.data_ptr()
    assert np.array_equal(j.numpy(), view.numpy())


# -- jax → torch ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", JAX32, ids=str)
def test_jax_tensor_into_torch_builder_shares_memory(backends, dtype: DType) -> None:
    jb, tb = backends
    j = jb.tensor_builder("cpu").from_list(np.arange(12).reshape(3, 4) % 2 if dtype is DType.BOOL else np.arange(12).reshape(3, 4), dtype=dtype)
    t = tb.tensor_builder("cpu").from_dlpack(j)
    assert isinstance(t, Tensor) and t.backend.name == "torch" and t.dtype is dtype
    assert t.native.data_ptr() == j.data_ptr(), f"{dtype}: jax → torch copied"
    assert np.array_equal(t.numpy(), j.numpy())


def test_numpy_jax_torch_numpy_is_one_buffer(backends) -> None:
    jb, tb = backends
    source = aligned_empty((8, 8), "f32")
    source[...] = np.arange(64, dtype=np.float32).reshape(8, 8)
    j = jb.tensor_builder("cpu").from_numpy(source)
    t = tb.tensor_builder("cpu").from_array(j)
    back = t.numpy()
    assert j.data_ptr() == np_ptr(source) == t.native.data_ptr() == np_ptr(back)
    assert np.array_equal(back, source)


@pytest.mark.parametrize("dtype", NUMPY_DLPACK, ids=str)
def test_numpy_dlpack_into_jax_and_back(backends, dtype: DType) -> None:
    jb, _ = backends
    source = aligned_empty((4, 16), dtype)
    source[...] = (np.arange(64).reshape(4, 16) % 2).astype(dtype.to_numpy())
    j = jb.tensor_builder("cpu").from_dlpack(source)
    assert j.data_ptr() == np_ptr(source)
    assert np_ptr(np.from_dlpack(j)) == np_ptr(source) == np_ptr(j.numpy())


# -- where JAX must narrow or refuse ----------------------------------------------------------------------------
@NO_X64
@pytest.mark.parametrize("torch_dtype,name", [("int64", "i64"), ("float64", "f64")])
def test_64bit_torch_tensors_are_refused_by_the_jax_builder(backends, torch_dtype: str, name: str) -> None:
    jb, tb = backends
    t = torch.arange(4).to(getattr(torch, torch_dtype))
    for attempt in (lambda: jb.tensor_builder("cpu").from_dlpack(t), lambda: jb.tensor_builder("cpu").from_array(tb.wrap(t))):
        with pytest.raises(DTypeError) as ei:
            attempt()
        assert ei.value.code == "INVALID_DTYPE" and ei.value.actual == name


@NO_X64
def test_torch_token_ids_are_narrowed_with_a_range_check(backends) -> None:
    jb, tb = backends
    ids = torch.tensor([[101, 7592, 102]], dtype=torch.int64)
    for value in (ids, tb.wrap(ids)):
        out = jb.as_native(value, dtype=DType.I64)
        assert out.dtype == jnp.int32 and out.tolist() == ids.tolist()
    with pytest.raises(DTypeError) as ei:
        jb.as_native(torch.tensor([2**31], dtype=torch.int64), dtype=DType.I64)
    assert ei.value.code == "INVALID_DTYPE" and ei.value.expected == "[-2147483648, 2147483647]"


def test_jax_bf16_into_numpy_is_ml_dtypes_and_into_torch_shares(backends) -> None:
    import ml_dtypes

    jb, tb = backends
    j = jb.tensor_builder("cpu").from_list([0.5, -3.0, 1024.0, 2.0], dtype="bf16")
    arr = j.numpy()
    assert arr.dtype == np.dtype(ml_dtypes.bfloat16) and np_ptr(arr) == j.data_ptr()
    t = tb.tensor_builder("cpu").from_dlpack(j)
    assert t.dtype is DType.BF16 and t.native.data_ptr() == j.data_ptr()
    assert t.native.float().tolist() == [0.5, -3.0, 1024.0, 2.0]


# -- a jax model fed torch tensors ----------------------------------------------------------------------------
class _Embed(JaxModel):
    @property
    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec("input_ids", DType.I64, (None, None), pad_value=0), TensorSpec("scale", DType.F32, (None, 1))]

    @property
    def output_specs(self) -> list[TensorSpec]:
        return [TensorSpec("out", DType.F32, (None, None))]

    def apply(self, params: Any, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"out": params["table"][inputs["input_ids"]] * inputs["scale"]}


def test_any_model_on_jax_takes_torch_tensors(backends) -> None:
    jb, _ = backends
    table = np.arange(10, dtype=np.float32) * 1.5
    model = AnyModel(_Embed(backend=jb, metadata=ModelMetadata("embed"), params={"table": table}))
    ids = torch.tensor([[1, 2, 3], [4, 5, 0]], dtype=torch.int64)
    scale = torch.tensor([[1.0], [2.0]])
    out = model.forward_any({"input_ids": ids, "scale": scale})
    assert out["out"].shape == (2, 3)
    np.testing.assert_allclose(out["out"], table[ids.numpy()] * scale.numpy())
