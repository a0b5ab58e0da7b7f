"""One name, several backends: routing, fallback, isolation and equal outputs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from inferox.core.errors import (
    BackendError,
    BackendUnavailableError,
    InferoxTimeoutError,
    InvalidInputError,
    ModelNotFoundError,
    OutOfMemoryError,
)
from inferox.engine import Engine, EngineConfig
from tests.support.engine_models import IN, POISON, JaxLinear, TorchLinear, expected_linear, make_weights


class BrokenTorch(TorchLinear):
    """Always raises from inside torch (as a broken device or kernel would)."""

    def __init__(self, *args: Any, error: type[BaseException] = RuntimeError, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.error = error

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        self._count(int(inputs["x"].shape[0]))
        raise self.error("device lost")


def test_both_backends_in_one_engine_give_equal_outputs(engine: Engine) -> None:
    w, b = make_weights(1)
    engine.register("lin", TorchLinear(w, b))
    engine.register("lin", JaxLinear(w, b))
    info = engine.model_info("lin")
    assert info.backends == ["torch", "jax"] and all(i.ready for i in info.instances)
    x = np.random.default_rng(2).standard_normal((5, IN)).astype(np.float32)
    t = engine.infer("lin", x, backend="torch")
    j = engine.infer("lin", x, backend="jax")
    assert (t.backend, j.backend) == ("torch", "jax")
    assert type(t["y"]) is type(j["y"]) is np.ndarray and t["y"].dtype == j["y"].dtype == np.float32
    np.testing.assert_allclose(t["y"], j["y"], rtol=1e-5, atol=1e-5)  # numerical agreement across backends
    np.testing.assert_allclose(t["y"], expected_linear(x, w, b), rtol=1e-5, atol=1e-5)
    assert engine.infer("lin", x).backend == "torch"  # no preference: first registered
    assert engine.stats("lin").requests_by_backend == {"torch": 2, "jax": 1}


def test_backend_preference_order_routes(weights: tuple[np.ndarray, np.ndarray]) -> None:
    with Engine(EngineConfig(backend_preference=("jax", "torch"))) as eng:
        eng.register("lin", TorchLinear(*weights))
        eng.register("lin", JaxLinear(*weights))
        assert eng.infer("lin", np.ones((1, IN), np.float32)).backend == "jax"
        assert eng.infer("lin", np.ones((1, IN), np.float32), backend="torch").backend == "torch"


def test_unavailable_backend_falls_back(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    engine.register("lin", TorchLinear(*weights))
    res = engine.infer("lin", np.ones((1, IN), np.float32), backend="jax")
    assert res.backend == "torch"  # no jax instance: served by the one there is
    # A name that is no installed backend is the caller's mistake, not a reason to fall back
    # (issue 14, item 13).
    with pytest.raises(InvalidInputError) as ei:
        engine.infer("lin", np.ones((1, IN), np.float32), backend="tensorflow")
    assert ei.value.name == "backend" and "torch" in ei.value.expected
    assert engine.stats("lin").fallbacks == 1


@pytest.mark.parametrize("error", [RuntimeError, MemoryError])
def test_backend_error_falls_back_in_preference_order(weights: tuple[np.ndarray, np.ndarray], error: type[BaseException]) -> None:
    w, b = weights
    broken = BrokenTorch(w, b, error=error)
    with Engine(EngineConfig(backend_preference=("torch", "jax"))) as eng:
        eng.register("lin", broken, warmup=False)
        eng.register("lin", JaxLinear(w, b))
        x = np.ones((2, IN), np.float32)
        res = eng.infer("lin", x)
        assert res.backend == "jax" and broken.calls == 1
        np.testing.assert_allclose(res["y"], expected_linear(x, w, b), rtol=1e-5, atol=1e-5)
        assert asyncio.run(eng.ainfer("lin", x, backend="torch")).backend == "jax"
        out = eng.infer_batch("lin", [x, x], backend="torch")
        assert [r.backend for r in out] == ["jax", "jax"]


def test_every_backend_failing_raises_the_last_error(weights: tuple[np.ndarray, np.ndarray]) -> None:
    with Engine() as eng:
        eng.register("lin", BrokenTorch(*weights, error=MemoryError), warmup=False)
        with pytest.raises(OutOfMemoryError) as ei:
            eng.infer("lin", np.ones((1, IN), np.float32))
        assert ei.value.code == "OUT_OF_MEMORY" and ei.value.backend == "torch"
        with pytest.raises(OutOfMemoryError):
            asyncio.run(eng.ainfer("lin", np.ones((1, IN), np.float32)))
        with pytest.raises(OutOfMemoryError):
            eng.infer_batch("lin", [np.ones((1, IN), np.float32)])


def test_invalid_input_and_timeouts_never_fall_back(weights: tuple[np.ndarray, np.ndarray]) -> None:
    w, b = weights
    jax_model = JaxLinear(w, b)
    with Engine(EngineConfig(max_batch_size=1)) as eng:
        slow = TorchLinear(w, b, delay=0.3)
        eng.register("lin", slow)
        eng.register("lin", jax_model)
        jax_model.calls = 0
        with pytest.raises(InvalidInputError):
            eng.infer("lin", np.ones((1, IN + 1), np.float32), backend="torch")
        with pytest.raises(InvalidInputError) as ei:
            eng.infer_batch("lin", [np.ones(IN, np.float32), np.ones(2, np.float32)], backend="torch")
        assert ei.value.index == 1
        t = threading.Thread(target=eng.infer, args=("lin", np.ones((1, IN), np.float32)), kwargs={"backend": "torch"})
        slow.calls = 0
        t.start()
        while slow.calls == 0:
            threading.Event().wait(0.005)
        with pytest.raises(InferoxTimeoutError):
            eng.infer("lin", np.ones((1, IN), np.float32), backend="torch", timeout=0.05)
        t.join()
        assert jax_model.calls == 0  # none of those went to jax


def test_backend_isolation_no_cross_contamination(engine: Engine) -> None:
    wt, bt = make_weights(1)
    wj, bj = make_weights(2)
    engine.register("m", TorchLinear(wt, bt))
    engine.register("m", JaxLinear(wj, bj))
    x = np.ones((3, IN), np.float32)

    def go(i: int) -> None:
        backend = "torch" if i % 2 else "jax"
        w, b = (wt, bt) if i % 2 else (wj, bj)
        res = engine.infer("m", x * i, backend=backend)
        assert res.backend == backend
        np.testing.assert_allclose(res["y"], expected_linear(x * i, w, b), rtol=1e-4, atol=1e-4)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(go, range(20)))  # re-raises any caller's failed check


def test_model_names_are_unique_across_backends(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    engine.register("a", TorchLinear(*weights))
    engine.register("a", JaxLinear(*weights))
    engine.register("b", JaxLinear(*weights))
    assert engine.list_models() == ["a", "b"]  # one logical name, however many backends
    assert engine.model_info("b").backends == ["jax"]
    engine.unregister("a", backend="torch")
    assert engine.infer("a", np.ones((1, IN), np.float32), backend="torch").backend == "jax"
    with pytest.raises(ModelNotFoundError) as ei:
        engine.unregister("b", backend="torch")
    assert ei.value.backend == "torch" and ei.value.code == "MODEL_NOT_FOUND"


def test_unavailable_backend_error_carries_reason(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    class Unavailable(TorchLinear):
        def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
            raise BackendUnavailableError("torch", reason="CUDA driver gone")

    engine.register("u", Unavailable(*weights), warmup=False)
    with pytest.raises(BackendUnavailableError) as ei:
        engine.infer("u", np.ones((1, IN), np.float32))
    assert ei.value.code == "BACKEND_UNAVAILABLE" and ei.value.reason == "CUDA driver gone"
    engine.register("u", JaxLinear(*weights))
    assert engine.infer("u", np.ones((1, IN), np.float32), backend="torch").backend == "jax"


def test_poisoned_request_on_one_backend_does_not_touch_the_other(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    engine.register("lin", TorchLinear(*weights))
    with pytest.raises(BackendError):
        engine.infer("lin", np.full((1, IN), POISON, np.float32))
    assert engine.infer("lin", np.ones((1, IN), np.float32)).backend == "torch"
