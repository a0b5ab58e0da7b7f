"""The task heads over HTTP: ``POST /v1/rerank`` (Cohere / Jina / infinity shape), ``POST /v1/classify``
(infinity's), and a classifier over V2 — on a real server on loopback, driven by ``requests``.

Tiny random-weight ``BertForSequenceClassification`` checkpoints are made offline by ``transformers``
(tests/support/families.py) and packed by ``inferox.mlpkg.build_package``: a 3-label classifier and a
one-label cross-encoder (sigmoid by default, raw when its config says Identity). Scores are compared
with ``sentence_transformers.CrossEncoder`` and the ``transformers`` classifier (1e-4); real
all-MiniLM-L6-v2 is served beside them for the wrong-task errors; LlamaIndex's Jina reranker client is
pointed at ``/v1/rerank``. TEI's routes are in test_tei_routes.py.
"""

from __future__ import annotations

import json
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
QUERY = "w1 w2 w3"
DOCS = ["w4 w5", "w1 w2 w9 w10 w11 w12", "w7", "w3 w2 w1 w0", "w20 w21 w22 w23 w24 w25 w26"]
TEXTS = ["w1 w2 w3", "w9 w10 w11 w12 w13", "w7 w8", "w40"]
MAX_ROWS = 64


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_heads(tmp_path_factory.mktemp("heads-src"))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, folders: dict[str, Path], minilm_package: Path) -> Iterator[ServerThread]:
    repo = pack_into(tmp_path_factory.mktemp("heads-repo"), folders, packages={"minilm": minilm_package})
    with ServerThread(InferoxServer(repository=repo, config=ServerConfig(max_request_rows=MAX_ROWS))) as st_:
        yield st_


@pytest.fixture(scope="module")
def cross_encoders(folders: dict[str, Path]) -> dict[str, Any]:
    return {name: st.CrossEncoder(str(folders[name]), device="cpu") for name in ("ce", "ce-raw")}


@pytest.fixture(scope="module")
def classifier(folders: dict[str, Path]) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    return AutoModelForSequenceClassification.from_pretrained(str(folders["cls"])).eval(), AutoTokenizer.from_pretrained(str(folders["cls"]))


def hf_logits(classifier: tuple[Any, Any], texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
    import torch

    model, tokenizer = classifier
    batch = tokenizer(texts, pairs, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        return np.asarray(model(**batch).logits.numpy(), np.float64)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def post(served: ServerThread, path: str, body: Any) -> Any:
    return requests.post(served.url + path, json=body, timeout=60)


# -- /v1/rerank ---------------------------------------------------------------------------------------------
def test_rerank_scores_are_the_cross_encoders_best_first(served: ServerThread, cross_encoders: dict[str, Any], folders: dict[str, Path]) -> None:
    r = post(served, "/v1/rerank", {"model": "ce", "query": QUERY, "documents": DOCS})
    assert r.status_code == 200, r.text
    body = r.json()
    want = cross_encoders["ce"].predict([(QUERY, d) for d in DOCS], convert_to_numpy=True)
    assert body["object"] == "rerank" and body["model"] == "ce"
    results = body["results"]
    assert [x["index"] for x in results] == list(np.argsort(-want, kind="stable"))
    got = np.array([x["relevance_score"] for x in sorted(results, key=lambda x: x["index"])])
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    assert all("document" not in x for x in results)
    # usage: the tokens of every (query, document) pair the model read, special tokens included
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folders["ce"]))
    expected_tokens = sum(len(ids) for ids in tok([QUERY] * len(DOCS), DOCS)["input_ids"])
    assert body["usage"] == {"prompt_tokens": expected_tokens, "total_tokens": expected_tokens}


def test_rerank_top_n_and_documents(served: ServerThread, cross_encoders: dict[str, Any]) -> None:
    r = post(served, "/v1/rerank", {"model": "ce", "query": QUERY, "documents": [{"text": d} for d in DOCS], "top_n": 2, "return_documents": True})
    assert r.status_code == 200, r.text
    want = cross_encoders["ce"].predict([(QUERY, d) for d in DOCS], convert_to_numpy=True)
    best = list(np.argsort(-want, kind="stable")[:2])
    assert [(x["index"], x["document"]) for x in r.json()["results"]] == [(i, DOCS[i]) for i in best]


def test_rerank_raw_scores_follow_the_models_activation(served: ServerThread, cross_encoders: dict[str, Any]) -> None:
    """A reranker whose config says Identity gives raw scores; ``raw_scores`` gives them from a sigmoid one."""
    raw = cross_encoders["ce-raw"].predict([(QUERY, d) for d in DOCS], convert_to_numpy=True)
    for body in ({"model": "ce-raw", "query": QUERY, "documents": DOCS}, {"model": "ce", "query": QUERY, "documents": DOCS, "raw_scores": True}):
        r = post(served, "/v1/rerank", body)
        assert r.status_code == 200, r.text
        got = np.array([x["relevance_score"] for x in sorted(r.json()["results"], key=lambda x: x["index"])])
        np.testing.assert_allclose(got, raw, atol=TOL, rtol=0, err_msg=str(body))


def test_rerank_many_documents_split_into_passes_keep_their_order(served: ServerThread, cross_encoders: dict[str, Any]) -> None:
    docs = [" ".join(f"w{(i * 7 + k) % 90}" for k in range(1 + i % 9)) for i in range(MAX_ROWS)]
    r = post(served, "/v1/rerank", {"model": "ce", "query": QUERY, "documents": docs})
    assert r.status_code == 200, r.text
    want = cross_encoders["ce"].predict([(QUERY, d) for d in docs], convert_to_numpy=True)
    got = np.array([x["relevance_score"] for x in sorted(r.json()["results"], key=lambda x: x["index"])])
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)


def test_llamaindex_jina_reranker_works_against_v1_rerank(served: ServerThread, cross_encoders: dict[str, Any]) -> None:
    """A real client of the Jina rerank API, pointed at the server: it posts model, query, documents, top_n."""
    jina = pytest.importorskip("llama_index.postprocessor.jinaai_rerank")
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    want = cross_encoders["ce"].predict([(QUERY, d) for d in DOCS], convert_to_numpy=True)
    nodes = [NodeWithScore(node=TextNode(text=d), score=0.0) for d in DOCS]
    ranked = jina.JinaRerank(model="ce", base_url=f"{served.url}/v1", api_key="unused", top_n=3).postprocess_nodes(nodes, QueryBundle(QUERY))
    best = np.argsort(-want, kind="stable")[:3]
    assert [n.node.get_content() for n in ranked] == [DOCS[i] for i in best]
    np.testing.assert_allclose([n.score for n in ranked], want[best], atol=TOL, rtol=0)


# -- /v1/classify and V2 -------------------------------------------------------------------------------------
def test_classify_gives_every_label_with_its_probability(served: ServerThread, classifier: tuple[Any, Any]) -> None:
    r = post(served, "/v1/classify", {"model": "cls", "input": TEXTS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "classify" and body["model"] == "cls" and body["usage"]["prompt_tokens"] > 0
    want = softmax(hf_logits(classifier, TEXTS))
    assert len(body["data"]) == len(TEXTS)
    for row, probs in zip(body["data"], want):
        assert [p["label"] for p in row] == [LABELS[j] for j in np.argsort(-probs, kind="stable")]
        got = {p["label"]: p["score"] for p in row}
        np.testing.assert_allclose([got[label] for label in LABELS], probs, atol=TOL, rtol=0)


def test_classify_raw_scores_are_the_logits(served: ServerThread, classifier: tuple[Any, Any]) -> None:
    r = post(served, "/v1/classify", {"model": "cls", "input": TEXTS[0], "raw_scores": True})
    assert r.status_code == 200, r.text
    got = {p["label"]: p["score"] for p in r.json()["data"][0]}
    np.testing.assert_allclose([got[label] for label in LABELS], hf_logits(classifier, TEXTS[:1])[0], atol=TOL, rtol=0)


def test_v2_text_infer_on_a_classifier_returns_logits_and_label(served: ServerThread, classifier: tuple[Any, Any]) -> None:
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(TEXTS)], "data": TEXTS}]}
    r = post(served, "/v2/models/cls/infer", body)
    assert r.status_code == 200, r.text
    outs = {o["name"]: o for o in r.json()["outputs"]}
    assert set(outs) == {"logits", "label"} and outs["label"]["datatype"] == "INT32"
    logits = np.asarray(outs["logits"]["data"], np.float64).reshape(outs["logits"]["shape"])
    want = hf_logits(classifier, TEXTS)
    np.testing.assert_allclose(logits, want, atol=TOL, rtol=0)
    assert outs["label"]["data"] == want.argmax(axis=1).tolist()
    meta = requests.get(served.url + "/v2/models/cls", timeout=30).json()
    assert [o["name"] for o in meta["outputs"]] == ["logits", "label"]
    assert meta["parameters"]["task"] == "classify" and meta["parameters"]["labels"] == LABELS
    assert requests.get(served.url + "/v2/models/ce", timeout=30).json()["parameters"]["task"] == "rerank"
    assert requests.get(served.url + "/v2/models/minilm", timeout=30).json()["parameters"]["task"] == "embed"


# -- errors ---------------------------------------------------------------------------------------------------
def _error(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err: dict[str, Any] = r.json()["error"]
    assert err["code"] == code
    return err


def test_rerank_on_an_embedding_model_is_a_400_naming_its_task(served: ServerThread) -> None:
    err = _error(post(served, "/v1/rerank", {"model": "minilm", "query": "q", "documents": ["d"]}), 400, "INVALID_INPUT")
    assert err["param"] == "model" and "'minilm'" in err["message"] and "'embed'" in err["message"] and "ce, ce-raw" in err["message"]


def test_classify_on_a_reranker_and_embed_on_a_classifier_are_400s(served: ServerThread) -> None:
    err = _error(post(served, "/v1/classify", {"model": "ce", "input": ["x"]}), 400, "INVALID_INPUT")
    assert "'rerank'" in err["message"] and "cls" in err["message"]
    err = _error(post(served, "/v1/embeddings", {"model": "cls", "input": ["x"]}), 400, "INVALID_INPUT")
    assert err["param"] == "model" and "'classify'" in err["message"] and "minilm" in err["message"]


def test_rerank_without_a_model_is_ambiguous_with_two_rerankers(served: ServerThread) -> None:
    err = _error(post(served, "/v1/rerank", {"query": "q", "documents": ["d"]}), 400, "INVALID_INPUT")
    assert err["param"] == "model" and "ce, ce-raw" in err["message"]
    # One classifier: /v1/classify needs no model name.
    assert post(served, "/v1/classify", {"input": ["w1"]}).json()["model"] == "cls"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "ce", "query": "q", "documents": []}, "documents"),
        ({"model": "ce", "query": 3, "documents": ["d"]}, "query"),
        ({"model": "ce", "query": "q", "documents": ["d", 5]}, "documents"),
        ({"model": "ce", "query": "q", "documents": ["d"], "top_n": 0}, "top_n"),
        ({"model": "ce", "query": "q", "documents": ["d"], "colour": "red"}, "colour"),
    ],
)
def test_bad_rerank_requests_name_the_field(served: ServerThread, body: dict[str, Any], param: str) -> None:
    err = _error(post(served, "/v1/rerank", body), 400, "INVALID_INPUT")
    assert err["param"] == param


def test_unknown_model_and_too_many_documents(served: ServerThread) -> None:
    err = _error(post(served, "/v1/classify", {"model": "nope", "input": ["x"]}), 404, "MODEL_NOT_FOUND")
    assert "'nope'" in err["message"]
    err = _error(post(served, "/v1/rerank", {"model": "ce", "query": "q", "documents": ["d"] * (MAX_ROWS + 1)}), 413, "PAYLOAD_TOO_LARGE")
    assert "server.max_request_rows" in err["message"] and str(MAX_ROWS + 1) in err["message"]
    # The server keeps answering.
    assert post(served, "/v1/rerank", {"model": "ce", "query": "q", "documents": ["d"]}).status_code == 200


def test_metrics_count_head_requests_under_their_protocol(served: ServerThread) -> None:
    assert post(served, "/v1/rerank", {"model": "ce", "query": "q", "documents": ["d"]}).status_code == 200
    page = requests.get(served.url + "/metrics", timeout=30).text
    lines = [line for line in page.splitlines() if line.startswith("inferox_requests_total") and 'model="ce"' in line]
    assert any('protocol="openai"' in line and 'outcome="success"' in line for line in lines), lines


def test_each_head_request_gets_one_access_log_line(served: ServerThread, folders: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from transformers import AutoTokenizer

    with caplog.at_level(logging.INFO, logger="inferox.server.access"):
        assert post(served, "/v1/rerank", {"model": "ce", "query": QUERY, "documents": DOCS[:3]}).status_code == 200
        assert post(served, "/v1/rerank", {"query": "q", "documents": ["d"]}).status_code == 400
        assert requests.get(served.url + "/v2/health/live", timeout=30).status_code == 200  # something logged after them
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "inferox.server.access"]
    reranks = [r for r in records if r["endpoint"] == "POST /v1/rerank"]
    assert len(reranks) == 2
    ok, refused = reranks
    tokens = sum(len(ids) for ids in AutoTokenizer.from_pretrained(str(folders["ce"]))([QUERY] * 3, DOCS[:3])["input_ids"])
    assert (ok["protocol"], ok["model"], ok["version"], ok["status"], ok["rows"], ok["tokens"]) == ("openai", "ce", "1", 200, 3, tokens)
    assert (refused["status"], refused["code"], refused["protocol"]) == (400, "INVALID_INPUT", "openai")
