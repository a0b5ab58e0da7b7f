"""DType: every variant, sizes, predicates, numpy / torch / jax / V2 mappings and the safe-cast rule."""

from __future__ import annotations

import importlib.util

import ml_dtypes
import numpy as np
import pytest

from inferox.core import DType, DTypeError, can_cast_safely

ALL = list(DType)

# (dtype, itemsize, is_float, is_int, is_signed, numpy dtype, V2 name)
TABLE = [
    (DType.BOOL, 1, False, False, False, np.dtype(np.bool_), "BOOL"),
    (DType.U8, 1, False, True, False, np.dtype(np.uint8), "UINT8"),
    (DType.U16, 2, False, True, False, np.dtype(np.uint16), "UINT16"),
    (DType.U32, 4, False, True, False, np.dtype(np.uint32), "UINT32"),
    (DType.U64, 8, False, True, False, np.dtype(np.uint64), "UINT64"),
    (DType.I8, 1, False, True, True, np.dtype(np.int8), "INT8"),
    (DType.I16, 2, False, True, True, np.dtype(np.int16), "INT16"),
    (DType.I32, 4, False, True, True, np.dtype(np.int32), "INT32"),
    (DType.I64, 8, False, True, True, np.dtype(np.int64), "INT64"),
    (DType.F16, 2, True, False, True, np.dtype(np.float16), "FP16"),
    (DType.BF16, 2, True, False, True, np.dtype(ml_dtypes.bfloat16), "BF16"),
    (DType.F32, 4, True, False, True, np.dtype(np.float32), "FP32"),
    (DType.F64, 8, True, False, True, np.dtype(np.float64), "FP64"),
]


def test_table_covers_every_variant() -> None:
    assert [row[0] for row in TABLE] == ALL
    assert [d.value for d in ALL] == ["bool", "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "f16", "bf16", "f32", "f64"]


@pytest.mark.parametrize(("dtype", "size", "is_float", "is_int", "is_signed", "np_dtype", "v2"), TABLE, ids=[r[0].value for r in TABLE])
def test_variant_properties(dtype: DType, size: int, is_float: bool, is_int: bool, is_signed: bool, np_dtype: np.dtype, v2: str) -> None:
    assert dtype.itemsize == size == np_dtype.itemsize
    assert dtype.bits == size * 8
    assert dtype.is_float is is_float
    assert dtype.is_int is is_int
    assert dtype.is_signed is is_signed
    assert dtype.is_bool is (dtype is DType.BOOL)
    assert str(dtype) == dtype.value
    assert dtype.to_numpy() == np_dtype
    assert DType.from_numpy(np_dtype) is dtype
    assert DType.from_numpy(np.zeros(1, np_dtype).dtype) is dtype
    assert dtype.v2_name == v2
    assert DType.from_v2(v2) is dtype
    assert DType.from_v2(v2.lower()) is dtype
    # Every spelling parses back: short, numpy/long, V2, the enum, a numpy dtype and scalar type.
    for spelling in (dtype.value, dtype.numpy_name, v2, dtype, np_dtype, np_dtype.type):
        assert DType.parse(spelling) is dtype, spelling
    assert DType.parse(np.zeros(2, np_dtype)) is dtype  # anything with a .dtype


@pytest.mark.parametrize(("alias", "expected"), [("half", DType.F16), ("float", DType.F32), ("double", DType.F64), ("long", DType.I64), ("int", DType.I32), ("bool_", DType.BOOL), (" F32 ", DType.F32), ("Float32", DType.F32), ("torch.int64", DType.I64)])
def test_aliases(alias: str, expected: DType) -> None:
    assert DType.parse(alias) is expected


@pytest.mark.parametrize("bad", ["f128", "complex64", "", "string"])
def test_unknown_names_raise_dtype_error(bad: str) -> None:
    with pytest.raises(DTypeError) as ei:
        DType.parse(bad)
    assert ei.value.code == "INVALID_DTYPE"
    assert ei.value.actual == bad
    assert "f32" in ei.value.expected
    assert isinstance(ei.value, TypeError) and isinstance(ei.value, ValueError)


def test_uninterpretable_objects_raise_dtype_error() -> None:
    with pytest.raises(DTypeError) as ei:
        DType.parse(3.5)
    assert ei.value.code == "INVALID_DTYPE"
    assert ei.value.actual == "float"


@pytest.mark.parametrize("np_dtype", [np.complex64, np.str_, np.object_, "datetime64[s]"])
def test_numpy_dtypes_without_equivalent(np_dtype: object) -> None:
    with pytest.raises(DTypeError) as ei:
        DType.from_numpy(np_dtype)
    assert ei.value.code == "INVALID_DTYPE"
    assert ei.value.actual == str(np.dtype(np_dtype))


@pytest.mark.parametrize("bad", ["FP8", "", 32])
def test_unknown_v2_names(bad: object) -> None:
    with pytest.raises(DTypeError) as ei:
        DType.from_v2(bad)  # type: ignore[arg-type]
    assert ei.value.code == "INVALID_DTYPE"
    assert ei.value.actual == bad
    assert "FP32" in ei.value.expected


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed in this environment")
@pytest.mark.parametrize("dtype", ALL, ids=[d.value for d in ALL])
def test_torch_dtypes_are_read_by_their_numpy_spelling(dtype: DType) -> None:
    # Core names no framework: a torch.dtype (which has no .name) is read from how it prints.
    import torch

    native = getattr(torch, dtype.numpy_name)
    assert DType.parse(native) is dtype
    assert DType.parse(str(native)) is dtype  # "torch.float32"
    assert DType.parse(torch.zeros(1, dtype=native)) is dtype
    assert not hasattr(DType, "to_torch") and not hasattr(DType, "from_torch")  # the backend's: inferox.torch.torch_dtype


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed in this environment")
@pytest.mark.parametrize("dtype", ALL, ids=[d.value for d in ALL])
def test_jax_dtypes_are_read_by_their_numpy_spelling(dtype: DType) -> None:
    import jax.numpy as jnp

    native = getattr(jnp, dtype.numpy_name)
    assert DType.parse(native) is dtype
    assert DType.parse(jnp.dtype(native)) is dtype
    assert DType.parse(f"jnp.{dtype.numpy_name}") is dtype
    assert not hasattr(DType, "to_jax") and not hasattr(DType, "from_jax")  # the backend's: inferox.jax.jax_dtype


# The safe-cast rule, written out: every (src, dst) pair whose values all survive exactly.
SAFE: dict[DType, set[DType]] = {
    DType.BOOL: set(ALL),
    DType.U8: {DType.U8, DType.U16, DType.U32, DType.U64, DType.I16, DType.I32, DType.I64, DType.F16, DType.BF16, DType.F32, DType.F64},
    DType.U16: {DType.U16, DType.U32, DType.U64, DType.I32, DType.I64, DType.F32, DType.F64},
    DType.U32: {DType.U32, DType.U64, DType.I64, DType.F64},
    DType.U64: {DType.U64},
    DType.I8: {DType.I8, DType.I16, DType.I32, DType.I64, DType.F16, DType.BF16, DType.F32, DType.F64},
    DType.I16: {DType.I16, DType.I32, DType.I64, DType.F32, DType.F64},
    DType.I32: {DType.I32, DType.I64, DType.F64},
    DType.I64: {DType.I64},
    DType.F16: {DType.F16, DType.F32, DType.F64},
    DType.BF16: {DType.BF16, DType.F32, DType.F64},
    DType.F32: {DType.F32, DType.F64},
    DType.F64: {DType.F64},
}


@pytest.mark.parametrize("src", ALL, ids=[d.value for d in ALL])
def test_safe_cast_table(src: DType) -> None:
    for dst in ALL:
        assert can_cast_safely(src, dst) is (dst in SAFE[src]), f"{src.value} -> {dst.value}"
        assert src.can_cast_to(dst.value) is (dst in SAFE[src])


@pytest.mark.parametrize("src", [d for d in ALL if d.is_int or d.is_bool], ids=lambda d: d.value)
def test_safe_cast_rule_agrees_with_values(src: DType) -> None:
    """For every pair the rule calls safe, the source's extreme values really survive the cast."""
    info_src = (0, 1) if src is DType.BOOL else (int(np.iinfo(src.to_numpy()).min), int(np.iinfo(src.to_numpy()).max))
    extremes = np.array(info_src, dtype=np.int64 if src is not DType.U64 else np.uint64).astype(src.to_numpy())
    for dst in SAFE[src]:
        converted = extremes.astype(dst.to_numpy()).astype(np.float64 if dst.is_float else dst.to_numpy())
        assert [int(v) for v in converted] == [int(v) for v in extremes], f"{src.value} -> {dst.value}"
