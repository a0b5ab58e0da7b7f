"""A new architecture, ``linear`` (``y = x @ weight + bias``): its schema and its definition.

The schema is what ``inferox pack`` / ``verify`` / ``serve`` and the conformance suite know of it:
config ``{"model_type": "linear", "in_features": n, "out_features": m}``, weights ``weight``
``(n, m)`` and ``bias`` ``(m,)``, input ``x`` f32 ``(batch, n)``, output ``y`` f32 ``(batch, m)``.
The definition is its compute, once: torch, jax, numpy and every other array backend run it, and on
NumPy in float64 it is the reference the conformance suite and ``inferox pack`` check numbers with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from inferox.core import ArchitectureSchema, ConfigError, Definition, DType, Ops, TensorSpec


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


def linear_forward(xp: Any, ops: Ops, params: Mapping[str, Any], inputs: Mapping[str, Any], config: Any) -> dict[str, Any]:
    return {"y": xp.matmul(inputs["x"], params["weight"]) + params["bias"]}


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
    definition=Definition(forward=linear_forward, configure=lambda config, pre: _sizes(config)),
)
