"""The ``bert`` architecture on every backend against ``transformers`` (reference only), on a tiny
random BERT: Hugging Face parameter names with and without ``bert.``, every pooling mode, the
input checks, jit bucketing and the factory options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from inferox.core import AnyModel
from inferox.core.errors import ConfigError, DTypeError, InvalidInputError, PackageFormatError, ServiceUnavailableError

from .conftest import BACKENDS, TINY_BERT, build, tiny_bert_weights


@pytest.fixture(scope="module")
def tiny_weights() -> dict[str, np.ndarray]:
    return tiny_bert_weights(0)


def token_batch(batch: int, seq: int, *, seed: int = 0, ragged: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, TINY_BERT["vocab_size"], size=(batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), np.int64)
    if ragged:
        for i in range(batch):
            n = int(rng.integers(1, seq + 1))
            mask[i, n:] = 0
            ids[i, n:] = 0
    types = np.zeros((batch, seq), np.int64)
    types[:, seq // 2 :] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def hf_reference(weights: dict[str, np.ndarray], inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from transformers import BertConfig, BertModel

    ref = BertModel(BertConfig(**TINY_BERT), add_pooling_layer=True).eval()
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
    with torch.inference_mode():
        out = ref(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    return {"last_hidden_state": out.last_hidden_state.numpy(), "pooler_output": out.pooler_output.numpy()}


def pool_reference(hidden: np.ndarray, mask: np.ndarray, mode: str, normalize: bool) -> np.ndarray:
    m = mask[:, :, None].astype(np.float64)
    h = hidden.astype(np.float64)
    if mode == "cls":
        emb = h[:, 0]
    elif mode == "max":
        emb = np.where(m == 0, -1e9, h).max(axis=1)
    elif mode == "mean":
        emb = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    else:
        emb = (h * m).sum(1) / np.sqrt(np.maximum(m.sum(1), 1e-9))
    if normalize:
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return emb


@pytest.mark.parametrize(("batch", "seq"), [(1, 1), (1, 7), (3, 16), (5, 40)])
def test_bert_matches_transformers(backend_name: str, tiny_weights: dict[str, np.ndarray], batch: int, seq: int) -> None:
    inputs = token_batch(batch, seq, seed=batch * 100 + seq)
    expected = hf_reference(tiny_weights, inputs)
    model = AnyModel(build(backend_name, "bert", config=TINY_BERT, weights=tiny_weights))
    assert [s.name for s in model.output_specs] == ["last_hidden_state", "pooler_output"]
    out = model(inputs)
    assert set(out) == {"last_hidden_state", "pooler_output"}
    valid = inputs["attention_mask"].astype(bool)
    # Padded positions are not comparable (HF lets them attend differently); real tokens must agree.
    np.testing.assert_allclose(out["last_hidden_state"][valid], expected["last_hidden_state"][valid], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["pooler_output"], expected["pooler_output"], rtol=1e-4, atol=1e-4)
    assert out["last_hidden_state"].dtype == np.float32


def test_bert_prefix_and_safetensors_file(tmp_path: Path, backend_name: str, tiny_weights: dict[str, np.ndarray]) -> None:
    prefixed = tiny_bert_weights(0, prefix="bert.")
    path = tmp_path / "model.safetensors"
    save_file(prefixed, str(path))
    inputs = token_batch(2, 9)
    plain = AnyModel(build(backend_name, "bert", config=TINY_BERT, weights=tiny_weights))(inputs)
    from_file = AnyModel(build(backend_name, "bert", config=TINY_BERT, weights=path))(inputs)
    for k in plain:
        np.testing.assert_array_equal(plain[k], from_file[k])


@pytest.mark.parametrize("mode", ["mean", "cls", "max", "mean_sqrt_len"])
@pytest.mark.parametrize("normalize", [False, True])
def test_sentence_embedding_pooling_inside_the_model(backend_name: str, tiny_weights: dict[str, np.ndarray], mode: str, normalize: bool) -> None:
    inputs = token_batch(4, 12, seed=3)
    model = AnyModel(build(backend_name, "bert", config=TINY_BERT, weights=tiny_weights, preprocessing={"pooling": mode, "normalize": normalize}))
    assert [s.name for s in model.output_specs][-1] == "sentence_embedding"
    out = model(inputs)
    expected = pool_reference(out["last_hidden_state"], inputs["attention_mask"], mode, normalize)
    np.testing.assert_allclose(out["sentence_embedding"], expected, rtol=1e-5, atol=1e-5)
    if normalize:
        np.testing.assert_allclose(np.linalg.norm(out["sentence_embedding"], axis=1), 1.0, rtol=1e-5)


def test_flat_options_override_preprocessing(backend_name: str, tiny_weights: dict[str, np.ndarray]) -> None:
    inputs = token_batch(3, 10, seed=4)
    flat = AnyModel(build(backend_name, "bert", config=TINY_BERT, weights=tiny_weights, preprocessing={"pooling": "mean"}, pooling="cls", normalize=True))(inputs)
    recorded = AnyModel(build(backend_name, "bert", config=TINY_BERT, weights=tiny_weights, preprocessing={"pooling": "cls", "normalize": True}))(inputs)
    np.testing.assert_array_equal(flat["sentence_embedding"], recorded["sentence_embedding"])  # the flat options won
    np.testing.assert_allclose(flat["sentence_embedding"], pool_reference(flat["last_hidden_state"], inputs["attention_mask"], "cls", True), rtol=1e-5, atol=1e-5)


def test_backends_agree_on_tiny_bert(tiny_weights: dict[str, np.ndarray]) -> None:
    inputs = token_batch(6, 20, seed=9)
    del inputs["token_type_ids"]  # optional: defaults to segment 0
    outs = [AnyModel(build(b, "bert", config=TINY_BERT, weights=tiny_weights, pooling="mean"))(inputs) for b in BACKENDS]
    for k in outs[0]:
        np.testing.assert_allclose(outs[0][k], outs[1][k], rtol=1e-5, atol=2e-5)


def test_position_ids_are_used(backend_name: str, tiny_weights: dict[str, np.ndarray]) -> None:
    inputs = token_batch(2, 10, ragged=False)
    model = AnyModel(build(backend_name, "bert", config=TINY_BERT, weights=tiny_weights))
    default = model(inputs)["last_hidden_state"]
    explicit = model(dict(inputs, position_ids=np.tile(np.arange(10), (2, 1))))["last_hidden_state"]
    np.testing.assert_allclose(default, explicit, rtol=1e-6, atol=1e-6)
    shifted_pos = np.tile(np.arange(5, 15), (2, 1))
    shifted = model(dict(inputs, position_ids=shifted_pos))["last_hidden_state"]
    expected = hf_reference(tiny_weights, dict(inputs, position_ids=shifted_pos))["last_hidden_state"]
    np.testing.assert_allclose(shifted, expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(shifted, default, atol=1e-3)


def test_all_padding_row_gives_finite_outputs(backend_name: str, tiny_weights: dict[str, np.ndarray]) -> None:
    inputs = token_batch(2, 6, ragged=False)
    inputs["attention_mask"][1] = 0
    out = AnyModel(build(backend_name, "bert", config=TINY_BERT, weights=tiny_weights, pooling="mean", normalize=True))(inputs)
    assert all(np.isfinite(v).all() for v in out.values())


def test_half_precision_load(backend_name: str, tiny_weights: dict[str, np.ndarray]) -> None:
    inputs = token_batch(2, 8, ragged=False)
    if backend_name == "onnx":  # its graphs are f32 (int8 is its reduced precision): bf16 is refused by name
        with pytest.raises(DTypeError) as ei:
            build(backend_name, "bert", config=TINY_BERT, weights=tiny_weights, pooling="mean", dtype="bf16")
        assert ei.value.code == "INVALID_DTYPE" and ei.value.name == "dtype" and ei.value.actual == "bf16"
        return
    full = AnyModel(build(backend_name, "bert", config=TINY_BERT, weights=tiny_weights, pooling="mean"))(inputs)
    half = AnyModel(build(backend_name, "bert", config=TINY_BERT, weights=tiny_weights, pooling="mean", dtype="bf16"))(inputs)
    assert half["sentence_embedding"].dtype == np.float32
    np.testing.assert_allclose(half["sentence_embedding"], full["sentence_embedding"], atol=0.1)


# -- bad input ----------------------------------------------------------------------------------------
def _bad_cases() -> list[tuple[str, Any, str]]:
    ok = token_batch(2, 8, ragged=False)
    v = TINY_BERT["vocab_size"]
    return [
        ("too_long", dict(token_batch(1, 41, ragged=False)), "input_ids"),
        ("id_at_vocab", dict(ok, input_ids=np.full((2, 8), v, np.int64)), "input_ids"),
        ("negative_id", dict(ok, input_ids=np.full((2, 8), -1, np.int64)), "input_ids"),
        ("empty_batch", {k: np.zeros((0, 8), np.int64) for k in ok}, "input_ids"),
        ("empty_sequence", {k: np.zeros((2, 0), np.int64) for k in ok}, "input_ids"),
        ("mask_shape", dict(ok, attention_mask=np.ones((2, 7), np.int64)), "attention_mask"),
        ("mask_values", dict(ok, attention_mask=np.full((2, 8), 2, np.int64)), "attention_mask"),
        ("type_ids", dict(ok, token_type_ids=np.full((2, 8), 2, np.int64)), "token_type_ids"),
        ("type_shape", dict(ok, token_type_ids=np.zeros((3, 8), np.int64)), "token_type_ids"),
        ("position_ids", dict(ok, position_ids=np.full((2, 8), 40, np.int64)), "position_ids"),
        ("rank", dict(ok, input_ids=np.zeros((2, 8, 1), np.int64)), "input_ids"),
    ]


@pytest.mark.parametrize(("case", "inputs", "name"), _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_bad_input_is_invalid_input_error(backend_name: str, tiny_weights: dict[str, np.ndarray], case: str, inputs: Any, name: str) -> None:
    model = AnyModel(build(backend_name, "bert", config=TINY_BERT, weights=tiny_weights))
    with pytest.raises(InvalidInputError) as ei:
        model(inputs)
    assert ei.value.code == "INVALID_INPUT"
    assert ei.value.name == name
    assert not isinstance(ei.value.__cause__, IndexError)


def test_check_inputs_reports_range_and_limit(tiny_weights: dict[str, np.ndarray]) -> None:
    model = build("torch", "bert", config=TINY_BERT, weights=tiny_weights)
    with pytest.raises(InvalidInputError) as ei:
        model.check_inputs({"input_ids": torch.full((1, 41), 1)})
    assert ei.value.actual == 41 and "40" in str(ei.value.expected)
    with pytest.raises(InvalidInputError) as ei:
        model.check_inputs({"input_ids": torch.tensor([[1, 500]])})
    assert ei.value.actual == "[1, 500]"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hidden_size": 30}, "num_attention_heads"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"hidden_act": "swish"}, "hidden_act"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
        ({"layer_norm_eps": -1}, "layer_norm_eps"),
    ],
)
def test_bad_config_is_config_error(backend_name: str, tiny_weights: dict[str, np.ndarray], change: dict, field: str) -> None:
    with pytest.raises(ConfigError) as ei:
        build(backend_name, "bert", config={**TINY_BERT, **change}, weights=tiny_weights)
    assert ei.value.code == "INVALID_CONFIG" and ei.value.field == field


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"pooling": "sum"}, "pooling"),
        ({"normalize": "yes"}, "normalize"),
        ({"max_seq_length": 41}, "max_seq_length"),
        ({"preprocessing": ["mean"]}, "preprocessing"),
    ],
)
def test_bad_preprocessing_is_config_error(backend_name: str, tiny_weights: dict[str, np.ndarray], options: dict, field: str) -> None:
    with pytest.raises(ConfigError) as ei:
        build(backend_name, "bert", config=TINY_BERT, weights=tiny_weights, **options)
    assert ei.value.field == field


def test_missing_and_misshapen_weights_are_package_errors(backend_name: str, tiny_weights: dict[str, np.ndarray]) -> None:
    missing = {k: v for k, v in tiny_weights.items() if k != "encoder.layer.1.attention.self.key.bias"}
    with pytest.raises(PackageFormatError) as ei:
        build(backend_name, "bert", config=TINY_BERT, weights=missing)
    assert ei.value.field == "encoder.layer.1.attention.self.key.bias"
    bad = dict(tiny_weights, **{"pooler.dense.weight": np.zeros((32, 31), np.float32)})
    with pytest.raises(PackageFormatError) as ei:
        build(backend_name, "bert", config=TINY_BERT, weights=bad)
    assert ei.value.field == "pooler.dense.weight"


def test_text_without_tokenizer_is_invalid_input(backend_name: str, tiny_weights: dict[str, np.ndarray]) -> None:
    model = build(backend_name, "bert", config=TINY_BERT, weights=tiny_weights)
    assert model.text_encoder is None
    with pytest.raises(InvalidInputError) as ei:
        model.encode_text(["hello"])  # type: ignore[attr-defined]
    assert ei.value.name == "text"


def test_warmup_and_memory(backend_name: str, tiny_weights: dict[str, np.ndarray]) -> None:
    model = build(backend_name, "bert", config=TINY_BERT, weights=tiny_weights)
    model.warmup()
    n_params = sum(v.size for k, v in tiny_weights.items() if k != "embeddings.position_ids")
    assert model.memory_requirements() == n_params * 4
    model.close()
    with pytest.raises(ServiceUnavailableError) as ei:
        AnyModel(model)(token_batch(1, 4))
    assert ei.value.code == "UNAVAILABLE"


# -- JAX compilation --------------------------------------------------------------------------------
def test_jax_bert_does_not_retrace_within_a_bucket(tiny_weights: dict[str, np.ndarray]) -> None:
    model = build("jax", "bert", config=TINY_BERT, weights=tiny_weights, seq_buckets=[8, 16, 32], batch_buckets=[4])
    any_model = AnyModel(model)
    assert model.trace_count == 0
    reference = hf_reference(tiny_weights, token_batch(4, 16, seed=1))
    for batch, seq in [(1, 9), (2, 16), (3, 11), (4, 16), (4, 10)]:
        inputs = token_batch(batch, seq, seed=batch * seq)
        out = any_model(inputs)
        assert out["last_hidden_state"].shape == (batch, seq, 32)
        assert out["pooler_output"].shape == (batch, 32)
    assert model.trace_count == 1 and model.compile_count == 1  # every shape above pads to (4, 16)
    any_model(token_batch(1, 5))  # (4, 8): a new bucket
    assert model.trace_count == 2
    any_model(token_batch(3, 33))  # beyond the last sequence bucket: padded to the position limit (40)
    assert model.trace_count == 3
    # padding to the bucket does not change results
    inputs = token_batch(4, 16, seed=1)
    np.testing.assert_allclose(any_model(inputs)["pooler_output"], reference["pooler_output"], rtol=1e-4, atol=1e-4)
    any_model(token_batch(2, 7, seed=5))
    assert model.trace_count == 3


def test_jax_warmup_compiles_the_configured_buckets(tiny_weights: dict[str, np.ndarray]) -> None:
    model = build("jax", "bert", config=TINY_BERT, weights=tiny_weights, warmup_batch_sizes=[1, 4], warmup_seq_lengths=[32])
    model.warmup()
    assert model.compile_count == 2
    traces = model.trace_count
    inputs = token_batch(3, 30)
    AnyModel(model)(inputs)
    del inputs["token_type_ids"]  # optional inputs left out hit the same executable
    AnyModel(model)(inputs)
    AnyModel(model)(token_batch(1, 17))
    assert model.trace_count == traces == 2  # served from the warm cache


def test_jax_default_warmup_covers_batch_one(tiny_weights: dict[str, np.ndarray]) -> None:
    model = build("jax", "bert", config=TINY_BERT, weights=tiny_weights)
    model.warmup()
    assert model.compile_count == 2  # batch 1 x sequence 16 and the 40-position cap (128 > 40)
