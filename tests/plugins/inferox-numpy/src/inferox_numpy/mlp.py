"""The standard ``mlp`` architecture in NumPy (schema: core's built-in plugin)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from inferox.core import Backend, DeviceId, DType, DTypeError, Model, ModelMetadata, TensorSpec
from inferox.core.architectures import MLPConfig, mlp_input_specs, mlp_output_specs, select_weights

__all__ = ["MLPModel", "create_mlp"]

_erf = np.frompyfunc(math.erf, 1, 1)
_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda x: np.maximum(x, 0),
    "gelu": lambda x: 0.5 * x * (1 + np.asarray(_erf(x / math.sqrt(2)), dtype=x.dtype)),  # exact (erf) GELU, as the schema says
    "gelu_new": (tanh_gelu := lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))),  # the tanh approximation
    "gelu_pytorch_tanh": tanh_gelu,
    "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "identity": lambda x: x,
}


def read_weights(weights: str | os.PathLike[str] | Mapping[str, Any]) -> Mapping[str, Any]:
    """A mapping of names to arrays, from a safetensors file (a package's) or as given."""
    if isinstance(weights, Mapping):
        return weights
    from safetensors.numpy import load_file

    return load_file(os.fspath(weights))


class MLPModel(Model):
    def __init__(self, *, backend: Backend, metadata: ModelMetadata, config: MLPConfig, layers: list[tuple[np.ndarray, np.ndarray]], device: DeviceId) -> None:
        super().__init__(backend=backend, metadata=metadata, device=device)
        self.config, self.layers = config, layers

    @property
    def input_specs(self) -> Sequence[TensorSpec]:
        return mlp_input_specs(self.config)

    @property
    def output_specs(self) -> Sequence[TensorSpec]:
        return mlp_output_specs(self.config)

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        act = _ACTIVATIONS[self.config.activation]
        x = np.asarray(inputs["input"]).astype(self.layers[0][0].dtype)
        for i, (w, b) in enumerate(self.layers):
            x = x @ w.T + b
            if i < len(self.layers) - 1:
                x = act(x)
        return {"output": x.astype(np.float32)}


def create_mlp(
    *,
    backend: Backend,
    config: Mapping[str, Any],
    weights: str | os.PathLike[str] | Mapping[str, Any],
    metadata: ModelMetadata,
    device: DeviceId | str | None = None,
    dtype: DType | str | None = None,
    **options: Any,
) -> MLPModel:
    """The ``mlp`` factory. ``dtype``: f32 (default), f16 or f64 parameters and compute; outputs stay f32."""
    cfg = MLPConfig.from_dict(config)
    compute = DType.parse(dtype) if dtype is not None else DType.F32
    if compute not in (DType.F16, DType.F32, DType.F64):
        raise DTypeError("unsupported dtype for a numpy mlp", name="dtype", expected="f16, f32, f64", actual=compute.value)
    chosen = select_weights(read_weights(weights), cfg.weight_shapes())
    t = compute.to_numpy()
    layers = [(np.asarray(chosen[f"layers.{i}.weight"], t), np.asarray(chosen[f"layers.{i}.bias"], t)) for i in range(cfg.num_layers)]
    return MLPModel(backend=backend, metadata=metadata, config=cfg, layers=layers, device=backend.check_device(device))
