"""``Model``, ``ModelMetadata`` and the type-erased ``AnyModel``.

A :class:`Model` is a backend's concrete model: it takes and returns *native* tensors by name.
:class:`AnyModel` wraps any model behind one interface: it validates array-likes against the
model's :class:`TensorSpec`\\ s, converts them to the backend's native tensors (zero-copy where
DLPack allows), runs the forward pass with framework errors wrapped, and returns numpy arrays
(or native tensors on request). The engine holds ``AnyModel``\\ s.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from inferox.core.device import DeviceId
from inferox.core.dtype import DType
from inferox.core.errors import DTypeError, InvalidInputError, TypeMismatchError, backend_errors
from inferox.core.spec import TensorSpec, coerce_untyped

if TYPE_CHECKING:
    from inferox.core.backend import Backend

__all__ = ["AnyModel", "Model", "ModelMetadata", "prepare_inputs"]

M = TypeVar("M", bound="Model")


@dataclass(frozen=True)
class ModelMetadata:
    """Descriptive facts about a model, independent of the backend running it."""

    name: str
    architecture: str = ""
    version: str = "1"
    description: str = ""
    parameters: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["extra"] = dict(self.extra)
        return out


class Model(ABC):
    """A backend's concrete model.

    Subclasses implement :attr:`input_specs`, :attr:`output_specs` and :meth:`forward`;
    ``forward`` receives a dict of native tensors already validated against the input specs and on
    :attr:`device`, and returns a dict of native tensors named as in the output specs.
    """

    def __init__(self, *, backend: Backend, metadata: ModelMetadata, device: DeviceId | None = None) -> None:
        self.backend = backend
        self.metadata = metadata
        self.device = device or DeviceId.cpu()

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    @abstractmethod
    def input_specs(self) -> Sequence[TensorSpec]: ...

    @property
    @abstractmethod
    def output_specs(self) -> Sequence[TensorSpec]: ...

    @abstractmethod
    def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Run the model on native tensors; return native tensors by output name."""

    def memory_requirements(self) -> int:
        """Bytes of parameters and buffers this model holds (0 when unknown)."""
        return 0

    def warmup(self) -> None:
        """Prepare for traffic (compile, allocate); called once before the model reports ready."""

    def check_inputs(self, inputs: Mapping[str, Any]) -> None:
        """Model-specific validation beyond the specs (value ranges, cross-input shapes).

        Called with the prepared inputs before :meth:`forward`; raise :class:`InvalidInputError`.
        """

    def close(self) -> None:
        """Release what the model holds; the model must not be used afterwards."""

    def thread_info(self) -> dict[str, Any]:
        """The thread pools this model computes on (``{"intra_op": 2, "inter_op": 1, ...}``):
        the backend's (:meth:`Backend.thread_info`) unless the model has pools of its own."""
        return self.backend.thread_info()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} on {self.backend.name}:{self.device}>"


def prepare_inputs(
    specs: Sequence[TensorSpec],
    inputs: Mapping[str, Any] | Any,
    *,
    model_name: str = "",
    index: int | None = None,
    native_dtype: Callable[[Any], DType] | None = None,
) -> dict[str, Any]:
    """Validate ``inputs`` against ``specs`` before any compute; return them with safe casts applied.

    ``inputs`` is a mapping by input name, or a single array-like when the model has one required
    input. Typed arrays (numpy, torch, jax, DLPack) must have a dtype that casts safely to the
    spec's; untyped data (lists, scalars) is judged by value. Unknown and missing names, wrong
    ranks, fixed dimensions that differ and unsafe dtypes raise :class:`InvalidInputError` naming
    the input, the expected and the actual value. Typed arrays are returned as they came (native
    tensors stay native); only untyped data becomes numpy. ``native_dtype`` reads a typed array's
    dtype (the model's backend's :meth:`~inferox.core.Backend.native_dtype`, for arrays whose dtype
    objects numpy does not know); default: the dtype's name.
    """
    read_dtype = native_dtype or (lambda v: DType.parse(v.dtype))
    required = [s for s in specs if not s.optional]
    by_name = {s.name: s for s in specs}
    if not isinstance(inputs, Mapping):
        if len(required) != 1:
            raise InvalidInputError(
                f"model {model_name!r} takes named inputs; pass a dict",
                expected=sorted(by_name),
                actual=type(inputs).__name__,
                index=index,
            )
        inputs = {required[0].name: inputs}
    unknown = [k for k in inputs if k not in by_name]
    if unknown:
        raise InvalidInputError(f"unknown input {unknown[0]!r}", name=unknown[0], expected=sorted(by_name), actual=sorted(inputs), index=index)
    missing = [s.name for s in required if s.name not in inputs]
    if missing:
        raise InvalidInputError(f"missing input {missing[0]!r}", name=missing[0], expected=sorted(s.name for s in required), actual=sorted(inputs), index=index)
    out: dict[str, Any] = {}
    for name, value in inputs.items():
        spec = by_name[name]
        if value is None and spec.optional:
            continue
        if hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, np.generic):
            try:
                dtype = read_dtype(value)
            except InvalidInputError as exc:
                raise DTypeError(f"unsupported dtype {value.dtype}", name=name, expected=spec.dtype.value, actual=str(value.dtype), index=index) from exc
            spec.check_dtype(dtype, index=index)
            shape = tuple(int(s) for s in value.shape)
        elif hasattr(value, "__dlpack__"):
            value = np.from_dlpack(value)
            spec.check_dtype(DType.from_numpy(value.dtype), index=index)
            shape = value.shape
        else:
            value = coerce_untyped(value, spec.dtype, name=name, index=index)
            shape = value.shape
        spec.check_shape(shape, index=index)
        out[name] = value
    return out


class AnyModel:
    """One interface for a model of any backend (the type-erased model)."""

    __slots__ = ("_model",)

    def __init__(self, model: Model) -> None:
        if not isinstance(model, Model):
            raise TypeMismatchError("AnyModel wraps inferox.core.Model instances", expected="Model", actual=type(model).__name__)
        self._model = model

    @property
    def model(self) -> Model:
        return self._model

    @property
    def name(self) -> str:
        return self._model.name

    @property
    def metadata(self) -> ModelMetadata:
        return self._model.metadata

    @property
    def backend(self) -> Backend:
        return self._model.backend

    @property
    def backend_name(self) -> str:
        return self._model.backend.name

    @property
    def device(self) -> DeviceId:
        return self._model.device

    @property
    def input_specs(self) -> Sequence[TensorSpec]:
        return self._model.input_specs

    @property
    def output_specs(self) -> Sequence[TensorSpec]:
        return self._model.output_specs

    def memory_requirements(self) -> int:
        return self._model.memory_requirements()

    def prepare(self, inputs: Mapping[str, Any] | Any, *, index: int | None = None) -> dict[str, Any]:
        """Validate ``inputs`` (see :func:`prepare_inputs`)."""
        prepared = prepare_inputs(self.input_specs, inputs, model_name=self.name, index=index, native_dtype=self.backend.native_dtype)
        self._model.check_inputs(prepared)
        return prepared

    def to_native(self, prepared: Mapping[str, Any]) -> dict[str, Any]:
        """Prepared inputs as native tensors of this model's backend and device, with spec dtypes."""
        specs = {s.name: s for s in self.input_specs}
        backend, device = self.backend, self.device
        with backend_errors(backend.name, model=self.name):
            return {k: backend.as_native(v, dtype=specs[k].dtype, device=device) for k, v in prepared.items()}

    def forward_native(self, natives: Mapping[str, Any]) -> dict[str, Any]:
        """Run the concrete model on native inputs with framework errors wrapped."""
        with backend_errors(self.backend_name, model=self.name):
            return self._model.forward(natives)

    def outputs_to_numpy(self, outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        with backend_errors(self.backend_name, model=self.name):
            return {k: self.backend.to_numpy(v) for k, v in outputs.items()}

    def forward_any(self, inputs: Mapping[str, Any] | Any, *, return_native: bool = False) -> dict[str, Any]:
        """Validate, convert, run and convert back: array-likes in, numpy (or native) out."""
        natives = self.to_native(self.prepare(inputs))
        outputs = self.forward_native(natives)
        return outputs if return_native else self.outputs_to_numpy(outputs)

    __call__ = forward_any

    def downcast(self, cls: type[M]) -> M:
        """The concrete model, checked to be an instance of ``cls``; :class:`TypeMismatchError` otherwise."""
        if not isinstance(self._model, cls):
            raise TypeMismatchError(
                f"model {self.name!r} is a {type(self._model).__qualname__} ({self.backend_name}), not a {cls.__qualname__}",
                expected=cls.__qualname__,
                actual=type(self._model).__qualname__,
            )
        return self._model

    def __repr__(self) -> str:
        return f"AnyModel({self._model!r})"
