"""Core's NumPy references (the definitions on NumPy in float64) agree with the torch backend (the
same definitions on torch, with torch's own kernels for the fused operations) on every option the
standard architectures have (each pooling mode, with and without normalisation, without an
attention mask, every mlp activation): the torch kernels compute what the reference operations do."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from inferox.core import AnyModel, ModelMetadata, get_registry, random_weights
from inferox.core.architectures import ACTIVATIONS, POOLING_MODES
from inferox.core.testing import bert_reference, mlp_reference


def _torch_outputs(architecture: str, config: dict[str, Any], weights: dict[str, np.ndarray], inputs: dict[str, np.ndarray], **options: Any) -> dict[str, np.ndarray]:
    registry = get_registry()
    backend = registry.get_backend("torch")
    model = registry.architecture_factory("torch", architecture)(
        backend=backend, config=config, weights=weights, metadata=ModelMetadata("parity"), device="cpu", dtype=None, **options
    )
    return AnyModel(model).forward_any(inputs)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("pooling", POOLING_MODES)
def test_bert_reference_matches_torch_for_every_pooling(pooling: str, normalize: bool) -> None:
    schema = get_registry().schema("bert")
    config = dict(schema.example_config)
    rng = np.random.default_rng(3)
    weights = random_weights(schema, config, rng)
    inputs = schema.golden(config, {}, rng)
    options = {"preprocessing": {"pooling": pooling, "normalize": normalize}}
    want = bert_reference(config, weights, inputs, **options)
    got = _torch_outputs("bert", config, weights, inputs, **options)
    assert set(want) == set(got) == {"last_hidden_state", "pooler_output", "sentence_embedding"}
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=5e-5, rtol=1e-4, err_msg=name)


def test_bert_reference_without_mask_or_token_types_means_every_token() -> None:
    schema = get_registry().schema("bert")
    config = {**schema.example_config, "hidden_act": "gelu_new"}
    rng = np.random.default_rng(4)
    weights = {f"bert.{k}": v for k, v in random_weights(schema, config, rng).items()}  # the Hub's prefixed names
    ids = schema.golden(config, {}, rng)["input_ids"]
    want = bert_reference(config, weights, {"input_ids": ids})  # no mask: every token attends
    got = _torch_outputs("bert", config, weights, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
    assert set(want) == {"last_hidden_state", "pooler_output"}
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=5e-5, rtol=1e-4, err_msg=name)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_reference_matches_torch_for_every_activation(activation: str) -> None:
    schema = get_registry().schema("mlp")
    config = {**schema.example_config, "activation": activation}
    rng = np.random.default_rng(5)
    weights = random_weights(schema, config, rng, scale=0.5)
    inputs = schema.golden(config, {}, rng)
    np.testing.assert_allclose(_torch_outputs("mlp", config, weights, inputs)["output"], mlp_reference(config, weights, inputs)["output"], atol=5e-5, rtol=1e-4)


@pytest.mark.parametrize(("dtype", "compute"), [(None, "float32"), ("f32", "float32"), ("f16", "float16"), ("bf16", "bfloat16")])
def test_mlp_dtype_is_the_compute_dtype_and_outputs_keep_their_spec(dtype: str | None, compute: str) -> None:
    import torch

    schema = get_registry().schema("mlp")
    config = dict(schema.example_config)
    weights = random_weights(schema, config, np.random.default_rng(6))
    backend = get_registry().get_backend("torch")
    model = get_registry().architecture_factory("torch", "mlp")(
        backend=backend, config=config, weights=weights, metadata=ModelMetadata("dtype"), device="cpu", dtype=dtype
    )
    from inferox.core.definition import array_leaves

    assert {p.dtype for p in array_leaves(model.params)} == {getattr(torch, compute)}  # honoured: parameters and compute
    out = AnyModel(model).forward_any(schema.golden(config, {}, np.random.default_rng(7)))["output"]
    assert out.dtype == np.float32  # the output spec's dtype, whatever the compute dtype


@pytest.mark.parametrize("dtype", ["f64", "i32"])
def test_mlp_refuses_a_dtype_it_cannot_compute_in(dtype: str) -> None:
    from inferox.core.errors import DTypeError

    schema = get_registry().schema("mlp")
    config = dict(schema.example_config)
    with pytest.raises(DTypeError) as ei:
        get_registry().architecture_factory("torch", "mlp")(
            backend=get_registry().get_backend("torch"), config=config, weights=random_weights(schema, config, np.random.default_rng(0)),
            metadata=ModelMetadata("dtype"), device="cpu", dtype=dtype,
        )
    assert ei.value.code == "INVALID_DTYPE" and ei.value.name == "dtype" and dtype in str(ei.value)
