"""The ``linear`` architecture: ``y = x @ weight + bias``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inferox.core import Backend, ConfigError, DeviceId, DType, Model, ModelMetadata, TensorSpec

__all__ = ["LinearModel", "create_linear"]


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
