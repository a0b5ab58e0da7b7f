"""The real dynamic batcher: coalescing, padding and trimming, failure isolation, queue bounds."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferox.core import DType, TensorSpec
from inferox.core.errors import BackendError, InferoxTimeoutError, InvalidInputError, QueueFullError
from inferox.engine import Engine, EngineConfig, InferenceResult
from inferox.engine._batching import Request, group_requests, merge_inputs, request_key, split_outputs
from tests.support.engine_models import IN, OUT, POISON, JaxLinear, TorchLinear, TorchSeq, expected_linear, make_weights


def _concurrently(n: int, fn: Any) -> list[Any]:
    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        barrier.wait()
        try:
            return fn(i)
        except Exception as exc:  # noqa: BLE001 - each caller's own outcome is checked by the test
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


@pytest.mark.parametrize("kind", ["torch", "jax"])
def test_concurrent_requests_form_real_batches(kind: str) -> None:
    w, b = make_weights(3)
    model = TorchLinear(w, b, delay=0.02) if kind == "torch" else JaxLinear(w, b, delay=0.02)
    with Engine(EngineConfig(max_batch_size=8, max_queue_delay_ms=20)) as eng:
        eng.register("lin", model)
        model.calls, model.rows = 0, []

        def call(i: int) -> InferenceResult:
            x = np.full((1, IN), float(i), np.float32)
            res = eng.infer("lin", x)
            np.testing.assert_allclose(res["y"], expected_linear(x, w, b), rtol=1e-4, atol=1e-4)
            return res

        results = _concurrently(32, call)
        assert all(isinstance(r, InferenceResult) for r in results), results
        assert sum(model.rows) == 32
        assert max(model.rows) > 1 and model.calls < 32  # batches really formed
        assert max(model.rows) <= 8  # and never beyond max_batch_size
        assert max(r.batch_size for r in results) > 1
        hist = eng.stats("lin").batch_sizes
        assert sum(k * v for k, v in hist.items()) == 32


def test_async_callers_share_the_batcher() -> None:
    w, b = make_weights(4)
    model = TorchLinear(w, b, delay=0.02)
    with Engine(EngineConfig(max_batch_size=16, max_queue_delay_ms=10)) as eng:
        eng.register("lin", model)
        model.calls, model.rows = 0, []

        async def main() -> list[InferenceResult]:
            return await asyncio.gather(*[eng.ainfer("lin", np.full((1, IN), float(i), np.float32)) for i in range(40)])

        results = asyncio.run(main())
        for i, r in enumerate(results):
            np.testing.assert_allclose(r["y"], expected_linear(np.full((1, IN), float(i), np.float32), w, b), rtol=1e-4, atol=1e-4)
        assert max(model.rows) > 1 and sum(model.rows) == 40


def test_async_timeout_and_errors() -> None:
    w, b = make_weights(4)
    with Engine(EngineConfig(max_batch_size=1)) as eng:
        slow = TorchLinear(w, b, delay=0.3)
        eng.register("lin", slow)
        slow.calls = 0

        async def main() -> None:
            first = asyncio.ensure_future(eng.ainfer("lin", np.ones((1, IN), np.float32)))
            while slow.calls == 0:
                await asyncio.sleep(0.005)
            with pytest.raises(InferoxTimeoutError) as ei:
                await eng.ainfer("lin", np.ones((1, IN), np.float32), timeout=0.05)
            assert ei.value.code == "TIMEOUT"
            await first
            with pytest.raises(InvalidInputError):
                await eng.ainfer("lin", np.ones((1, 9), np.float32))
            with pytest.raises(BackendError):
                await eng.ainfer("lin", np.full((1, IN), POISON, np.float32))

        asyncio.run(main())
        assert slow.calls == 2  # the first and the poisoned one: the expired and invalid ones never ran
        assert eng.stats("lin").errors_by_code == {"TIMEOUT": 1, "INVALID_INPUT": 1, "BACKEND_ERROR": 1}


def test_failing_batch_reruns_items_so_only_bad_ones_fail() -> None:
    w, b = make_weights(5)
    model = TorchLinear(w, b, delay=0.02)
    with Engine(EngineConfig(max_batch_size=16, max_queue_delay_ms=20)) as eng:
        eng.register("lin", model)

        def call(i: int) -> InferenceResult:
            x = np.full((1, IN), POISON if i % 5 == 0 else float(i), np.float32)
            res = eng.infer("lin", x)
            np.testing.assert_allclose(res["y"], expected_linear(x, w, b), rtol=1e-4, atol=1e-4)
            return res

        results = _concurrently(20, call)
        for i, r in enumerate(results):
            if i % 5 == 0:
                assert isinstance(r, BackendError) and r.code == "BACKEND_ERROR" and isinstance(r.__cause__, RuntimeError)
            else:
                assert isinstance(r, InferenceResult)
        assert eng.stats("lin").errors_by_code == {"BACKEND_ERROR": 4}


def test_padding_and_trimming_match_unbatched_results() -> None:
    model = TorchSeq(seed=1)
    rng = np.random.default_rng(0)
    lengths = [int(n) for n in rng.integers(1, 9, size=24)]
    items = []
    for n in lengths:
        ids = rng.integers(1, 50, size=(1, n)).astype(np.int64)
        items.append({"input_ids": ids, "attention_mask": np.ones((1, n), np.int64)})
    expected = [{k: v.numpy() for k, v in model.forward({k: torch.from_numpy(v) for k, v in it.items()}).items()} for it in items]
    with Engine(EngineConfig(max_batch_size=32, max_queue_delay_ms=20)) as eng:
        eng.register("seq", model)
        model.rows = []
        out = eng.infer_batch("seq", items)
        assert model.rows == [24]  # one padded forward pass for all 24 lengths
        for n, res, exp in zip(lengths, out, expected):
            assert res["hidden"].shape == (1, n, 6)  # trimmed back to the item's own length
            np.testing.assert_allclose(res["hidden"], exp["hidden"], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(res["pooled"], exp["pooled"], rtol=1e-5, atol=1e-6)
        model.rows = []
        results = _concurrently(len(items), lambda i: eng.infer("seq", items[i]))
        assert max(model.rows) > 1
        for n, res, exp in zip(lengths, results, expected):
            assert isinstance(res, InferenceResult) and res["hidden"].shape == (1, n, 6)
            np.testing.assert_allclose(res["pooled"], exp["pooled"], rtol=1e-5, atol=1e-6)


def test_unpaddable_shapes_run_in_their_own_batches() -> None:
    class Fixed(TorchSeq):
        @property
        def input_specs(self) -> Sequence[TensorSpec]:
            return [TensorSpec("input_ids", DType.I64, (None, None)), TensorSpec("attention_mask", DType.I64, (None, None))]

    model = Fixed()
    with Engine() as eng:
        eng.register("seq", model)
        model.rows = []
        items = [{"input_ids": np.ones((1, n), np.int64), "attention_mask": np.ones((1, n), np.int64)} for n in (2, 3, 2, 3, 4)]
        out = eng.infer_batch("seq", items)
        assert sorted(model.rows) == [1, 2, 2]  # grouped by exact shape: no padding without a pad_value
        assert [r["hidden"].shape[1] for r in out] == [2, 3, 2, 3, 4]


def test_unbatchable_model_runs_each_request_alone() -> None:
    class Summing(TorchLinear):
        @property
        def output_specs(self) -> Sequence[TensorSpec]:
            return [TensorSpec("y", DType.F32, (OUT,))]

        def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
            return {"y": super().forward(inputs)["y"].sum(0)}

    w, b = make_weights(6)
    model = Summing(w, b, delay=0.01)
    with Engine(EngineConfig(max_queue_delay_ms=20)) as eng:
        eng.register("sum", model)
        model.rows = []
        results = _concurrently(10, lambda i: eng.infer("sum", np.full((2, IN), float(i), np.float32)))
        assert model.rows == [2] * 10
        for i, r in enumerate(results):
            np.testing.assert_allclose(r["y"], expected_linear(np.full((2, IN), float(i), np.float32), w, b).sum(0), rtol=1e-4)
        assert eng.model_info("sum").instances[0].batching is False


def test_outputs_that_cannot_be_split_fall_back_to_single_runs() -> None:
    class Liar(TorchLinear):
        """Declares a batched output but returns the batch's sum as one row."""

        def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
            return {"y": super().forward(inputs)["y"].sum(0, keepdim=True)}

    w, b = make_weights(7)
    model = Liar(w, b, delay=0.02)
    with Engine(EngineConfig(max_queue_delay_ms=20)) as eng:
        eng.register("liar", model)
        results = _concurrently(12, lambda i: eng.infer("liar", np.full((1, IN), float(i), np.float32)))
        for i, r in enumerate(results):
            assert isinstance(r, InferenceResult)
            np.testing.assert_allclose(r["y"], expected_linear(np.full((1, IN), float(i), np.float32), w, b), rtol=1e-4, atol=1e-4)


def test_queue_full_is_a_typed_error() -> None:
    w, b = make_weights(8)
    model = TorchLinear(w, b, delay=0.2)
    with Engine(EngineConfig(max_batch_size=1, max_queue_size=2)) as eng:
        eng.register("lin", model)
        results = _concurrently(8, lambda i: eng.infer("lin", np.ones((1, IN), np.float32)))
        full = [r for r in results if isinstance(r, QueueFullError)]
        assert full, results
        err = full[0]
        assert err.code == "QUEUE_FULL" and err.max_queue_size == 2 and err.model == "lin" and err.retry_after > 0
        assert err.http_status == 429
        assert all(isinstance(r, (InferenceResult, QueueFullError)) for r in results)
        assert eng.stats("lin").errors_by_code["QUEUE_FULL"] == len(full)


def test_request_larger_than_max_batch_runs_whole() -> None:
    w, b = make_weights(9)
    model = TorchLinear(w, b)
    with Engine(EngineConfig(max_batch_size=4)) as eng:
        eng.register("lin", model)
        model.rows = []
        x = np.ones((10, IN), np.float32)
        np.testing.assert_allclose(eng.infer("lin", x)["y"], expected_linear(x, w, b), rtol=1e-5, atol=1e-5)
        assert model.rows == [10]


def test_num_workers_and_thread_safe_models() -> None:
    w, b = make_weights(10)

    class Safe(TorchLinear):
        thread_safe = True

    for model, workers in ((Safe(w, b, delay=0.01), 3), (TorchLinear(w, b, delay=0.01), 2)):
        with Engine(EngineConfig(num_workers=workers, max_batch_size=2)) as eng:
            eng.register("lin", model)
            results = _concurrently(12, lambda i: eng.infer("lin", np.full((1, IN), float(i), np.float32)))
            for i, r in enumerate(results):
                np.testing.assert_allclose(r["y"], expected_linear(np.full((1, IN), float(i), np.float32), w, b), rtol=1e-4, atol=1e-4)


# -- the pure half of the batcher ------------------------------------------------------------------


def _req(specs: Mapping[str, TensorSpec], inputs: dict[str, np.ndarray]) -> Request:
    key, rows, lengths = request_key(specs, inputs, True)
    return Request(inputs, rows=rows, key=key, lengths=lengths)


def test_ambiguous_trims_are_not_padded_together() -> None:
    specs = {"a": TensorSpec("a", DType.F32, (None, None), pad_value=0), "b": TensorSpec("b", DType.F32, (None, None), pad_value=0)}
    r1 = _req(specs, {"a": np.ones((1, 3), np.float32), "b": np.ones((1, 5), np.float32)})
    r2 = _req(specs, {"a": np.ones((1, 5), np.float32), "b": np.ones((1, 3), np.float32)})
    r3 = _req(specs, {"a": np.ones((1, 3), np.float32), "b": np.ones((1, 5), np.float32)})
    assert r1.key == r2.key
    groups = group_requests([r1, r2, r3], 10)
    assert sorted(len(g) for g in groups) == [1, 2]  # r1 and r3 share exact shapes
    merged = merge_inputs(specs, [r1, r3])
    assert merged["a"].shape == (2, 3)


def test_merge_pads_with_each_inputs_pad_value_and_split_trims() -> None:
    specs = {
        "ids": TensorSpec("ids", DType.I64, (None, None), pad_value=7),
        "mask": TensorSpec("mask", DType.I64, (None, None), pad_value=0),
    }
    r1 = _req(specs, {"ids": np.array([[1, 2]]), "mask": np.array([[1, 1]])})
    r2 = _req(specs, {"ids": np.array([[3, 4, 5, 6]]), "mask": np.array([[1, 1, 1, 1]])})
    merged = merge_inputs(specs, [r1, r2])
    np.testing.assert_array_equal(merged["ids"], [[1, 2, 7, 7], [3, 4, 5, 6]])
    np.testing.assert_array_equal(merged["mask"], [[1, 1, 0, 0], [1, 1, 1, 1]])
    out_specs = {"h": TensorSpec("h", DType.F32, (None, None, 2)), "p": TensorSpec("p", DType.F32, (None, 4))}
    outs = {"h": np.zeros((2, 4, 2)), "p": np.zeros((2, 4))}
    split = split_outputs(out_specs, outs, [r1, r2])
    assert split[0]["h"].shape == (1, 2, 2) and split[1]["h"].shape == (1, 4, 2)
    assert split[0]["p"].shape == (1, 4)  # a fixed output axis is never trimmed


def test_request_key_edge_cases() -> None:
    specs = {"a": TensorSpec("a", DType.F32, (None, 2)), "b": TensorSpec("b", DType.F32, (None, 2))}
    key, rows, _ = request_key(specs, {"a": np.ones((2, 2)), "b": np.ones((3, 2))}, True)
    assert key is None and rows == 2  # inconsistent rows: alone
    key, rows, _ = request_key({"s": TensorSpec("s", DType.F32, ())}, {"s": np.float32(1.0)}, True)
    assert key is None and rows == 1


# -- property-based: mixed shapes, invalid and failing items through the real batcher --------------

W, B = make_weights(11)
SEQ = TorchSeq(seed=3)


@pytest.fixture(scope="module")
def prop_engine() -> Iterator[Engine]:
    eng = Engine(EngineConfig(max_batch_size=8, max_queue_delay_ms=5))
    eng.register("lin", TorchLinear(W, B))
    eng.register("seq", SEQ)
    yield eng
    eng.shutdown()


ITEM = st.one_of(
    st.tuples(st.just("ok"), st.integers(1, 3), st.floats(-10, 10, width=32)),
    st.tuples(st.just("invalid"), st.integers(1, 3), st.integers(IN + 1, IN + 3)),
    st.tuples(st.just("poison"), st.integers(1, 2), st.just(0)),
    st.tuples(st.just("seq"), st.integers(1, 6), st.integers(1, 49)),
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(items=st.lists(ITEM, min_size=1, max_size=24))
def test_property_each_caller_gets_its_own_answer(prop_engine: Engine, items: list[tuple[str, int, Any]]) -> None:
    def call(i: int) -> Any:
        kind, n, v = items[i]
        if kind == "ok":
            x = np.full((n, IN), v, np.float32) + np.arange(IN, dtype=np.float32)
            return prop_engine.infer("lin", x), x
        if kind == "invalid":
            return prop_engine.infer("lin", np.ones((n, v), np.float32)), None
        if kind == "poison":
            return prop_engine.infer("lin", np.full((n, IN), POISON, np.float32)), None
        ids = (np.arange(n, dtype=np.int64)[None] * v) % 49 + 1
        return prop_engine.infer("seq", {"input_ids": ids, "attention_mask": np.ones_like(ids)}), ids

    outcomes = _concurrently(len(items), call)
    for (kind, n, _v), out in zip(items, outcomes):
        if kind == "invalid":
            assert isinstance(out, InvalidInputError) and out.name == "x" and out.code == "INVALID_INPUT"
        elif kind == "poison":
            assert isinstance(out, BackendError) and out.code == "BACKEND_ERROR"
        elif kind == "ok":
            res, x = out
            np.testing.assert_allclose(res["y"], expected_linear(x, W, B), rtol=1e-4, atol=1e-4)
        else:
            res, ids = out
            exp = SEQ.forward({"input_ids": torch.from_numpy(ids), "attention_mask": torch.ones_like(torch.from_numpy(ids))})
            assert res["hidden"].shape == (1, n, 6)
            np.testing.assert_allclose(res["pooled"], exp["pooled"].numpy(), rtol=1e-5, atol=1e-6)
