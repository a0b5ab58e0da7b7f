"""``Session``: a conversation with one model — runs, a batch size, and typed private state."""

from __future__ import annotations

import copy
import pickle
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

import numpy as np

from inferox.core.errors import ConfigError, InvalidInputError, SessionExpiredError, StateTypeError
from inferox.engine._types import InferenceResult

if TYPE_CHECKING:
    from inferox.engine._engine import Engine

__all__ = ["Session"]

T = TypeVar("T")
_MISSING: Any = object()


def _sizeof(value: Any) -> int:
    """Approximate bytes a state value holds (arrays by their buffers, the rest as pickled)."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    try:
        return len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # noqa: BLE001 - unpicklable objects are measured shallowly
        return sys.getsizeof(value)


#: Values that cannot change after they are stored: kept as they are.
_IMMUTABLE = (str, bytes, int, float, complex, bool, type(None), frozenset, range)


def _frozen(value: Any) -> bool:
    if isinstance(value, _IMMUTABLE):
        return True
    if isinstance(value, tuple):
        return all(_frozen(v) for v in value)
    return False


def _private_copy(value: Any, *, key: str) -> Any:
    """A copy of ``value`` that no one else holds a reference to.

    The session's caps are measured when a value is stored; a value the caller (or a reader) still
    holds could grow afterwards — a list appended to, an array written in place — beyond every cap
    while the recorded size stays the same. So the store keeps its own deep copy, and :meth:`Session.get`
    hands out copies too. Arrays are copied buffer and all.
    """
    if _frozen(value):
        return value
    if isinstance(value, np.ndarray):
        return value.copy()
    try:
        return copy.deepcopy(value)
    except Exception as exc:  # an object that refuses copying cannot be capped
        raise InvalidInputError(
            f"session state {key!r}: a {type(value).__qualname__} cannot be copied ({type(exc).__name__}: {exc}); store plain data",
            name=key,
            expected="a copyable value",
            actual=type(value).__qualname__,
        ) from exc


class Session:
    """A session on an engine: created by :meth:`Engine.session`.

    * :meth:`run` infers on the session's model (or another one), :meth:`run_batch` sends items in
      chunks of :attr:`batch_size` through ``infer_batch``.
    * State is a private key → value store: :meth:`set`, :meth:`get` (with a default and an optional
      expected type — a stored value of another type raises :class:`StateTypeError`), :meth:`delete`,
      :meth:`keys`, :meth:`clear`. Sessions never see each other's state.
    * A session idle longer than the engine's ``session_ttl_s`` expires: its state is dropped and
      any further use raises :class:`SessionExpiredError` (as does use after :meth:`close`).
    * Stored state is capped by ``session_max_keys`` and ``session_max_state_bytes``; a ``set`` that
      would exceed a cap raises :class:`InvalidInputError` naming the key and the limit. The store
      keeps its own copy of each value and :meth:`get` / :meth:`state` return copies, so a value
      cannot grow past the caps after it was measured.
    """

    def __init__(self, engine: Engine, model: str, *, backend: str | None = None) -> None:
        self.engine = engine
        self.model = model
        self.backend = backend
        self.id = uuid.uuid4().hex
        self.created = time.monotonic()
        self._last_used = self.created
        self._batch_size = engine.config.max_batch_size
        self._state: dict[str, Any] = {}
        self._sizes: dict[str, int] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.runs = 0

    # -- lifecycle ----------------------------------------------------------------------------------
    @property
    def ttl(self) -> float | None:
        return self.engine.config.session_ttl_s

    @property
    def expired(self) -> bool:
        ttl = self.ttl
        return self._closed or (ttl is not None and time.monotonic() - self._last_used > ttl)

    def _touch(self) -> None:
        with self._lock:
            if self.expired:
                self._closed = True
                self._state.clear()
                self._sizes.clear()
                why = "was closed" if self.ttl is None or time.monotonic() - self._last_used <= self.ttl else f"expired after {self.ttl}s idle"
                raise SessionExpiredError(f"session {self.id} {why}", session=self.id, ttl=self.ttl)
            self._last_used = time.monotonic()

    def close(self) -> None:
        """Drop the state; further use raises :class:`SessionExpiredError`."""
        with self._lock:
            self._closed = True
            self._state.clear()
            self._sizes.clear()
        self.engine._forget_session(self)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- inference ----------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self._batch_size

    @batch_size.setter
    def batch_size(self, size: int) -> None:
        self.set_batch_size(size)

    def set_batch_size(self, size: int) -> None:
        """Items per ``infer_batch`` call in :meth:`run_batch` (an integer ≥ 1)."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"must be an integer ≥ 1, got {size!r}", field="batch_size", value=size)
        self._batch_size = size

    def run(self, inputs: Any, *, model: str | None = None, backend: str | None = None, timeout: float | None = None, return_native: bool = False) -> InferenceResult:
        """``engine.infer`` on the session's model (or ``model``), preferring the session's backend."""
        self._touch()
        result = self.engine.infer(model or self.model, inputs, backend=backend or self.backend, timeout=timeout, return_native=return_native)
        self.runs += 1
        return result

    async def arun(self, inputs: Any, *, model: str | None = None, backend: str | None = None, timeout: float | None = None) -> InferenceResult:
        """Async :meth:`run`."""
        self._touch()
        result = await self.engine.ainfer(model or self.model, inputs, backend=backend or self.backend, timeout=timeout)
        self.runs += 1
        return result

    def run_batch(self, items: Sequence[Any], *, model: str | None = None, backend: str | None = None, timeout: float | None = None) -> list[InferenceResult]:
        """``engine.infer_batch`` over ``items`` in chunks of :attr:`batch_size`; results in order."""
        self._touch()
        out: list[InferenceResult] = []
        for start in range(0, len(items), self._batch_size):
            chunk = items[start : start + self._batch_size]
            try:
                out.extend(self.engine.infer_batch(model or self.model, chunk, backend=backend or self.backend, timeout=timeout))
            except InvalidInputError as exc:
                if exc.index is not None:
                    exc.index += start
                    exc.details["index"] = exc.index
                raise
        self.runs += 1
        return out

    # -- state --------------------------------------------------------------------------------------
    def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` (replacing any previous value)."""
        if not isinstance(key, str) or not key:
            raise InvalidInputError("state keys are non-empty strings", name="key", expected="str", actual=type(key).__name__)
        self._touch()
        value = _private_copy(value, key=key)
        size = _sizeof(value)
        cfg = self.engine.config
        with self._lock:
            if cfg.session_max_keys is not None and key not in self._state and len(self._state) >= cfg.session_max_keys:
                raise InvalidInputError(
                    "session state is full", name=key, expected=f"at most {cfg.session_max_keys} keys", actual=f"{len(self._state) + 1} keys"
                )
            total = sum(self._sizes.values()) - self._sizes.get(key, 0) + size
            if cfg.session_max_state_bytes is not None and total > cfg.session_max_state_bytes:
                raise InvalidInputError(
                    "session state would exceed its size limit", name=key, expected=f"at most {cfg.session_max_state_bytes} bytes", actual=f"{total} bytes"
                )
            self._state[key] = value
            self._sizes[key] = size

    #: The original engine's name.
    store_state = set

    @overload
    def get(self, key: str) -> Any: ...
    @overload
    def get(self, key: str, default: Any = ..., *, type: type[T]) -> T: ...
    @overload
    def get(self, key: str, default: Any = ...) -> Any: ...

    def get(self, key: str, default: Any = None, *, type: Any = None) -> Any:
        """The value stored under ``key``, or ``default`` when there is none.

        With ``type``, a stored value that is not an instance of it raises :class:`StateTypeError`
        naming the expected and the actual type.
        """
        self._touch()
        with self._lock:
            value = self._state.get(key, _MISSING)
        if value is _MISSING:
            return default
        if type is not None and not isinstance(value, type):
            raise StateTypeError(
                f"session state {key!r} holds a {value.__class__.__qualname__}, not a {getattr(type, '__qualname__', type)}",
                expected=getattr(type, "__qualname__", str(type)),
                actual=value.__class__.__qualname__,
            )
        return _private_copy(value, key=key)

    def get_state(self, key: str, type: Any = None, default: Any = None) -> Any:
        """The original engine's name for :meth:`get` (type before default)."""
        return self.get(key, default, type=type)

    def delete(self, key: str) -> bool:
        """Remove ``key``; whether it was there."""
        self._touch()
        with self._lock:
            self._sizes.pop(key, None)
            return self._state.pop(key, _MISSING) is not _MISSING

    def keys(self) -> list[str]:
        self._touch()
        with self._lock:
            return list(self._state)

    def clear(self) -> None:
        self._touch()
        with self._lock:
            self._state.clear()
            self._sizes.clear()

    @property
    def state_bytes(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    def state(self) -> Mapping[str, Any]:
        """A snapshot copy of the state (values copied: changing them changes nothing stored)."""
        self._touch()
        with self._lock:
            items = list(self._state.items())
        return {k: _private_copy(v, key=k) for k, v in items}

    def __repr__(self) -> str:
        return f"<Session {self.id[:8]} model={self.model!r} keys={len(self._state)}>"
