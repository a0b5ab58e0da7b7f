"""``JaxTensor`` and ``JaxTensorBuilder``: the Inferox tensor face over ``jax.Array``.

When memory is shared and when it is copied (measured by pointer in ``tests/jax`` and
``tests/integration/test_interop_jax.py``, jax 0.10 on CPU):

numpy → jax (:meth:`JaxTensorBuilder.from_numpy`, ``jax.device_put``)
    **Shared** when the target is the CPU, the array is C-contiguous and its data pointer is
    64-byte aligned (XLA's CPU buffer alignment); **copied** otherwise (unaligned or strided
    arrays, accelerators). numpy's allocator returns 64-byte aligned blocks for mid-sized arrays
    but only 16-byte aligned ones for small and for very large (``mmap``-backed) arrays, so
    whether a given array is shared depends on where numpy put it. :func:`is_zero_copy_eligible`
    tells in advance, and :func:`aligned_empty` allocates an array that is always shared. As with
    ``torch.from_numpy``, writing into a shared source array afterwards changes the tensor: JAX
    assumes its arrays are immutable, so don't.

DLPack → jax (:meth:`JaxTensorBuilder.from_dlpack`, ``jnp.from_dlpack``)
    The same rule: torch CPU tensors (64-byte aligned by torch's allocator) and aligned numpy
    arrays are shared; an unaligned producer is copied by JAX. DLPack has no bfloat16 code in
    numpy's exporter, so a numpy ``bfloat16`` array goes through a host copy
    (:meth:`~inferox.core.TensorBuilder.from_dlpack_or_copy`).

jax → numpy / torch
    ``np.asarray(jax_array)`` and ``torch.from_dlpack(jax_array)`` share a CPU array's memory
    (the numpy view is read-only).

64-bit producers without x64
    ``jnp.from_dlpack`` and ``jax.device_put`` silently turn int64/float64 into int32/float32
    when JAX's 64-bit mode is off. The builder never lets that happen: a producer whose dtype the
    backend does not support is refused with :class:`~inferox.core.DTypeError` (code
    ``INVALID_DTYPE``) naming the dtype; narrowing is available explicitly through
    :meth:`JaxBackend.as_native <inferox.jax.backend.JaxBackend.as_native>` (range-checked).
"""

from __future__ import annotations

from inferox.jax import _threads  # noqa: F401 - first: it sets XLA_FLAGS before jax starts

# isort: split

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from inferox.core.device import DeviceId
from inferox.core.dtype import DType
from inferox.core.errors import DTypeError
from inferox.core.spec import coerce_untyped
from inferox.core.tensor import Tensor, TensorBuilder, validate_shape
from inferox.jax._errors import jax_errors
from inferox.jax.plugin import BACKEND_NAME

if TYPE_CHECKING:
    from inferox.jax.backend import JaxBackend

__all__ = ["CPU_ALIGNMENT", "JaxTensor", "JaxTensorBuilder", "aligned_empty", "is_zero_copy_eligible", "jax_dtype"]

#: Byte alignment XLA's CPU client needs to adopt a host buffer without copying it.
CPU_ALIGNMENT = 64


def jax_dtype(dtype: DType | str) -> Any:
    """The ``jax.numpy`` dtype of an Inferox dtype (``"bf16"`` → ``jnp.bfloat16``).

    Core maps dtypes to one spelling, numpy's (:attr:`~inferox.core.DType.numpy_name`), which JAX
    shares; the framework object is looked up here, in the backend, so core never names jax."""
    return getattr(jnp, DType.parse(dtype).numpy_name)


def aligned_empty(shape: Sequence[int] | int, dtype: DType | str | Any = DType.F32, *, alignment: int = CPU_ALIGNMENT) -> np.ndarray:
    """An uninitialised C-contiguous numpy array whose data is ``alignment``-byte aligned.

    Arrays made this way are shared, not copied, by :meth:`JaxTensorBuilder.from_numpy` on the CPU.
    """
    dims = validate_shape(shape)
    dt = DType.parse(dtype).to_numpy()
    nbytes = int(np.prod(dims, dtype=np.int64)) * dt.itemsize
    raw = np.empty(nbytes + alignment, dtype=np.uint8)
    offset = (-raw.ctypes.data) % alignment
    return raw[offset : offset + nbytes].view(dt).reshape(dims)


def is_zero_copy_eligible(array: np.ndarray, device: DeviceId | str = "cpu") -> bool:
    """Whether :meth:`JaxTensorBuilder.from_numpy` will share ``array``'s memory on ``device``.

    True for a CPU target, a C-contiguous array and a 64-byte aligned data pointer.
    """
    return DeviceId.parse(device).is_cpu and bool(array.flags.c_contiguous) and array.ctypes.data % CPU_ALIGNMENT == 0


class JaxTensor(Tensor):
    """A ``jax.Array`` behind the Inferox :class:`~inferox.core.Tensor` face."""

    __slots__ = ("_backend",)

    backend_name = BACKEND_NAME

    def __init__(self, native: Any, backend: JaxBackend) -> None:
        super().__init__(native)
        self._backend = backend

    @property
    def backend(self) -> JaxBackend:
        return self._backend

    @property
    def device(self) -> DeviceId:
        return self._backend.device_of(self._native)

    def numpy(self) -> np.ndarray:
        """A read-only zero-copy view on the CPU, a host copy from an accelerator."""
        return self._backend.to_numpy(self._native)

    def data_ptr(self) -> int:
        """Address of the device buffer (``unsafe_buffer_pointer``), for checking memory sharing."""
        with jax_errors():
            return int(self._native.unsafe_buffer_pointer())

    def block_until_ready(self) -> JaxTensor:
        """Wait until this tensor's value has been computed (JAX dispatches asynchronously)."""
        with jax_errors():
            self._native.block_until_ready()
        return self


def _producer_dtype(obj: Any) -> DType | None:
    """The element type of a DLPack producer, read before JAX imports (and maybe narrows) it."""
    dtype = getattr(obj, "dtype", None)
    if dtype is not None:
        try:
            return DType.parse(dtype)
        except DTypeError:
            return None
    try:
        if obj.__dlpack_device__()[0] == 1:  # kDLCPU: numpy can look without copying
            return DType.from_numpy(np.from_dlpack(obj).dtype)
    except Exception:  # noqa: BLE001 - an exotic producer: let JAX judge it
        return None
    return None  # pragma: gpu


class JaxTensorBuilder(TensorBuilder):
    """Builds ``jax.Array`` tensors on one device; validation and random draws happen in core."""

    backend: JaxBackend

    def __init__(self, backend: JaxBackend, device: DeviceId) -> None:
        super().__init__(backend, device)
        self._jax_device = backend.jax_device(device)

    @property
    def jax_device(self) -> Any:
        """The ``jax.Device`` this builder places tensors on."""
        return self._jax_device

    def _from_numpy(self, array: np.ndarray) -> Any:
        """``jax.device_put``: shares aligned C-contiguous host memory on the CPU, copies otherwise."""
        self._check_dtype(DType.from_numpy(array.dtype))
        with jax_errors():
            return jax.device_put(array, self._jax_device)

    def full(self, shape: Sequence[int], value: float | int | bool, *, dtype: DType | str = DType.F32) -> JaxTensor:
        """A filled tensor made on the device (no host array and no transfer; zeros/ones/empty too).

        ``value`` is validated exactly as core does (it must fit ``dtype``); an allocation the
        device cannot hold is an :class:`~inferox.core.OutOfMemoryError`.
        """
        target = self._check_dtype(DType.parse(dtype))
        dims = validate_shape(shape)
        scalar = coerce_untyped(np.asarray(value), target, name="value")
        with jax_errors():
            native = jnp.full(dims, scalar, dtype=jax_dtype(target), device=self._jax_device)
        return self.backend.wrap(native)

    def _from_dlpack(self, obj: Any) -> Any:
        """``jnp.from_dlpack``: the producer's memory where JAX can adopt it (see module docstring)."""
        src = _producer_dtype(obj)
        if src is not None:
            self._check_dtype(src)
        with jax_errors():
            arr = jnp.from_dlpack(obj)
            if self._jax_device not in arr.devices():
                arr = jax.device_put(arr, self._jax_device)  # pragma: gpu
        return arr
