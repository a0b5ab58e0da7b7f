"""``JaxBackend``: the Inferox contract implemented with JAX (``jax.Array`` is the native tensor).

Importing this module imports jax; the plugin registers it lazily by its loader string
``"inferox.jax.backend:JaxBackend"``.

Devices
    JAX's platforms map onto canonical Inferox kinds: ``cpu`` → ``cpu``, ``gpu`` (CUDA or ROCm)
    → ``cuda:N``, ``tpu`` → ``tpu:N``, where ``N`` is the device's position in
    ``jax.devices(platform)``. Memory figures come from ``Device.memory_stats()`` where the
    platform reports them (GPUs, TPUs); for the CPU they are the host's physical memory.

Dtypes and 64-bit mode
    JAX runs without 64-bit types unless ``JAX_ENABLE_X64`` (``jax_enable_x64``) is on, and that
    switch is process-wide. Without it JAX would *silently* turn int64 into int32 and float64 into
    float32, so this backend declares ``i64``, ``u64`` and ``f64`` unsupported and refuses them
    with :class:`~inferox.core.DTypeError` (code ``INVALID_DTYPE``) naming the dtype. Conversions
    that do happen are explicit:

    * :meth:`JaxBackend.as_native` narrows integers (``i64`` → ``i32``, ``u64`` → ``u32``) after a
      range check (``DTypeError`` when a value does not fit) — token ids take this path;
    * ``f64`` → ``f32`` loses precision, so it happens only when the caller asks for ``f32``
      (``as_native(x, dtype=DType.F32)``, ``builder.from_numpy(a, dtype="f32")``,
      ``backend.cast(t, "f32")``) or passes ``narrow_floats=True`` to :meth:`JaxBackend.as_native`.

    With x64 on, all 13 dtypes are supported and nothing is narrowed.

Host arrays
    :meth:`JaxBackend.to_numpy` is ``np.asarray``: zero-copy (a read-only view) for CPU arrays,
    a device-to-host copy otherwise. ``bf16`` comes back as ``ml_dtypes.bfloat16``, which numpy
    handles natively here.
"""

from __future__ import annotations

from inferox.jax import _threads  # first: it sets XLA_FLAGS before jax starts

# isort: split

import os
from typing import TYPE_CHECKING, Any

import jax
import jaxlib
import numpy as np

from inferox.core.backend import Backend, narrow_checked
from inferox.core.device import Device, DeviceId, MemoryInfo
from inferox.core.dtype import DType
from inferox.core.errors import DTypeError, InvalidInputError
from inferox.core.tensor import Tensor
from inferox.jax._errors import jax_errors
from inferox.jax.plugin import BACKEND_NAME
from inferox.jax.tensor import JaxTensor, JaxTensorBuilder, jax_dtype

if TYPE_CHECKING:
    from inferox.core.definition import DefinitionPlan
    from inferox.core.model import Model, ModelMetadata
    from inferox.jax.ops import JaxOps

__all__ = ["JaxBackend", "x64_enabled"]

# JAX platform name → canonical Inferox device kind.
_PLATFORM_KIND = {"cpu": "cpu", "gpu": "cuda", "cuda": "cuda", "rocm": "cuda", "tpu": "tpu"}
# Canonical kind → the platform name jax.devices() takes.
_KIND_PLATFORM = {"cpu": "cpu", "cuda": "gpu", "tpu": "tpu"}

_BASE_DTYPES = frozenset(
    {DType.BOOL, DType.U8, DType.U16, DType.U32, DType.I8, DType.I16, DType.I32, DType.F16, DType.BF16, DType.F32}
)
_X64_DTYPES = frozenset({DType.U64, DType.I64, DType.F64})


def x64_enabled() -> bool:
    """Whether JAX's process-wide 64-bit mode is on (read on every call: it can be switched)."""
    return bool(getattr(jax.config, "jax_enable_x64"))  # noqa: B009 - jax.config is untyped for mypy


def _host_memory() -> MemoryInfo | None:
    """Physical and available host memory (POSIX ``sysconf``); ``None`` where unknown."""
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        total = os.sysconf("SC_PHYS_PAGES") * page
        free = os.sysconf("SC_AVPHYS_PAGES") * page
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX hosts
        return None
    return MemoryInfo.from_total_free(total, free)


def _device_memory(device: Any) -> MemoryInfo | None:  # pragma: gpu - only accelerators are asked
    """``memory_stats()`` of an accelerator as :class:`MemoryInfo` (``None`` where not reported)."""
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - some PJRT plugins raise instead of returning None
        return None
    if not stats or "bytes_limit" not in stats:
        return None
    total = int(stats["bytes_limit"])
    used = int(stats.get("bytes_in_use", 0))
    return MemoryInfo(total=total, free=max(total - used, 0), used=used)


class JaxBackend(Backend):
    """The JAX backend (``get_backend("jax")``). See the module docstring for the dtype rule."""

    name = BACKEND_NAME
    device_kinds = frozenset({"cpu", "cuda", "tpu"})
    supports_dlpack = True

    def __init__(self) -> None:
        self._platform_devices: dict[str, list[Any]] = {}

    def thread_info(self) -> dict[str, Any]:
        """XLA's CPU pools as configured (see :mod:`inferox.jax._threads` for what can be)."""
        return _threads.thread_info()

    # -- identity ---------------------------------------------------------------------------------
    @property
    def version(self) -> str:
        """``"<jax version> (jaxlib <jaxlib version>)"``."""
        return f"{jax.__version__} (jaxlib {getattr(jaxlib, '__version__', '?')})"

    @property
    def x64(self) -> bool:
        """Whether 64-bit types are enabled (``JAX_ENABLE_X64``)."""
        return x64_enabled()

    # -- devices ----------------------------------------------------------------------------------
    def _jax_devices(self, kind: str) -> list[Any]:
        """The JAX devices of one canonical kind (cached: JAX's device set is fixed per process)."""
        cached = self._platform_devices.get(kind)
        if cached is None:
            platform = _KIND_PLATFORM.get(kind)
            try:
                cached = list(jax.devices(platform)) if platform else []
            except RuntimeError:
                # JAX raises RuntimeError for a platform this jaxlib lacks or that failed to start.
                cached = []
            self._platform_devices[kind] = cached
        return cached

    def devices(self) -> list[Device]:
        """The CPU, then every CUDA GPU (``cuda:N``) and TPU (``tpu:N``) that JAX can see."""
        out: list[Device] = []
        for kind in ("cpu", "cuda", "tpu"):
            for index, dev in enumerate(self._jax_devices(kind)):
                if kind == "cpu" and index > 0:
                    break  # Inferox has a single host device; XLA may expose several CPU "devices".
                memory = _host_memory() if kind == "cpu" else _device_memory(dev)
                out.append(
                    Device(
                        id=DeviceId(kind, 0 if kind == "cpu" else index),
                        backend=self.name,
                        name=str(getattr(dev, "device_kind", dev.platform)),
                        available=True,
                        memory=memory,
                        properties={"platform": dev.platform, "jax_id": dev.id},
                    )
                )
        return out

    def is_device_available(self, device: DeviceId | str) -> bool:
        """Whether JAX has this device (answered from the cached device lists: this is on the hot path)."""
        dev = DeviceId.parse(device)
        if dev.kind not in self.device_kinds:
            return False
        count = len(self._jax_devices(dev.kind))
        return dev.index < (min(count, 1) if dev.is_cpu else count)

    def default_device(self) -> DeviceId:
        """The first CUDA GPU, else the first TPU, else the CPU (the order :meth:`devices` lists)."""
        for kind in ("cuda", "tpu"):
            if self._jax_devices(kind):
                return DeviceId(kind, 0)  # pragma: gpu
        return DeviceId.cpu()

    def jax_device(self, device: DeviceId | str | None = None) -> Any:
        """The ``jax.Device`` for an Inferox device (``None`` → the default device)."""
        dev = self.check_device(device)
        return self._jax_devices(dev.kind)[0 if dev.is_cpu else dev.index]

    def device_of(self, array: Any) -> DeviceId:
        """The Inferox device a ``jax.Array`` lives on (the first one, for a sharded array)."""
        devs = sorted(array.devices(), key=lambda d: d.id)
        jdev = devs[0]
        kind = _PLATFORM_KIND.get(jdev.platform, jdev.platform)
        if kind == "cpu":
            return DeviceId.cpu()
        try:  # pragma: gpu
            return DeviceId(kind, self._jax_devices(kind).index(jdev))  # pragma: gpu
        except ValueError:  # pragma: gpu
            return DeviceId(kind, int(jdev.id))  # pragma: gpu

    def memory_info(self, device: DeviceId | str | None = None) -> MemoryInfo | None:
        """Device memory from ``memory_stats()``; host memory for the CPU."""
        dev = self.check_device(device)
        if dev.is_cpu:
            return _host_memory()
        return _device_memory(self.jax_device(dev))  # pragma: gpu

    def synchronize(self, device: DeviceId | str | None = None) -> None:
        """Block until every live array on ``device`` is computed (``block_until_ready``)."""
        jdev = self.jax_device(device)
        with jax_errors():
            for arr in jax.live_arrays():  # type: ignore[no-untyped-call]
                if jdev in arr.devices():
                    arr.block_until_ready()
            jax.effects_barrier()  # type: ignore[no-untyped-call]

    # -- dtypes -----------------------------------------------------------------------------------
    def supported_dtypes(self, device: DeviceId | str | None = None) -> frozenset[DType]:
        """Everything but ``i64``/``u64``/``f64``, which need ``JAX_ENABLE_X64``."""
        if device is not None:
            self.check_device(device)
        return _BASE_DTYPES | _X64_DTYPES if x64_enabled() else _BASE_DTYPES

    def _require_dtype(self, dtype: DType, device: DeviceId | str | None = None) -> DType:
        supported = self.supported_dtypes(device)
        if dtype not in supported:
            hint = "; set JAX_ENABLE_X64=1 for 64-bit types" if dtype in _X64_DTYPES else ""
            raise DTypeError(
                f"backend 'jax' does not support dtype {dtype.value}{hint}",
                name="dtype",
                expected=", ".join(d.value for d in DType if d in supported),
                actual=dtype.value,
            )
        return dtype

    # -- tensors ----------------------------------------------------------------------------------
    def tensor_builder(self, device: DeviceId | str | None = None) -> JaxTensorBuilder:
        return JaxTensorBuilder(self, self.check_device(device))

    def is_native(self, obj: Any) -> bool:
        return isinstance(obj, jax.Array)

    def wrap(self, native: Any) -> JaxTensor:
        if isinstance(native, JaxTensor):
            return native
        if not self.is_native(native):
            raise InvalidInputError("JaxBackend.wrap needs a jax.Array", name="native", expected="jax.Array", actual=type(native).__name__)
        DType.parse(native.dtype)  # a jax-only dtype (int4, float8 …) has no Inferox name: DTypeError
        return JaxTensor(native, self)

    def _native_of(self, tensor: Any) -> Any:
        native = tensor.native if isinstance(tensor, Tensor) else tensor
        if not self.is_native(native):
            raise InvalidInputError("expected a jax tensor", name="tensor", expected="jax.Array or JaxTensor", actual=type(native).__name__)
        return native

    def to_device(self, tensor: Tensor | Any, device: DeviceId | str) -> JaxTensor:
        """``tensor`` on ``device`` (``jax.device_put``; no copy when it is already there)."""
        dev = self.check_device(device)
        if isinstance(tensor, Tensor) and tensor.backend.name != self.name:
            return self.tensor_builder(dev).from_dlpack_or_copy(tensor)  # type: ignore[return-value]
        native = self._native_of(tensor)
        with jax_errors():
            return self.wrap(jax.device_put(native, self.jax_device(dev)))

    def cast(self, tensor: Tensor | Any, dtype: DType | str) -> JaxTensor:
        """``tensor`` as ``dtype`` (any cast, including lossy ones; 64-bit targets need x64)."""
        target = self._require_dtype(DType.parse(dtype))
        native = self._native_of(tensor)
        with jax_errors():
            return self.wrap(native.astype(jax_dtype(target)))

    def to_numpy(self, native: Any) -> np.ndarray:
        """``np.asarray``: a read-only zero-copy view for CPU arrays, a host copy otherwise."""
        arr = self._native_of(native)
        with jax_errors():
            return np.asarray(arr)

    def as_native(self, value: Any, *, dtype: DType | str | None = None, device: DeviceId | str | None = None, narrow_floats: bool = False) -> Any:
        """Any array-like as a ``jax.Array`` on ``device`` with ``dtype``.

        Unsupported 64-bit integer dtypes are narrowed with a range check (``DTypeError`` when a
        value does not fit); an explicitly requested narrower integer dtype is range-checked too.
        An unsupported float dtype (``f64`` without x64) is a ``DTypeError`` unless
        ``narrow_floats=True``.
        """
        target = DType.parse(dtype) if dtype is not None else None
        dev = self.check_device(device)
        if target is not None and target not in self.supported_dtypes(dev) and target.is_float and not narrow_floats:
            self._require_dtype(target, dev)
        if target is not None and target.is_int and not self.is_native(value) and not isinstance(value, JaxTensor) and hasattr(value, "dtype"):
            # An int64 array asked to become int32 must not wrap around: check the range first.
            try:
                src: DType | None = DType.parse(value.dtype)
            except DTypeError:
                src = None
            if src is not None and src.is_int and src is not target:
                with jax_errors():
                    host = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
                value = narrow_checked(host, self.narrowed_dtype(target, dev))
        with jax_errors():
            return super().as_native(value, dtype=target, device=dev)

    # -- architecture definitions -----------------------------------------------------------------
    def array_namespace(self, device: DeviceId | str | None = None) -> Any:
        """``jax.numpy`` (an array API namespace itself): every architecture definition runs on it, under ``jit``."""
        import jax.numpy as jnp

        return jnp

    def ops(self, device: DeviceId | str | None = None) -> JaxOps:
        """:class:`~inferox.jax.ops.JaxOps`: core's operations with ``jax.nn`` / ``jax.lax`` kernels."""
        from inferox.jax.ops import JaxOps

        return JaxOps(self.array_namespace(device))

    def definition_model(
        self,
        plan: DefinitionPlan,
        *,
        metadata: ModelMetadata,
        device: DeviceId | str | None = None,
        dtype: DType | str | None = None,
        **options: Any,
    ) -> Model:
        """A :class:`~inferox.jax.model.JaxDefinitionModel`, jit-compiled per shape bucket.

        Options: ``seq_buckets`` / ``batch_buckets`` (padded sizes; default powers of two from 16 /
        1, sequences capped at the model's position table), ``warmup_batch_sizes`` /
        ``warmup_seq_lengths`` (what ``warmup()`` compiles; default batch 1, and for text models
        sequences 16 and 128). Others are ignored.
        """
        from inferox.jax.model import JaxDefinitionModel, bucket_policy

        text = plan.text
        buckets = bucket_policy(options, max_sequence=text.limit if text is not None else None, warmup_sequence=(16, 128) if text is not None else ())
        return JaxDefinitionModel(plan, backend=self, metadata=metadata, device=device, dtype=dtype, buckets=buckets)
