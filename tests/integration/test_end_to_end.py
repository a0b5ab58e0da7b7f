"""The whole flow on real components: a Hub repository (olah on loopback) → a package → loaded on a
backend by the engine → text in, sentence embeddings out that match sentence-transformers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferox.core import ModelNotFoundError, get_registry
from inferox.engine import Engine
from inferox.mlpkg import build_package, load_package

SENTENCES = ["A man is eating food.", "The girl is carrying a baby.", "Two men pushed carts through the woods."]


@pytest.fixture(scope="module")
def reference_embeddings(minilm_dir: Path) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_dir), device="cpu")
    return np.asarray(model.encode(SENTENCES, convert_to_numpy=True))


@pytest.mark.hub
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_download_package_load_infer(
    backend: str, hub: Any, minilm_repo: tuple[str, str], reference_embeddings: np.ndarray, tmp_path: Path
) -> None:
    if backend not in get_registry().backends_for("bert"):
        pytest.skip(f"no installed backend {backend!r} implements bert")
    repo_id, sha = minilm_repo
    path = build_package(f"hf://{repo_id}", output_dir=tmp_path / "packages", endpoint=hub.endpoint, download_dir=hub.download_dir)
    package = load_package(path, verify=True)
    assert package.revision == sha and package.architecture == "bert"

    with Engine() as engine:
        info = engine.load(path, name="minilm", backend=backend, device="cpu")
        assert [i.backend for i in info.instances] == [backend]
        result = engine.infer("minilm", SENTENCES)
        assert result.backend == backend and result.model == "minilm"
        emb = np.asarray(result["sentence_embedding"])
        assert emb.shape == (len(SENTENCES), 384) and emb.dtype == np.float32
        cos = np.sum(emb * reference_embeddings, axis=1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(reference_embeddings, axis=1))
        assert cos.min() >= 0.99999, cos
        assert np.max(np.abs(emb - reference_embeddings)) <= 1e-4
        engine.unregister("minilm")
        with pytest.raises(ModelNotFoundError) as ei:
            engine.infer("minilm", SENTENCES)
        assert ei.value.code == "MODEL_NOT_FOUND" and ei.value.name == "minilm"
