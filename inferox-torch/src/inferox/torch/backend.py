"""``TorchBackend``: the PyTorch implementation of :class:`inferox.core.Backend`.

Devices are ``cpu`` (always), ``cuda:N`` (one per ``torch.cuda.device_count()``) and ``mps``
(Apple silicon, when ``torch.backends.mps.is_available()``). The default device is the first
accelerator, else the CPU.

Dtypes: all thirteen :class:`~inferox.core.DType`\\ s on ``cpu`` and ``cuda``. Torch ≥ 2.3 creates,
moves, casts and exchanges (DLPack) ``uint16``/``uint32``/``uint64`` tensors, although most
arithmetic kernels are missing for them — enough for inputs and outputs, which is what a backend
tensor is for. ``mps`` has no ``float64``.

Zero-copy and explicit conversions (never silent):

* numpy → torch (:meth:`TorchTensorBuilder._from_numpy <inferox.torch.tensor.TorchTensorBuilder>`)
  shares memory on the CPU. It copies only where torch cannot alias the array: a read-only array
  (torch tensors are always writable, so aliasing would let a model write into read-only memory),
  negative strides, or non-native byte order. ``ml_dtypes.bfloat16`` arrays are shared through an
  ``int16`` view of their bits, since numpy has no bf16 that torch knows.
* torch → numpy (:meth:`TorchBackend.to_numpy`) is ``tensor.detach().numpy()`` for CPU tensors —
  the same memory. A ``bfloat16`` tensor becomes an ``ml_dtypes.bfloat16`` array through an
  ``int16`` view of the same bits (still the same memory; never a silent ``float32`` upcast; ask
  for ``astype("f32")`` first if that is what you want). GPU tensors are copied to the host first.
* DLPack (``__dlpack__`` / :meth:`TensorBuilder.from_dlpack`) shares memory with numpy, JAX and
  any other producer on the same device. Where the *other* side must narrow (JAX without 64-bit
  mode turns ``int64``/``float64`` into 32 bits), that backend narrows with a range check; see
  ``tests/integration/test_interop_torch.py``.

Errors: every torch exception is re-raised through :func:`inferox.torch._errors.torch_errors`:
out-of-memory → :class:`~inferox.core.errors.OutOfMemoryError`, a missing accelerator →
:class:`~inferox.core.errors.DeviceUnavailableError`, anything else →
:class:`~inferox.core.errors.BackendError`, with the torch exception as ``__cause__``.

Coverage policy: lines that only run with a CUDA or MPS device present are marked ``# pragma: gpu``
and excluded from coverage (see ``docs/coverage-policy.md``); they are exercised when a GPU machine
is available, by the tests that skip by capability elsewhere.
"""

from __future__ import annotations

from inferox.torch import _threads  # first: it sets OpenMP's environment before torch loads

# isort: split
from typing import TYPE_CHECKING, Any

import ml_dtypes
import numpy as np
import torch

from inferox.core.backend import Backend
from inferox.core.device import Device, DeviceId, DeviceKind, MemoryInfo, host_memory_info
from inferox.core.dtype import DType
from inferox.core.errors import DeviceError, DTypeError, InvalidInputError
from inferox.core.model import Model, ModelMetadata
from inferox.core.tensor import Tensor
from inferox.torch._errors import torch_errors
from inferox.torch.plugin import BACKEND_NAME
from inferox.torch.tensor import TorchTensor, TorchTensorBuilder, torch_dtype

if TYPE_CHECKING:
    from inferox.core.definition import DefinitionPlan
    from inferox.torch.ops import TorchOps

__all__ = ["TorchBackend", "device_id_of", "torch_device"]

_ALL_DTYPES = frozenset(DType)
_MPS_DTYPES = _ALL_DTYPES - {DType.F64}


def torch_device(device: DeviceId | str) -> torch.device:
    """The ``torch.device`` for an Inferox device id (``cuda:1`` → ``torch.device("cuda", 1)``)."""
    dev = DeviceId.parse(device)
    if dev.is_cpu:
        return torch.device("cpu")
    if dev.is_metal:
        return torch.device("mps")
    return torch.device(dev.kind, dev.index)


def device_id_of(native: torch.Tensor) -> DeviceId:
    """The Inferox device id of a torch tensor."""
    dev = native.device
    if dev.type == "cpu":
        return DeviceId.cpu()
    return DeviceId(dev.type, dev.index or 0)  # pragma: gpu


def _mps_available() -> bool:
    return bool(torch.backends.mps.is_available())


class TorchBackend(Backend):
    """The PyTorch backend (``"torch"``): devices ``cpu``, ``cuda:N`` and ``mps``."""

    name = BACKEND_NAME
    device_kinds = frozenset({DeviceKind.CPU, DeviceKind.CUDA, DeviceKind.MPS})
    supports_dlpack = True

    def __init__(self) -> None:
        # Pools sized to the CPUs this process may use, spinning off (see inferox.torch._threads).
        _threads.apply_defaults()

    def thread_info(self) -> dict[str, Any]:
        """torch's intra-op and inter-op pools now (process-wide), the CPUs the process may use and
        whether idle OpenMP threads spin (``omp_wait_policy``)."""
        return _threads.thread_info()

    @property
    def version(self) -> str:
        return str(torch.__version__)

    # -- devices ----------------------------------------------------------------------------------
    def devices(self) -> list[Device]:
        """The CPU, then every CUDA device, then MPS when present."""
        out = [
            Device(
                DeviceId.cpu(),
                self.name,
                name=f"CPU ({torch.get_num_threads()} threads)",
                available=True,
                memory=host_memory_info(),
                properties={"threads": torch.get_num_threads()},
            )
        ]
        for index in range(self._cuda_count()):
            out.append(self._cuda_device(index))  # pragma: gpu
        if _mps_available():
            out.append(Device(DeviceId(DeviceKind.MPS), self.name, name="Apple MPS", available=True))  # pragma: gpu
        return out

    def _cuda_count(self) -> int:
        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0

    def _cuda_device(self, index: int) -> Device:  # pragma: gpu
        props = torch.cuda.get_device_properties(index)
        memory = self.memory_info(DeviceId.cuda(index))
        return Device(
            DeviceId.cuda(index),
            self.name,
            name=str(props.name),
            available=True,
            memory=memory,
            properties={"capability": f"{props.major}.{props.minor}", "multi_processors": props.multi_processor_count},
        )

    def is_device_available(self, device: DeviceId | str) -> bool:
        """Cheap (no device enumeration): the engine asks this on every request."""
        dev = DeviceId.parse(device)
        if dev.is_cpu:
            return True
        if dev.is_cuda:
            return dev.index < self._cuda_count()
        if dev.is_metal:
            return dev.index == 0 and _mps_available()
        return False

    def default_device(self) -> DeviceId:
        if self._cuda_count():
            return DeviceId.cuda(0)  # pragma: gpu
        if _mps_available():
            return DeviceId(DeviceKind.MPS)  # pragma: gpu
        return DeviceId.cpu()

    def memory_info(self, device: DeviceId | str | None = None) -> MemoryInfo | None:
        """Host RAM for ``cpu``; ``torch.cuda.mem_get_info`` for CUDA; the MPS driver's figures."""
        dev = self.check_device(device)
        if dev.is_cpu:
            return host_memory_info()
        with torch_errors(device=str(dev)):  # pragma: gpu
            if dev.is_cuda:  # pragma: gpu
                free, total = torch.cuda.mem_get_info(dev.index)  # pragma: gpu
                return MemoryInfo.from_total_free(total, free)  # pragma: gpu
            total = int(torch.mps.recommended_max_memory())  # pragma: gpu
            used = int(torch.mps.driver_allocated_memory())  # pragma: gpu
            return MemoryInfo(total=total, free=max(total - used, 0), used=used)  # pragma: gpu

    def synchronize(self, device: DeviceId | str | None = None) -> None:
        dev = self.check_device(device)
        with torch_errors(device=str(dev)):
            if dev.is_cuda:
                torch.cuda.synchronize(dev.index)  # pragma: gpu
            elif dev.is_metal:
                torch.mps.synchronize()  # pragma: gpu

    # -- dtypes -----------------------------------------------------------------------------------
    def supported_dtypes(self, device: DeviceId | str | None = None) -> frozenset[DType]:
        """All dtypes on ``cpu``/``cuda``; all but ``f64`` on ``mps``. The device need not be present."""
        dev = self.default_device() if device is None else DeviceId.parse(device)
        if dev.kind not in self.device_kinds:
            raise DeviceError(f"backend {self.name!r} does not support {dev.kind!r} devices", device=str(dev), backend=self.name)
        return _MPS_DTYPES if dev.is_metal else _ALL_DTYPES

    # -- tensors ----------------------------------------------------------------------------------
    def tensor_builder(self, device: DeviceId | str | None = None) -> TorchTensorBuilder:
        return TorchTensorBuilder(self, self.check_device(device))

    def is_native(self, obj: Any) -> bool:
        return isinstance(obj, torch.Tensor)

    def wrap(self, native: Any) -> TorchTensor:
        if isinstance(native, TorchTensor):
            return native
        if not isinstance(native, torch.Tensor):
            raise InvalidInputError("TorchBackend.wrap needs a torch.Tensor", expected="torch.Tensor", actual=type(native).__name__)
        return TorchTensor(native, self)

    def _native_of(self, tensor: Any) -> torch.Tensor:
        if isinstance(tensor, TorchTensor):
            return tensor.native
        if isinstance(tensor, torch.Tensor):
            return tensor
        if isinstance(tensor, Tensor):
            # Another backend's tensor: DLPack where it can, a host copy otherwise.
            native: torch.Tensor = self.tensor_builder(DeviceId.cpu()).from_dlpack_or_copy(tensor).native
            return native
        raise InvalidInputError("expected a tensor", expected="inferox Tensor or torch.Tensor", actual=type(tensor).__name__)

    def to_device(self, tensor: Tensor, device: DeviceId | str) -> TorchTensor:
        dev = self.check_device(device)
        native = self._native_of(tensor)
        self._check_dtype_on(DType.parse(native.dtype), dev)
        if device_id_of(native) == dev:
            return self.wrap(native)
        with torch_errors(device=str(dev)):  # pragma: gpu
            return self.wrap(native.to(torch_device(dev)))  # pragma: gpu

    def cast(self, tensor: Tensor, dtype: DType | str) -> TorchTensor:
        target = DType.parse(dtype)
        native = self._native_of(tensor)
        self._check_dtype_on(target, device_id_of(native))
        with torch_errors(device=str(device_id_of(native))):
            return self.wrap(native.to(torch_dtype(target)))

    def _check_dtype_on(self, dtype: DType, device: DeviceId) -> None:
        supported = self.supported_dtypes(device)
        if dtype not in supported:
            raise DTypeError(
                f"backend {self.name!r} does not support dtype {dtype.value} on {device}",
                expected=", ".join(d.value for d in DType if d in supported),
                actual=dtype.value,
            )

    def to_numpy(self, native: Any) -> np.ndarray:
        """A numpy array of a torch tensor: the same memory for CPU tensors (see the module docstring).

        ``bfloat16`` becomes ``ml_dtypes.bfloat16`` through an ``int16`` view of the same bits;
        tensors that require grad are detached; GPU tensors are copied to the host.
        """
        t = self._native_of(native)
        with torch_errors(device=str(device_id_of(t))):
            t = t.detach()
            if t.device.type != "cpu":
                t = t.cpu()  # pragma: gpu
            t = t.resolve_conj().resolve_neg()
            if t.dtype == torch.bfloat16:
                return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
            return t.numpy()

    # -- architecture definitions -----------------------------------------------------------------
    def array_namespace(self, device: DeviceId | str | None = None) -> Any:
        """``array_api_compat.torch``: every architecture definition runs on it."""
        import array_api_compat.torch as xp

        return xp

    def ops(self, device: DeviceId | str | None = None) -> TorchOps:
        """:class:`~inferox.torch.ops.TorchOps`: core's operations on torch's fused kernels."""
        from inferox.torch.ops import TorchOps

        return TorchOps(self.array_namespace(device))

    def definition_model(
        self,
        plan: DefinitionPlan,
        *,
        metadata: ModelMetadata,
        device: DeviceId | str | None = None,
        dtype: DType | str | None = None,
        threads: int | None = None,
        **options: Any,
    ) -> Model:
        """A :class:`~inferox.torch.model.TorchDefinitionModel` (options: ``threads``, process-wide)."""
        from inferox.torch.model import TorchDefinitionModel

        return TorchDefinitionModel(plan, backend=self, metadata=metadata, device=device, dtype=dtype, threads=threads)
