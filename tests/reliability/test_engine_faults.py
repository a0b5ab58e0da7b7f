"""Fault injection in the engine: a real torch model that raises, hangs or returns the wrong shape for
some requests. The error reaches only those callers; the batcher and the other models keep serving;
a hanging call is cut off by its deadline.

The faulty model is a real ``torch.nn.Linear``; the fault is chosen by the first feature of a row
(``RAISE``: a genuine torch shape error, ``HANG``: blocks until the test releases it, ``SHAPE``: drops
an output column), so a fault travels through the real batcher like any other request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from inferox.core import DeviceId, DType, Model, ModelMetadata, TensorSpec, get_registry
from inferox.core.errors import BackendError, InferoxError, InferoxTimeoutError
from inferox.engine import Engine, EngineConfig
from tests.support.engine_models import IN, OUT, TorchLinear, expected_linear, make_weights

RAISE, HANG, SHAPE = 1001.0, 1002.0, 1003.0
#: Longest a HANG row blocks if the test never releases it (keeps a failing test from hanging CI).
HANG_LIMIT_S = 20.0


class FaultyLinear(Model):
    """``y = x @ W + b`` with torch; rows whose first feature is RAISE / HANG / SHAPE misbehave."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, *, name: str = "faulty") -> None:
        import torch

        super().__init__(backend=get_registry().get_backend("torch"), metadata=ModelMetadata(name, architecture="linear"), device=DeviceId.cpu())
        self.linear = torch.nn.Linear(weight.shape[0], weight.shape[1])
        with torch.no_grad():
            self.linear.weight.copy_(torch.from_numpy(weight.T.copy()))
            self.linear.bias.copy_(torch.from_numpy(bias.copy()))
        self.release = threading.Event()
        self.hanging = threading.Event()
        self.forward_rows: list[int] = []

    @property
    def input_specs(self) -> Sequence[TensorSpec]:
        return [TensorSpec("x", DType.F32, (None, IN))]

    @property
    def output_specs(self) -> Sequence[TensorSpec]:
        return [TensorSpec("y", DType.F32, (None, OUT))]

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        import torch

        x = inputs["x"]
        self.forward_rows.append(int(x.shape[0]))
        first = x[:, 0]
        if bool((first == HANG).any()):
            self.hanging.set()
            self.release.wait(HANG_LIMIT_S)
        if bool((first == RAISE).any()):
            torch.matmul(x, torch.ones(IN + 1, 2))  # a real framework error: shapes cannot be multiplied
        with torch.no_grad():
            y = self.linear(x)
        if bool((first == SHAPE).any()):
            return {"y": y[:, :-1]}
        return {"y": y}


def _row(value: float) -> np.ndarray:
    return np.full((1, IN), value, np.float32)


@pytest.fixture
def weights() -> tuple[np.ndarray, np.ndarray]:
    return make_weights(7)


@pytest.fixture
def two_models(weights: tuple[np.ndarray, np.ndarray]) -> Iterator[tuple[Engine, FaultyLinear]]:
    w, b = weights
    faulty = FaultyLinear(w, b)
    eng = Engine(EngineConfig(max_batch_size=16, max_queue_delay_ms=5.0))
    eng.register("faulty", faulty)
    eng.register("other", TorchLinear(w, b, name="other"))
    yield eng, faulty
    faulty.release.set()
    eng.shutdown(drain=False, timeout=10)


def _check(result: Any, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(result["y"], expected_linear(x, w, b), rtol=1e-5, atol=1e-5)


def test_raising_requests_fail_alone_while_everyone_else_is_served(
    two_models: tuple[Engine, FaultyLinear], weights: tuple[np.ndarray, np.ndarray], figures: Any
) -> None:
    eng, faulty = two_models
    w, b = weights
    n = 96
    plan = [("faulty", RAISE) if i % 6 == 0 else ("faulty", float(i)) if i % 2 else ("other", float(i)) for i in range(n)]
    barrier = threading.Barrier(16)

    def call(i: int) -> Any:
        if i < 16:
            barrier.wait()  # the first wave arrives together, so faults share batches with good rows
        name, value = plan[i]
        try:
            return eng.infer(name, _row(value), timeout=30)
        except InferoxError as exc:
            return exc

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(n)))
    faults = 0
    for (name, value), res in zip(plan, results):
        if value == RAISE:
            faults += 1
            assert isinstance(res, BackendError), res
            assert res.code == "BACKEND_ERROR" and res.backend == "torch" and res.model == "faulty"
            assert isinstance(res.__cause__, RuntimeError)  # torch's own error is kept as the cause
        else:
            assert not isinstance(res, Exception), (name, value, res)
            _check(res, _row(value), w, b)
            assert res.model == name
    assert eng.stats("faulty").errors == faults
    assert max(faulty.forward_rows) > 1  # faults really shared batches with good requests
    # the batcher is still alive after the faults: plain requests keep being answered
    _check(eng.infer("faulty", _row(3.0)), _row(3.0), w, b)
    figures.record(requests=n, faults_injected=faults, good_answered=n - faults, largest_batch=max(faulty.forward_rows))


def test_a_hanging_call_is_cut_off_by_its_deadline_and_other_models_keep_serving(
    two_models: tuple[Engine, FaultyLinear], weights: tuple[np.ndarray, np.ndarray], figures: Any
) -> None:
    eng, faulty = two_models
    w, b = weights
    outcome: dict[str, Any] = {}

    def hang() -> None:
        try:
            outcome["hang"] = eng.infer("faulty", _row(HANG), timeout=0.5)
        except InferoxError as exc:
            outcome["hang"] = exc

    t = threading.Thread(target=hang)
    t.start()
    assert faulty.hanging.wait(10), "the hanging forward pass never started"
    # a request queued behind the hung forward pass: its own short deadline expires in the queue
    with pytest.raises(InferoxTimeoutError) as queued:
        eng.infer("faulty", _row(5.0), timeout=0.3)
    assert queued.value.code == "TIMEOUT" and queued.value.model == "faulty" and queued.value.timeout == 0.3
    t.join(10)
    err = outcome["hang"]
    assert isinstance(err, InferoxTimeoutError), err
    assert err.code == "TIMEOUT" and err.model == "faulty" and err.timeout == 0.5
    # the forward pass is still hung, and the other model's batcher serves on regardless
    served = 0
    for i in range(50):
        _check(eng.infer("other", _row(float(i)), timeout=5), _row(float(i)), w, b)
        served += 1
    assert not faulty.release.is_set()
    faulty.release.set()  # the hang ends: the faulty model serves again
    _check(eng.infer("faulty", _row(2.0), timeout=10), _row(2.0), w, b)
    assert eng.stats("faulty").errors == 2
    figures.record(hangs_injected=1, timeouts_raised=2, other_model_requests_during_hang=served)


def test_async_callers_get_the_deadline_too(two_models: tuple[Engine, FaultyLinear], weights: tuple[np.ndarray, np.ndarray]) -> None:
    eng, faulty = two_models
    w, b = weights

    async def main() -> list[Any]:
        hung = asyncio.ensure_future(eng.ainfer("faulty", _row(HANG), timeout=0.4))
        others = [eng.ainfer("other", _row(float(i)), timeout=5) for i in range(20)]
        return await asyncio.gather(hung, *others, return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[0], InferoxTimeoutError) and results[0].code == "TIMEOUT" and results[0].model == "faulty"
    for i, res in enumerate(results[1:]):
        _check(res, _row(float(i)), w, b)
    faulty.release.set()


def test_wrong_output_shape_reaches_only_its_caller(
    two_models: tuple[Engine, FaultyLinear], weights: tuple[np.ndarray, np.ndarray], figures: Any
) -> None:
    eng, _faulty = two_models
    w, b = weights
    values = [SHAPE if i % 4 == 0 else float(i) for i in range(32)]
    barrier = threading.Barrier(len(values))

    def call(i: int) -> Any:
        barrier.wait()
        try:
            return eng.infer("faulty", _row(values[i]), timeout=30)
        except InferoxError as exc:
            return exc

    with ThreadPoolExecutor(len(values)) as pool:
        results = list(pool.map(call, range(len(values))))
    faults = 0
    for value, res in zip(values, results):
        if value == SHAPE:
            faults += 1
            assert isinstance(res, BackendError), res
            assert res.code == "BACKEND_ERROR" and res.model == "faulty" and res.backend == "torch"
            assert "'y'" in str(res) and "(1, 2)" in str(res)  # names the output and the shape it got
        else:
            assert not isinstance(res, Exception), (value, res)
            _check(res, _row(value), w, b)
    _check(eng.infer("other", _row(1.0)), _row(1.0), w, b)
    figures.record(requests=len(values), faults_injected=faults)
