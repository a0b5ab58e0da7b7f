"""The ``mlp`` architecture in PyTorch (schema: :mod:`inferox.core.architectures`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from inferox.core import Backend, DeviceId, DType, ModelMetadata
from inferox.core.architectures import MLPConfig, mlp_input_specs, mlp_output_specs, select_weights
from inferox.torch.model import TorchModel
from inferox.torch.models._common import check_float, on_meta, read_weights

__all__ = ["MLP", "MLPModel", "create_model"]

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "identity": lambda x: x,
}


class MLP(nn.Module):
    """``Linear → activation → … → Linear`` with parameters named ``layers.{i}.weight`` / ``.bias``."""

    def __init__(self, cfg: MLPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(cfg.layer_sizes[:-1], cfg.layer_sizes[1:]))
        self._act = _ACTIVATIONS[cfg.activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self._act(x)
        return x


class MLPModel(TorchModel):
    """An :class:`MLP` behind the Inferox model interface: input ``input``, output ``output`` (f32)."""

    def __init__(self, module: MLP, *, metadata: ModelMetadata, backend: Backend | None = None, device: DeviceId | str | None = None,
                 dtype: DType | str | None = None, threads: int | None = None) -> None:
        super().__init__(module, metadata=metadata, input_specs=mlp_input_specs(module.cfg), output_specs=mlp_output_specs(module.cfg),
                         backend=backend, device=device, dtype=dtype, threads=threads)
        self.config = module.cfg
        self._param_dtype = next(module.parameters()).dtype

    def run(self, inputs: dict[str, torch.Tensor]) -> Any:
        x = inputs["input"]
        if x.dtype != self._param_dtype or x.device != self.torch_device:
            x = x.to(device=self.torch_device, dtype=self._param_dtype)
        return {"output": self.module(x).float()}


def create_model(
    *,
    backend: Backend,
    config: Mapping[str, Any],
    weights: str | os.PathLike[str] | Mapping[str, Any],
    metadata: ModelMetadata,
    device: DeviceId | str | None = None,
    dtype: DType | str | None = None,
    **options: Any,
) -> MLPModel:
    """The ``mlp`` factory: build the network from ``config`` and load ``weights`` into it.

    Options: ``threads`` (``torch.set_num_threads``, process-wide). Others are ignored.
    """
    cfg = MLPConfig.from_dict(config)
    tensors, source = read_weights(weights)
    chosen = select_weights(tensors, cfg.weight_shapes(), source=source)
    chosen = check_float(chosen, source)
    with on_meta():
        module = MLP(cfg)
    module.load_state_dict(chosen, strict=True, assign=True)
    return MLPModel(module, metadata=metadata, backend=backend, device=device, dtype=dtype, threads=options.get("threads"))
