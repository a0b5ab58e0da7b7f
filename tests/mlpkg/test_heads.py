"""Packing the encoder families and their task heads: what ``inferox pack`` decides from a Hugging Face
or sentence-transformers folder (or a Hub id), what it refuses, and what it records for a server.

Tiny random checkpoints are made by ``transformers`` in the test (tests/support/families.py); no
network. Numbers are checked in tests/models/test_families.py and test_heads.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferox.core.errors import PackageFormatError, UnsupportedHeadError
from inferox.mlpkg import build_package, load_model, load_package
from tests.support.families import FAMILIES, save_checkpoint, save_tokenizer, token_batch

pytest.importorskip("transformers", reason="tiny checkpoints are made with transformers")

INFEROX = str(Path(sys.executable).parent / "inferox")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str | None], Path]:
    """Every family's base checkpoint, BERT's and RoBERTa's classifiers and rerankers, and a masked-LM BERT."""
    out: dict[tuple[str, str | None], Path] = {}
    root = tmp_path_factory.mktemp("checkpoints")
    for family in FAMILIES:
        out[(family, None)] = root / family
        save_checkpoint(family, out[(family, None)])
    for family in ("bert", "roberta"):
        for head in ("classify", "rerank"):
            out[(family, head)] = root / f"{family}-{head}"
            save_checkpoint(family, out[(family, head)], head=head)
    import torch
    import transformers

    torch.manual_seed(0)
    mlm = root / "bert-mlm"
    cfg = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37, max_position_embeddings=40)
    transformers.BertForMaskedLM(cfg).save_pretrained(str(mlm))
    out[("bert", "mlm")] = mlm
    return out


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_is_recognised_from_its_folder(family: str, checkpoints: dict[Any, Path], tmp_path: Path) -> None:
    pkg = load_package(build_package(checkpoints[(family, None)], output_dir=tmp_path))
    assert pkg.architecture == family and pkg.model_info["family"] == "encoder"
    assert pkg.metadata["golden"]["backend"] == "reference" and pkg.has_golden_outputs
    outputs = [s.name for s in pkg.output_specs]
    assert outputs[0] == "last_hidden_state" and ("pooler_output" in outputs) == (family not in ("distilbert", "electra"))
    inputs = {s.name for s in pkg.input_specs}
    assert ("token_type_ids" in inputs) == (family in ("bert", "roberta", "xlm-roberta", "electra"))


def test_a_classifier_is_packed_with_its_head_not_as_a_plain_encoder(checkpoints: dict[Any, Path], tmp_path: Path) -> None:
    """Before, a BertForSequenceClassification was packed, verified and served as a plain encoder:
    no logits, the head dropped without a word."""
    pkg = load_package(build_package(checkpoints[("bert", "classify")], output_dir=tmp_path))
    assert pkg.preprocessing["head"] == {
        "task": "classify", "num_labels": 3, "labels": ["negative", "neutral", "positive"], "activation": "identity",
    }
    assert pkg.model_info["task"] == {"task": "classify", "output": "logits", "activation": "identity", "labels": ["negative", "neutral", "positive"], "label_output": "label"}
    outs = {s.name: s for s in pkg.output_specs}
    assert list(outs) == ["logits", "label"] and outs["logits"].shape == (None, 3)
    assert outs["label"].dtype.value == "i32" and outs["label"].extra["labels"] == ["negative", "neutral", "positive"]
    assert "default_outputs" not in pkg.model_info  # both outputs are what a request gets by default
    golden = pkg.golden_outputs()
    assert golden is not None and set(golden) == {"logits", "label"}
    np.testing.assert_array_equal(golden["label"], golden["logits"].argmax(axis=1))


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_a_one_label_classifier_is_a_reranker_with_sigmoid_scores(family: str, checkpoints: dict[Any, Path], tmp_path: Path) -> None:
    pkg = load_package(build_package(checkpoints[(family, "rerank")], output_dir=tmp_path))
    assert pkg.preprocessing["head"]["task"] == "rerank" and pkg.preprocessing["head"]["activation"] == "sigmoid"
    assert pkg.model_info["task"] == {"task": "rerank", "output": "score", "activation": "sigmoid"}
    assert [s.name for s in pkg.output_specs] == ["score", "logits"] and pkg.model_info["default_outputs"] == ["score"]
    golden = pkg.golden_outputs()
    assert golden is not None
    np.testing.assert_allclose(golden["score"], 1 / (1 + np.exp(-golden["logits"][:, 0].astype(np.float64))), rtol=1e-6)


@pytest.mark.parametrize(
    ("where", "path", "activation"),
    [
        ("config.json", "torch.nn.modules.linear.Identity", "identity"),  # sentence-transformers 4-5: config.json's sentence_transformers
        ("config_sentence_transformers.json", "torch.nn.modules.activation.Tanh", "tanh"),  # sentence-transformers >= 6
        ("legacy", "torch.nn.modules.linear.Identity", "identity"),  # < 4: sbert_ce_default_activation_function
    ],
)
def test_a_rerankers_activation_is_the_one_its_cross_encoder_config_names(checkpoints: dict[Any, Path], tmp_path: Path, where: str, path: str, activation: str) -> None:
    import shutil

    src = tmp_path / "src"
    shutil.copytree(checkpoints[("bert", "rerank")], src)
    config = json.loads((src / "config.json").read_text())
    if where == "config.json":
        config["sentence_transformers"] = {"activation_fn": path, "version": "5.0.0"}
    elif where == "legacy":
        config["sbert_ce_default_activation_function"] = path
    else:
        (src / "config_sentence_transformers.json").write_text(json.dumps({"activation_fn": path, "model_type": "CrossEncoder"}))
    (src / "config.json").write_text(json.dumps(config))
    pkg = load_package(build_package(src, output_dir=tmp_path / "out"))
    assert pkg.preprocessing["head"]["activation"] == activation and pkg.model_info["task"]["activation"] == activation
    assert "activation_fn" not in pkg.preprocessing
    golden = pkg.golden_outputs()
    assert golden is not None
    raw = golden["logits"][:, 0]
    np.testing.assert_allclose(golden["score"], raw if activation == "identity" else np.tanh(raw), rtol=1e-6, atol=1e-7)


def test_an_unknown_rerank_activation_is_a_config_error_naming_it(checkpoints: dict[Any, Path], tmp_path: Path) -> None:
    import shutil

    src = tmp_path / "src"
    shutil.copytree(checkpoints[("bert", "rerank")], src)
    config = json.loads((src / "config.json").read_text())
    config["sentence_transformers"] = {"activation_fn": "my_package.Softplus"}
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(PackageFormatError) as ei:
        build_package(src, output_dir=tmp_path / "out")
    assert ei.value.code == "PACKAGE_FORMAT_ERROR" and ei.value.field == "activation_fn" and "my_package.Softplus" in str(ei.value)
    assert not (tmp_path / "out" / "src").exists()


def test_an_unsupported_head_is_refused_naming_it(checkpoints: dict[Any, Path], tmp_path: Path) -> None:
    with pytest.raises(UnsupportedHeadError) as ei:
        build_package(checkpoints[("bert", "mlm")], output_dir=tmp_path)
    err = ei.value
    assert err.code == "UNSUPPORTED_HEAD" and err.head == "BertForMaskedLM" and err.architecture == "bert"
    assert err.supported == ["BertModel", "BertForSequenceClassification"] and err.field == "architectures"
    assert "BertForMaskedLM" in str(err) and "BertForSequenceClassification" in str(err) and "--encoder-only" in str(err)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even debris


def test_encoder_only_keeps_the_encoder(checkpoints: dict[Any, Path], tmp_path: Path) -> None:
    pkg = load_package(build_package(checkpoints[("bert", "mlm")], output_dir=tmp_path / "mlm", encoder_only=True))
    assert "head" not in pkg.preprocessing and pkg.preprocessing["pooler"] is False  # a masked-LM checkpoint has no pooler
    assert [s.name for s in pkg.output_specs] == ["last_hidden_state"]
    # A classifier packed with --encoder-only serves its encoder (and its pooler, which BERT's head reads).
    pkg = load_package(build_package(checkpoints[("bert", "classify")], output_dir=tmp_path / "cls", encoder_only=True))
    assert "head" not in pkg.preprocessing and [s.name for s in pkg.output_specs] == ["last_hidden_state", "pooler_output"]
    assert "task" not in pkg.model_info


def test_pack_on_the_command_line_refuses_or_keeps_the_encoder(checkpoints: dict[Any, Path], tmp_path: Path) -> None:
    src = checkpoints[("bert", "mlm")]
    refused = subprocess.run([INFEROX, "pack", str(src), "-o", str(tmp_path / "a")], capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "BertForMaskedLM" in refused.stderr and "UNSUPPORTED_HEAD" in refused.stderr and "--encoder-only" in refused.stderr
    assert not (tmp_path / "a" / src.name).exists()
    kept = subprocess.run([INFEROX, "pack", str(src), "-o", str(tmp_path / "b"), "--encoder-only"], capture_output=True, text=True, timeout=300)
    assert kept.returncode == 0, kept.stderr
    assert load_package(tmp_path / "b" / src.name).architecture == "bert"


def test_a_sentence_transformers_folder_is_its_encoder_whatever_its_checkpoint_says(checkpoints: dict[Any, Path], tmp_path: Path) -> None:
    """sentence-transformers loads the encoder of its Transformer module (AutoModel): a masked-LM
    checkpoint inside an embedding model is not a head being dropped."""
    import shutil

    src = tmp_path / "st"
    shutil.copytree(checkpoints[("bert", "mlm")], src)
    (src / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    (src / "1_Pooling").mkdir()
    (src / "1_Pooling" / "config.json").write_text(json.dumps({"embedding_dimension": 32, "pooling_mode": "mean"}))
    pkg = load_package(build_package(src, output_dir=tmp_path / "out"))
    assert pkg.preprocessing["pooling"] == "mean" and "head" not in pkg.preprocessing
    assert pkg.model_info["task"]["task"] == "embed"


def _st_folder(checkpoint: Path, folder: Path, *, dense: list[dict[str, Any]], normalize: bool = True) -> Path:
    """A sentence-transformers folder around a checkpoint: Transformer, Pooling (mean), Dense…, Normalize."""
    import shutil

    import torch
    from safetensors.torch import save_file

    shutil.copytree(checkpoint, folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"embedding_dimension": 32, "pooling_mode": "mean"}))
    torch.manual_seed(1)
    for i, layer in enumerate(dense, start=2):
        path = f"{i}_Dense"
        (folder / path).mkdir()
        (folder / path / "config.json").write_text(json.dumps(layer))
        weights = {"linear.weight": torch.randn(layer["out_features"], layer["in_features"]) * 0.2}
        if layer.get("bias", True):
            weights["linear.bias"] = torch.randn(layer["out_features"]) * 0.2
        save_file(weights, str(folder / path / "model.safetensors"))
        modules.append({"idx": i, "name": str(i), "path": path, "type": "sentence_transformers.models.Dense"})
    if normalize:
        modules.append({"idx": len(modules), "name": str(len(modules)), "path": "", "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 24, "do_lower_case": False}))
    return folder


def test_dense_modules_are_packed_into_the_one_weights_file(checkpoints: dict[Any, Path], tmp_path: Path) -> None:
    dense = [
        {"in_features": 32, "out_features": 16, "bias": True, "activation_function": "torch.nn.modules.activation.Tanh"},
        {"in_features": 16, "out_features": 8, "bias": False, "activation_function": "torch.nn.modules.linear.Identity"},
    ]
    src = _st_folder(checkpoints[("bert", None)], tmp_path / "st", dense=dense)
    pkg = load_package(build_package(src, output_dir=tmp_path / "out"), verify=True)
    assert pkg.preprocessing["dense"] == [
        {"in_features": 32, "out_features": 16, "bias": True, "activation": "tanh", "residual": False},
        {"in_features": 16, "out_features": 8, "bias": False, "activation": "identity", "residual": False},
    ]
    assert pkg.preprocessing["max_seq_length"] == 24 and pkg.preprocessing["normalize"] is True
    from safetensors import safe_open

    with safe_open(str(pkg.weights_path), framework="numpy") as f:
        names = set(f.keys())
    assert {"dense.0.linear.weight", "dense.0.linear.bias", "dense.1.linear.weight"} <= names and "dense.1.linear.bias" not in names
    assert not list(pkg.path.glob("*_Dense/model.safetensors"))  # weights are stored once, in model.safetensors
    assert {s.name: s.shape for s in pkg.output_specs}["sentence_embedding"] == (None, 8)
    assert pkg.model_info["task"] == {"task": "embed", "output": "sentence_embedding", "dimensions": 8, "normalized": True}


@pytest.mark.parametrize(
    ("change", "field"),
    [({"activation_function": "torch.nn.modules.activation.Softplus"}, "activation_function"), ({"module_input_name": "token_embeddings"}, "module_input_name")],
)
def test_a_dense_module_inferox_cannot_compute_is_refused(checkpoints: dict[Any, Path], tmp_path: Path, change: dict[str, Any], field: str) -> None:
    dense = [{"in_features": 32, "out_features": 16, "bias": True, "activation_function": "torch.nn.modules.activation.Tanh", **change}]
    src = _st_folder(checkpoints[("bert", None)], tmp_path / "st", dense=dense)
    with pytest.raises(PackageFormatError) as ei:
        build_package(src, output_dir=tmp_path / "out")
    assert ei.value.code == "PACKAGE_FORMAT_ERROR" and ei.value.field == field and ei.value.path == "2_Dense/config.json"


def test_a_packaged_head_loads_and_computes_on_the_numpy_backend(checkpoints: dict[Any, Path], tmp_path: Path) -> None:
    pytest.importorskip("inferox_numpy", reason="the third-party numpy backend is not installed")
    pkg = build_package(checkpoints[("roberta", "classify")], output_dir=tmp_path)
    model = load_model(pkg, backend="numpy")
    out = model(token_batch("roberta", batch=2, seq=6))
    assert set(out) == {"logits", "label"} and out["logits"].shape == (2, 3) and out["label"].dtype == np.int32


@pytest.mark.hub
def test_a_classifier_from_the_hub_is_packed_with_its_head(hub: Any, checkpoints: dict[Any, Path], tmp_path: Path) -> None:
    files = {p.name: p.read_bytes() for p in checkpoints[("roberta", "classify")].iterdir() if p.is_file()}
    repo_id, sha = hub.new_repo(files)
    path = build_package(f"hf://{repo_id}", output_dir=tmp_path / "out", endpoint=hub.endpoint, download_dir=hub.download_dir)
    pkg = load_package(path, verify=True)
    assert pkg.revision == sha and pkg.architecture == "roberta" and pkg.preprocessing["head"]["task"] == "classify"
    with pytest.raises(UnsupportedHeadError):
        mlm = {p.name: p.read_bytes() for p in checkpoints[("bert", "mlm")].iterdir() if p.is_file()}
        build_package(f"hf://{hub.new_repo(mlm)[0]}", output_dir=tmp_path / "mlm", endpoint=hub.endpoint, download_dir=hub.download_dir)
    encoder = build_package(f"hf://{repo_id}", output_dir=tmp_path / "enc", endpoint=hub.endpoint, download_dir=hub.download_dir, encoder_only=True)
    assert "head" not in load_package(encoder).preprocessing


def test_save_tokenizer_makes_a_folder_sentence_transformers_can_read(tmp_path: Path) -> None:
    save_tokenizer(tmp_path)
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(str(tmp_path))("w1 w2", "w3")["input_ids"]
    assert ids[0] == 2 and ids[-1] == 3 and len(ids) == 6  # [CLS] w1 w2 [SEP] w3 [SEP]
