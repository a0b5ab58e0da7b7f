"""PyTorch models: :class:`TorchDefinitionModel` runs an architecture definition; :class:`TorchModel`
wraps a hand-written ``nn.Module``.

Every architecture with a :class:`~inferox.core.Definition` (``mlp``, the encoder families, a
plugin's) runs as a :class:`TorchDefinitionModel`: its prepared parameters as torch tensors on the
model's device (floats in ``f32``, ``f16`` or ``bf16``), the definition called on
``array_api_compat.torch`` with :class:`~inferox.torch.ops.TorchOps`, under
``torch.inference_mode()``, torch errors wrapped. There is no per-architecture torch code.

:class:`TorchModel` is for a model written by hand as an ``nn.Module`` (a package's
``backends/torch/model.py``, tests): the module is passed with its tensor specs to
``TorchModel.__init__``, and the default :meth:`TorchModel.run` calls it with the inputs as keyword
arguments (or a subclass overrides :meth:`TorchModel.run`). Both take care of:

* **placement and load dtype** — the module is moved to the checked device and, when ``dtype`` is
  given, to ``f32``, ``f16`` or ``bf16`` (floating parameters and buffers only; integer buffers such
  as BERT's ``position_ids`` keep their type);
* **inference mode** — :meth:`forward` runs under ``torch.inference_mode()`` with the module in
  ``eval()`` mode, and every torch exception becomes an Inferox error with the torch exception as
  ``__cause__`` (see :mod:`inferox.torch._errors`);
* **threads** — the ``threads`` option calls ``torch.set_num_threads``, which is *process-wide*:
  it changes the intra-op thread pool of every torch model in the process, not only this one.
  Without it the pool has the CPUs this process may use, and idle threads sleep rather than spin
  (:mod:`inferox.torch._threads`);
* **memory** — :meth:`memory_requirements` counts parameters and buffers; :meth:`close` drops the
  module, collects garbage and empties the CUDA / MPS caching allocator.
"""

from __future__ import annotations

from inferox.torch import _threads  # noqa: F401 - first: it sets OpenMP's environment before torch loads

# isort: split
import gc
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from inferox.core.backend import Backend
from inferox.core.definition import DefinitionPlan, array_leaves, encode_and_run, map_arrays
from inferox.core.device import DeviceId
from inferox.core.dtype import DType
from inferox.core.errors import (
    BackendError,
    ConfigError,
    DTypeError,
    PackageFormatError,
    ServiceUnavailableError,
)
from inferox.core.model import Model, ModelMetadata
from inferox.core.spec import TensorSpec
from inferox.core.weights import load_safetensors
from inferox.torch._errors import torch_errors
from inferox.torch.plugin import BACKEND_NAME
from inferox.torch.tensor import numpy_to_torch, torch_dtype

if TYPE_CHECKING:
    from inferox.torch.backend import TorchBackend
    from inferox.torch.ops import TorchOps

__all__ = ["LOAD_DTYPES", "TorchDefinitionModel", "TorchModel", "load_state_dict", "resolve_load_dtype", "set_threads"]

#: Dtypes a model's floating parameters may be loaded in.
LOAD_DTYPES = (DType.F32, DType.F16, DType.BF16)


def resolve_load_dtype(dtype: DType | str | None) -> torch.dtype | None:
    """The ``torch.dtype`` to load floating parameters in (``None`` keeps the module's own).

    Only ``f32``, ``f16`` and ``bf16`` are accepted; anything else is a :class:`DTypeError` naming
    ``dtype``.
    """
    if dtype is None:
        return None
    parsed = DType.parse(dtype)
    if parsed not in LOAD_DTYPES:
        raise DTypeError("unsupported load dtype for a torch model", name="dtype", expected=", ".join(d.value for d in LOAD_DTYPES), actual=parsed.value)
    return torch_dtype(parsed)


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` — process-wide: it affects every torch model in the process.

    ``None`` leaves the setting alone; anything but a positive integer is a :class:`ConfigError`.
    """
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError("threads must be a positive integer", field="threads", value=threads)
    torch.set_num_threads(threads)


def load_state_dict(weights: str | Path | Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors file or a mapping of names to arrays (numpy, torch, lists).

    A missing or unreadable file is an :class:`~inferox.core.errors.InferoxIOError` /
    :class:`~inferox.core.errors.PackageNotFoundError` naming the path; a corrupt file a
    :class:`PackageFormatError` naming it.
    """
    if isinstance(weights, Mapping):
        out: dict[str, torch.Tensor] = {}
        for key, value in weights.items():
            if isinstance(value, torch.Tensor):
                out[key] = value
            else:
                # Shared where possible: Module.load_state_dict copies into the parameters anyway.
                out[key] = numpy_to_torch(np.asarray(value))
        return out
    return load_safetensors(weights, framework="torch")


def _set_eval(module: nn.Module) -> bool:
    """Put ``module`` in eval mode; ``False`` when it has no train/eval switch (``torch.export``'s
    modules are fixed in the mode they were exported in and refuse ``eval()``)."""
    try:
        module.eval()
    except NotImplementedError:
        return False
    return True


def _give_memory_back(device: DeviceId) -> None:
    """After a model dropped its tensors: collect them, and empty the device's caching allocator."""
    gc.collect()
    if device.is_cuda:
        torch.cuda.empty_cache()  # pragma: gpu
    elif device.is_metal:
        torch.mps.empty_cache()  # pragma: gpu


def _default_backend() -> TorchBackend:
    from inferox.torch.backend import TorchBackend

    return TorchBackend()


class TorchModel(Model):
    """A model backed by an ``nn.Module``.

    Args:
        module: the network; it is put in ``eval()`` mode, its parameters stop requiring grad, and
            it is moved to ``device`` (and ``dtype``).
        metadata: the model's :class:`~inferox.core.ModelMetadata`.
        input_specs / output_specs: the model's tensor specs.
        backend: the torch backend (a fresh :class:`~inferox.torch.TorchBackend` when omitted).
        device: where to run (``None`` → the backend's default device); checked, so an absent GPU
            is a :class:`~inferox.core.errors.DeviceUnavailableError`.
        dtype: load floating parameters as ``f32``, ``f16`` or ``bf16`` (``None`` keeps them).
        threads: ``torch.set_num_threads`` — process-wide, see the module docstring.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        metadata: ModelMetadata,
        input_specs: Sequence[TensorSpec],
        output_specs: Sequence[TensorSpec],
        backend: Backend | None = None,
        device: DeviceId | str | None = None,
        dtype: DType | str | None = None,
        threads: int | None = None,
    ) -> None:
        backend = backend if backend is not None else _default_backend()
        if backend.name != BACKEND_NAME:
            raise ConfigError(f"a TorchModel needs the torch backend, not {backend.name!r}", field="backend", value=backend.name)
        if not isinstance(module, nn.Module):
            raise ConfigError("module must be a torch.nn.Module", field="module", value=type(module).__name__)
        dev = backend.check_device(device)
        super().__init__(backend=backend, metadata=metadata, device=dev)
        self._input_specs = tuple(input_specs)
        self._output_specs = tuple(output_specs)
        self.load_dtype = DType.parse(dtype) if dtype is not None else None
        torch_dtype = resolve_load_dtype(dtype)
        if self.load_dtype is not None and self.load_dtype not in backend.supported_dtypes(dev):
            raise DTypeError(f"dtype {self.load_dtype.value} is not supported on {dev}", name="dtype", expected="f32", actual=self.load_dtype.value)  # pragma: gpu
        set_threads(threads)
        self.threads = threads
        from inferox.torch.backend import torch_device

        with torch_errors(device=str(dev), model=metadata.name):
            module = module.to(device=torch_device(dev))
            if torch_dtype is not None:
                # nn.Module.to(dtype) only converts floating tensors: integer buffers keep their type.
                module = module.to(dtype=torch_dtype)
            self._has_eval = _set_eval(module)
            module.requires_grad_(False)
        self._module: nn.Module | None = module

    # -- specs ----------------------------------------------------------------------------------
    @property
    def input_specs(self) -> Sequence[TensorSpec]:
        return self._input_specs

    @property
    def output_specs(self) -> Sequence[TensorSpec]:
        return self._output_specs

    @property
    def module(self) -> nn.Module:
        """The ``nn.Module`` (a :class:`ServiceUnavailableError` once the model is closed)."""
        if self._module is None:
            raise ServiceUnavailableError(f"model {self.name!r} is closed")
        return self._module

    @property
    def closed(self) -> bool:
        return self._module is None

    @property
    def torch_device(self) -> torch.device:
        from inferox.torch.backend import torch_device

        return torch_device(self.device)

    # -- running --------------------------------------------------------------------------------
    def run(self, inputs: dict[str, torch.Tensor]) -> Any:
        """Compute the outputs (already under inference mode). Default: ``module(**inputs)``.

        May return a tensor (for a single output), a tuple/list in output-spec order, or a dict.
        """
        return self.module(**inputs)

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Run :meth:`run` under ``torch.inference_mode()``, torch errors wrapped."""
        module = self.module
        with torch_errors(device=str(self.device), model=self.name), torch.inference_mode():
            if self._has_eval and module.training:
                module.eval()
            result = self.run(dict(inputs))
        return self._name_outputs(result)

    def _name_outputs(self, result: Any) -> dict[str, Any]:
        names = [s.name for s in self._output_specs]
        if isinstance(result, Mapping):
            return dict(result)
        if isinstance(result, torch.Tensor):
            result = (result,)
        if isinstance(result, (tuple, list)) and len(result) == len(names):
            return dict(zip(names, result))
        raise BackendError(
            f"model {self.name!r} returned {type(result).__name__} of {len(result) if isinstance(result, (tuple, list)) else 1} "
            f"value(s); its output specs name {len(names)}: {', '.join(names)}",
            backend=BACKEND_NAME,
            model=self.name,
        )

    def example_inputs(self, batch: int = 1) -> dict[str, torch.Tensor]:
        """Zeros for every required input, dynamic dimensions set to ``batch`` (first) or 1."""
        out: dict[str, torch.Tensor] = {}
        for spec in self._input_specs:
            if spec.optional:
                continue
            shape = [(batch if i == 0 else 1) if d is None else d for i, d in enumerate(spec.shape)]
            out[spec.name] = torch.zeros(shape, dtype=torch_dtype(spec.dtype), device=self.torch_device)
        return out

    def warmup(self) -> None:
        """One forward pass on :meth:`example_inputs` (allocates buffers, loads kernels)."""
        self.forward(self.example_inputs())
        self.backend.synchronize(self.device)

    # -- weights --------------------------------------------------------------------------------
    def load_weights(self, weights: str | Path | Mapping[str, Any], *, strict: bool = True, prefix: str = "") -> None:
        """Copy weights (a safetensors path or a name → array mapping) into the module.

        ``prefix`` is stripped from every name first (``"bert."`` checkpoints into a bare encoder).
        With ``strict``, a missing or unexpected tensor is a :class:`PackageFormatError` whose
        ``field`` names it; a tensor of the wrong shape is one too.
        """
        path = None if isinstance(weights, Mapping) else str(weights)
        state = load_state_dict(weights)
        if prefix:
            state = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
        module = self.module
        expected = module.state_dict()
        if strict:
            missing = sorted(set(expected) - set(state))
            unexpected = sorted(set(state) - set(expected))
            if missing:
                raise PackageFormatError(f"weights lack tensor {missing[0]!r} ({len(missing)} missing)", path=path, field=missing[0])
            if unexpected:
                raise PackageFormatError(f"weights have unexpected tensor {unexpected[0]!r} ({len(unexpected)} unexpected)", path=path, field=unexpected[0])
        for key, value in state.items():
            if key in expected and tuple(expected[key].shape) != tuple(value.shape):
                raise PackageFormatError(
                    f"tensor {key!r} has shape {tuple(value.shape)}, the model expects {tuple(expected[key].shape)}", path=path, field=key
                )
        with torch_errors(device=str(self.device), model=self.name):
            module.load_state_dict(state, strict=strict)

    # -- memory ---------------------------------------------------------------------------------
    def memory_requirements(self) -> int:
        """Bytes held by the module's parameters and buffers."""
        module = self.module
        tensors = [*module.parameters(), *module.buffers()]
        return int(sum(t.numel() * t.element_size() for t in tensors))

    def close(self) -> None:
        """Drop the module and give its memory back (the CUDA/MPS cache too). Idempotent."""
        if self._module is None:
            return
        self._module = None
        _give_memory_back(self.device)


class TorchDefinitionModel(Model):
    """An architecture definition run by PyTorch (see the module docstring).

    Args:
        plan: the architecture made ready by :class:`~inferox.core.DefinitionPlan` (parsed config,
            specs, prepared host parameters, tokenizer).
        backend: the torch backend.
        metadata: the model's :class:`~inferox.core.ModelMetadata`.
        device: where to run (``None`` → the backend's default device).
        dtype: hold parameters and compute in ``f32``, ``f16`` or ``bf16`` (``None``: the weights'
            own); inputs and outputs keep their specs' dtypes.
        threads: ``torch.set_num_threads`` — process-wide, see the module docstring.
    """

    def __init__(
        self,
        plan: DefinitionPlan,
        *,
        backend: Backend,
        metadata: ModelMetadata,
        device: DeviceId | str | None = None,
        dtype: DType | str | None = None,
        threads: int | None = None,
    ) -> None:
        if backend.name != BACKEND_NAME:
            raise ConfigError(f"a TorchDefinitionModel needs the torch backend, not {backend.name!r}", field="backend", value=backend.name)
        dev = backend.check_device(device)
        super().__init__(backend=backend, metadata=metadata, device=dev)
        self.load_dtype = DType.parse(dtype) if dtype is not None else None
        torch_dtype = resolve_load_dtype(dtype)
        if self.load_dtype is not None and self.load_dtype not in backend.supported_dtypes(dev):
            raise DTypeError(f"dtype {self.load_dtype.value} is not supported on {dev}", name="dtype", expected="f32", actual=self.load_dtype.value)  # pragma: gpu
        set_threads(threads)
        self.threads = threads
        self.plan = plan
        #: The static config the definition runs with (``Definition.configure``'s result).
        self.config = plan.config
        #: A :class:`~inferox.core.text.TextEncoder` when the factory was given ``tokenizer_path``.
        self.text_encoder = plan.text_encoder
        from inferox.torch.backend import torch_device

        target = torch_device(dev)

        def to_torch(array: np.ndarray) -> torch.Tensor:
            t = numpy_to_torch(array)
            if torch_dtype is not None and t.is_floating_point():
                t = t.to(torch_dtype)
            return t.to(target)

        with torch_errors(device=str(dev), model=metadata.name):
            #: The prepared parameters (the pytree ``Definition.prepare`` made) as torch tensors.
            self.params: Any = map_arrays(plan.take_params(), to_torch)
        import array_api_compat.torch as xp

        self.xp: Any = xp
        self.ops: TorchOps = backend.ops(dev)  # type: ignore[assignment]
        floats = [t for t in array_leaves(self.params) if t.is_floating_point()]
        self._float_dtype = floats[0].dtype if floats else torch.float32

    @property
    def input_specs(self) -> Sequence[TensorSpec]:
        return self.plan.input_specs

    @property
    def output_specs(self) -> Sequence[TensorSpec]:
        return self.plan.output_specs

    @property
    def closed(self) -> bool:
        return self.params is None

    @staticmethod
    def _value_range(value: Any) -> tuple[int, int]:
        t = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
        lo, hi = torch.aminmax(t)
        return int(lo), int(hi)

    def check_inputs(self, inputs: Mapping[str, Any]) -> None:
        """The definition's value checks (ids in the vocabulary, lengths within the positions …)."""
        self.plan.check_inputs(inputs, self._value_range)

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Run the definition under ``torch.inference_mode()``, torch errors wrapped."""
        params = self.params
        if params is None:
            raise ServiceUnavailableError(f"model {self.name!r} is closed")
        with torch_errors(device=str(self.device), model=self.name), torch.inference_mode():
            return self.plan.run(self.xp, self.ops, params, inputs, self._float_dtype)

    def encode_text(self, texts: Sequence[str] | str, *, max_length: int | None = None) -> dict[str, Any]:
        """Tokenise and run ``texts`` in one call (needs ``text_encoder``); returns torch outputs."""
        return encode_and_run(self, texts, max_length=max_length)

    def example_inputs(self, batch: int = 1, length: int = 8) -> dict[str, torch.Tensor]:
        """Every required input at ``batch`` x ``length`` (:meth:`DefinitionPlan.example_inputs`),
        as tensors on the model's device."""
        return {name: torch.from_numpy(value).to(self.backend_device) for name, value in self.plan.example_inputs(batch, length).items()}

    @property
    def backend_device(self) -> torch.device:
        from inferox.torch.backend import torch_device

        return torch_device(self.device)

    def warmup(self) -> None:
        """One forward pass on :meth:`example_inputs` (allocates buffers, loads kernels)."""
        self.forward(self.example_inputs())
        self.backend.synchronize(self.device)

    def memory_requirements(self) -> int:
        """Bytes held by the parameters."""
        if self.params is None:
            return 0
        return int(sum(t.numel() * t.element_size() for t in array_leaves(self.params)))

    def close(self) -> None:
        """Drop the parameters and give their memory back (the CUDA/MPS cache too). Idempotent."""
        if self.params is None:
            return
        self.params = None
        _give_memory_back(self.device)
