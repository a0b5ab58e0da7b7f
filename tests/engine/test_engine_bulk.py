"""Bulk work from Python: output selection in infer / ainfer / infer_batch, and ``Engine.encode``
(one matrix for many texts, length-sorted batches, input order, progress) on the real
all-MiniLM-L6-v2 package."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inferox.core.errors import InvalidInputError
from inferox.engine import Engine, EngineConfig
from tests.support.engine_models import TorchSeq, ToyTextEncoder

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "Hi",
    "A man is riding a horse along a very long and dusty road towards the mountains in the distance.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A monkey is playing drums.",
    "ok",
    "A cheetah is running behind its prey while the rest of the herd scatters across the savanna.",
    "The new movie is awesome.",
    "It is raining.",
] * 3


@pytest.fixture(scope="module")
def engine(minilm_package: Path) -> Iterator[Engine]:
    eng = Engine(EngineConfig(max_batch_size=8))
    eng.load(minilm_package, name="minilm", backend="torch")
    yield eng
    eng.shutdown()


# -- output selection -------------------------------------------------------------------------------------
def test_infer_returns_the_outputs_asked_for_in_their_order(engine: Engine) -> None:
    texts = ["a sentence", "another, longer sentence"]
    everything = engine.infer("minilm", texts)
    assert set(everything) == {"last_hidden_state", "pooler_output", "sentence_embedding"}
    chosen = engine.infer("minilm", texts, outputs=["sentence_embedding", "last_hidden_state"])
    assert list(chosen) == ["sentence_embedding", "last_hidden_state"]
    for name in chosen:
        np.testing.assert_allclose(chosen[name], everything[name], rtol=1e-6, atol=1e-6)
    single = engine.infer("minilm", texts, outputs="sentence_embedding")  # one name alone is a selection too
    assert list(single) == ["sentence_embedding"]
    again = asyncio.run(engine.ainfer("minilm", texts, outputs=["pooler_output", "pooler_output"]))  # repeats collapse
    assert list(again) == ["pooler_output"]
    np.testing.assert_allclose(again["pooler_output"], everything["pooler_output"], rtol=1e-6, atol=1e-6)


def test_infer_batch_keeps_only_what_was_asked(engine: Engine) -> None:
    every = engine.infer_batch("minilm", SENTENCES)
    chosen = engine.infer_batch("minilm", SENTENCES, outputs=["sentence_embedding"])
    assert all(list(r) == ["sentence_embedding"] and r["sentence_embedding"].shape == (1, 384) for r in chosen)
    kept = sum(v.nbytes for r in chosen for v in r.values())
    assert kept == len(SENTENCES) * 384 * 4
    # Every output of every item is many times that: the per-token hidden states dominate.
    assert sum(v.nbytes for r in every for v in r.values()) > 5 * kept
    for a, b in zip(chosen, every):
        np.testing.assert_allclose(a["sentence_embedding"], b["sentence_embedding"], rtol=1e-5, atol=1e-6)


def test_an_unknown_or_empty_selection_is_refused_naming_outputs(engine: Engine) -> None:
    for bad in (["nope"], [], ["sentence_embedding", 3]):
        with pytest.raises(InvalidInputError) as info:
            engine.infer("minilm", "x", outputs=bad)  # type: ignore[arg-type]
        assert info.value.code == "INVALID_INPUT" and info.value.name == "outputs"
        assert info.value.expected == ["last_hidden_state", "pooler_output", "sentence_embedding"]
    with pytest.raises(InvalidInputError) as info:
        engine.infer_batch("minilm", ["x", "y"], outputs=["pooled"])
    assert info.value.name == "outputs" and info.value.details["actual"] == "pooled"


def test_batch_mates_asking_for_different_outputs_each_get_their_own() -> None:
    model = TorchSeq(hidden=6)
    model.delay = 0.02  # keep the model busy so that concurrent callers queue and share passes
    with Engine(EngineConfig(max_batch_size=16, max_queue_delay_ms=20)) as eng:
        eng.register("seq", model, text_encoder=ToyTextEncoder())
        alone = {i: eng.infer("seq", f"w{'x' * i} yy z") for i in range(12)}
        model.rows = []
        results: dict[int, object] = {}
        start = threading.Barrier(12)

        def call(i: int) -> None:
            start.wait()
            results[i] = eng.infer("seq", f"w{'x' * i} yy z", outputs=["pooled"] if i % 2 else ["hidden", "pooled"])

        threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert max(model.rows) > 1  # some of them shared a forward pass
    for i, res in results.items():
        assert list(res) == (["pooled"] if i % 2 else ["hidden", "pooled"])  # type: ignore[call-overload]
        for name in res:  # type: ignore[attr-defined]
            np.testing.assert_allclose(res[name], alone[i][name], rtol=1e-5, atol=1e-6)  # type: ignore[index]


# -- encode ------------------------------------------------------------------------------------------------
def test_encode_gives_one_matrix_in_input_order(engine: Engine) -> None:
    matrix = engine.encode("minilm", SENTENCES, batch_size=5)
    assert matrix.shape == (len(SENTENCES), 384) and matrix.dtype == np.float32
    one_by_one = np.concatenate([engine.infer("minilm", [t], outputs=["sentence_embedding"])["sentence_embedding"] for t in SENTENCES[:12]])
    np.testing.assert_allclose(matrix[:12], one_by_one, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(matrix[12:24], matrix[:12], rtol=1e-4, atol=1e-5)  # the repeats, batched with others
    # Length-sorted batches: 36 texts in batches of 5 are 8 forward passes.
    before = engine.stats("minilm").batches
    engine.encode("minilm", SENTENCES, batch_size=5)
    assert engine.stats("minilm").batches - before == 8
    assert engine.encode("minilm", "just one").shape == (1, 384)
    assert engine.encode("minilm", []).shape == (0, 384)
    pooled = engine.encode("minilm", SENTENCES[:3], output="pooler_output")
    np.testing.assert_allclose(pooled, engine.infer("minilm", SENTENCES[:3])["pooler_output"], rtol=1e-4, atol=1e-5)


def test_encode_shows_progress_on_request(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    engine.encode("minilm", SENTENCES, batch_size=4, show_progress=True)
    assert "encoding" in capsys.readouterr().err
    engine.encode("minilm", SENTENCES, batch_size=4)  # not a terminal: no bar by default
    assert capsys.readouterr().err == ""


def test_encode_refuses_what_is_no_matrix(engine: Engine) -> None:
    with pytest.raises(InvalidInputError) as info:
        engine.encode("minilm", SENTENCES, output="last_hidden_state")
    assert info.value.name == "output" and info.value.expected == ["pooler_output", "sentence_embedding"]
    for bad, name in (([1, 2], "texts"), (b"bytes", "texts")):
        with pytest.raises(InvalidInputError) as info:
            engine.encode("minilm", bad)  # type: ignore[arg-type]
        assert info.value.name == name
    with pytest.raises(InvalidInputError) as info:
        engine.encode("minilm", SENTENCES, batch_size=0)
    assert info.value.name == "batch_size"
    with pytest.raises(InvalidInputError) as info:
        engine.encode("minilm", SENTENCES, output="nope")
    assert info.value.name == "output"


def test_encode_without_a_default_output_needs_one_named() -> None:
    with Engine() as eng:
        eng.register("seq", TorchSeq(hidden=4), text_encoder=ToyTextEncoder())
        with pytest.raises(InvalidInputError) as info:
            eng.encode("seq", ["a b", "c"])
        assert info.value.name == "output" and info.value.expected == ["hidden", "pooled"]
        assert eng.encode("seq", ["a b", "c"], output="pooled").shape == (2, 4)
        eng.register("seq", TorchSeq(hidden=4), text_encoder=ToyTextEncoder(), default_outputs=["pooled"])
        assert eng.encode("seq", ["a b", "c", "d e f"]).shape == (3, 4)
