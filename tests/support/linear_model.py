"""A hand-written one-layer model (``y = x @ weight + bias``) for tests of core's model machinery.

Tests of ``AnyModel``, request validation and the conformance suite's own checks need a model whose
``forward`` they can subclass and break on purpose; architectures themselves are definitions that
every backend runs (the ``linear`` architecture of tests/plugins/inferox-numpy is one). Host arrays
only: it runs on any NumPy-like backend.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
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
    *, backend: Backend, config: Mapping[str, Any], weights: str | os.PathLike[str] | Mapping[str, Any], metadata: ModelMetadata,
    device: Any = None, dtype: Any = None, **options: Any,
) -> LinearModel:
    """A hand-written factory for a ``linear``-shaped architecture (weights ``weight`` and ``bias``): what
    a backend registers for an architecture it runs without a definition."""
    from inferox.core.weights import load_safetensors

    arrays = weights if isinstance(weights, Mapping) else load_safetensors(os.fspath(weights), framework="numpy")
    return LinearModel(backend=backend, metadata=metadata, weight=np.asarray(arrays["weight"]), bias=np.asarray(arrays["bias"]))
