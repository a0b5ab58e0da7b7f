"""TensorSpec: construction, shape and dtype checks, JSON form; coerce_untyped."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inferox.core import DType, DTypeError, InvalidInputError, TensorSpec
from inferox.core.spec import coerce_untyped, dtype_of, shape_of


def test_construction_normalises() -> None:
    spec = TensorSpec("x", "float32", (-1, np.int64(3), None, 0))  # type: ignore[arg-type]
    assert spec.dtype is DType.F32
    assert spec.shape == (None, 3, None, 0)
    assert spec.ndim == 4
    assert spec.is_batched
    assert spec.dynamic_axes == (0, 2)
    assert spec.shape_str() == "(?, 3, ?, 0)"
    assert TensorSpec("s", DType.I64, (5,)).shape_str() == "(5,)"
    assert TensorSpec("s", DType.I64, ()).shape_str() == "()"
    assert not TensorSpec("s", DType.I64, (5, None)).is_batched
    assert not TensorSpec("s", DType.I64, ()).is_batched


@pytest.mark.parametrize("bad", [-2, 1.5, "3", True])
def test_invalid_dimensions(bad: object) -> None:
    with pytest.raises(InvalidInputError) as ei:
        TensorSpec("x", DType.F32, (None, bad))  # type: ignore[arg-type]
    assert ei.value.code == "INVALID_INPUT"
    assert ei.value.name == "x"
    assert ei.value.actual == bad


@pytest.mark.parametrize("bad", ["", None, 3])
def test_invalid_name(bad: object) -> None:
    with pytest.raises(InvalidInputError) as ei:
        TensorSpec(bad, DType.F32, (1,))  # type: ignore[arg-type]
    assert ei.value.code == "INVALID_INPUT"
    assert ei.value.name == "name"


def test_unknown_dtype() -> None:
    with pytest.raises(DTypeError) as ei:
        TensorSpec("x", "f8", (1,))  # type: ignore[arg-type]
    assert ei.value.code == "INVALID_DTYPE"
    assert ei.value.actual == "f8"


def test_shape_checks() -> None:
    spec = TensorSpec("ids", DType.I64, (None, 8))
    assert spec.shape_matches((3, 8)) and spec.shape_matches((0, 8))
    assert not spec.shape_matches((3, 9)) and not spec.shape_matches((3,)) and not spec.shape_matches((3, 8, 1))
    spec.check_shape((1, 8))
    with pytest.raises(InvalidInputError) as ei:
        spec.check_shape((2, 9), index=4)
    err = ei.value
    assert err.code == "INVALID_INPUT"
    assert (err.name, err.expected, err.actual, err.index) == ("ids", "(?, 8)", (2, 9), 4)
    assert str(err).startswith("item 4: input 'ids': shape mismatch")


def test_dtype_checks() -> None:
    spec = TensorSpec("x", DType.F32, (None,))
    spec.check_dtype(DType.F16)
    spec.check_dtype(DType.I16)
    with pytest.raises(DTypeError) as ei:
        spec.check_dtype(DType.F64, index=1)
    err = ei.value
    assert err.code == "INVALID_DTYPE"
    assert (err.name, err.expected, err.actual, err.index) == ("x", "f32", "f64", 1)


def test_json_round_trip() -> None:
    spec = TensorSpec("input_ids", DType.I64, (None, None), pad_value=0, optional=True, description="token ids")
    data = spec.to_dict()
    assert data == {"name": "input_ids", "dtype": "i64", "shape": [-1, -1], "pad_value": 0, "optional": True, "description": "token ids"}
    assert TensorSpec.from_dict(json.loads(json.dumps(data))) == spec
    plain = TensorSpec("y", DType.F32, (None, 3))
    assert plain.to_dict() == {"name": "y", "dtype": "f32", "shape": [-1, 3]}
    assert TensorSpec.from_dict({"name": "y", "dtype": "FP32", "shape": (-1, 3)}) == plain


def test_from_dict_errors() -> None:
    with pytest.raises(InvalidInputError) as ei:
        TensorSpec.from_dict(["x"])  # type: ignore[arg-type]
    assert ei.value.code == "INVALID_INPUT" and ei.value.actual == "list"
    with pytest.raises(InvalidInputError) as ei:
        TensorSpec.from_dict({"name": "x", "shape": [1]})
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == "x" and "dtype" in str(ei.value)
    with pytest.raises(InvalidInputError) as ei:
        TensorSpec.from_dict({"dtype": "f32", "shape": [1]})
    assert ei.value.name == "?" and "name" in str(ei.value)
    with pytest.raises(InvalidInputError) as ei:
        TensorSpec.from_dict({"name": "x", "dtype": "f32", "shape": "1,2"})
    assert (ei.value.name, ei.value.expected, ei.value.actual) == ("x", "list", "str")


def test_shape_of_and_dtype_of() -> None:
    arr = np.zeros((2, 0, 3), np.uint16)
    assert shape_of(arr) == (2, 0, 3)
    assert dtype_of(arr) is DType.U16


# ------------------------------------------------------------------------------------- coerce_untyped
@pytest.mark.parametrize(
    ("data", "dtype", "expected"),
    [
        ([[1, 2], [3, 4]], DType.F32, np.array([[1, 2], [3, 4]], np.float32)),
        ([1.0, 2.0], DType.I64, np.array([1, 2], np.int64)),
        ([255, 0], DType.U8, np.array([255, 0], np.uint8)),
        ([-128, 127], DType.I8, np.array([-128, 127], np.int8)),
        ([True, False], DType.BOOL, np.array([True, False])),
        ([1, 0], DType.BOOL, np.array([True, False])),
        (3, DType.F64, np.array(3.0)),
        ([], DType.I32, np.zeros(0, np.int32)),
        ([0, 2**64 - 1], DType.U64, np.array([0, 2**64 - 1], np.uint64)),
        ([2**63 - 1, -(2**63)], DType.I64, np.array([2**63 - 1, -(2**63)], np.int64)),
        ([2**53 + 1, -1], DType.I64, np.array([2**53 + 1, -1], np.int64)),
        ([0.5, 1.5], DType.BF16, np.array([0.5, 1.5], np.float32).astype(DType.BF16.to_numpy())),
    ],
)
def test_coerce_untyped(data: object, dtype: DType, expected: np.ndarray) -> None:
    out = coerce_untyped(data, dtype, name="x")
    assert out.dtype == expected.dtype
    assert np.array_equal(out, expected)


def test_coerce_untyped_passes_matching_arrays_through() -> None:
    arr = np.arange(3, dtype=np.float32)
    assert coerce_untyped(arr, DType.F32) is arr


@pytest.mark.parametrize(
    ("data", "dtype", "cls", "code", "expected_substr"),
    [
        ([[1, 2], [3]], DType.F32, InvalidInputError, "INVALID_INPUT", "rectangular"),
        (["a", "b"], DType.F32, InvalidInputError, "INVALID_INPUT", "rectangular"),
        ([256], DType.U8, InvalidInputError, "INVALID_INPUT", "[0, 255]"),
        ([-1], DType.U32, InvalidInputError, "INVALID_INPUT", "[0, 4294967295]"),
        ([2**63], DType.I64, InvalidInputError, "INVALID_INPUT", "9223372036854775807"),
        ([2**64], DType.U64, InvalidInputError, "INVALID_INPUT", "18446744073709551615"),
        ([-(2**63), 2**64 - 1], DType.I64, InvalidInputError, "INVALID_INPUT", "9223372036854775807"),
        ([1.5], DType.I32, DTypeError, "INVALID_DTYPE", "i32"),
        ([float("nan")], DType.I32, DTypeError, "INVALID_DTYPE", "i32"),
        ([2], DType.BOOL, DTypeError, "INVALID_DTYPE", "0/1"),
        ([1 + 2j], DType.F32, DTypeError, "INVALID_DTYPE", "f32"),
    ],
)
def test_coerce_untyped_errors(data: object, dtype: DType, cls: type[InvalidInputError], code: str, expected_substr: str) -> None:
    with pytest.raises(cls) as ei:
        coerce_untyped(data, dtype, name="tokens", index=2)
    err = ei.value
    assert type(err) is cls
    assert err.code == code
    assert (err.name, err.index) == ("tokens", 2)
    assert expected_substr in str(err.expected)


def test_coerce_untyped_rejects_objects_numpy_cannot_read() -> None:
    class Weird:
        def __array__(self, *args: object, **kwargs: object) -> np.ndarray:
            raise TypeError("no")

    with pytest.raises(InvalidInputError) as ei:
        coerce_untyped(Weird(), DType.F32, name="w")
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == "w"
    assert isinstance(ei.value.__cause__, TypeError)


def test_u64_values_beyond_float_precision_mixed_with_floats_still_range_checked() -> None:
    # 2**64 - 1 next to a float: the data is not all ints, so numpy's float64 reading stands,
    # and 2**64 (the rounded value) is out of u64's range.
    with pytest.raises(InvalidInputError) as ei:
        coerce_untyped([2**64 - 1, 0.5], DType.U64, name="x")
    assert ei.value.code in ("INVALID_INPUT", "INVALID_DTYPE")
    assert ei.value.name == "x"
