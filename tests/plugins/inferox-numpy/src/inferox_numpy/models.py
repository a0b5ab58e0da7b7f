"""The ``linear`` architecture (``y = x @ weight + bias``) and the standard ``mlp`` architecture,
whose schema (config, specs, weight names) comes from :mod:`inferox.core.architectures`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inferox.core import Backend, ConfigError, DeviceId, DType, Model, ModelMetadata, TensorSpec
from inferox.core.architectures import MLPConfig, mlp_input_specs, mlp_output_specs, select_weights

__all__ = ["LinearModel", "MLPModel", "create_linear", "create_mlp"]


class LinearModel(Model):
    """One dense layer: input ``x`` (batch, in) → output ``y`` (batch, out)."""

    def __init__(self, *, backend: Backend, metadata: ModelMetadata, weight: np.ndarray, bias: np.ndarray, device: DeviceId | None = None) -> None:
        super().__init__(backend=backend, metadata=metadata, device=device)
        if weight.ndim != 2 or bias.shape != (weight.shape[1],):
            raise ConfigError(f"weight {weight.shape} and bias {bias.shape} do not form a linear layer", field="weights", value=[weight.shape, bias.shape])
        self.weight = np.asarray(weight, np.float32)
        self.bias = np.asarray(bias, np.float32)

    @property
    def input_specs(self) -> Sequence[TensorSpec]:
        return [TensorSpec("x", DType.F32, (None, self.weight.shape[0]))]

    @property
    def output_specs(self) -> Sequence[TensorSpec]:
        return [TensorSpec("y", DType.F32, (None, self.weight.shape[1]))]

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        return {"y": inputs["x"] @ self.weight + self.bias}

    def memory_requirements(self) -> int:
        return int(self.weight.nbytes + self.bias.nbytes)


def create_linear(
    *,
    backend: Backend,
    config: Mapping[str, Any],
    weights: str | Path | Mapping[str, np.ndarray],
    metadata: ModelMetadata,
    device: DeviceId | str | None = None,
    dtype: DType | None = None,
    **options: Any,
) -> LinearModel:
    """The architecture factory registered for ``("numpy", "linear")``."""
    if not isinstance(weights, Mapping):
        from safetensors.numpy import load_file  # only packages on disk need safetensors

        weights = load_file(str(weights))
    missing = [k for k in ("weight", "bias") if k not in weights]
    if missing:
        raise ConfigError(f"linear weights lack {', '.join(missing)}", field="weights", value=sorted(weights))
    model = LinearModel(backend=backend, metadata=metadata, weight=weights["weight"], bias=weights["bias"], device=backend.check_device(device))
    for key, have in (("in_features", model.weight.shape[0]), ("out_features", model.weight.shape[1])):
        if key in config and int(config[key]) != have:
            raise ConfigError(f"config says {key}={config[key]} but the weights have {have}", field=key, value=config[key])
    return model


_ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2))),
    "identity": lambda x: x,
}


class MLPModel(Model):
    """Dense layers with the config's activation between them (none after the last), in NumPy."""

    def __init__(self, *, backend: Backend, metadata: ModelMetadata, config: MLPConfig, weights: Mapping[str, np.ndarray], device: DeviceId | None = None) -> None:
        super().__init__(backend=backend, metadata=metadata, device=device)
        self.config = config
        self.layers = [(np.asarray(weights[f"layers.{i}.weight"], np.float32), np.asarray(weights[f"layers.{i}.bias"], np.float32)) for i in range(config.num_layers)]

    @property
    def input_specs(self) -> Sequence[TensorSpec]:
        return mlp_input_specs(self.config)

    @property
    def output_specs(self) -> Sequence[TensorSpec]:
        return mlp_output_specs(self.config)

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        x = np.asarray(inputs["input"], np.float32)
        for i, (w, b) in enumerate(self.layers):
            x = x @ w.T + b
            if i < len(self.layers) - 1:
                x = _ACTIVATIONS[self.config.activation](x).astype(np.float32)
        return {"output": x}

    def memory_requirements(self) -> int:
        return int(sum(w.nbytes + b.nbytes for w, b in self.layers))


def create_mlp(
    *,
    backend: Backend,
    config: Mapping[str, Any],
    weights: str | Path | Mapping[str, np.ndarray],
    metadata: ModelMetadata,
    device: DeviceId | str | None = None,
    dtype: DType | None = None,
    **options: Any,
) -> MLPModel:
    """The architecture factory registered for ``("numpy", "mlp")``."""
    cfg = MLPConfig.from_dict(config)
    source = None
    if not isinstance(weights, Mapping):
        from safetensors.numpy import load_file  # only packages on disk need safetensors

        source = str(weights)
        weights = load_file(source)
    chosen = select_weights(weights, cfg.weight_shapes(), source=source)
    return MLPModel(backend=backend, metadata=metadata, config=cfg, weights=chosen, device=backend.check_device(device))
