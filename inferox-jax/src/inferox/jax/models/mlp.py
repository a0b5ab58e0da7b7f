"""The ``mlp`` architecture in JAX (schema: :mod:`inferox.core.architectures`), jit-compiled per batch bucket."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from inferox.core import DeviceId, DType, ModelMetadata, TensorSpec
from inferox.core.architectures import MLPConfig, mlp_input_specs, mlp_output_specs, select_weights
from inferox.jax.backend import JaxBackend
from inferox.jax.model import BucketPolicy, JaxModel
from inferox.jax.models._common import bucket_policy, check_float, read_weights

__all__ = ["MLPModel", "create_model", "mlp_apply"]

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # torch's F.gelu default is the exact erf form
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda x: x,
}


def mlp_apply(params: Sequence[Mapping[str, jax.Array]], x: jax.Array, activation: str) -> jax.Array:
    """The MLP as a pure function; ``params[i]`` holds ``w`` (in, out) and ``b`` (out,)."""
    act = _ACTIVATIONS[activation]
    last = len(params) - 1
    for i, layer in enumerate(params):
        x = x @ layer["w"] + layer["b"]
        if i < last:
            x = act(x)
    return x


class MLPModel(JaxModel):
    """A jit-compiled MLP: input ``input`` f32 ``(batch, in)``, output ``output`` f32 ``(batch, out)``."""

    def __init__(
        self,
        cfg: MLPConfig,
        params: Any,
        *,
        backend: JaxBackend,
        metadata: ModelMetadata,
        device: DeviceId | str | None = None,
        dtype: DType | str | None = None,
        buckets: BucketPolicy | None = None,
    ) -> None:
        self.config = cfg
        self._inputs = mlp_input_specs(cfg)
        self._outputs = mlp_output_specs(cfg)
        super().__init__(backend=backend, metadata=metadata, params=params, device=device, dtype=dtype, buckets=buckets)

    @property
    def input_specs(self) -> Sequence[TensorSpec]:
        return self._inputs

    @property
    def output_specs(self) -> Sequence[TensorSpec]:
        return self._outputs

    def apply(self, params: Any, inputs: dict[str, jax.Array]) -> dict[str, jax.Array]:
        x = inputs["input"].astype(params[0]["w"].dtype)
        return {"output": mlp_apply(params, x, self.config.activation).astype(jnp.float32)}


def create_model(
    *,
    backend: JaxBackend,
    config: Mapping[str, Any],
    weights: str | os.PathLike[str] | Mapping[str, Any],
    metadata: ModelMetadata,
    device: DeviceId | str | None = None,
    dtype: DType | str | None = None,
    **options: Any,
) -> MLPModel:
    """The ``mlp`` factory. Options: ``batch_buckets``, ``warmup_batch_sizes``. Others are ignored."""
    cfg = MLPConfig.from_dict(config)
    arrays, source = read_weights(weights)
    chosen = check_float(select_weights(arrays, cfg.weight_shapes(), source=source), source)
    # Stored (out, in) as in torch; kept (in, out) here so the forward is a plain x @ w.
    params = [{"w": chosen[f"layers.{i}.weight"].T.copy(), "b": chosen[f"layers.{i}.bias"]} for i in range(cfg.num_layers)]
    return MLPModel(cfg, params, backend=backend, metadata=metadata, device=device, dtype=dtype, buckets=bucket_policy(options, max_sequence=None))
