"""``Backend``: what every framework plugin implements.

A backend answers for one framework: which devices it has, which dtypes it supports on each, how
to build, move, cast and export its native tensors, and how much memory a device has.

Architectures need no code of their own on a backend that declares an array namespace
(:meth:`Backend.array_namespace`): the registry then runs every architecture's
:class:`~inferox.core.definition.Definition` on it, with the backend's :meth:`Backend.ops` (its
native kernels where they are faster) and its :meth:`Backend.definition_model` (how the framework
wants a model run: eagerly, under ``torch.inference_mode``, under ``jax.jit``). A backend that
declares none registers a factory per architecture through ``inferox_register_implementations``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from inferox.core.device import Device, DeviceId, MemoryInfo
from inferox.core.dtype import DType
from inferox.core.errors import ArchitectureNotFoundError, BackendError, DeviceError, DeviceUnavailableError, DTypeError
from inferox.core.tensor import Tensor, TensorBuilder

if TYPE_CHECKING:
    from inferox.core.definition import DefinitionPlan
    from inferox.core.model import Model, ModelMetadata
    from inferox.core.ops import Ops

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

    def native_dtype(self, native: Any) -> DType:
        """The Inferox dtype of an array a request brings (what request validation reads).

        The default parses ``native.dtype`` by name (numpy, torch and jax dtypes), and otherwise
        compares it with the dtypes of the array's own array API namespace (``array_api_strict``'s
        dtype objects are not numpy's). A :class:`~inferox.core.errors.DTypeError` when neither
        knows it; a backend with dtypes of its own overrides this.
        """
        try:
            return DType.parse(native.dtype)
        except DTypeError:
            import array_api_compat

            try:
                xp = array_api_compat.array_namespace(native)
            except TypeError:
                raise DTypeError(f"cannot interpret {native.dtype!r} as a dtype", actual=str(native.dtype)) from None
            for dtype in DType:
                candidate = getattr(xp, dtype.numpy_name, None)
                if candidate is not None and native.dtype == candidate:
                    return dtype
            raise

    # -- architecture definitions -----------------------------------------------------------------
    def array_namespace(self, device: DeviceId | str | None = None) -> Any:
        """The array API namespace this backend runs architecture definitions with, or ``None``.

        ``None`` (the default) means the backend runs only architectures a plugin registered a
        factory for. A namespace (``array_api_compat.torch``, ``jax.numpy``, ``numpy``) makes every
        architecture with a :class:`~inferox.core.definition.Definition` run here, with no code of
        its own: set :attr:`BackendSpec.definitions <inferox.core.BackendSpec>` so the registry
        lists them before the backend is loaded.
        """
        return None

    def ops(self, device: DeviceId | str | None = None) -> Ops:
        """The fused operations definitions run with: the reference :class:`~inferox.core.ops.Ops`
        over :meth:`array_namespace`, or a subclass overriding some with native kernels."""
        from inferox.core.ops import Ops

        xp = self.array_namespace(device)
        if xp is None:
            raise BackendError(f"backend {self.name!r} declares no array namespace: it runs no architecture definitions", backend=self.name)
        return Ops(xp)

    def definition_model(
        self,
        plan: DefinitionPlan,
        *,
        metadata: ModelMetadata,
        device: DeviceId | str | None = None,
        dtype: DType | str | None = None,
        **options: Any,
    ) -> Model:
        """The model that runs ``plan`` (an architecture made ready by
        :class:`~inferox.core.definition.DefinitionPlan`) on this backend.

        The default runs it eagerly (:class:`~inferox.core.definition.DefinitionModel`) when the
        backend has a namespace; a framework that compiles or needs a mode (``torch.inference_mode``,
        ``jax.jit`` with shape buckets) overrides it. ``options`` are the factory's (``threads``,
        ``seq_buckets`` …); ignore those you do not know.
        """
        if self.array_namespace(device) is None:
            raise ArchitectureNotFoundError(plan.schema.name, backend=self.name, available=[])
        from inferox.core.definition import DefinitionModel

        return DefinitionModel(plan, backend=self, metadata=metadata, device=device, dtype=dtype)

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
