"""The common tensor face, and the per-backend tensor builder.

Each backend keeps its native array (``torch.Tensor``, ``jax.Array``); :class:`Tensor` is a thin
wrapper giving every backend the same ``shape`` / ``dtype`` / ``device`` / ``numpy()`` / ``to()`` /
DLPack surface. A :class:`TensorBuilder` makes tensors for one backend and device; all of its
validation and all random draws happen here, in core, so every backend builds the same values and
reports the same errors. A backend implements only :meth:`TensorBuilder._from_numpy` and
:meth:`TensorBuilder._from_dlpack`.
"""

from __future__ import annotations

import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from inferox.core.device import DeviceId
from inferox.core.dtype import DType
from inferox.core.errors import DTypeError, InvalidInputError
from inferox.core.spec import coerce_untyped

if TYPE_CHECKING:
    from inferox.core.backend import Backend

__all__ = ["Shape", "Tensor", "TensorBuilder", "validate_shape"]

Shape = tuple[int, ...]


def validate_shape(shape: Any, *, name: str = "shape") -> Shape:
    """Check that ``shape`` is a sequence of non-negative integers (zero-size dims are valid)."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, Sequence) and not isinstance(shape, np.ndarray):
        raise InvalidInputError("shape must be a sequence of integers", name=name, expected="tuple of int", actual=type(shape).__name__)
    dims: list[int] = []
    for i, d in enumerate(shape):
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
            raise InvalidInputError(f"dimension {i} is not an integer", name=name, expected="non-negative int", actual=repr(d))
        if d < 0:
            raise InvalidInputError(f"dimension {i} is negative", name=name, expected="non-negative int", actual=int(d))
        dims.append(operator.index(d))
    return tuple(dims)


class Tensor(ABC):
    """A backend tensor behind one face. ``native`` is the framework's own array."""

    __slots__ = ("_native",)

    backend_name: str = ""

    def __init__(self, native: Any) -> None:
        self._native = native

    @property
    def native(self) -> Any:
        return self._native

    @property
    @abstractmethod
    def backend(self) -> Backend: ...

    @property
    def shape(self) -> Shape:
        return tuple(int(s) for s in self._native.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def dtype(self) -> DType:
        return DType.parse(self._native.dtype)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    @abstractmethod
    def device(self) -> DeviceId: ...

    @abstractmethod
    def numpy(self) -> np.ndarray:
        """A host copy (or a zero-copy view where the framework allows) as numpy."""

    def to(self, device: DeviceId | str) -> Tensor:
        """This tensor on another device of the same backend."""
        return self.backend.to_device(self, DeviceId.parse(device))

    def astype(self, dtype: DType | str) -> Tensor:
        """This tensor converted to another dtype."""
        return self.backend.cast(self, DType.parse(dtype))

    def __dlpack__(self, *args: Any, **kwargs: Any) -> Any:
        return self._native.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return self._native.__dlpack_device__()  # type: ignore[no-any-return]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        arr = self.numpy()
        return arr.astype(dtype) if dtype is not None else arr

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype.value}, device={self.device})"


class TensorBuilder(ABC):
    """Builds tensors of one backend on one device.

    Every constructor validates shapes and dtypes first and raises :class:`InvalidInputError` (or
    its subclass :class:`DTypeError`) naming what was expected and what it got.
    """

    def __init__(self, backend: Backend, device: DeviceId) -> None:
        self.backend = backend
        self.device = device

    # -- what a backend implements ----------------------------------------------------------------
    @abstractmethod
    def _from_numpy(self, array: np.ndarray) -> Any:
        """A native tensor on ``self.device`` holding ``array``'s values (zero-copy where possible)."""

    @abstractmethod
    def _from_dlpack(self, obj: Any) -> Any:
        """A native tensor from any ``__dlpack__`` producer, sharing memory where possible."""

    # -- shared implementation ---------------------------------------------------------------------
    def _check_dtype(self, dtype: DType) -> DType:
        supported = self.backend.supported_dtypes(self.device)
        if dtype not in supported:
            raise DTypeError(
                f"backend {self.backend.name!r} does not support dtype {dtype.value} on {self.device}",
                expected=", ".join(d.value for d in DType if d in supported),
                actual=dtype.value,
            )
        return dtype

    def _wrap(self, native: Any) -> Tensor:
        return self.backend.wrap(native)

    def from_numpy(self, array: np.ndarray, *, dtype: DType | str | None = None) -> Tensor:
        """A tensor from a numpy array (shared memory on CPU where the framework allows)."""
        if not isinstance(array, np.ndarray):
            raise InvalidInputError("from_numpy needs a numpy array", expected="numpy.ndarray", actual=type(array).__name__)
        src = DType.from_numpy(array.dtype)
        target = DType.parse(dtype) if dtype is not None else src
        self._check_dtype(target)
        if target is not src:
            array = array.astype(target.to_numpy())
        return self._wrap(self._from_numpy(array))

    def from_list(self, data: Any, *, shape: Sequence[int] | None = None, dtype: DType | str = DType.F32) -> Tensor:
        """A tensor from (nested) Python lists, or a flat list reshaped to ``shape``.

        A flat list whose length is not the product of ``shape`` is an :class:`InvalidInputError`
        naming both sizes.
        """
        target = self._check_dtype(DType.parse(dtype))
        arr = coerce_untyped(data, target, name="data")
        if shape is not None:
            dims = validate_shape(shape)
            expected = math.prod(dims)
            if arr.size != expected:
                raise InvalidInputError("data size does not match shape", name="data", expected=f"{expected} elements for shape {dims}", actual=f"{arr.size} elements")
            arr = arr.reshape(dims)
        return self._wrap(self._from_numpy(arr))

    #: The Rust API's name for a flat buffer plus shape.
    build_from_vec = from_list

    def from_buffer(self, buffer: Any, *, shape: Sequence[int], dtype: DType | str) -> Tensor:
        """A tensor over raw bytes (anything supporting the buffer protocol) of the given shape and dtype."""
        target = self._check_dtype(DType.parse(dtype))
        dims = validate_shape(shape)
        view = memoryview(buffer).cast("B")
        expected = math.prod(dims) * target.itemsize
        if view.nbytes != expected:
            raise InvalidInputError(
                "buffer size does not match shape and dtype", name="buffer", expected=f"{expected} bytes for {dims} {target.value}", actual=f"{view.nbytes} bytes"
            )
        arr = np.frombuffer(view, dtype=target.to_numpy()).reshape(dims)
        return self._wrap(self._from_numpy(arr))

    def from_dlpack(self, obj: Any) -> Tensor:
        """A tensor sharing memory with a DLPack producer (torch, jax, numpy, cupy …)."""
        if not hasattr(obj, "__dlpack__"):
            raise InvalidInputError("object does not support DLPack", expected="an object with __dlpack__", actual=type(obj).__name__)
        native = self._from_dlpack(obj)
        tensor = self._wrap(native)
        self._check_dtype(tensor.dtype)
        return tensor

    def from_array(self, obj: Any, *, dtype: DType | str | None = None) -> Tensor:
        """A tensor from anything array-like: a Tensor, a native tensor, numpy, DLPack, lists or scalars."""
        target = DType.parse(dtype) if dtype is not None else None
        if isinstance(obj, Tensor):
            tensor = obj if obj.backend.name == self.backend.name else self.from_dlpack_or_copy(obj)
        elif self.backend.is_native(obj):
            tensor = self._wrap(obj)
        elif isinstance(obj, np.ndarray):
            return self.from_numpy(obj, dtype=target)
        elif hasattr(obj, "__dlpack__"):
            tensor = self.from_dlpack_or_copy(obj)
        else:
            return self.from_list(obj, dtype=target or DType.F32)
        if tensor.device != self.device:
            tensor = tensor.to(self.device)
        if target is not None and tensor.dtype is not target:
            self._check_dtype(target)
            tensor = tensor.astype(target)
        return tensor

    def from_dlpack_or_copy(self, obj: Any) -> Tensor:
        """DLPack where the producer and this backend agree; a host copy through numpy otherwise."""
        try:
            return self.from_dlpack(obj)
        except InvalidInputError:
            raise
        except Exception:  # noqa: BLE001 - e.g. bf16, or a device this framework cannot import from
            host = obj.numpy() if isinstance(obj, Tensor) else np.asarray(obj)
            return self.from_numpy(host)

    def full(self, shape: Sequence[int], value: float | int | bool, *, dtype: DType | str = DType.F32) -> Tensor:
        target = self._check_dtype(DType.parse(dtype))
        dims = validate_shape(shape)
        arr = coerce_untyped(np.full(dims, value), target, name="value")
        return self._wrap(self._from_numpy(arr))

    def zeros(self, shape: Sequence[int], *, dtype: DType | str = DType.F32) -> Tensor:
        return self.full(shape, 0, dtype=dtype)

    def ones(self, shape: Sequence[int], *, dtype: DType | str = DType.F32) -> Tensor:
        return self.full(shape, 1, dtype=dtype)

    def empty(self, shape: Sequence[int], *, dtype: DType | str = DType.F32) -> Tensor:
        """Uninitialised memory is a hazard across backends; ``empty`` is zero-filled here."""
        return self.zeros(shape, dtype=dtype)

    def randn(self, shape: Sequence[int], *, seed: int | None = None, dtype: DType | str = DType.F32) -> Tensor:
        """Standard-normal values drawn in core with numpy's ``Generator(PCG64(seed))``: the same seed
        gives the same numbers on every backend."""
        target = self._check_dtype(DType.parse(dtype))
        if not target.is_float:
            raise DTypeError("randn needs a float dtype", name="dtype", expected="f16, bf16, f32 or f64", actual=target.value)
        dims = validate_shape(shape)
        values = np.random.default_rng(seed).standard_normal(dims, dtype=np.float64)
        return self._wrap(self._from_numpy(values.astype(target.to_numpy())))
