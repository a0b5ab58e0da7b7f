"""The backend-neutral schemas in ``inferox.core.architectures`` (no framework imported)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inferox.core.architectures import (
    BertConfig,
    MLPConfig,
    Preprocessing,
    bert_input_specs,
    bert_output_specs,
    bert_weight_names,
    check_bert_inputs,
    mlp_input_specs,
    mlp_output_specs,
    read_sentence_transformers_config,
    select_weights,
)
from inferox.core.errors import ConfigError, InvalidInputError, PackageFormatError

from .conftest import TINY_BERT


def test_module_imports_no_framework() -> None:
    code = "import sys, inferox.core.architectures, inferox.core.text; print(any(m in sys.modules for m in ('torch', 'jax', 'tokenizers')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_minilm_sentence_transformers_settings(minilm_dir: Path) -> None:
    assert read_sentence_transformers_config(minilm_dir) == {"pooling": "mean", "normalize": True, "max_seq_length": 256}


def test_sentence_transformers_settings_variants(tmp_path: Path) -> None:
    assert read_sentence_transformers_config(tmp_path) == {}
    (tmp_path / "modules.json").write_text(json.dumps([{"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
                                                        {"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    assert read_sentence_transformers_config(tmp_path) == {"pooling": "cls", "normalize": False}
    (tmp_path / "modules.json").write_text("{}")
    with pytest.raises(PackageFormatError) as ei:
        read_sentence_transformers_config(tmp_path)
    assert ei.value.path == str(tmp_path / "modules.json")
    (tmp_path / "modules.json").write_text("[")
    with pytest.raises(PackageFormatError) as ei:
        read_sentence_transformers_config(tmp_path)
    assert ei.value.code == "PACKAGE_FORMAT_ERROR"


def test_mlp_schema() -> None:
    cfg = MLPConfig.from_dict({"layer_sizes": [3, 5, 2], "activation": "tanh"})
    assert cfg.num_layers == 2
    assert cfg.weight_shapes() == {"layers.0.weight": (5, 3), "layers.0.bias": (5,), "layers.1.weight": (2, 5), "layers.1.bias": (2,)}
    assert mlp_input_specs(cfg)[0].to_dict() == {"name": "input", "dtype": "f32", "shape": [-1, 3], "description": "features"}
    assert mlp_output_specs(cfg)[0].to_dict() == {"name": "output", "dtype": "f32", "shape": [-1, 2]}
    with pytest.raises(ConfigError) as ei:
        MLPConfig.from_dict([3, 2])  # type: ignore[arg-type]
    assert ei.value.field == "config"


def test_bert_schema() -> None:
    cfg = BertConfig.from_dict(TINY_BERT)
    assert cfg.head_dim == 8
    names = bert_weight_names(cfg)
    assert len(names) == 5 + 16 * 2 + 2 and names[0] == "embeddings.word_embeddings.weight" and names[-1] == "pooler.dense.bias"
    specs = bert_input_specs(cfg)
    assert [(s.name, s.optional, s.pad_value) for s in specs] == [
        ("input_ids", False, 0), ("attention_mask", False, 0), ("token_type_ids", True, 0), ("position_ids", True, 0)]
    assert [s.name for s in bert_output_specs(cfg)] == ["last_hidden_state", "pooler_output"]
    pre = Preprocessing(pooling="mean", normalize=True)
    outs = bert_output_specs(cfg, pre)
    assert outs[-1].name == "sentence_embedding" and outs[-1].shape == (None, 32) and "L2" in outs[-1].description
    with pytest.raises(ConfigError) as ei:
        BertConfig.from_dict("bert")  # type: ignore[arg-type]
    assert ei.value.field == "config"
    with pytest.raises(ConfigError) as ei:
        BertConfig.from_dict({**TINY_BERT, "num_hidden_layers": True})
    assert ei.value.field == "num_hidden_layers"


def test_preprocessing_from_options() -> None:
    assert Preprocessing.from_options({}, limit=512) == Preprocessing()
    pre = Preprocessing.from_options({"preprocessing": {"pooling": "mean", "normalize": True, "max_seq_length": 256}, "max_seq_length": 512}, limit=512)
    assert pre.to_dict() == {"pooling": "mean", "normalize": True, "max_seq_length": 512}


def test_select_weights_prefixes_and_optional() -> None:
    w = {"bert.a": np.zeros(2), "bert.b": np.zeros((2, 3)), "cls.x": np.zeros(1)}
    assert set(select_weights(w, {"a": (2,), "b": (2, 3)}, prefixes=("", "bert."))) == {"a", "b"}
    assert set(select_weights(w, ["a", "b", "c"], prefixes=("", "bert."), optional=frozenset({"c"}))) == {"a", "b"}
    with pytest.raises(PackageFormatError) as ei:
        select_weights(w, ["a", "z"], prefixes=("", "bert."), source="m.safetensors")
    assert ei.value.field == "bert.z" and ei.value.path == "m.safetensors"


def test_check_bert_inputs_directly() -> None:
    cfg = BertConfig.from_dict(TINY_BERT)

    def rng(a: np.ndarray) -> tuple[int, int]:
        return int(a.min()), int(a.max())

    check_bert_inputs(cfg, {"input_ids": np.ones((2, 3), np.int64), "attention_mask": None}, rng)
    with pytest.raises(InvalidInputError) as ei:
        check_bert_inputs(cfg, {"attention_mask": np.ones((2, 3))}, rng)
    assert ei.value.name == "input_ids"
