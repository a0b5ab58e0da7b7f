"""The encoder definition's configuration (``inferox.core.architectures.encoder``), without a framework:
how each family reads its ``config.json``, what the package's pre-processing settings may say (poolings,
Dense layers, heads) and how a checkpoint's head is settled at pack time — each refusal a typed error
naming the field."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from inferox.core import PluginRegistry, UnsupportedHeadError, random_weights
from inferox.core.architectures import FAMILIES, family_for, parse_encoder, resolve_package
from inferox.core.architectures.encoder import encoder_task
from inferox.core.errors import ConfigError

BERT = {"model_type": "bert", "vocab_size": 30, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 12}


def test_families_read_their_own_config_keys() -> None:
    distil = parse_encoder({"model_type": "distilbert", "vocab_size": 30, "dim": 8, "n_layers": 3, "n_heads": 2, "hidden_dim": 16, "activation": "relu"})
    assert (distil.hidden_size, distil.num_layers, distil.intermediate_size, distil.hidden_act, distil.type_vocab_size) == (8, 3, 16, "relu", 0)
    assert distil.layer_norm_eps == 1e-12 and distil.pooler is False
    roberta = parse_encoder({**BERT, "model_type": "roberta", "pad_token_id": 1, "type_vocab_size": 1})
    assert roberta.positions == "padding" and roberta.max_tokens == 12 - 2 and roberta.pooler is True
    mpnet = parse_encoder({**BERT, "model_type": "mpnet", "pad_token_id": 7})
    assert mpnet.pad_token_id == 1 and mpnet.relative_buckets == 32 and mpnet.type_vocab_size == 0  # MPNet's padding index is always 1
    electra = parse_encoder({**BERT, "model_type": "electra", "embedding_size": 4})
    assert electra.embedding_size == 4 and electra.pooler is False
    assert family_for("xlm-roberta").prefix == "roberta." and sorted(FAMILIES) == ["bert", "distilbert", "electra", "mpnet", "roberta", "xlm-roberta"]
    with pytest.raises(ConfigError) as ei:
        family_for("gpt2")
    assert ei.value.field == "model_type" and ei.value.value == "gpt2"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hidden_size": 9}, "num_attention_heads"),
        ({"hidden_act": "swish"}, "hidden_act"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
        ({"layer_norm_eps": 0}, "layer_norm_eps"),
        ({"vocab_size": True}, "vocab_size"),
        ({"model_type": "roberta", "max_position_embeddings": 3, "pad_token_id": 1}, "max_position_embeddings"),
    ],
)
def test_config_errors_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_encoder({**BERT, **change})
    assert ei.value.code == "INVALID_CONFIG" and ei.value.field == field


@pytest.mark.parametrize(
    ("pre", "field"),
    [
        ({"pooling": "sum"}, "pooling"),
        ({"pooling": ["mean", "sum"]}, "pooling"),
        ({"normalize": 1}, "normalize"),
        ({"max_seq_length": 13}, "max_seq_length"),
        ({"pooler": "yes"}, "pooler"),
        ({"dense": [{"in_features": 8, "out_features": 4}]}, "dense"),  # Dense with no pooling to act on
        ({"pooling": "mean", "dense": {"in_features": 8}}, "dense"),
        ({"pooling": "mean", "dense": ["x"]}, "dense[0]"),
        ({"pooling": "mean", "dense": [{"in_features": 9, "out_features": 4}]}, "dense[0].in_features"),
        ({"pooling": "mean", "dense": [{"in_features": 8, "out_features": 4, "activation": "softplus"}]}, "dense[0].activation"),
        ({"pooling": "mean", "dense": [{"in_features": 8, "out_features": 4, "bias": "no"}]}, "dense[0]"),
        ({"head": "classify"}, "head"),
        ({"head": {"task": "translate"}}, "head.task"),
        ({"head": {"task": "classify", "num_labels": 2, "labels": ["a"]}}, "head.labels"),
        ({"head": {"task": "classify", "num_labels": 2, "activation": "softplus"}}, "head.activation"),
        ({"head": {"task": "rerank", "num_labels": 2}}, "head.num_labels"),
        ({"head": {"task": "rerank", "num_labels": 1}, "pooling": "mean"}, "head"),
        ({"head": {"task": "rerank", "num_labels": 1}, "pooler": False}, "pooler"),  # BERT's head reads the pooler
    ],
)
def test_preprocessing_errors_name_the_field(pre: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_encoder(BERT, pre)
    assert ei.value.field == field


def test_poolings_dense_and_heads_shape_the_outputs() -> None:
    registry = PluginRegistry()
    bert = registry.schema("bert")
    pre = {"pooling": ["cls", "mean"], "dense": [{"in_features": 16, "out_features": 4, "activation": "tanh"}], "normalize": True}
    outs = {s.name: s.shape for s in bert.specs(BERT, pre)[1]}
    assert outs == {"last_hidden_state": (None, None, 8), "pooler_output": (None, 8), "sentence_embedding": (None, 4)}
    assert bert.outputs_by_default(BERT, pre) == ["sentence_embedding"]
    assert encoder_task(BERT, pre) == {"task": "embed", "output": "sentence_embedding", "dimensions": 4, "normalized": True}
    assert bert.outputs_by_default(BERT, {"pooler": False}) == ["last_hidden_state"] and encoder_task(BERT, {}) is None
    classify = {"head": {"task": "classify", "num_labels": 2, "labels": ["no", "yes"]}}
    specs = {s.name: s for s in bert.specs(BERT, classify)[1]}
    assert specs["logits"].shape == (None, 2) and specs["label"].extra == {"labels": ["no", "yes"]}
    rerank = {"head": {"task": "rerank", "num_labels": 1, "activation": "sigmoid"}}
    assert bert.outputs_by_default(BERT, rerank) == ["score"]
    distil = {"model_type": "distilbert", "vocab_size": 30, "dim": 8, "n_layers": 1, "n_heads": 2, "hidden_dim": 16}
    assert [s.name for s in registry.schema("distilbert").specs(distil, {})[0]] == ["input_ids", "attention_mask", "position_ids"]


def _names(family: str, config: dict[str, Any], *, prefix: bool) -> list[str]:
    schema = PluginRegistry().schema(family)
    p = FAMILIES[family].prefix if prefix else ""
    return [(p if not n.startswith(("classifier", "pre_classifier")) else "") + n for n in random_weights(schema, config, np.random.default_rng(0))]


@pytest.mark.parametrize(
    ("architectures", "extra", "head"),
    [
        (None, {}, None),
        (["BertModel"], {}, None),
        (["BertForSequenceClassification"], {"id2label": {"1": "pos", "0": "neg"}}, {"task": "classify", "num_labels": 2, "labels": ["neg", "pos"], "activation": "identity"}),
        (["BertForSequenceClassification"], {"num_labels": 1}, {"task": "rerank", "num_labels": 1, "labels": ["LABEL_0"], "activation": "sigmoid"}),
        (["BertForSequenceClassification"], {"num_labels": 3, "problem_type": "multi_label_classification"},
         {"task": "classify", "num_labels": 3, "labels": ["LABEL_0", "LABEL_1", "LABEL_2"], "activation": "identity", "problem_type": "multi_label_classification"}),
    ],
)
def test_resolve_reads_the_head_from_architectures(architectures: list[str] | None, extra: dict[str, Any], head: dict[str, Any] | None) -> None:
    config = {**BERT, **extra, **({"architectures": architectures} if architectures else {})}
    pre = resolve_package("bert", config, {}, weight_names=_names("bert", config, prefix=bool(head)))
    assert pre.get("head") == head and pre["pooler"] is True


def test_resolve_refuses_unsupported_heads_unless_encoder_only() -> None:
    config = {**BERT, "architectures": ["BertForTokenClassification"]}
    names = _names("bert", {**BERT}, prefix=True)
    with pytest.raises(UnsupportedHeadError) as ei:
        resolve_package("bert", config, {}, weight_names=names)
    assert (ei.value.head, ei.value.supported, ei.value.architecture) == ("BertForTokenClassification", ["BertModel", "BertForSequenceClassification"], "bert")
    assert "head" not in resolve_package("bert", config, {}, weight_names=names, encoder_only=True)
    # A sentence-transformers embedding model is its encoder, whatever the checkpoint class.
    assert resolve_package("bert", config, {"pooling": "mean"}, weight_names=names)["pooling"] == "mean"
    # BERT's classification head reads the pooler: a checkpoint without one cannot have it.
    no_pooler = [n for n in names if "pooler" not in n]
    with pytest.raises(UnsupportedHeadError, match="no pooler"):
        resolve_package("bert", {**BERT, "architectures": ["BertForSequenceClassification"]}, {}, weight_names=no_pooler)


@pytest.mark.parametrize(
    ("where", "value", "activation"),
    [
        ("st", "torch.nn.modules.linear.Identity", "identity"),
        ("legacy", "torch.nn.modules.activation.Tanh", "tanh"),
        ("pre", "torch.nn.modules.activation.Sigmoid", "sigmoid"),
    ],
)
def test_resolve_takes_the_cross_encoder_activation(where: str, value: str, activation: str) -> None:
    config: dict[str, Any] = {**BERT, "architectures": ["RobertaForSequenceClassification"], "model_type": "roberta", "num_labels": 1, "pad_token_id": 1}
    pre: dict[str, Any] = {}
    if where == "st":
        config["sentence_transformers"] = {"activation_fn": value}
    elif where == "legacy":
        config["sbert_ce_default_activation_function"] = value
    else:
        pre["activation_fn"] = value  # config_sentence_transformers.json's, read by inferox pack
    out = resolve_package("roberta", config, pre, weight_names=[])
    assert out["head"]["activation"] == activation and "activation_fn" not in out and out["pooler"] is False
    with pytest.raises(ConfigError) as ei:
        resolve_package("roberta", {**config, "sentence_transformers": {"activation_fn": "mine.Softplus"}}, {}, weight_names=[])
    assert ei.value.field == "activation_fn" and ei.value.value == "mine.Softplus"


@pytest.mark.parametrize("id2label", [{"a": "x"}, {"0": "x", "2": "y"}])
def test_bad_id2label_is_a_config_error(id2label: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as ei:
        resolve_package("bert", {**BERT, "architectures": ["BertForSequenceClassification"], "id2label": id2label}, {}, weight_names=["pooler.dense.weight"])
    assert ei.value.field == "id2label"
