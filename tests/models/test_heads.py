"""Task heads on every family and backend match ``transformers``' ``*ForSequenceClassification``:
``classify`` (logits, and the argmax label named by ``id2label``) and cross-encoder ``rerank`` (one
score per query/document pair, sigmoid or raw as sentence-transformers' ``CrossEncoder`` decides
from the model's config) — tiny random checkpoints saved by ``transformers``, packed by ``inferox
pack``, within 1e-4 in fp32 on core's NumPy reference, torch, jax and onnx."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.families import FAMILIES, save_checkpoint, save_tokenizer, token_batch

from .conftest import PARITY_BACKENDS, FamilyPackages, run_package

torch = pytest.importorskip("torch")

TOL = 1e-4


def hf_logits(model: Any, inputs: dict[str, np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        return model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.numpy()  # type: ignore[no-any-return]


@pytest.mark.parametrize("backend", PARITY_BACKENDS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_classification_head_matches_transformers(family_packages: FamilyPackages, family: str, backend: str) -> None:
    package, hf = family_packages[(family, "classify")]
    inputs = token_batch(family, batch=4, seq=12, seed=2)
    want = hf_logits(hf, inputs)
    got = run_package(package, backend, inputs)
    assert set(got) == {"logits", "label"} and got["logits"].shape == (4, 3) and got["label"].dtype == np.int32
    np.testing.assert_allclose(got["logits"], want, atol=TOL, rtol=0)
    np.testing.assert_array_equal(got["label"], want.argmax(axis=1))
    labels = [hf.config.id2label[int(i)] for i in got["label"]]
    assert set(labels) <= {"negative", "neutral", "positive"}


@pytest.mark.parametrize("backend", PARITY_BACKENDS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_rerank_head_matches_transformers(family_packages: FamilyPackages, family: str, backend: str) -> None:
    package, hf = family_packages[(family, "rerank")]
    inputs = token_batch(family, batch=4, seq=12, seed=3)
    logits = hf_logits(hf, inputs)
    got = run_package(package, backend, inputs)
    assert set(got) == {"score", "logits"} and got["score"].shape == (4,) and got["score"].dtype == np.float32
    np.testing.assert_allclose(got["logits"], logits, atol=TOL, rtol=0)
    np.testing.assert_allclose(got["score"], 1.0 / (1.0 + np.exp(-logits[:, 0].astype(np.float64))), atol=TOL, rtol=0)


@pytest.fixture(scope="module")
def cross_encoders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any]]:
    """The same one-label BERT as a cross-encoder folder twice: default activation, and Identity saved
    in its sentence-transformers config — loaded by sentence-transformers and packed by inferox."""
    st = pytest.importorskip("sentence_transformers")
    from inferox.mlpkg import build_package

    root = tmp_path_factory.mktemp("cross-encoders")
    base = root / "base"
    save_checkpoint("bert", base, head="rerank", seed=11)
    save_tokenizer(base)
    out: dict[str, tuple[Path, Any]] = {}
    for name, activation in (("sigmoid", None), ("identity", "torch.nn.modules.linear.Identity")):
        folder = root / name
        shutil.copytree(base, folder)
        if activation:
            config = json.loads((folder / "config.json").read_text())
            config["sentence_transformers"] = {"activation_fn": activation}
            (folder / "config.json").write_text(json.dumps(config))
        out[name] = (build_package(folder, output_dir=root / "packages", name=f"ce-{name}"), st.CrossEncoder(str(folder), device="cpu"))
    return out


@pytest.mark.parametrize("activation", ["sigmoid", "identity"])
def test_rerank_scores_are_the_cross_encoders(cross_encoders: dict[str, tuple[Path, Any]], activation: str) -> None:
    """One score per (query, document) pair, as ``CrossEncoder.predict`` gives it — with the activation
    it chose from the model's config (sigmoid by default for one label, raw when the config says Identity)."""
    from transformers import AutoTokenizer

    from inferox.mlpkg import load_package

    package, cross_encoder = cross_encoders[activation]
    assert load_package(package).model_info["task"] == {"task": "rerank", "output": "score", "activation": activation}
    pairs = [("w1 w2 w3", "w4 w5"), ("w1 w2 w3", "w9 w10 w11 w12 w13"), ("w7", "w7 w8")]
    want = cross_encoder.predict(pairs, convert_to_numpy=True)
    tokenizer = AutoTokenizer.from_pretrained(str(package))
    batch = tokenizer([q for q, _ in pairs], [d for _, d in pairs], padding=True, return_tensors="np")
    inputs = {k: np.asarray(v, np.int64) for k, v in batch.items()}
    for backend in PARITY_BACKENDS:
        got = run_package(package, backend, inputs)["score"]
        np.testing.assert_allclose(got, want, atol=TOL, rtol=0, err_msg=backend)
