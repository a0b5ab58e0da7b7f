"""``Backend``: what every framework plugin implements.

A backend answers for one framework: which devices it has, which dtypes it supports on each, how
to build, move, cast and export its native tensors, and how much memory a device has. Architecture
implementations are registered separately, through the ``inferox_register_implementations`` hook.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from inferox.core.device import Device, DeviceId, MemoryInfo
from inferox.core.dtype import DType
from inferox.core.errors import DeviceError, DeviceUnavailableError, DTypeError
from inferox.core.tensor import Tensor, TensorBuilder

__all__ = ["Backend"]


class Backend(ABC):
    """A framework backend. Subclasses set :attr:`name` and implement the abstract methods.

    Instances are created lazily by the plugin registry the first time a backend is used; creating
    one may import the framework.
    """

    #: The registry name (``"torch"``).
    name: ClassVar[str] = ""
    #: Device kinds this backend can ever use (``{"cpu", "cuda", "mps"}``).
    device_kinds: ClassVar[frozenset[str]] = frozenset({"cpu"})
    #: Whether tensors can be exchanged with other frameworks through DLPack.
    supports_dlpack: ClassVar[bool] = True
    #: Load options beyond the standard ones (``device``, ``dtype``, ``threads``) that this
    #: backend's factories honour (``{"int8"}`` on onnx). A factory ignores options it does not
    #: know, so the engine checks a user's option against this set and refuses it, naming the
    #: option and the backend, instead of loading a model without what was asked for.
    load_options: ClassVar[frozenset[str]] = frozenset()

    def thread_info(self) -> dict[str, Any]:
        """The thread pools this backend's models compute on, as far as the framework reports
        them (``{"intra_op": 2, "inter_op": 1, "spinning": False}``); ``{}`` when unknown."""
        return {}

    # -- framework identity ---------------------------------------------------------------------------
    @property
    @abstractmethod
    def version(self) -> str:
        """The framework's version string."""

    # -- devices ----------------------------------------------------------------------------------
    @abstractmethod
    def devices(self) -> list[Device]:
        """Every device this backend can use on this machine (the CPU always)."""

    def default_device(self) -> DeviceId:
        """The first available accelerator, else the CPU."""
        devices = [d for d in self.devices() if d.available]
        for d in devices:
            if not d.id.is_cpu:
                return d.id
        return DeviceId.cpu()

    def is_device_available(self, device: DeviceId | str) -> bool:
        dev = DeviceId.parse(device)
        return any(d.id == dev and d.available for d in self.devices())

    def check_device(self, device: DeviceId | str | None) -> DeviceId:
        """Parse ``device`` (``None`` → :meth:`default_device`) and check that it is usable here.

        Raises :class:`DeviceError` for a kind this backend never supports and
        :class:`DeviceUnavailableError` for one this machine lacks.
        """
        if device is None:
            return self.default_device()
        dev = DeviceId.parse(device)
        if dev.kind not in self.device_kinds:
            raise DeviceError(
                f"backend {self.name!r} does not support {dev.kind!r} devices (supports {', '.join(sorted(self.device_kinds))})",
                device=str(dev),
                backend=self.name,
            )
        if not self.is_device_available(dev):
            have = ", ".join(str(d.id) for d in self.devices() if d.available)
            raise DeviceUnavailableError(f"device {dev} is not available to backend {self.name!r} (available: {have})", device=str(dev), backend=self.name)
        return dev

    def memory_info(self, device: DeviceId | str | None = None) -> MemoryInfo | None:
        """Memory figures for a device, or ``None`` where the framework cannot tell."""
        return None

    def synchronize(self, device: DeviceId | str | None = None) -> None:
        """Wait for queued work on ``device`` to finish (a no-op on synchronous devices)."""

    # -- dtypes -----------------------------------------------------------------------------------
    @abstractmethod
    def supported_dtypes(self, device: DeviceId | str | None = None) -> frozenset[DType]:
        """The dtypes tensors on ``device`` may have."""

    # -- tensors ----------------------------------------------------------------------------------
    @abstractmethod
    def tensor_builder(self, device: DeviceId | str | None = None) -> TensorBuilder:
        """A builder making tensors on ``device`` (default: :meth:`default_device`)."""

    @abstractmethod
    def is_native(self, obj: Any) -> bool:
        """Whether ``obj`` is this framework's own tensor type."""

    @abstractmethod
    def wrap(self, native: Any) -> Tensor:
        """Wrap a native tensor in this backend's :class:`Tensor` face."""

    @abstractmethod
    def to_device(self, tensor: Tensor, device: DeviceId) -> Tensor:
        """``tensor`` on another device of this backend."""

    @abstractmethod
    def cast(self, tensor: Tensor, dtype: DType) -> Tensor:
        """``tensor`` converted to ``dtype`` (any cast; callers decide whether it is safe)."""

    @abstractmethod
    def to_numpy(self, native: Any) -> np.ndarray:
        """A host numpy array of a native tensor (zero-copy for CPU tensors where possible)."""

    def as_native(self, value: Any, *, dtype: DType | None = None, device: DeviceId | None = None) -> Any:
        """Any array-like as a native tensor on ``device`` with ``dtype`` (the engine's hot path).

        Integer dtypes this backend lacks (i64 on JAX without x64) are narrowed to the widest
        supported one with a range check, never silently (see :meth:`narrowed_dtype`).
        """
        if dtype is not None and dtype not in self.supported_dtypes(device):
            dtype = self.narrowed_dtype(dtype, device)
            host = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
            value = narrow_checked(host, dtype)
        return self.tensor_builder(device).from_array(value, dtype=dtype).native

    def narrowed_dtype(self, dtype: DType, device: DeviceId | str | None = None) -> DType:
        """The dtype this backend uses for ``dtype`` when it does not support it (e.g. i64 → i32)."""
        supported = self.supported_dtypes(device)
        if dtype in supported:
            return dtype
        fallbacks = {
            DType.I64: (DType.I32,), DType.U64: (DType.U32,), DType.F64: (DType.F32,),
            DType.U32: (DType.I32,), DType.BF16: (DType.F32,), DType.F16: (DType.F32,),
        }
        for candidate in fallbacks.get(dtype, ()):
            if candidate in supported:
                return candidate
        raise DTypeError(f"backend {self.name!r} does not support dtype {dtype.value}", expected=", ".join(sorted(d.value for d in supported)), actual=dtype.value)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.version}>"


def narrow_checked(array: np.ndarray, dtype: DType) -> np.ndarray:
    """``array`` as ``dtype``, raising :class:`DTypeError` if any value would change."""
    target = dtype.to_numpy()
    if array.dtype == target:
        return array
    if dtype.is_int and array.size and array.dtype.kind in "iu":
        info = np.iinfo(target)
        lo, hi = int(array.min()), int(array.max())
        if lo < info.min or hi > info.max:
            raise DTypeError(
                f"values out of range for {dtype.value}; enable 64-bit mode or send smaller values",
                expected=f"[{info.min}, {info.max}]",
                actual=f"[{lo}, {hi}]",
            )
    return array.astype(target)
