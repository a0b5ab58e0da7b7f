"""A new architecture, ``linear`` (``y = x @ weight + bias``): its schema, NumPy reference and factory.

The schema is what ``inferox pack`` / ``verify`` / ``serve`` and the conformance suite know of it:
config ``{"model_type": "linear", "in_features": n, "out_features": m}``, weights ``weight``
``(n, m)`` and ``bias`` ``(m,)``, input ``x`` f32 ``(batch, n)``, output ``y`` f32 ``(batch, m)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from inferox.core import ArchitectureSchema, Backend, ConfigError, DeviceId, DType, Model, ModelMetadata, TensorSpec
from inferox.core.architectures import select_weights
from inferox_numpy.mlp import read_weights

__all__ = ["LINEAR", "LinearModel", "create_linear", "linear_reference"]


def _sizes(config: Mapping[str, Any]) -> tuple[int, int]:
    sizes = []
    for key in ("in_features", "out_features"):
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError("must be a positive integer", field=key, value=value)
        sizes.append(value)
    return sizes[0], sizes[1]


def _specs(config: Mapping[str, Any], _pre: Mapping[str, Any]) -> tuple[list[TensorSpec], list[TensorSpec]]:
    n, m = _sizes(config)
    return [TensorSpec("x", DType.F32, (None, n))], [TensorSpec("y", DType.F32, (None, m))]


def _golden(config: Mapping[str, Any], _pre: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"x": rng.standard_normal((4, _sizes(config)[0])).astype(np.float32)}


def linear_reference(config: Mapping[str, Any], weights: Mapping[str, Any], inputs: Mapping[str, Any], **options: Any) -> dict[str, np.ndarray]:
    y = np.asarray(inputs["x"], np.float64) @ np.asarray(weights["weight"], np.float64) + np.asarray(weights["bias"], np.float64)
    return {"y": y.astype(np.float32)}


LINEAR = ArchitectureSchema(
    name="linear",
    family="feedforward",
    model_types=("linear",),
    parse=_sizes,
    weight_shapes=lambda config: dict(zip(("weight", "bias"), ((*_sizes(config),), (_sizes(config)[1],)))),
    specs=_specs,
    golden=_golden,
    describe=lambda config: dict(zip(("in_features", "out_features"), _sizes(config))),
    example_config={"model_type": "linear", "in_features": 5, "out_features": 3},
    reference=linear_reference,
)


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
    weights: str | os.PathLike[str] | Mapping[str, Any],
    metadata: ModelMetadata,
    device: DeviceId | str | None = None,
    dtype: DType | str | None = None,
    **options: Any,
) -> LinearModel:
    """The factory registered for ``("numpy", "linear")`` (f32 only: another ``dtype`` is refused)."""
    if dtype is not None and DType.parse(dtype) is not DType.F32:
        from inferox.core import DTypeError

        raise DTypeError("a numpy linear model computes in f32 only", name="dtype", expected="f32", actual=DType.parse(dtype).value)
    chosen = select_weights(read_weights(weights), LINEAR.weight_shapes(config))
    return LinearModel(backend=backend, metadata=metadata, weight=np.asarray(chosen["weight"]), bias=np.asarray(chosen["bias"]), device=backend.check_device(device))
