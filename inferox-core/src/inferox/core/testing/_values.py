"""Sample data for conformance tests: values that exercise each dtype's range exactly."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from inferox.core.dtype import DType

__all__ = ["sample_array", "to_python_list"]


def sample_array(dtype: DType, shape: tuple[int, int] = (2, 3)) -> np.ndarray:
    """A ``shape`` array of ``dtype`` holding the type's extremes and a few ordinary values.

    Every value is exactly representable, so a round trip through any backend must return it
    bit for bit.
    """
    count = shape[0] * shape[1]
    np_dtype = dtype.to_numpy()
    values: list[Any]
    if dtype is DType.BOOL:
        values = [bool(i % 2) for i in range(count)]
    elif dtype.is_int:
        info = np.iinfo(np_dtype)
        values = [int(info.min), int(info.max), 0, 1, int(info.max) // 3, 7][:count]
    else:
        info_max = float(ml_dtypes.finfo(np_dtype).max)  # type: ignore[no-untyped-call]
        values = [-1.5, 0.0, 2.25, info_max, -info_max, 0.125][:count]
    values += [0] * (count - len(values))
    return np.array(values, dtype=np_dtype).reshape(shape)


def to_python_list(array: np.ndarray) -> list[object]:
    """``array`` as nested Python literals (ints stay exact ints, floats go through float64)."""
    if array.dtype.kind in "biu":
        return array.tolist()  # type: ignore[no-any-return]
    return array.astype(np.float64).tolist()  # type: ignore[no-any-return]
