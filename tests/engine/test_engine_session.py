"""Sessions: runs, batch size, typed state, isolation, expiry and the state cap."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest

from inferox.core.errors import BackendError, ConfigError, InvalidInputError, ModelNotFoundError, SessionExpiredError, StateTypeError
from inferox.engine import Engine, EngineConfig, Session
from tests.support.engine_models import IN, OUT, JaxLinear, TorchLinear, expected_linear, make_weights


@dataclass
class Conversation:
    turns: int


def test_session_creation_and_runs(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    w, b = weights
    engine.register("lin", TorchLinear(w, b))
    sess = engine.session("lin")
    assert isinstance(sess, Session) and sess.model == "lin" and len(sess.id) == 32
    assert sess in engine.sessions() and "lin" in repr(sess)
    for i in range(3):
        x = np.full((1, IN), float(i), np.float32)
        res = sess.run(x)
        np.testing.assert_allclose(res["y"], expected_linear(x, w, b), rtol=1e-5, atol=1e-5)
    assert sess.runs == 3
    assert asyncio.run(sess.arun(np.ones((1, IN), np.float32))).backend == "torch"
    with pytest.raises(ModelNotFoundError) as ei:
        engine.session("nope")
    assert ei.value.name == "nope"


def test_session_batch_size(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    model = TorchLinear(*weights)
    engine.register("lin", model)
    sess = engine.session("lin")
    assert sess.batch_size == engine.config.max_batch_size
    sess.set_batch_size(4)
    model.rows = []
    out = sess.run_batch([np.full(IN, float(i), np.float32) for i in range(10)])
    assert len(out) == 10 and out[9]["y"].shape == (OUT,)
    assert model.rows == [4, 4, 2]
    sess.batch_size = 5
    assert sess.batch_size == 5
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError) as ei:
            sess.set_batch_size(bad)  # type: ignore[arg-type]
        assert ei.value.field == "batch_size" and ei.value.value == bad
    with pytest.raises(InvalidInputError) as ei2:
        sess.run_batch([np.ones(IN, np.float32)] * 7 + [np.ones(2, np.float32)])
    assert ei2.value.index == 7  # the index in the caller's whole list, not in the chunk


def test_state_set_get_types_and_defaults(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    engine.register("lin", TorchLinear(*weights))
    sess = engine.session("lin")
    sess.set("greeting", "hello")
    sess.store_state("conv", Conversation(turns=2))
    sess.set("emb", np.ones(8, np.float32))
    assert sess.get("greeting") == "hello"
    assert sess.get("greeting", type=str) == "hello"
    assert sess.get("conv", type=Conversation).turns == 2
    assert sess.get_state("conv", Conversation).turns == 2
    assert sess.get("missing") is None
    assert sess.get("missing", 42) == 42
    assert sess.get("missing", "d", type=int) == "d"
    with pytest.raises(StateTypeError) as ei:
        sess.get("greeting", type=int)
    assert ei.value.code == "STATE_TYPE_MISMATCH" and ei.value.expected == "int" and ei.value.actual == "str"
    with pytest.raises(StateTypeError) as ei2:
        sess.get_state("conv", str)
    assert ei2.value.actual == "Conversation"
    assert sorted(sess.keys()) == ["conv", "emb", "greeting"]
    assert sess.state()["greeting"] == "hello"
    assert sess.delete("greeting") is True and sess.delete("greeting") is False
    sess.clear()
    assert sess.keys() == [] and sess.state_bytes == 0
    with pytest.raises(InvalidInputError) as ei3:
        sess.set("", 1)
    assert ei3.value.name == "key"


def test_state_isolation_between_sessions(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    engine.register("lin", TorchLinear(*weights))
    a, b = engine.session("lin"), engine.session("lin")
    a.set("k", 1)
    b.set("k", 2)
    assert (a.get("k"), b.get("k")) == (1, 2)
    a.delete("k")
    assert a.get("k") is None and b.get("k") == 2
    assert a.id != b.id


def test_session_with_multiple_models_and_backends(engine: Engine) -> None:
    w1, b1 = make_weights(1)
    w2, b2 = make_weights(2)
    engine.register("one", TorchLinear(w1, b1))
    engine.register("one", JaxLinear(w1, b1))
    engine.register("two", TorchLinear(w2, b2))
    sess = engine.session("one", backend="jax")
    x = np.ones((1, IN), np.float32)
    assert sess.run(x).backend == "jax"
    assert sess.run(x, backend="torch").backend == "torch"  # switching backends in one session
    other = sess.run(x, model="two")
    np.testing.assert_allclose(other["y"], expected_linear(x, w2, b2), rtol=1e-5, atol=1e-5)


def test_session_error_handling(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    engine.register("lin", TorchLinear(*weights))
    sess = engine.session("lin")
    with pytest.raises(InvalidInputError) as ei:
        sess.run(np.ones((1, 2), np.float32))
    assert ei.value.name == "x"
    with pytest.raises(BackendError):
        sess.run(np.full((1, IN), 666.0, np.float32))
    sess.set("still", "usable")
    assert sess.run(np.ones((1, IN), np.float32)).backend == "torch"
    assert sess.get("still") == "usable"


def test_session_expiry_and_close(weights: tuple[np.ndarray, np.ndarray]) -> None:
    with Engine(EngineConfig(session_ttl_s=0.05)) as eng:
        eng.register("lin", TorchLinear(*weights))
        sess = eng.session("lin")
        sess.set("k", "v")
        assert sess.ttl == 0.05
        time.sleep(0.1)
        assert sess.expired
        with pytest.raises(SessionExpiredError) as ei:
            sess.get("k")
        assert ei.value.code == "SESSION_EXPIRED" and ei.value.session == sess.id and ei.value.ttl == 0.05
        assert ei.value.http_status == 410
        with pytest.raises(SessionExpiredError):
            sess.run(np.ones((1, IN), np.float32))
        assert sess.state_bytes == 0  # its state was dropped
        assert sess not in eng.sessions()
        eng.session("lin")  # creating a session purges expired ones
        assert sess.id not in eng._sessions
    with Engine() as eng2:
        eng2.register("lin", TorchLinear(*weights))
        with eng2.session("lin") as s2:
            s2.set("a", 1)
        with pytest.raises(SessionExpiredError) as ei2:
            s2.get("a")
        assert "closed" in str(ei2.value)


def test_state_cap_on_keys_and_bytes(weights: tuple[np.ndarray, np.ndarray]) -> None:
    with Engine(EngineConfig(session_max_keys=2, session_max_state_bytes=1000)) as eng:
        eng.register("lin", TorchLinear(*weights))
        sess = eng.session("lin")
        sess.set("a", 1)
        sess.set("b", b"x" * 10)
        sess.set("b", b"y" * 20)  # replacing a key is not a new key
        with pytest.raises(InvalidInputError) as ei:
            sess.set("c", 3)
        assert ei.value.name == "c" and "2 keys" in str(ei.value.expected)
        with pytest.raises(InvalidInputError) as ei2:
            sess.set("b", np.zeros(1000, np.float32))
        assert ei2.value.name == "b" and "1000 bytes" in str(ei2.value.expected)
        assert sess.get("b") == b"y" * 20  # the refused value did not replace the stored one
        sess.set("a", "é" * 10)
        sess.delete("a")
        sess.set("c", {"nested": [1, 2, 3]})
        assert 0 < sess.state_bytes < 1000


def test_concurrent_session_creation(engine: Engine, weights: tuple[np.ndarray, np.ndarray]) -> None:
    w, b = weights
    engine.register("lin", TorchLinear(w, b))

    def make(i: int) -> Session:
        s = engine.session("lin")
        s.set("i", i)
        res = s.run(np.full((1, IN), float(i), np.float32))
        np.testing.assert_allclose(res["y"], expected_linear(np.full((1, IN), float(i), np.float32), w, b), rtol=1e-4, atol=1e-4)
        return s

    with ThreadPoolExecutor(8) as pool:
        sessions = list(pool.map(make, range(50)))
    assert len({s.id for s in sessions}) == 50
    assert [s.get("i") for s in sessions] == list(range(50))
    assert len(engine.sessions()) == 50
