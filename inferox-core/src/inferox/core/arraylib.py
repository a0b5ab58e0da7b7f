"""A backend for an array library that speaks NumPy, from a few declarations: :class:`ArrayBackend`.

It runs every architecture: its :meth:`ArrayBackend.array_namespace` is the library's array API
namespace (through ``array-api-compat`` where the library needs it), so each architecture's
definition runs on it eagerly with no code of its own (register the spec with
``BackendSpec(..., definitions=True)`` so the registry lists them before the backend loads).

Many array libraries (NumPy itself, NumPy-compatible CPU libraries, array-API namespaces) already
take numpy arrays in ``xp.asarray``, give them back through ``numpy.asarray`` and exchange memory
through DLPack. For those, the tensor, the tensor builder, the device list, dtypes and casts follow
from two declarations::

    import numpy as np
    from inferox.core import ArrayBackend

    class NumpyBackend(ArrayBackend):
        name = "numpy"
        xp = np          # the array module: xp.asarray, xp.from_dlpack

What the base assumes (write the :class:`~inferox.core.Backend`, :class:`~inferox.core.Tensor` and
:class:`~inferox.core.TensorBuilder` classes by hand when one does not hold):

* the arrays live in host memory — the only device is ``cpu`` (no accelerators, no
  ``synchronize``; memory figures are the host's);
* ``xp.asarray(numpy_array)`` makes a native array (sharing memory where the library can) and
  ``numpy.asarray(native)`` reads one back;
* ``xp.from_dlpack(obj)`` imports any DLPack producer;
* the native array has ``.shape`` and a ``.dtype`` numpy understands; casts go through numpy
  (``astype``), so they are eager.

Optional declarations: :attr:`ArrayBackend.dtypes` (default: every Inferox dtype),
:attr:`ArrayBackend.supports_dlpack`, :attr:`ArrayBackend.description`; the framework version
defaults to ``xp.__version__``.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import numpy as np

from inferox.core.backend import Backend
from inferox.core.device import Device, DeviceId, MemoryInfo
from inferox.core.dtype import DType
from inferox.core.errors import PluginError
from inferox.core.tensor import Tensor, TensorBuilder

__all__ = ["ArrayBackend", "ArrayTensor", "ArrayTensorBuilder", "host_memory_info"]


def host_memory_info() -> MemoryInfo | None:
    """The host's total and available memory (``None`` where the platform cannot tell)."""
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return MemoryInfo.from_total_free(os.sysconf("SC_PHYS_PAGES") * page, os.sysconf("SC_AVPHYS_PAGES") * page)
    except (AttributeError, ValueError, OSError):  # pragma: no cover - platforms without sysconf
        return None


class ArrayTensor(Tensor):
    """A host array of an :class:`ArrayBackend`."""

    __slots__ = ("_backend", "backend_name")  # backend_name: per instance, the backend's registry name

    def __init__(self, native: Any, backend: ArrayBackend) -> None:
        super().__init__(native)
        self._backend = backend
        self.backend_name = backend.name

    @property
    def backend(self) -> ArrayBackend:
        return self._backend

    @property
    def device(self) -> DeviceId:
        return DeviceId.cpu()

    @property
    def dtype(self) -> DType:
        # Through the backend: a namespace's own dtype objects (array_api_strict.float32) are not numpy's.
        return self._backend.native_dtype(self._native)

    def numpy(self) -> np.ndarray:
        return self._backend.to_numpy(self._native)


class ArrayTensorBuilder(TensorBuilder):
    """Builds :class:`ArrayTensor`\\ s: ``xp.asarray`` for numpy arrays, ``xp.from_dlpack`` for the rest."""

    backend: ArrayBackend

    def _from_numpy(self, array: np.ndarray) -> Any:
        return self.backend.xp.asarray(array)

    def _from_dlpack(self, obj: Any) -> Any:
        return self.backend.xp.from_dlpack(obj)


class ArrayBackend(Backend):
    """A CPU backend derived from an array module :attr:`xp` (see the module docstring for what it assumes)."""

    #: The array module: ``xp.asarray`` and ``xp.from_dlpack`` are all the base calls. (Not a
    #: ClassVar, so that a subclass declares it with a plain ``xp = numpy``.)
    xp: Any = None
    #: The dtypes the library holds (default: every Inferox dtype).
    dtypes: ClassVar[frozenset[DType]] = frozenset(DType)
    #: Shown by ``inferox backends``.
    description: ClassVar[str] = ""
    device_kinds: ClassVar[frozenset[str]] = frozenset({"cpu"})

    def __init__(self) -> None:
        if self.xp is None or not self.name:
            raise PluginError(f"{type(self).__name__} must declare `name` and `xp` (the array module)", plugin=self.name or None)
        self._native_type = type(self.xp.asarray(np.zeros(1, np.float32)))
        self._namespace: Any = None

    @property
    def version(self) -> str:
        return str(getattr(self.xp, "__version__", "unknown"))

    def devices(self) -> list[Device]:
        return [Device(DeviceId.cpu(), self.name, name="host", available=True, memory=host_memory_info())]

    def memory_info(self, device: DeviceId | str | None = None) -> MemoryInfo | None:
        self.check_device(device)
        return host_memory_info()

    def supported_dtypes(self, device: DeviceId | str | None = None) -> frozenset[DType]:
        return self.dtypes

    def tensor_builder(self, device: DeviceId | str | None = None) -> ArrayTensorBuilder:
        return ArrayTensorBuilder(self, self.check_device(device))

    def is_native(self, obj: Any) -> bool:
        return isinstance(obj, self._native_type)

    def wrap(self, native: Any) -> ArrayTensor:
        return ArrayTensor(native if self.is_native(native) else self.xp.asarray(native), self)

    def to_device(self, tensor: Tensor, device: DeviceId) -> ArrayTensor:
        self.check_device(device)
        return tensor if isinstance(tensor, ArrayTensor) and tensor.backend is self else self.wrap(self.xp.asarray(tensor.numpy()))

    def cast(self, tensor: Tensor, dtype: DType) -> ArrayTensor:
        return self.wrap(self.xp.asarray(tensor.numpy().astype(dtype.to_numpy())))

    def to_numpy(self, native: Any) -> np.ndarray:
        return np.asarray(native)

    def array_namespace(self, device: DeviceId | str | None = None) -> Any:
        """The library's array API namespace (``array_api_compat``'s wrapper for numpy-likes that need one)."""
        if self._namespace is None:
            import array_api_compat

            self._namespace = array_api_compat.array_namespace(self.xp.asarray(np.zeros(1, np.float32)))
        return self._namespace
