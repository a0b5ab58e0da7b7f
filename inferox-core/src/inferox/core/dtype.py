"""Element types, and how they map onto numpy and the V2 protocol.

The one mapping between Inferox dtypes and frameworks is the **numpy spelling**
(:attr:`DType.numpy_name`: ``"float32"``, ``"bfloat16"``), which torch, jax, ONNX Runtime and the
array API all share. Core reads any framework's dtype by that name (``torch.float32`` prints as
``"torch.float32"``, a jax or numpy dtype has ``.name``), so it never imports or names a framework;
turning a :class:`DType` into a framework's own dtype object is the backend's job, next to its
tensors (``inferox.torch.torch_dtype``, ``inferox.jax.jax_dtype``).
"""

from __future__ import annotations

import enum
from typing import Any

import ml_dtypes
import numpy as np

from inferox.core.errors import DTypeError

__all__ = ["DType", "can_cast_safely"]


class DType(str, enum.Enum):
    """An element type. The value is the short canonical name (``"f32"``)."""

    BOOL = "bool"
    U8 = "u8"
    U16 = "u16"
    U32 = "u32"
    U64 = "u64"
    I8 = "i8"
    I16 = "i16"
    I32 = "i32"
    I64 = "i64"
    F16 = "f16"
    BF16 = "bf16"
    F32 = "f32"
    F64 = "f64"

    def __str__(self) -> str:
        return self.value

    # -- properties --------------------------------------------------------------------------
    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return _ITEMSIZE[self]

    @property
    def is_float(self) -> bool:
        return self in (DType.F16, DType.BF16, DType.F32, DType.F64)

    @property
    def is_int(self) -> bool:
        return self.value[0] in "ui"

    @property
    def is_signed(self) -> bool:
        return self.is_float or self.value[0] == "i"

    @property
    def is_bool(self) -> bool:
        return self is DType.BOOL

    @property
    def bits(self) -> int:
        return self.itemsize * 8

    @property
    def numpy_name(self) -> str:
        """The numpy / torch / jax spelling (``"float32"``, ``"bfloat16"``)."""
        return _NUMPY_NAME[self]

    @property
    def v2_name(self) -> str:
        """The Open Inference Protocol datatype (``"FP32"``)."""
        return _V2_NAME[self]

    # -- conversions ---------------------------------------------------------------------------
    @classmethod
    def parse(cls, value: Any) -> DType:
        """Accept a DType, a canonical or long name (``"f32"``, ``"float32"``, ``"FP32"``), or a
        numpy / torch / jax dtype. Raise :class:`DTypeError` naming the value otherwise."""
        if isinstance(value, DType):
            return value
        if isinstance(value, str):
            key = value.strip()
            found = _BY_NAME.get(key) or _BY_NAME.get(key.lower())
            if found is None and "." in key:  # a framework's printed dtype: "torch.float32", "jnp.bfloat16"
                found = _BY_NAME.get(key.rpartition(".")[2])
            if found is None:
                raise DTypeError(f"unknown dtype {value!r}", expected="one of " + ", ".join(d.value for d in cls), actual=value)
            return found
        if (isinstance(value, type) and issubclass(value, np.generic)) or isinstance(value, np.dtype):
            return cls.from_numpy(value)
        # jax/numpy dtypes and scalar types have a name or a .dtype; a torch.dtype has neither and
        # prints as "torch.float32" — read by its numpy spelling either way.
        name = getattr(value, "name", None)
        if name is None and hasattr(value, "dtype"):
            return cls.parse(value.dtype)
        if name is None and type(value).__name__ == "dtype":
            name = str(value)
        if isinstance(name, str):
            return cls.parse(name)
        raise DTypeError(f"cannot interpret {value!r} as a dtype", actual=type(value).__name__)

    @classmethod
    def from_numpy(cls, dtype: Any) -> DType:
        dt = np.dtype(dtype)
        found = _BY_NAME.get(dt.name)
        if found is None:
            raise DTypeError(f"numpy dtype {dt} has no inferox equivalent", expected="a bool, integer or float dtype", actual=str(dt))
        return found

    @classmethod
    def from_v2(cls, name: str) -> DType:
        found = _BY_V2.get(name.upper()) if isinstance(name, str) else None
        if found is None:
            raise DTypeError(f"unknown V2 datatype {name!r}", expected=", ".join(_BY_V2), actual=name)
        return found

    def to_numpy(self) -> np.dtype[Any]:
        """The numpy dtype; bf16 maps to ``ml_dtypes.bfloat16``."""
        return np.dtype(ml_dtypes.bfloat16) if self is DType.BF16 else np.dtype(self.numpy_name)

    def can_cast_to(self, other: DType | str) -> bool:
        return can_cast_safely(self, DType.parse(other))


_ITEMSIZE = {
    DType.BOOL: 1, DType.U8: 1, DType.I8: 1, DType.U16: 2, DType.I16: 2, DType.F16: 2, DType.BF16: 2,
    DType.U32: 4, DType.I32: 4, DType.F32: 4, DType.U64: 8, DType.I64: 8, DType.F64: 8,
}
_NUMPY_NAME = {
    DType.BOOL: "bool", DType.U8: "uint8", DType.U16: "uint16", DType.U32: "uint32", DType.U64: "uint64",
    DType.I8: "int8", DType.I16: "int16", DType.I32: "int32", DType.I64: "int64",
    DType.F16: "float16", DType.BF16: "bfloat16", DType.F32: "float32", DType.F64: "float64",
}
_V2_NAME = {
    DType.BOOL: "BOOL", DType.U8: "UINT8", DType.U16: "UINT16", DType.U32: "UINT32", DType.U64: "UINT64",
    DType.I8: "INT8", DType.I16: "INT16", DType.I32: "INT32", DType.I64: "INT64",
    DType.F16: "FP16", DType.BF16: "BF16", DType.F32: "FP32", DType.F64: "FP64",
}
_BY_V2 = {v: k for k, v in _V2_NAME.items()}
_BY_NAME: dict[str, DType] = {}
for _d in DType:
    _BY_NAME[_d.value] = _d
    _BY_NAME[_NUMPY_NAME[_d]] = _d
    _BY_NAME[_V2_NAME[_d]] = _d
_BY_NAME.update({"half": DType.F16, "float": DType.F32, "double": DType.F64, "long": DType.I64, "int": DType.I32, "bool_": DType.BOOL})

# Exact-value ranges used by the safe-cast rule.
_INT_BITS = {DType.U8: 8, DType.U16: 16, DType.U32: 32, DType.U64: 64, DType.I8: 8, DType.I16: 16, DType.I32: 32, DType.I64: 64}
# Significand bits (incl. implicit bit) and exponent bits of each float type.
_FLOAT_MANT = {DType.F16: 11, DType.BF16: 8, DType.F32: 24, DType.F64: 53}
_FLOAT_EXP = {DType.F16: 5, DType.BF16: 8, DType.F32: 8, DType.F64: 11}


def can_cast_safely(src: DType, dst: DType) -> bool:
    """Whether every value of ``src`` is represented exactly in ``dst``.

    The rule: bool goes anywhere; an integer goes to a wider-or-equal integer of a compatible
    signedness (unsigned into a strictly wider signed) or to a float whose significand holds all its
    bits; a float goes only to a float with at least its significand and exponent range
    (so f16 → bf16 and bf16 → f16 are both unsafe). Floats never go to integers.
    """
    if src is dst or src is DType.BOOL:
        return True
    if dst is DType.BOOL:
        return False
    if src.is_int:
        sbits = _INT_BITS[src]
        if dst.is_int:
            dbits = _INT_BITS[dst]
            if src.is_signed == dst.is_signed:
                return dbits >= sbits
            return (not src.is_signed) and dst.is_signed and dbits > sbits
        value_bits = sbits - (1 if src.is_signed else 0)
        return _FLOAT_MANT[dst] >= value_bits
    if dst.is_int:
        return False
    return _FLOAT_MANT[dst] >= _FLOAT_MANT[src] and _FLOAT_EXP[dst] >= _FLOAT_EXP[src]
