"""``OnnxBackend``: the ONNX Runtime implementation of :class:`inferox.core.Backend`.

Devices are ``cpu`` (always) and ``cuda:N`` when the installed runtime has the
``CUDAExecutionProvider`` (the ``onnxruntime-gpu`` build) and a GPU is visible. The default device
is the first GPU, else the CPU.

Tensors: on the CPU a native tensor is a numpy array — ONNX Runtime's Python API reads and returns
numpy arrays, so feeding a model and reading its outputs copies nothing on our side. On CUDA a
native tensor is an ``onnxruntime.OrtValue`` in device memory. Every Inferox dtype is supported on
the CPU (``bf16`` as ``ml_dtypes.bfloat16``); DLPack goes through numpy.

Errors: every ONNX Runtime exception is re-raised through :func:`inferox.onnx._errors.onnx_errors`.

Lines that only run with a CUDA device present are marked ``# pragma: gpu`` (see
``docs/coverage-policy.md``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from inferox.core import usable_cpus
from inferox.core.backend import Backend
from inferox.core.device import Device, DeviceId, DeviceKind, MemoryInfo, host_memory_info
from inferox.core.dtype import DType
from inferox.core.errors import InvalidInputError
from inferox.core.model import Model, ModelMetadata
from inferox.core.tensor import Tensor
from inferox.onnx._errors import onnx_errors
from inferox.onnx.plugin import BACKEND_NAME
from inferox.onnx.tensor import OnnxTensor, OnnxTensorBuilder, device_id_of

if TYPE_CHECKING:
    from inferox.core.definition import DefinitionPlan
    from inferox.onnx._trace import TraceNamespace
    from inferox.onnx.ops import OnnxOps

__all__ = ["CPU_PROVIDER", "CUDA_PROVIDER", "OnnxBackend", "providers_for"]

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"

_ALL_DTYPES = frozenset(DType)


def providers_for(device: DeviceId) -> list[Any]:
    """The execution providers (with options) an ``InferenceSession`` on ``device`` uses."""
    if device.is_cuda:
        return [(CUDA_PROVIDER, {"device_id": device.index}), CPU_PROVIDER]  # pragma: gpu
    return [CPU_PROVIDER]


class OnnxBackend(Backend):
    """The ONNX Runtime backend (``"onnx"``): devices ``cpu`` and ``cuda:N``."""

    name = BACKEND_NAME
    device_kinds = frozenset({DeviceKind.CPU, DeviceKind.CUDA})
    supports_dlpack = True
    #: ``int8`` (with ``int8_scheme``) quantises the graph's weights; ``optimize`` toggles ONNX
    #: Runtime's transformer fusions (see docs/onnx-backend.md).
    load_options = frozenset({"int8", "int8_scheme", "optimize"})

    @property
    def version(self) -> str:
        return str(ort.__version__)

    @property
    def available_providers(self) -> list[str]:
        """The execution providers this onnxruntime build offers."""
        return list(ort.get_available_providers())

    # -- devices ----------------------------------------------------------------------------------
    def _cuda_count(self) -> int:
        if CUDA_PROVIDER not in self.available_providers:
            return 0
        return _visible_cuda_devices()  # pragma: gpu

    def devices(self) -> list[Device]:
        """The CPU, then every CUDA device the CUDA provider can use."""
        threads = usable_cpus()
        out = [
            Device(
                DeviceId.cpu(),
                self.name,
                name=f"CPU ({threads} usable cores)",
                available=True,
                memory=host_memory_info(),
                properties={"providers": self.available_providers},
            )
        ]
        for index in range(self._cuda_count()):
            out.append(Device(DeviceId.cuda(index), self.name, name=f"CUDA device {index}", available=True))  # pragma: gpu
        return out

    def is_device_available(self, device: DeviceId | str) -> bool:
        dev = DeviceId.parse(device)
        if dev.is_cpu:
            return True
        if dev.is_cuda:
            return dev.index < self._cuda_count()
        return False

    def default_device(self) -> DeviceId:
        if self._cuda_count():
            return DeviceId.cuda(0)  # pragma: gpu
        return DeviceId.cpu()

    def memory_info(self, device: DeviceId | str | None = None) -> MemoryInfo | None:
        """Host RAM for ``cpu``; ``None`` for CUDA (ONNX Runtime does not report device memory)."""
        dev = self.check_device(device)
        return host_memory_info() if dev.is_cpu else None

    # -- dtypes -----------------------------------------------------------------------------------
    def supported_dtypes(self, device: DeviceId | str | None = None) -> frozenset[DType]:
        """Every dtype: tensors are numpy arrays on the host, ``OrtValue``\\ s on a GPU."""
        if device is not None:
            DeviceId.parse(device)
        return _ALL_DTYPES

    # -- tensors ----------------------------------------------------------------------------------
    def tensor_builder(self, device: DeviceId | str | None = None) -> OnnxTensorBuilder:
        return OnnxTensorBuilder(self, self.check_device(device))

    def is_native(self, obj: Any) -> bool:
        return isinstance(obj, (np.ndarray, ort.OrtValue))

    def wrap(self, native: Any) -> OnnxTensor:
        if isinstance(native, OnnxTensor):
            return native
        if not self.is_native(native):
            raise InvalidInputError("OnnxBackend.wrap needs a numpy array or an OrtValue", expected="numpy.ndarray or OrtValue", actual=type(native).__name__)
        return OnnxTensor(native, self)

    def to_ortvalue(self, array: np.ndarray, device: DeviceId) -> Any:  # pragma: gpu
        """``array`` copied into an ``OrtValue`` on ``device``."""
        with onnx_errors(device=str(device)):
            return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), "cuda", device.index)

    def to_device(self, tensor: Tensor, device: DeviceId | str) -> OnnxTensor:
        dev = self.check_device(device)
        if isinstance(tensor, OnnxTensor) and tensor.device == dev:
            return tensor
        host = tensor.numpy() if isinstance(tensor, Tensor) else self.to_numpy(tensor)
        if dev.is_cpu:
            return OnnxTensor(host, self)
        return OnnxTensor(self.to_ortvalue(host, dev), self, dev)  # pragma: gpu

    def cast(self, tensor: Tensor, dtype: DType | str) -> OnnxTensor:
        target = DType.parse(dtype)
        dev = tensor.device if isinstance(tensor, Tensor) else device_id_of(tensor)
        host = self.to_numpy(tensor.native if isinstance(tensor, Tensor) else tensor)
        with np.errstate(over="ignore", invalid="ignore"):  # an asked-for cast may overflow (1e308 → f32 inf), as torch's and jax's do silently
            cast = host.astype(target.to_numpy())
        return self.to_device(OnnxTensor(cast, self), dev)

    def to_numpy(self, native: Any) -> np.ndarray:
        """The array itself on the CPU; a host copy of a device ``OrtValue``."""
        if isinstance(native, Tensor):
            native = native.native
        if isinstance(native, np.ndarray):
            return native
        if isinstance(native, ort.OrtValue):
            with onnx_errors():  # pragma: gpu
                return np.asarray(native.numpy())  # pragma: gpu
        return np.asarray(native)

    # -- architecture definitions -----------------------------------------------------------------
    def array_namespace(self, device: DeviceId | str | None = None) -> TraceNamespace:
        """A recording namespace (a fresh graph each call): definitions run on it once, on symbolic
        arrays, and what they compute becomes an ONNX graph (:mod:`inferox.onnx._trace`)."""
        from inferox.onnx._trace import Tracer

        return Tracer("inferox").xp

    def ops(self, device: DeviceId | str | None = None) -> OnnxOps:
        """:class:`~inferox.onnx.ops.OnnxOps`: core's operations as ONNX Runtime's (fused) operators."""
        from inferox.onnx.ops import OnnxOps

        return OnnxOps(self.array_namespace(device))

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
        """An :class:`~inferox.onnx.model.OnnxDefinitionModel`: the definition traced into an ONNX
        graph (options: ``threads``, per session; ``optimize``, ``int8``, ``int8_scheme``, ``cache``)."""
        from inferox.onnx._graph import GraphOptions
        from inferox.onnx.model import OnnxDefinitionModel, check_threads

        return OnnxDefinitionModel(plan, backend=self, metadata=metadata, device=device, dtype=dtype, threads=check_threads(threads),
                                   options=GraphOptions.from_options(options))


def _visible_cuda_devices() -> int:  # pragma: gpu
    """How many GPUs the CUDA provider can see (``CUDA_VISIBLE_DEVICES``, else the driver's count)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([v for v in visible.split(",") if v.strip() and v.strip() != "-1"])
    try:
        import ctypes

        lib = ctypes.CDLL("libcuda.so.1")
        count = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return int(count.value)
    except OSError:
        return 0
