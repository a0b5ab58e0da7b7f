"""The ``mlp`` architecture, defined once: ``Linear → activation → … → Linear``.

config ``{"layer_sizes": [in, h1, ..., out], "activation": "relu"|"gelu"|"tanh"|"sigmoid"|"identity"}``;
weights ``layers.{i}.weight`` of shape ``(out, in)`` and ``layers.{i}.bias`` of shape ``(out,)``;
input ``input`` f32 ``(batch, in)``, output ``output`` f32 ``(batch, out)``. The activation follows
every layer but the last; ``"gelu"`` is the exact (erf) GELU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from inferox.core.architectures._common import ACTIVATIONS
from inferox.core.definition import Definition, select_weights
from inferox.core.dtype import DType
from inferox.core.errors import ConfigError
from inferox.core.ops import Ops
from inferox.core.schema import ArchitectureSchema
from inferox.core.spec import TensorSpec

__all__ = ["MLP", "MLP_DEFINITION", "MLPConfig", "mlp_forward", "mlp_input_specs", "mlp_output_specs"]


@dataclass(frozen=True)
class MLPConfig:
    """The ``mlp`` architecture's config."""

    layer_sizes: tuple[int, ...]
    activation: str = "relu"

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> MLPConfig:
        if not isinstance(config, Mapping):
            raise ConfigError("an mlp config must be an object", field="config", value=type(config).__name__)
        sizes = config.get("layer_sizes")
        if not isinstance(sizes, (list, tuple)) or len(sizes) < 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
            raise ConfigError("must be a list of at least two positive integers", field="layer_sizes", value=sizes)
        activation = config.get("activation", "relu")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"must be one of {', '.join(ACTIVATIONS)}", field="activation", value=activation)
        return cls(tuple(int(s) for s in sizes), str(activation))

    @property
    def num_layers(self) -> int:
        return len(self.layer_sizes) - 1

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every weight this config needs, with its shape (``(out, in)`` for matrices)."""
        shapes: dict[str, tuple[int, ...]] = {}
        for i, (n_in, n_out) in enumerate(zip(self.layer_sizes[:-1], self.layer_sizes[1:])):
            shapes[f"layers.{i}.weight"] = (n_out, n_in)
            shapes[f"layers.{i}.bias"] = (n_out,)
        return shapes


def mlp_input_specs(cfg: MLPConfig) -> list[TensorSpec]:
    return [TensorSpec("input", DType.F32, (None, cfg.layer_sizes[0]), description="features")]


def mlp_output_specs(cfg: MLPConfig) -> list[TensorSpec]:
    return [TensorSpec("output", DType.F32, (None, cfg.layer_sizes[-1]))]


# -- the definition -----------------------------------------------------------------------------------
def mlp_forward(xp: Any, ops: Ops, params: Any, inputs: Mapping[str, Any], config: MLPConfig) -> dict[str, Any]:
    """``x @ W_i.T + b_i`` per layer, the activation after every layer but the last."""
    act = ops.activation(config.activation)
    x = inputs["input"]
    last = len(params) - 1
    for i, (weight, bias) in enumerate(params):
        x = ops.linear(x, weight, bias)
        if i < last:
            x = act(x)
    return {"output": x}


def _configure(config: Mapping[str, Any], preprocessing: Mapping[str, Any]) -> MLPConfig:
    return MLPConfig.from_dict(config)


def _select(weights: Mapping[str, Any], cfg: MLPConfig, source: str | None) -> dict[str, Any]:
    return select_weights(weights, cfg.weight_shapes(), source=source)


def _prepare(xp: Any, weights: Mapping[str, Any], cfg: MLPConfig) -> tuple[tuple[Any, Any], ...]:
    # A tuple of (weight, bias) per layer: the loop in forward reads the layers in order.
    return tuple((weights[f"layers.{i}.weight"], weights[f"layers.{i}.bias"]) for i in range(cfg.num_layers))


MLP_DEFINITION = Definition(forward=mlp_forward, configure=_configure, select=_select, prepare=_prepare)


# -- the schema -------------------------------------------------------------------------------------------
def _specs(config: Mapping[str, Any], _pre: Mapping[str, Any]) -> tuple[list[TensorSpec], list[TensorSpec]]:
    cfg = MLPConfig.from_dict(config)
    return mlp_input_specs(cfg), mlp_output_specs(cfg)


def _describe(config: Mapping[str, Any]) -> dict[str, Any]:
    cfg = MLPConfig.from_dict(config)
    sizes = cfg.layer_sizes
    return {"num_layers": cfg.num_layers, "hidden_size": max(sizes[1:-1], default=sizes[-1]), "activation": cfg.activation}


def _golden(config: Mapping[str, Any], _pre: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    cfg = MLPConfig.from_dict(config)
    return {"input": rng.standard_normal((3, cfg.layer_sizes[0])).astype(np.float32)}


MLP = ArchitectureSchema(
    name="mlp",
    family="feedforward",
    model_types=("mlp",),
    parse=MLPConfig.from_dict,
    weight_shapes=lambda config: MLPConfig.from_dict(config).weight_shapes(),
    specs=_specs,
    golden=_golden,
    describe=_describe,
    # Square first layer: a backend that applies a weight transposed gets wrong numbers, not a shape error.
    example_config={"model_type": "mlp", "layer_sizes": [8, 8, 5, 3], "activation": "gelu"},
    # Pre-activations of a few units: where exact and tanh GELU differ by ~1e-3, far above f32's tolerance.
    example_weight_scale=0.5,
    definition=MLP_DEFINITION,
)
