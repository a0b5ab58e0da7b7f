"""Fixtures for the inferox-jax tests: the backend through discovery, and tiny JAX models."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from inferox.core import DType, ModelMetadata, TensorSpec
from inferox.core.plugins import get_registry, reset_registry
from inferox.jax import BucketPolicy, JaxBackend, JaxModel


@pytest.fixture
def backend() -> Iterator[JaxBackend]:
    """The jax backend as discovery builds it (through the ``inferox`` entry point)."""
    reset_registry()
    b = get_registry().get_backend("jax")
    assert isinstance(b, JaxBackend)
    yield b
    reset_registry()


@pytest.fixture
def builder(backend: JaxBackend) -> Any:
    return backend.tensor_builder("cpu")


class LinearModel(JaxModel):
    """``y = x @ w + b``; counts how often JAX traces :meth:`apply` (once per compiled shape)."""

    def __init__(self, *, n_in: int, n_out: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_in, self.n_out = n_in, n_out
        self.traces = 0

    @property
    def input_specs(self) -> Sequence[TensorSpec]:
        return [TensorSpec("x", DType.F32, (None, self.n_in))]

    @property
    def output_specs(self) -> Sequence[TensorSpec]:
        return [TensorSpec("y", DType.F32, (None, self.n_out))]

    def apply(self, params: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
        self.traces += 1  # Python runs this only while JAX traces, i.e. once per compilation
        return {"y": inputs["x"] @ params["w"] + params["b"]}


def make_linear(backend: JaxBackend, weight: np.ndarray, bias: np.ndarray, *, name: str = "tiny", **options: Any) -> LinearModel:
    n_in, n_out = weight.shape
    return LinearModel(
        n_in=n_in,
        n_out=n_out,
        backend=backend,
        metadata=ModelMetadata(name=name, architecture="linear"),
        params={"w": weight, "b": bias},
        **options,
    )


class MaskedMeanModel(JaxModel):
    """Token ids (batch, seq) + mask → per-item mean of embedded ids over unmasked positions, and a
    per-token output (batch, seq). Sequence padding is neutral because the mask is padded with 0."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.traces = 0

    @property
    def input_specs(self) -> Sequence[TensorSpec]:
        return [
            TensorSpec("input_ids", DType.I64, (None, None), pad_value=0),
            TensorSpec("attention_mask", DType.I64, (None, None), pad_value=0),
        ]

    @property
    def output_specs(self) -> Sequence[TensorSpec]:
        return [TensorSpec("pooled", DType.F32, (None, 2)), TensorSpec("tokens", DType.F32, (None, None))]

    def apply(self, params: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
        import jax.numpy as jnp

        self.traces += 1
        emb = params["table"][inputs["input_ids"]]  # (b, s, 2)
        mask = inputs["attention_mask"].astype(emb.dtype)[..., None]
        pooled = (emb * mask).sum(axis=1) / jnp.maximum(mask.sum(axis=1), 1.0)
        return {"pooled": pooled, "tokens": emb[..., 0] * mask[..., 0]}


def make_masked(backend: JaxBackend, **options: Any) -> MaskedMeanModel:
    table = np.arange(20, dtype=np.float32).reshape(10, 2)
    options.setdefault("buckets", BucketPolicy(batch=(2, 4), sequence=(8, 16)))
    return MaskedMeanModel(backend=backend, metadata=ModelMetadata(name="masked", architecture="test"), params={"table": table}, **options)


def aligned_copy(array: np.ndarray) -> np.ndarray:
    """``array`` copied into 64-byte aligned memory (which JAX's CPU client adopts without copying)."""
    from inferox.jax import aligned_empty

    out = aligned_empty(array.shape, array.dtype)
    out[...] = array
    return out
