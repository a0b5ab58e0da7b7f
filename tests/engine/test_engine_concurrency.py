"""Concurrency: 100 and 1,000 concurrent requests, churn of registrations, hot swap under load.

Every caller checks its own numeric result (its input encodes its index), so a lost, failed or
mismatched response fails the test.
"""

from __future__ import annotations

import asyncio
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from inferox.core.errors import ModelNotFoundError
from inferox.engine import Engine, EngineConfig, InferenceResult
from tests.support.engine_models import IN, JaxLinear, TorchLinear, expected_linear, make_weights


def _x(i: int) -> np.ndarray:
    return (np.arange(IN, dtype=np.float32) + i * 0.01)[None]


@pytest.mark.parametrize("n", [10, 100])
def test_concurrent_requests_same_model_threads(n: int) -> None:
    w, b = make_weights(1)
    model = TorchLinear(w, b)
    with Engine(EngineConfig(max_batch_size=32)) as eng:
        eng.register("lin", model)
        barrier = threading.Barrier(n)

        def call(i: int) -> int:
            barrier.wait()
            res = eng.infer("lin", _x(i))
            np.testing.assert_allclose(res["y"], expected_linear(_x(i), w, b), rtol=1e-5, atol=1e-5)
            return i

        with ThreadPoolExecutor(n) as pool:
            done = list(pool.map(call, range(n)))
        assert done == list(range(n))
        st = eng.stats("lin")
        assert st.successes == n and st.errors == 0


def test_1000_concurrent_async_requests_same_model() -> None:
    w, b = make_weights(2)
    model = TorchLinear(w, b)
    with Engine(EngineConfig(max_batch_size=64)) as eng:
        eng.register("lin", model)
        model.rows = []

        async def main() -> list[InferenceResult]:
            return await asyncio.gather(*[eng.ainfer("lin", _x(i)) for i in range(1000)])

        results = asyncio.run(main())
        assert len(results) == 1000
        for i, r in enumerate(results):
            np.testing.assert_allclose(r["y"], expected_linear(_x(i), w, b), rtol=1e-5, atol=1e-5)
        assert sum(model.rows) == 1000 and max(model.rows) > 1


def test_1000_requests_spread_over_torch_and_jax_with_registration_churn() -> None:
    """1,000 requests from 100 threads over two torch and two jax models, while another thread
    keeps registering and unregistering other models and hot-swapping one of the served ones."""
    weights = {name: make_weights(i + 10) for i, name in enumerate(["t1", "t2", "j1", "j2"])}
    with Engine(EngineConfig(max_batch_size=32)) as eng:
        for name, (w, b) in weights.items():
            eng.register(name, TorchLinear(w, b, name=name) if name.startswith("t") else JaxLinear(w, b, name=name))
        stop = threading.Event()
        churned = {"registered": 0, "swapped": 0}

        def churn() -> None:
            k = 0
            while not stop.is_set():
                tmp = f"tmp{k % 3}"
                eng.register(tmp, TorchLinear(*make_weights(99), name=tmp) if k % 2 else JaxLinear(*make_weights(99), name=tmp))
                churned["registered"] += 1
                eng.unregister(tmp)
                w, b = weights["t2"]
                eng.register("t2", TorchLinear(w, b, name="t2"))  # a hot swap with identical weights
                churned["swapped"] += 1
                k += 1

        names = list(weights)
        rng = random.Random(0)
        plan = [(i, rng.choice(names)) for i in range(1000)]

        def call(job: tuple[int, str]) -> str:
            i, name = job
            w, b = weights[name]
            res = eng.infer(name, _x(i))
            np.testing.assert_allclose(res["y"], expected_linear(_x(i), w, b), rtol=1e-4, atol=1e-4)
            assert res.model == name and res.backend == ("torch" if name.startswith("t") else "jax")
            return name

        churner = threading.Thread(target=churn)
        churner.start()
        try:
            with ThreadPoolExecutor(100) as pool:
                served = list(pool.map(call, plan))
        finally:
            stop.set()
            churner.join()
        assert served == [name for _, name in plan]
        assert churned["registered"] >= 1 and churned["swapped"] >= 1
        total = sum(eng.stats(n).successes for n in names)
        assert total == 1000 and all(eng.stats(n).errors == 0 for n in names)
        assert eng.list_models() == sorted(names)


def test_hot_swap_under_load_drops_nothing() -> None:
    w1, b1 = make_weights(21)
    w2, b2 = make_weights(22)
    old = TorchLinear(w1, b1, delay=0.002, version="1")
    new = TorchLinear(w2, b2, delay=0.002, version="2")
    with Engine(EngineConfig(max_batch_size=8)) as eng:
        eng.register("lin", old)
        old.rows = []
        swapped = threading.Event()
        outcomes: list[tuple[int, str, bool]] = []
        lock = threading.Lock()

        def call(i: int) -> None:
            after = swapped.is_set()
            res = eng.infer("lin", _x(i))
            v1 = np.allclose(res["y"], expected_linear(_x(i), w1, b1), rtol=1e-4, atol=1e-4)
            v2 = np.allclose(res["y"], expected_linear(_x(i), w2, b2), rtol=1e-4, atol=1e-4)
            assert v1 or v2, f"request {i} got neither model's answer"
            if after:
                assert v2, f"request {i} sent after the swap was served by the old model"
            with lock:
                outcomes.append((i, "v1" if v1 else "v2", after))

        def swap() -> None:
            while len(outcomes) < 100:
                threading.Event().wait(0.001)
            eng.register("lin", new)
            swapped.set()

        swapper = threading.Thread(target=swap)
        swapper.start()
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(call, range(600)))
        swapper.join()
        assert len(outcomes) == 600  # nothing lost, nothing failed
        served = {v for _, v, _ in outcomes}
        assert served == {"v1", "v2"}
        assert old.closed and not new.closed
        assert sum(old.rows) + sum(new.rows) - 1 == 600  # minus the new model's warm-up row
        assert eng.stats("lin").successes == 600 and eng.stats("lin").errors == 0
        assert eng.model_info("lin").metadata.version == "2"


def test_concurrent_model_registration_and_lookup() -> None:
    with Engine() as eng:

        def reg(i: int) -> str:
            name = f"m{i}"
            w, b = make_weights(i)
            eng.register(name, TorchLinear(w, b, name=name))
            res = eng.infer(name, _x(i))
            np.testing.assert_allclose(res["y"], expected_linear(_x(i), w, b), rtol=1e-5, atol=1e-5)
            assert eng.model_info(name).name == name
            return name

        with ThreadPoolExecutor(8) as pool:
            names = list(pool.map(reg, range(24)))
        assert eng.list_models() == sorted(names)


def test_unregister_while_requests_are_in_flight() -> None:
    """Requests routed before an unregister finish; later ones get ModelNotFoundError — nothing else."""
    w, b = make_weights(3)
    with Engine(EngineConfig(max_batch_size=4)) as eng:
        eng.register("lin", TorchLinear(w, b, delay=0.005))
        outcomes: list[str] = []

        def call(i: int) -> None:
            try:
                res = eng.infer("lin", _x(i))
            except ModelNotFoundError as exc:
                assert exc.name == "lin"
                outcomes.append("gone")
                return
            np.testing.assert_allclose(res["y"], expected_linear(_x(i), w, b), rtol=1e-5, atol=1e-5)
            outcomes.append("ok")

        def unregister() -> None:
            while len(outcomes) < 20:
                threading.Event().wait(0.001)
            eng.unregister("lin")

        t = threading.Thread(target=unregister)
        t.start()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(call, range(200)))
        t.join()
        assert len(outcomes) == 200 and "ok" in outcomes and "gone" in outcomes


class _SwapWhileValidating(Engine):
    """Hot-swaps (or unregisters) the model right after a caller has been routed to an instance and
    before it queues: the deterministic form of the routing race."""

    action: str = "swap"
    replacement: TorchLinear | None = None
    armed = False

    def _prepare(self, inst, inputs, **kw):  # type: ignore[no-untyped-def]
        if self.armed:
            self.armed = False
            if self.action == "swap":
                self.register("lin", self.replacement)  # type: ignore[arg-type]
            else:
                self.unregister("lin")
        return super()._prepare(inst, inputs, **kw)


@pytest.mark.parametrize("batching", [True, False])
def test_swap_between_routing_and_queueing_reroutes(batching: bool) -> None:
    w1, b1 = make_weights(31)
    w2, b2 = make_weights(32)
    with _SwapWhileValidating(EngineConfig(batching=batching)) as eng:
        eng.register("lin", TorchLinear(w1, b1))
        for call in ("infer", "ainfer", "infer_batch"):
            eng.replacement = TorchLinear(w2, b2)
            eng.armed = True
            if call == "infer":
                res = eng.infer("lin", _x(1))
            elif call == "ainfer":
                res = asyncio.run(eng.ainfer("lin", _x(1)))
            else:
                res = eng.infer_batch("lin", [_x(1)])[0]
            np.testing.assert_allclose(res["y"], expected_linear(_x(1), w2, b2), rtol=1e-5, atol=1e-5)  # served by the new one
            w1, b1, w2, b2 = w2, b2, w1, b1
        eng.action = "unregister"
        eng.armed = True
        with pytest.raises(ModelNotFoundError) as ei:
            eng.infer("lin", _x(1))
        assert ei.value.name == "lin"
