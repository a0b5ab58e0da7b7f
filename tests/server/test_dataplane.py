"""The data plane on its own (no transport): one request lifecycle, whatever the protocol.

Real models — the all-MiniLM-L6-v2 package on torch, torch test models — in a :class:`DataPlane`
driven directly on an event loop, as a transport (or a Ray replica) drives it: typed requests in,
typed answers or typed errors out, and the record of every call (access log, metrics, statistics).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from inferox.core.errors import InferoxTimeoutError, InvalidInputError, ModelNotFoundError
from inferox.engine.server import (
    ClientDisconnectedError,
    DataPlane,
    InferRequest,
    InputTensor,
    RequestContext,
    RequestedOutput,
    RequestLimitError,
    ServerConfig,
    ServingSettings,
    UnauthorizedError,
    error_status,
)

from .conftest import AffineModel

T = TypeVar("T")

WORDS = "the quick brown fox jumps over the lazy dog while a man is eating food in the park".split()


def _sentence(n: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(n))


class Loop:
    """One event loop for a module's data plane (its tasks and futures live there)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.loop.close()


LIMITS = ServerConfig(max_request_rows=256, max_request_tokens=20_000, max_request_text_bytes=1 << 20, request_timeout_s=30.0)


@pytest.fixture(scope="module")
def dp(loop: Loop, minilm_package: Path) -> Iterator[DataPlane]:
    plane = DataPlane(config=LIMITS)
    loop.run(plane.load_package("minilm", minilm_package, settings=ServingSettings(backends=("torch",), max_batch_size=32)))
    loop.run(plane.add_model("affine", AffineModel("affine"), settings=ServingSettings(max_batch_size=8)))
    loop.run(plane.add_model("slow", AffineModel("slow", delay=0.2), settings=ServingSettings(max_batch_size=2, batch_delay_ms=0.0)))
    plane.startup_done = True
    yield plane
    loop.run(plane.shutdown())


def _text_request(texts: list[str], outputs: list[str] | None = None, **parameters: Any) -> InferRequest:
    data = np.array([t.encode() for t in texts], dtype=object)
    return InferRequest(
        id=None,
        inputs=[InputTensor("text", "BYTES", (len(texts),), data)],
        outputs=None if outputs is None else [RequestedOutput(n) for n in outputs],
        parameters=parameters,
    )


def _x_request(x: np.ndarray, **parameters: Any) -> InferRequest:
    return InferRequest(id=None, inputs=[InputTensor("x", "FP32", tuple(x.shape), x)], outputs=None, parameters=parameters)


def _batches(dp: DataPlane, name: str) -> int:
    return dp.engine.stats(name).batches


# ---------------------------------------------------------------------------------------- outputs
def test_default_outputs_apply_and_named_outputs_are_checked_before_any_work(dp: DataPlane, loop: Loop) -> None:
    answer = loop.run(dp.infer("minilm", _text_request(["A man is eating food."])))
    assert [o.name for o in answer.outputs] == ["sentence_embedding"]  # the package's default, on every transport
    assert answer.outputs[0].data.shape == (1, 384) and (answer.model_name, answer.model_version) == ("minilm", "1")
    before = _batches(dp, "minilm")
    for outputs, name, why in ((["sentence_embedding"] * 3000, "sentence_embedding", "more than once"), (["sentence_embedding", "nope"], "nope", "unknown output")):
        with pytest.raises(InvalidInputError) as ei:
            loop.run(dp.infer("minilm", _text_request(["a"], outputs)))
        assert ei.value.code == "INVALID_INPUT" and ei.value.details["name"] == name and why in ei.value.message
        assert error_status(ei.value).grpc == "INVALID_ARGUMENT"
    assert _batches(dp, "minilm") == before  # refused before tokenising or running anything


# ----------------------------------------------------------------------------------------- limits
@pytest.mark.parametrize(
    ("texts", "what", "setting"),
    [
        (["a"] * 257, "rows", "server.max_request_rows"),
        (["x" * ((1 << 20) + 1)], "bytes of text", "server.max_request_text_bytes"),
        ([_sentence(200)] * 100, "tokens", "server.max_request_tokens"),
    ],
    ids=["rows", "text-bytes", "tokens"],
)
def test_requests_over_a_limit_are_refused_naming_it(dp: DataPlane, loop: Loop, texts: list[str], what: str, setting: str) -> None:
    before = _batches(dp, "minilm")
    for call in (lambda: dp.infer("minilm", _text_request(texts)), lambda: dp.embed("minilm", texts)):
        with pytest.raises(RequestLimitError) as ei:
            loop.run(call())
        err = ei.value
        assert err.code == "PAYLOAD_TOO_LARGE" and err.setting == setting and setting in err.message and what in err.message
        assert (error_status(err).http, error_status(err).grpc) == (413, "RESOURCE_EXHAUSTED")
    assert _batches(dp, "minilm") == before


# ------------------------------------------------------------------------------------------ passes
def test_a_big_request_runs_as_passes_within_max_batch_size(dp: DataPlane, loop: Loop) -> None:
    model = dp.engine.get_model("affine").model
    x = np.random.default_rng(0).standard_normal((70, 4)).astype(np.float32)
    before = len(model.batch_sizes)
    answer = loop.run(dp.infer("affine", _x_request(x)))
    np.testing.assert_allclose(answer.outputs[0].data, 2 * x + 1, rtol=1e-6)  # rows back in order
    passes = model.batch_sizes[before:]
    assert sum(passes) == 70 and max(passes) <= 8 and len(passes) >= 9


def test_texts_are_grouped_by_length_and_answer_as_one_at_a_time(dp: DataPlane, loop: Loop) -> None:
    rng = np.random.default_rng(1)
    texts = [_sentence(int(n)) for n in rng.integers(3, 120, size=32)]
    before = dp.engine.stats("minilm")
    result = loop.run(dp.embed("minilm", texts))
    after = dp.engine.stats("minilm")
    lengths = [int(dp.served("minilm").text_encoder.encode([t])["attention_mask"].sum()) for t in texts]
    assert result.tokens == sum(lengths)
    one_pass_padding = 32 * max(lengths) - sum(lengths)  # what padding to the longest cost
    assert after.batches - before.batches > 1
    assert after.padding_tokens - before.padding_tokens < one_pass_padding / 2
    alone = np.concatenate([dp.engine.infer("minilm", {"text": [t]})["sentence_embedding"] for t in texts])
    np.testing.assert_allclose(result.embeddings, alone, atol=2e-5)


def test_a_deadline_stops_the_passes_not_yet_run(dp: DataPlane, loop: Loop) -> None:
    model = dp.engine.get_model("slow").model
    before = len(model.batch_sizes)
    x = np.ones((20, 4), np.float32)  # 10 passes of 2 rows, 0.2 s each
    with pytest.raises(InferoxTimeoutError) as ei:
        loop.run(dp.infer("slow", _x_request(x, timeout=500_000)))  # 0.5 s (V2's microseconds)
    assert ei.value.code == "TIMEOUT" and error_status(ei.value).grpc == "DEADLINE_EXCEEDED"
    loop.run(asyncio.sleep(1.0))
    assert len(model.batch_sizes) - before <= 4  # the passes after the deadline never ran


# -------------------------------------------------------------------------------------------- text
def test_embed_counts_tokens_and_matches_the_v2_text_input(dp: DataPlane, loop: Loop) -> None:
    texts = ["A man is eating food.", "Inferox serves models on any backend."]
    emb = loop.run(dp.embed("minilm", texts))
    v2 = loop.run(dp.infer("minilm", _text_request(texts)))
    np.testing.assert_allclose(emb.embeddings, v2.outputs[0].data, atol=1e-6)
    assert emb.tokens == int(dp.served("minilm").text_encoder.encode(texts)["attention_mask"].sum())
    ids = dp.served("minilm").text_encoder.encode(texts)
    rows = [list(r[m.astype(bool)]) for r, m in zip(ids["input_ids"], ids["attention_mask"])]
    np.testing.assert_allclose(loop.run(dp.embed("minilm", rows)).embeddings, emb.embeddings, atol=1e-6)


class _Seen:
    """A tokenizer that records how many characters it was given (delegating to the real one)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.chars = 0

    def encode_batch(self, texts: list[str]) -> Any:
        self.chars += sum(len(t) for t in texts)
        return self.real.encode_batch(texts)


def test_a_huge_text_is_tokenised_only_as_far_as_truncation_keeps(loop: Loop, minilm_package: Path) -> None:
    """A text far past the model's 256 tokens costs what its first few KB do — the tokenizer never
    sees the rest — and gets the embedding of its truncated self."""
    huge = _sentence(800_000)  # ~4 MB of text; its first 256 tokens decide the embedding
    plane = DataPlane(config=ServerConfig(max_request_text_bytes=8 << 20))
    loop.run(plane.load_package("minilm", minilm_package, settings=ServingSettings(backends=("torch",))))
    plane.startup_done = True
    encoder = plane.served("minilm").text_encoder
    encoder.encode(["warm"])  # the default setting's tokenizer exists
    key = (encoder.max_length, encoder.truncate)
    seen = encoder._configured[key] = _Seen(encoder._configured[key])
    got = loop.run(plane.embed("minilm", [huge, "short"]))
    assert 0 < seen.chars < 64 * 1024  # of 4 MB
    ref = plane.engine.infer("minilm", {"text": [_sentence(400)]})["sentence_embedding"][0]
    np.testing.assert_allclose(got.embeddings[0], ref, atol=1e-5)
    assert got.tokens == 256 + int(encoder.encode(["short"])["attention_mask"].sum())
    loop.run(plane.shutdown())


def test_a_lone_surrogate_is_the_clients_error(dp: DataPlane, loop: Loop) -> None:
    with pytest.raises(InvalidInputError) as ei:
        loop.run(dp.embed("minilm", ["fine", "bad \ud800 text"]))
    assert ei.value.code == "INVALID_INPUT" and ei.value.details["index"] == 1 and error_status(ei.value).http == 400


# ---------------------------------------------------------------------------------- the record
def _records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "inferox.server.access"]


def test_every_call_is_recorded_once_with_its_protocol(dp: DataPlane, loop: Loop, caplog: pytest.LogCaptureFixture) -> None:
    ctx = RequestContext("tei", endpoint="POST /embed", request_id="req-42", traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    with caplog.at_level(logging.INFO, logger="inferox.server.access"):
        loop.run(dp.embed("minilm", ["A man is eating food."], ctx=ctx))
        with pytest.raises(ModelNotFoundError):
            loop.run(dp.embed("x" * 500, ["a"], ctx=RequestContext("tei", endpoint="POST /embed")))
    ok, missing = _records(caplog)
    assert (ok["protocol"], ok["endpoint"], ok["request_id"], ok["model"], ok["version"], ok["status"]) == ("tei", "POST /embed", "req-42", "minilm", "1", 200)
    assert ok["trace_id"] == "0af7651916cd43dd8448eb211c80319c" and ok["rows"] == 1 and ok["tokens"] > 2
    assert ok["level"] == "info" and ok["logger"] == "inferox.server.access" and ok["time"].endswith("+00:00")
    assert {"queue_ms", "compute_ms", "duration_ms"} <= set(ok)
    assert missing["status"] == 404 and missing["code"] == "MODEL_NOT_FOUND" and len(missing["model"]) <= 128
    page = dp.metrics.render()
    assert 'inferox_requests_total{model="minilm",version="1",protocol="tei",outcome="success"}' in page
    assert 'inferox_request_failures_total{model="_unknown",version="",protocol="tei",code="MODEL_NOT_FOUND"} 1' in page


def test_refusals_are_recorded_too(loop: Loop, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    plane = DataPlane(config=ServerConfig(token="s3cret", protect_all=True), repository=tmp_path)
    plane.startup_done = True
    with caplog.at_level(logging.INFO, logger="inferox.server.access"):
        with pytest.raises(UnauthorizedError) as ei:
            plane.readiness(ctx=RequestContext("grpc", endpoint="ServerReady"))
        assert ei.value.code == "UNAUTHORIZED" and error_status(ei.value).grpc == "UNAUTHENTICATED"
        assert loop.run(plane.repository_index(ctx=RequestContext("rest", authorization="Bearer s3cret"))) == []
    refused, index = _records(caplog)
    assert (refused["status"], refused["code"], refused["grpc_status"]) == (401, "UNAUTHORIZED", "UNAUTHENTICATED")
    assert index["status"] == 200 and index["protocol"] == "rest"
    loop.run(plane.shutdown())


def test_a_client_that_goes_away_is_499_not_internal(dp: DataPlane, loop: Loop, caplog: pytest.LogCaptureFixture) -> None:
    async def gone() -> None:
        await asyncio.sleep(0.05)

    model = dp.engine.get_model("slow").model
    loop.run(asyncio.sleep(0.5))  # passes abandoned by an earlier test have run
    before = len(model.batch_sizes)
    ctx = RequestContext("rest", endpoint="POST /v2/models/slow/infer", disconnected=gone)
    with caplog.at_level(logging.INFO, logger="inferox.server.access"):
        with pytest.raises(ClientDisconnectedError) as ei:
            loop.run(dp.infer("slow", _x_request(np.ones((8, 4), np.float32)), ctx=ctx))
    assert ei.value.code == "CLIENT_DISCONNECTED" and error_status(ei.value).http == 499
    assert dp.metrics.failures("slow", "INTERNAL") == 0 and dp.metrics.failures("slow", "CLIENT_DISCONNECTED") == 1
    assert _records(caplog)[-1]["status"] == 499
    loop.run(asyncio.sleep(0.6))
    assert len(model.batch_sizes) - before <= 2  # the request's later passes were dropped with it


# --------------------------------------------------------------------------------- versions, stats
def test_requests_in_flight_during_a_reload_count_under_their_version(loop: Loop) -> None:
    plane = DataPlane(config=ServerConfig())
    loop.run(plane.add_model("m", AffineModel("m", delay=0.4), version="1"))
    plane.startup_done = True
    x = np.ones((3, 4), np.float32)

    async def scenario() -> Any:
        first = asyncio.ensure_future(plane.infer("m", _x_request(x), ctx=RequestContext("grpc", endpoint="ModelInfer")))
        await asyncio.sleep(0.1)  # admitted to version 1, running
        await plane.add_model("m", AffineModel("m"), version="2")  # version 1 is retired once it finishes
        return await first

    answer = loop.run(scenario())
    assert answer.model_version == "1"
    page = plane.metrics.render()
    assert 'inferox_requests_total{model="m",version="1",protocol="grpc",outcome="success"} 1' in page
    assert 'version=""' not in page
    assert loop.run(plane.infer("m", _x_request(x))).model_version == "2"
    stats = plane.statistics("m")["model_stats"]
    assert [(s["version"], s["inference_count"], s["inference_stats"]["success"]["count"]) for s in stats] == [("2", 3, 1)]  # rows, requests
    loop.run(plane.shutdown())


def test_repository_versions_policies_and_the_index(loop: Loop, tmp_path: Path, mlp_package: Path) -> None:
    import shutil

    repo = tmp_path / "models"
    for folder in ("1", "2", "1.bak", "old"):
        shutil.copytree(mlp_package, repo / "mlp" / folder)
    (repo / "mlp" / "serving.toml").write_text('backend = "torch"\n[version_policy]\nall = true\n')
    plane = DataPlane(config=ServerConfig(), repository=repo)
    loop.run(plane.startup())
    assert sorted(plane.models["mlp"].versions) == ["1", "2"]  # 1.bak and old are not versions
    assert plane.model_config("mlp")["version_policy"] == {"all": {}}
    assert [(e["name"], e["version"], e["state"]) for e in plane.index()] == [("mlp", "1", "READY"), ("mlp", "2", "READY")]
    (repo / "mlp" / "serving.toml").write_text('backend = "torch"\n[version_policy]\nlatest = 1\n')
    loop.run(plane.load("mlp"))
    assert plane.model_config("mlp")["version_policy"] == {"latest": {"num_versions": 1}}
    assert [(e["version"], e["state"]) for e in plane.index()] == [("2", "READY")]
    loop.run(plane.shutdown())
