"""Every architecture definition on inferox-onnx, traced into an ONNX graph, against core's NumPy
reference (the definition run in float64): every encoder family with its pooler, every
sentence-transformers pooling mode, Dense and Normalize, both task heads, every hidden activation —
within 1e-4 in fp32, fused (ONNX Runtime's contrib operators) and unfused (standard operators only).
No torch, jax or transformers here: comparisons with transformers run in tests/models (nox -s all)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from inferox.core import AnyModel, ModelMetadata
from inferox.core.architectures import ENCODER_SCHEMAS, FAMILIES, MLP, parse_encoder
from inferox.core.architectures.encoder import dense_weight_shapes
from inferox.core.plugins import get_registry
from inferox.core.schema import random_weights

TOL = 1e-4


def build(arch: str, *, config: dict[str, Any], weights: Any, **options: Any) -> Any:
    registry = get_registry()
    factory = registry.architecture_factory("onnx", arch)
    return factory(backend=registry.get_backend("onnx"), config=config, weights=weights, metadata=ModelMetadata("m", architecture=arch),
                   device=None, dtype=options.pop("dtype", None), **options)


def family_case(family: str, *, head: str | None = None, pre: dict[str, Any] | None = None, act: str = "gelu", seed: int = 0) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """A tiny config of ``family`` (its schema's example), its pre-processing settings and random weights."""
    schema = ENCODER_SCHEMAS[family]
    fam = FAMILIES[family]
    config = dict(schema.example_config)
    config[fam.key("hidden_act")] = act
    preprocessing = dict(pre or {})
    if head is not None:
        config["architectures"] = [fam.classifier_class]
        labels = ["neg", "neutral", "pos"] if head == "classify" else ["score"]
        config["id2label"] = dict(enumerate(labels))
        preprocessing["head"] = {"task": head, "num_labels": len(labels), "labels": labels, "activation": "sigmoid" if head == "rerank" else "identity"}
    rng = np.random.default_rng(seed)
    weights = random_weights(schema, config, rng, scale=0.3)
    for name, shape in dense_weight_shapes(parse_encoder(config, preprocessing, family=family)).items():
        weights[name] = (rng.standard_normal(shape) * 0.3).astype(np.float32)
    return config, preprocessing, weights


def token_batch(family: str, config: dict[str, Any], *, batch: int = 3, seq: int = 9, seed: int = 1) -> dict[str, np.ndarray]:
    """Ids with a right-padded row, a left-padded row and a full one (and token types where the family has them)."""
    rng = np.random.default_rng(seed)
    pad = config.get("pad_token_id", 0)
    ids = rng.integers(0, config["vocab_size"], size=(batch, seq), dtype=np.int64)
    ids[ids == pad] = pad + 1
    mask = np.ones((batch, seq), np.int64)
    mask[0, seq - 3:] = 0
    mask[1, :2] = 0
    ids[mask == 0] = pad
    out = {"input_ids": ids, "attention_mask": mask}
    if FAMILIES[family].token_types:
        types = np.zeros((batch, seq), np.int64)
        types[:, seq // 2:] = 1
        out["token_type_ids"] = types
    return out


def reference(family: str, config: dict[str, Any], pre: dict[str, Any], weights: dict[str, np.ndarray], inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    ref = ENCODER_SCHEMAS[family].load_reference()
    assert ref is not None
    return ref(config, weights, inputs, preprocessing=pre)


def assert_matches(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    for name, value in want.items():
        assert got[name].shape == value.shape, name
        assert got[name].dtype == value.dtype, name  # outputs in their specs' dtypes (label: int32)
        np.testing.assert_allclose(got[name], value, atol=TOL, rtol=0, err_msg=name)


@pytest.mark.parametrize("optimize", [True, False], ids=["fused", "standard"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_matches_the_reference(family: str, optimize: bool) -> None:
    config, pre, weights = family_case(family, pre={"pooling": "mean", "normalize": True})
    inputs = token_batch(family, config)
    model = build(family, config=config, weights=weights, preprocessing=pre, optimize=optimize, cache=False)
    assert_matches(AnyModel(model)(inputs), reference(family, config, pre, weights, inputs))
    if optimize:
        # The attention of every layer is ONNX Runtime's fused operator, the residual norms too.
        layers = config[FAMILIES[family].key("num_hidden_layers")]
        assert model.fusions["Attention"] == layers and model.fusions["SkipLayerNormalization"] == 2 * layers
        assert model.fusions.get("EmbedLayerNormalization") == 1
    else:
        assert model.fusions == {}


@pytest.mark.parametrize("head", ["classify", "rerank"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_head_matches_the_reference(family: str, head: str) -> None:
    config, pre, weights = family_case(family, head=head, seed=2)
    inputs = token_batch(family, config, seed=3)
    model = build(family, config=config, weights=weights, preprocessing=pre, cache=False)
    got = AnyModel(model)(inputs)
    want = reference(family, config, pre, weights, inputs)
    assert_matches(got, want)
    assert set(got) == ({"logits", "label"} if head == "classify" else {"score", "logits"})


@pytest.mark.parametrize("pooling", ["cls", "max", "mean_sqrt_len", "weightedmean", "lasttoken", ["cls", "mean", "max"]], ids=str)
def test_every_pooling_mode_matches_the_reference(pooling: Any) -> None:
    config, pre, weights = family_case("bert", pre={"pooling": pooling})
    inputs = token_batch("bert", config, seed=4)
    model = build("bert", config=config, weights=weights, preprocessing=pre, cache=False)
    assert_matches(AnyModel(model)(inputs), reference("bert", config, pre, weights, inputs))


def test_dense_layers_and_normalize_match_the_reference() -> None:
    dense = [{"in_features": 16, "out_features": 16, "activation": "tanh", "residual": True},
             {"in_features": 16, "out_features": 6, "activation": "identity", "bias": False, "residual": True}]
    config, pre, weights = family_case("mpnet", pre={"pooling": "mean", "dense": dense, "normalize": True})
    inputs = token_batch("mpnet", config, seed=5)
    model = build("mpnet", config=config, weights=weights, preprocessing=pre, cache=False)
    got = AnyModel(model)(inputs)
    assert got["sentence_embedding"].shape == (3, 6)
    assert_matches(got, reference("mpnet", config, pre, weights, inputs))


@pytest.mark.parametrize("act", ["gelu_new", "relu", "tanh"])
def test_every_hidden_activation_matches_the_reference(act: str) -> None:
    config, pre, weights = family_case("electra", act=act)
    inputs = token_batch("electra", config, seed=6)
    model = build("electra", config=config, weights=weights, cache=False)
    assert_matches(AnyModel(model)(inputs), reference("electra", config, pre, weights, inputs))
    fused = model.nodes["optimized"]
    assert "Erf" not in fused and "Softmax" not in fused  # no attention or GELU left unfused
    assert ("FastGelu" in fused) == (act == "gelu_new")


def test_all_padding_row_attends_uniformly_as_the_reference() -> None:
    """A row with no real token: the fused attention masks with the most negative f32, as the
    reference's bias does, so both average the values uniformly (ONNX Runtime's default -10000 would
    not: it would attend as if nothing were masked)."""
    config, pre, weights = family_case("bert", pre={"pooling": "mean"})
    inputs = token_batch("bert", config)
    inputs["attention_mask"][2] = 0
    model = build("bert", config=config, weights=weights, preprocessing=pre, cache=False)
    assert_matches(AnyModel(model)(inputs), reference("bert", config, pre, weights, inputs))


def test_mlp_matches_the_reference() -> None:
    config = dict(MLP.example_config)
    weights = random_weights(MLP, config, np.random.default_rng(7), scale=MLP.example_weight_scale)
    x = {"input": np.random.default_rng(8).standard_normal((5, config["layer_sizes"][0])).astype(np.float32)}
    model = build("mlp", config=config, weights=weights, cache=False)
    ref = MLP.load_reference()
    assert ref is not None
    assert_matches(AnyModel(model)(x), ref(config, weights, x))
    assert model.nodes["optimized"] == {"Gelu": 2, "Gemm": 3}  # one Gemm per layer, ONNX Runtime's exact GELU
