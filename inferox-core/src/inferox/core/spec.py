"""``TensorSpec``: what a model's input or output must look like, and validation against it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferox.core.dtype import DType, can_cast_safely
from inferox.core.errors import DTypeError, InvalidInputError

__all__ = ["Dim", "TensorSpec", "coerce_untyped", "shape_of", "dtype_of"]

#: A dimension: a fixed size, or ``None`` for a dynamic one (-1 in JSON, as in the V2 protocol).
Dim = int | None


@dataclass(frozen=True)
class TensorSpec:
    """Name, element type and shape of one model input or output.

    ``shape`` uses ``None`` for a dynamic dimension; by convention the first dimension is the batch
    dimension when it is dynamic. ``pad_value`` (inputs only) says that items whose dynamic
    non-batch dimensions differ may be padded with that value to be batched together; ``None``
    means they may not. ``optional`` inputs may be left out of a request.
    """

    name: str
    dtype: DType
    shape: tuple[Dim, ...]
    pad_value: float | int | None = None
    optional: bool = False
    description: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidInputError("TensorSpec.name must be a non-empty string", name="name", actual=self.name)
        object.__setattr__(self, "dtype", DType.parse(self.dtype))
        dims: list[Dim] = []
        for d in self.shape:
            if d is None or d == -1:
                dims.append(None)
            elif isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0:
                dims.append(int(d))
            else:
                raise InvalidInputError(
                    f"invalid dimension {d!r} in TensorSpec {self.name!r}", name=self.name, expected="a non-negative integer, or None/-1 for dynamic", actual=d
                )
        object.__setattr__(self, "shape", tuple(dims))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def is_batched(self) -> bool:
        """Whether the first dimension is dynamic (a batch dimension)."""
        return bool(self.shape) and self.shape[0] is None

    @property
    def dynamic_axes(self) -> tuple[int, ...]:
        return tuple(i for i, d in enumerate(self.shape) if d is None)

    def shape_matches(self, shape: Sequence[int]) -> bool:
        return len(shape) == len(self.shape) and all(e is None or e == a for e, a in zip(self.shape, shape, strict=True))

    def check_shape(self, shape: Sequence[int], *, index: int | None = None) -> None:
        """Raise :class:`InvalidInputError` naming this input, the expected and the actual shape."""
        if not self.shape_matches(shape):
            raise InvalidInputError(
                "shape mismatch", name=self.name, expected=self.shape_str(), actual=tuple(int(s) for s in shape), index=index
            )

    def check_dtype(self, dtype: DType, *, index: int | None = None) -> None:
        """Raise :class:`DTypeError` unless ``dtype`` casts safely to this spec's dtype."""
        if not can_cast_safely(dtype, self.dtype):
            raise DTypeError(
                f"dtype {dtype.value} cannot be cast safely to {self.dtype.value}",
                name=self.name,
                expected=self.dtype.value,
                actual=dtype.value,
                index=index,
            )

    def shape_str(self) -> str:
        return "(" + ", ".join("?" if d is None else str(d) for d in self.shape) + ("," if len(self.shape) == 1 else "") + ")"

    def to_dict(self) -> dict[str, Any]:
        """JSON form (dynamic dims as -1), as stored in ``model_info.json``."""
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype.value, "shape": [-1 if d is None else d for d in self.shape]}
        if self.pad_value is not None:
            out["pad_value"] = self.pad_value
        if self.optional:
            out["optional"] = True
        if self.description:
            out["description"] = self.description
        if self.extra:
            out["extra"] = dict(self.extra)  # e.g. a classifier's label names
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        if not isinstance(data, Mapping):
            raise InvalidInputError("a TensorSpec must be an object", expected="object", actual=type(data).__name__)
        missing = [k for k in ("name", "dtype", "shape") if k not in data]
        if missing:
            raise InvalidInputError(f"TensorSpec is missing {', '.join(missing)}", name=str(data.get("name", "?")))
        shape = data["shape"]
        if not isinstance(shape, (list, tuple)):
            raise InvalidInputError("TensorSpec shape must be a list", name=str(data["name"]), expected="list", actual=type(shape).__name__)
        return cls(
            name=data["name"],
            dtype=DType.parse(data["dtype"]),
            shape=tuple(shape),
            pad_value=data.get("pad_value"),
            optional=bool(data.get("optional", False)),
            description=str(data.get("description", "")),
            extra=dict(data["extra"]) if isinstance(data.get("extra"), Mapping) else {},
        )


def shape_of(value: Any) -> tuple[int, ...]:
    """The shape of any array-like with a ``.shape`` (numpy, torch, jax)."""
    return tuple(int(s) for s in value.shape)


def dtype_of(value: Any) -> DType:
    """The :class:`DType` of any array-like with a ``.dtype``."""
    return DType.parse(value.dtype)


def coerce_untyped(data: Any, dtype: DType, *, name: str | None = None, index: int | None = None) -> np.ndarray:
    """Turn untyped data (nested lists, Python scalars, JSON) into a numpy array of ``dtype``.

    Literals carry no dtype of their own, so they are judged by value: integers must fit the target
    range and floats go to an integer type only when every value is integral. Ragged lists and
    non-numeric values are an :class:`InvalidInputError` naming the input.
    """
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(
            f"cannot build a tensor from this data: {exc}", name=name, expected=f"a rectangular array of {dtype.value}", actual="ragged or non-numeric data", index=index
        ) from exc
    if arr.dtype == object or (dtype.is_int and arr.dtype.kind == "f" and arr.size and float(np.abs(arr).max()) >= 2.0**53):
        # Python ints beyond int64 come back as float64 (rounded) or, beyond uint64, as objects.
        exact = _exact_python_ints(data)
        arr = exact if exact is not None else arr
        exact_ints = exact is not None
    else:
        exact_ints = False
    if (arr.dtype == object and not exact_ints) or arr.dtype.kind in "USV":
        raise InvalidInputError(
            "data is ragged or not numeric", name=name, expected=f"a rectangular array of {dtype.value}", actual=f"array of {arr.dtype}", index=index
        )
    target = dtype.to_numpy()
    if arr.dtype == target:
        return arr
    if arr.size == 0:
        return arr.astype(target)
    if dtype.is_int or dtype.is_bool:
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
                raise DTypeError("non-integral values for an integer input", name=name, expected=dtype.value, actual="float values", index=index)
        if dtype.is_int:
            info = np.iinfo(target)
            lo, hi = arr.min(), arr.max()
            if lo < info.min or hi > info.max:
                raise InvalidInputError(
                    "values out of range", name=name, expected=f"{dtype.value} in [{info.min}, {info.max}]", actual=f"[{lo}, {hi}]", index=index
                )
        elif not np.all((arr == 0) | (arr == 1)):
            raise DTypeError("non-boolean values for a bool input", name=name, expected="0/1 or true/false", actual="other values", index=index)
    elif arr.dtype.kind == "c":
        raise DTypeError("complex values are not supported", name=name, expected=dtype.value, actual=str(arr.dtype), index=index)
    return arr.astype(target)


def _exact_python_ints(data: Any) -> np.ndarray | None:
    """Python ints beyond int64 (u64 values) make numpy fall back to float64, which rounds them;
    read such data again as exact integers (an object array), or ``None`` if it is not all ints."""
    exact = np.asarray(data, dtype=object)
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in exact.flat):
        return exact
    return None
