"""The task heads below the wire formats: :meth:`DataPlane.rerank` / :meth:`DataPlane.classify` as a
Python caller (or a Ray replica) sees them — limits before any work, typed errors naming what was
wrong, which model a task goes to — and the request parsers of ``_heads`` on their own.

The tiny classifier and cross-encoder of tests/support/heads.py, loaded on torch in one data plane.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from inferox.core.errors import InvalidInputError, ModelNotFoundError
from inferox.engine.server import ServerConfig
from inferox.engine.server._dataplane import DataPlane
from inferox.engine.server._errors import RequestLimitError
from inferox.engine.server._heads import (
    parse_classify_request,
    parse_rerank_request,
    parse_tei_embed,
    parse_tei_predict,
    parse_tei_rerank,
    ranking,
)
from tests.support.heads import LABELS, make_heads, pack_into

pytest.importorskip("transformers", reason="tiny checkpoints are made with transformers")

LIMITS = ServerConfig(max_request_rows=32, max_request_tokens=200, max_request_text_bytes=4000)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@pytest.fixture(scope="module")
def dp(tmp_path_factory: pytest.TempPathFactory, loop: asyncio.AbstractEventLoop) -> Iterator[DataPlane]:
    folders = make_heads(tmp_path_factory.mktemp("dp-heads-src"))
    repo = tmp_path_factory.mktemp("dp-heads")
    pack_into(repo, folders)
    plane = DataPlane(config=LIMITS)
    for name in ("cls", "ce", "ce-raw"):
        loop.run_until_complete(plane.load_package(name, repo / name))
    plane.startup_done = True
    yield plane
    loop.run_until_complete(plane.shutdown())


def run(loop: asyncio.AbstractEventLoop, coro: Any) -> Any:
    return loop.run_until_complete(coro)


def test_tasks_and_what_each_api_may_call(dp: DataPlane) -> None:
    assert (dp.task("cls"), dp.task("ce"), dp.task("ce-raw")) == ("classify", "rerank", "rerank")
    assert dp.task_models("rerank") == ["ce", "ce-raw"] and dp.task_models("embed") == []
    assert dp.choose_model("classify", None, op="classify") == "cls"
    with pytest.raises(InvalidInputError) as ei:
        dp.choose_model("rerank", None, op="rerank")
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == "model" and ei.value.expected == ["ce", "ce-raw"]
    with pytest.raises(ModelNotFoundError) as nf:
        dp.choose_model("embed", None, op="embed")
    assert nf.value.code == "MODEL_NOT_FOUND" and "a embed model" in str(nf.value) and "cls (task classify)" in str(nf.value)


def test_rerank_scores_in_document_order_and_raw_logits(dp: DataPlane, loop: asyncio.AbstractEventLoop) -> None:
    docs = ["w4 w5", "w1 w2 w9", "w7"]
    r = run(loop, dp.rerank("ce", "w1 w2", docs))
    raw = run(loop, dp.rerank("ce", "w1 w2", docs, raw_scores=True))
    ident = run(loop, dp.rerank("ce-raw", "w1 w2", docs))
    assert r.scores.shape == (3,) and r.scores.dtype == np.float32 and r.tokens > 3 * 4
    np.testing.assert_allclose(r.scores, 1 / (1 + np.exp(-raw.scores.astype(np.float64))), atol=1e-6)
    np.testing.assert_allclose(ident.scores, raw.scores, atol=1e-6)


def test_classify_texts_and_pairs(dp: DataPlane, loop: asyncio.AbstractEventLoop) -> None:
    r = run(loop, dp.classify("cls", ["w1 w2", ("w1 w2", "w3")]))
    assert r.labels == tuple(LABELS) and r.scores.shape == (2, 3)
    np.testing.assert_allclose(r.scores.sum(axis=1), 1.0, atol=1e-6)
    assert not np.allclose(r.scores[0], r.scores[1])  # the pair is read as a pair, not as its first text
    logits = run(loop, dp.classify("cls", ["w1 w2"], raw_scores=True)).scores
    e = np.exp(logits - logits.max())
    np.testing.assert_allclose(e / e.sum(), r.scores[:1], atol=1e-6)


@pytest.mark.parametrize(
    ("call", "name", "index"),
    [
        (lambda dp: dp.rerank("ce", 3, ["d"]), "query", None),
        (lambda dp: dp.rerank("ce", "q", []), "documents", None),
        (lambda dp: dp.rerank("ce", "q", ["d", b"x"]), "documents", 1),
        (lambda dp: dp.classify("cls", []), "input", None),
        (lambda dp: dp.classify("cls", ["a", ("b",)]), "input", 1),
        (lambda dp: dp.predict_text("cls", texts=["a"], pairs=[("a", "b")]), "input", None),
    ],
)
def test_bad_calls_are_typed_errors_naming_the_input(dp: DataPlane, loop: asyncio.AbstractEventLoop, call: Any, name: str, index: int | None) -> None:
    with pytest.raises(InvalidInputError) as ei:
        run(loop, call(dp))
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == name and ei.value.details.get("index") == index


def test_wrong_task_is_refused_naming_both(dp: DataPlane, loop: asyncio.AbstractEventLoop) -> None:
    with pytest.raises(InvalidInputError) as ei:
        run(loop, dp.rerank("cls", "q", ["d"]))
    assert ei.value.name == "model" and "'cls'" in str(ei.value) and "'classify'" in str(ei.value) and "ce, ce-raw" in str(ei.value)
    with pytest.raises(InvalidInputError) as ei:
        run(loop, dp.embed("ce", ["x"]))
    assert "'rerank'" in str(ei.value) and "none is served" in str(ei.value)


def test_limits_are_checked_before_any_work(dp: DataPlane, loop: asyncio.AbstractEventLoop) -> None:
    with pytest.raises(RequestLimitError) as ei:
        run(loop, dp.rerank("ce", "q" * 2000, ["d" * 2001]))
    assert ei.value.code == "PAYLOAD_TOO_LARGE" and ei.value.setting == "server.max_request_text_bytes"
    with pytest.raises(RequestLimitError) as ei:
        run(loop, dp.rerank("ce", "w1 w2 w3", [" ".join(f"w{i}" for i in range(12))] * 20))
    assert ei.value.setting == "server.max_request_tokens" and ei.value.limit == 200
    with pytest.raises(RequestLimitError) as ei:
        run(loop, dp.rerank("ce", "q", ["d"] * 33))
    assert ei.value.setting == "server.max_request_rows"
    long = " ".join(f"w{i % 90}" for i in range(60))
    with pytest.raises(InvalidInputError) as ei:
        run(loop, dp.rerank("ce", "w1", [long], truncate=False))
    assert ei.value.code == "INVALID_INPUT" and "40" in str(ei.value) and "truncation is off" in str(ei.value)
    assert run(loop, dp.rerank("ce", "w1", [long])).tokens == 40  # cut to the model's 40 positions


# -- the parsers ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("parse", "body", "name"),
    [
        (parse_rerank_request, b"[1]", "body"),
        (parse_rerank_request, b"{not json", "body"),
        (parse_rerank_request, {"query": "q", "documents": ["d"], "model": ""}, "model"),
        (parse_rerank_request, {"query": "q", "documents": ["d"], "return_documents": "yes"}, "return_documents"),
        (parse_classify_request, {"model": "m"}, "input"),
        (parse_classify_request, {"input": [1]}, "input"),
        (parse_tei_embed, {"inputs": ["a"], "truncation_direction": "left"}, "truncation_direction"),
        (parse_tei_embed, {"inputs": ["a"], "prompt_name": "query"}, "prompt_name"),
        (parse_tei_embed, {"inputs": ["a"], "dimensions": 0}, "dimensions"),
        (parse_tei_embed, {"normalize": True}, "inputs"),
        (parse_tei_rerank, {"query": None, "texts": ["a"]}, "query"),
        (parse_tei_rerank, {"query": "q", "texts": "a"}, "texts"),
        (parse_tei_predict, {"inputs": ["a", "b", "c"]}, "inputs"),
        (parse_tei_predict, {"inputs": [["a"], "b"]}, "inputs"),
        (parse_tei_predict, {"inputs": [["a"]] * 2049}, "inputs"),
    ],
)
def test_parsers_name_the_field_at_fault(parse: Any, body: Any, name: str) -> None:
    with pytest.raises(InvalidInputError) as ei:
        parse(body)
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == name


def test_parsers_read_tei_and_cohere_shapes() -> None:
    req = parse_tei_predict({"inputs": [["a"], ["b", "c"]], "raw_scores": True, "truncate": False})
    assert req.inputs == ["a", ("b", "c")] and not req.single and req.raw_scores and req.truncate is False
    assert parse_tei_predict({"inputs": ["a", "b"]}).inputs == [("a", "b")] and parse_tei_predict({"inputs": "a"}).single
    emb = parse_tei_embed(b'{"inputs": "a", "truncation_direction": "Right"}')
    assert emb.inputs == ["a"] and emb.normalize and emb.truncate is None
    rr = parse_rerank_request({"query": "q", "documents": [{"text": "a"}, "b"], "top_n": 1})
    assert rr.documents == ["a", "b"] and rr.top_n == 1 and rr.model is None
    assert parse_classify_request({"input": "x", "model": "m"}).inputs == ["x"]


def test_ranking_is_best_first_ties_in_order_nan_last() -> None:
    assert ranking(np.array([0.1, 0.9, np.nan, 0.9, 0.5], np.float32)) == [1, 3, 4, 0, 2]
    assert ranking(np.array([0.1, 0.9, 0.5]), top_n=2) == [1, 2]


class _SingleTextEncoder:
    """A plugin model's own text encoder that knows single texts only (no ``encode_pairs``)."""

    truncate = True

    def encode(self, texts: list[str], *, max_length: int | None = None, truncate: bool | None = None) -> dict[str, np.ndarray]:
        ids = np.ones((len(texts), 3), np.int64)
        return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def test_a_reranker_whose_encoder_knows_no_pairs_is_a_typed_error(loop: asyncio.AbstractEventLoop) -> None:
    from inferox.core import DType, ModelMetadata, TensorSpec, get_backend
    from inferox.core.model import Model

    class Pairless(Model):
        def __init__(self) -> None:
            super().__init__(backend=get_backend("torch"), metadata=ModelMetadata(name="pairless", architecture="pairless", extra={"task": {"task": "rerank"}}))
            self.text_encoder = _SingleTextEncoder()

        @property
        def input_specs(self) -> list[TensorSpec]:
            return [TensorSpec("input_ids", DType.I64, (None, None)), TensorSpec("attention_mask", DType.I64, (None, None))]

        @property
        def output_specs(self) -> list[TensorSpec]:
            return [TensorSpec("score", DType.F32, (None,))]

        def forward(self, inputs: Any) -> dict[str, Any]:
            return {"score": inputs["attention_mask"].sum(dim=1).float()}

    plane = DataPlane(config=LIMITS)
    run(loop, plane.add_model("pairless", Pairless()))
    plane.startup_done = True
    try:
        assert plane.task("pairless") == "rerank"
        with pytest.raises(InvalidInputError) as ei:
            run(loop, plane.rerank("pairless", "q", ["d"]))
        assert ei.value.code == "INVALID_INPUT" and ei.value.name == "input" and "does not encode text pairs" in str(ei.value)
    finally:
        run(loop, plane.shutdown())
