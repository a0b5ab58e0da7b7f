"""OnnxTensor and its builder: on the CPU a tensor is the numpy array itself (zero-copy both ways)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from inferox.core import DeviceId, DType
from inferox.core.errors import DTypeError, InvalidInputError
from inferox.core.testing import sample_array
from inferox.onnx import OnnxBackend, OnnxTensor


@pytest.mark.parametrize("dtype", list(DType))
def test_from_numpy_every_dtype_is_the_same_array(cpu_builder, dtype: DType) -> None:  # type: ignore[no-untyped-def]
    a = sample_array(dtype)
    t = cpu_builder.from_numpy(a)
    assert isinstance(t, OnnxTensor) and t.dtype is dtype and t.device == DeviceId.cpu()
    assert t.native is a and t.numpy() is a
    assert t.shape == a.shape and t.backend_name == "onnx"


@pytest.mark.parametrize("dtype", [d for d in DType if d is not DType.BF16])
def test_dlpack_round_trip_shares_memory(cpu_builder, dtype: DType) -> None:  # type: ignore[no-untyped-def]
    a = sample_array(dtype)
    t = cpu_builder.from_dlpack(a)
    back = np.from_dlpack(t)
    assert back.ctypes.data == a.ctypes.data and back.tolist() == a.tolist()
    assert t.__dlpack_device__() == a.__dlpack_device__()


def test_bf16_is_ml_dtypes(cpu_builder) -> None:  # type: ignore[no-untyped-def]
    t = cpu_builder.from_list([1.0, 2.5], dtype="bf16")
    assert t.dtype is DType.BF16 and t.numpy().dtype == np.dtype(ml_dtypes.bfloat16)
    assert t.numpy().astype(np.float32).tolist() == [1.0, 2.5]


def test_constructors_and_random_draws(cpu_builder) -> None:  # type: ignore[no-untyped-def]
    assert cpu_builder.zeros((2, 3), dtype="i64").numpy().tolist() == [[0, 0, 0], [0, 0, 0]]
    assert cpu_builder.full((2,), 7, dtype="i32").numpy().tolist() == [7, 7]
    a = cpu_builder.randn((4,), seed=3).numpy()
    np.testing.assert_array_equal(a, np.random.default_rng(3).standard_normal(4).astype(np.float32))
    assert cpu_builder.from_list([[1, 2], [3, 4]], dtype="u8").shape == (2, 2)


def test_builder_errors(cpu_builder) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInputError) as ei:
        cpu_builder.from_numpy([1, 2])
    assert ei.value.code == "INVALID_INPUT" and ei.value.actual == "list"
    with pytest.raises(DTypeError) as ei2:
        cpu_builder.zeros((1,), dtype="complex64")
    assert ei2.value.code == "INVALID_DTYPE"


def test_astype_and_to(backend: OnnxBackend) -> None:
    t = backend.tensor_builder("cpu").from_numpy(np.array([1.5, 2.5], np.float32))
    assert t.astype("f16").dtype is DType.F16 and t.astype(DType.I32).numpy().tolist() == [1, 2]
    assert t.to("cpu") is t
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    assert "OnnxTensor(shape=(2,), dtype=f32, device=cpu)" == repr(t)
