"""``Engine``: the model registry, routing with fallback, and the sync / async / batch entry points."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

from inferox.core.errors import (
    BackendError,
    InferoxError,
    InferoxTimeoutError,
    InvalidInputError,
    ModelNotFoundError,
    OutOfMemoryError,
    ServiceUnavailableError,
    TypeMismatchError,
)
from inferox.core.model import AnyModel, Model
from inferox.engine._batching import Request
from inferox.engine._config import EngineConfig
from inferox.engine._instance import InstanceClosed, ModelInstance
from inferox.engine._memory import release_memory
from inferox.engine._session import Session
from inferox.engine._stats import StatsCollector
from inferox.engine._types import InferenceResult, ModelInfo, ModelStats

__all__ = ["Engine"]

#: Errors that are the caller's answer: never retried on another backend.
_NO_FALLBACK = (InvalidInputError, InferoxTimeoutError, ServiceUnavailableError)


class _Entry:
    """A model name: its instances by backend (replaced copy-on-write) and its statistics."""

    __slots__ = ("instances", "name", "stats")

    def __init__(self, name: str) -> None:
        self.name = name
        self.instances: dict[str, ModelInstance] = {}
        self.stats = StatsCollector(name)


#: Below this many freed bytes a full ``gc.collect`` (a few hundred ms with torch and jax loaded)
#: is not worth it: reference counting already freed an acyclic model.
_RELEASE_THRESHOLD = 1 << 20
_UNKNOWN = _RELEASE_THRESHOLD


def _release_after(freed: int) -> None:
    if (freed or _UNKNOWN) >= _RELEASE_THRESHOLD:
        release_memory()


def _text_inputs(inputs: Any, input_names: Mapping[str, Any]) -> list[str] | None:
    """The strings in a text request (``"s"``, ``["s", …]`` or ``{"text": …}``), else ``None``."""
    if isinstance(inputs, str):
        return [inputs]
    if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(t, str) for t in inputs):
        return list(inputs)
    if isinstance(inputs, Mapping) and "text" in inputs and "text" not in input_names:
        if len(inputs) != 1:
            extra = sorted(k for k in inputs if k != "text")
            raise InvalidInputError(f"unknown input {extra[0]!r} next to 'text'", name=extra[0], expected=["text"], actual=sorted(inputs))
        text = inputs["text"]
        if isinstance(text, str):
            return [text]
        if isinstance(text, (list, tuple)) and text and all(isinstance(t, str) for t in text):
            return list(text)
        raise InvalidInputError("'text' must be a string or a non-empty list of strings", name="text", expected="str | list[str]", actual=type(text).__name__)
    return None


def _ndim(value: Any) -> int | None:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return len(shape)
    try:
        return int(np.ndim(value))
    except Exception:  # noqa: BLE001 - ragged data: let validation report it
        return None


class Engine:
    """Holds models of any backend and serves requests to them.

    A model *name* may have one instance per backend; ``register`` / ``load`` the same (name,
    backend) again hot-swaps that instance: requests already queued or running finish on the old
    one, new ones go to the new one, and none fail. ``infer`` validates inputs against the model's
    specs before any compute, routes to the named backend (falling back in
    ``config.backend_preference`` order, then to any other instance, when that backend is missing
    or raises a :class:`BackendError`), and — with batching on — goes through the instance's
    dynamic batcher. Use it as a (async) context manager to shut it down on exit.
    """

    def __init__(self, config: EngineConfig | None = None) -> None:
        if config is not None and not isinstance(config, EngineConfig):
            raise TypeMismatchError("Engine(config=...) takes an EngineConfig", expected="EngineConfig", actual=type(config).__name__)
        self.config = config or EngineConfig()
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.RLock()
        self._closed = False
        self._sessions: dict[str, Session] = {}

    # -- registry -----------------------------------------------------------------------------------
    def register(self, name: str, model: Model | AnyModel, *, warmup: bool = True, text_encoder: Any = None) -> ModelInfo:
        """Register ``model`` under ``name`` (hot-swapping an instance of the same backend).

        The model is warmed up (``Model.warmup`` and one forward pass on dummy inputs built from
        its specs) before it takes traffic. ``text_encoder`` (an object with ``encode(texts)``, see
        ``inferox.core.text``) turns string requests into inputs; it defaults to the model's own
        ``text_encoder`` attribute. Raises :class:`OutOfMemoryError` when the engine's
        ``memory_budget_bytes`` cannot hold it; the error's ``budget``, ``required`` and ``in_use``
        say by how much.
        """
        self._check_open()
        if not isinstance(name, str) or not name.strip():
            raise InvalidInputError("a model name must be a non-empty string", name="name", expected="str", actual=repr(name))
        any_model = model if isinstance(model, AnyModel) else AnyModel(model)
        backend = any_model.backend_name
        self._check_budget(name, backend, any_model.memory_requirements())
        if warmup:
            self._warmup(name, any_model)
        with self._lock:
            self._check_open()
            self._check_budget(name, backend, any_model.memory_requirements())
            entry = self._entries.get(name)
            if entry is None:
                entry = _Entry(name)
            instance = ModelInstance(name, any_model, self.config, entry.stats)
            if text_encoder is not None:
                instance.text_encoder = text_encoder
            instance.start()
            old = entry.instances.get(backend)
            # Copy-on-write: readers hold a snapshot dict and never see a half-updated one.
            entry.instances = {**entry.instances, backend: instance}
            self._entries[name] = entry
        if old is not None:
            old.close(drain=True)  # callers routed to it before the swap finish there
            _release_after(old.memory_bytes)
            del old
        return self.model_info(name)

    def load(
        self,
        package: Any,
        *,
        name: str | None = None,
        backend: str | None = None,
        device: str | None = None,
        dtype: Any = None,
        threads: int | None = None,
        warmup: bool = True,
        verify: bool = False,
        trust_code: bool = False,
    ) -> ModelInfo:
        """Load a model package (a path or an ``inferox.mlpkg.Package``) and register it.

        ``name`` defaults to the package's model name; ``backend`` to the first backend in
        ``config.backend_preference`` that implements the architecture (else mlpkg's choice);
        ``dtype`` (``f32``/``f16``/``bf16``) and ``device`` are applied at load; ``threads`` sets the
        backend's intra-op threads; ``verify`` checks the package's checksums first.
        """
        self._check_open()
        from inferox import mlpkg  # imported lazily: the engine imports without mlpkg's dependencies

        if isinstance(package, mlpkg.Package):
            pkg = mlpkg.load_package(package.path, verify=True) if verify else package
        else:
            pkg = mlpkg.load_package(package, verify=verify)
        if backend is None and self.config.backend_preference:
            from inferox.core.plugins import get_registry

            able = get_registry().backends_for(pkg.architecture)
            backend = next((b for b in self.config.backend_preference if b in able), None)
        target = name or pkg.name
        estimate = self._package_bytes(pkg)
        if estimate and backend is not None:
            self._check_budget(target, backend, estimate)  # refuse before reading the weights
        options: dict[str, Any] = {} if threads is None else {"threads": threads}
        any_model = mlpkg.load_model(pkg, backend=backend, device=device, dtype=dtype, trust_code=trust_code, **options)
        encoder = None if getattr(any_model.model, "text_encoder", None) is not None else self._package_text_encoder(pkg)
        try:
            return self.register(target, any_model, warmup=warmup, text_encoder=encoder)
        except BaseException:
            with contextlib.suppress(Exception):
                any_model.model.close()
            raise

    @staticmethod
    def _package_text_encoder(pkg: Any) -> Any:
        """A :class:`~inferox.core.text.TextEncoder` over the package's ``tokenizer.json``, if it has one."""
        path = getattr(pkg, "tokenizer_path", None)
        if path is None:
            return None
        from inferox.core.text import TextEncoder

        config = getattr(pkg, "config", None)
        limit = config.get("max_position_embeddings") if isinstance(config, Mapping) else None
        return TextEncoder.from_file(path, max_length=getattr(pkg, "max_seq_length", None), limit=limit if isinstance(limit, int) else None)

    @staticmethod
    def _package_bytes(pkg: Any) -> int:
        path = getattr(pkg, "weights_path", None)
        if path is None:
            return 0
        try:
            return int(os.path.getsize(path))
        except (OSError, TypeError):
            return 0

    def unregister(self, name: str, *, backend: str | None = None) -> None:
        """Remove ``name`` (every instance, or only the one on ``backend``) and free its memory.

        Requests already queued on a removed instance finish first; new ones raise
        :class:`ModelNotFoundError`.
        """
        with self._lock:
            entry = self._entry(name)
            if backend is None:
                removed = list(entry.instances.values())
                del self._entries[name]
            else:
                key = backend.lower()
                inst = entry.instances.get(key)
                if inst is None:
                    raise ModelNotFoundError(name, backend=backend, available=[f"{name}@{b}" for b in entry.instances])
                removed = [inst]
                entry.instances = {b: i for b, i in entry.instances.items() if b != key}
                if not entry.instances:
                    del self._entries[name]
        freed = 0
        for inst in removed:
            inst.close(drain=True)
            freed += inst.memory_bytes or _UNKNOWN
        del removed
        _release_after(freed)

    def list_models(self) -> list[str]:
        """Registered model names, sorted."""
        return sorted(self._entries)

    def model_info(self, name: str) -> ModelInfo:
        """Metadata, instances (backend, device, ready, memory), specs and live statistics."""
        entry = self._entry(name)
        instances = list(entry.instances.values())
        if not instances:  # pragma: no cover - entries without instances are removed under the lock
            raise ModelNotFoundError(name, available=self.list_models())
        first = instances[0]
        model = first.model
        if model is None:  # swapped out between the snapshot and now: take the fresh one
            return self.model_info(name)
        return ModelInfo(
            name=name,
            metadata=model.metadata,
            instances=[i.info() for i in instances],
            input_specs=list(model.input_specs),
            output_specs=list(model.output_specs),
            stats=entry.stats.snapshot(),
            has_text_encoder=any(i.text_encoder is not None for i in instances),
        )

    def get_model(self, name: str, *, backend: str | None = None) -> AnyModel:
        """The registered ``AnyModel`` (for ``downcast`` to the concrete backend model)."""
        entry = self._entry(name)
        insts = entry.instances
        inst = insts.get(backend.lower()) if backend else next(iter(insts.values()), None)
        if inst is None or inst.model is None:
            raise ModelNotFoundError(name, backend=backend, available=list(insts))
        return inst.model

    def stats(self, name: str) -> ModelStats:
        """Request and error counts, queue / compute time percentiles and batch-size histogram."""
        return self._entry(name).stats.snapshot()

    def is_ready(self, name: str | None = None) -> bool:
        """Whether the engine takes requests (and, with ``name``, whether that model has a ready instance)."""
        if self._closed:
            return False
        if name is None:
            return all(i.ready for e in list(self._entries.values()) for i in e.instances.values())
        entry = self._entries.get(name)
        return entry is not None and any(i.ready for i in entry.instances.values())

    # -- inference ----------------------------------------------------------------------------------
    def infer(self, name: str, inputs: Any, *, backend: str | None = None, timeout: float | None = None, return_native: bool = False) -> InferenceResult:
        """Run one request: ``inputs`` is a dict of named array-likes, a single array-like (for a
        one-input model), or text (``str``, ``list[str]``, ``{"text": ...}``) for a model with a text
        encoder. Returns the outputs as numpy (native tensors with ``return_native=True``).

        Raises :class:`ModelNotFoundError`, :class:`InvalidInputError` (naming the input, expected and
        actual; nothing computed), :class:`InferoxTimeoutError`, :class:`QueueFullError`,
        :class:`BackendError` (the framework's exception as ``__cause__``) or
        :class:`ServiceUnavailableError` after :meth:`shutdown`.
        """
        self._check_open()
        entry = self._entry(name)
        timeout = self._timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            result = self._dispatch(entry, inputs, backend, deadline, timeout, return_native)
        except InferoxError as exc:
            entry.stats.record_error(exc.code, getattr(exc, "backend", None))
            raise
        entry.stats.record_success(result.backend, result.queue_time_s, result.compute_time_s)
        return result

    async def ainfer(self, name: str, inputs: Any, *, backend: str | None = None, timeout: float | None = None, return_native: bool = False) -> InferenceResult:
        """:meth:`infer` for asyncio callers: the same batcher, awaited without blocking the loop."""
        self._check_open()
        entry = self._entry(name)
        timeout = self._timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            result = await self._adispatch(entry, inputs, backend, deadline, timeout, return_native)
        except InferoxError as exc:
            entry.stats.record_error(exc.code, getattr(exc, "backend", None))
            raise
        entry.stats.record_success(result.backend, result.queue_time_s, result.compute_time_s)
        return result

    def infer_batch(self, name: str, items: Sequence[Any], *, backend: str | None = None, timeout: float | None = None) -> list[InferenceResult]:
        """Run many items as real batched forward passes; results in the items' order.

        Each item is what :meth:`infer` takes. An item whose inputs all lack the leading batch axis
        (e.g. a ``(4,)`` vector for a ``(?, 4)`` input) is one row, and its outputs come back without
        the batch axis. Items are stacked along axis 0 into passes of at most ``max_batch_size``
        rows, padded on paddable dynamic axes and trimmed back (see ``inferox.engine._batching``).
        Every item is validated before anything runs; a bad item raises
        :class:`InvalidInputError` whose ``index`` names it. An empty list gives ``[]``.
        """
        self._check_open()
        entry = self._entry(name)
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
            raise InvalidInputError("infer_batch takes a sequence of items", name="items", expected="list", actual=type(items).__name__)
        if len(items) == 0:
            return []
        timeout = self._timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            results = self._dispatch_batch(entry, items, backend, deadline, timeout)
        except InferoxError as exc:
            entry.stats.record_error(exc.code, getattr(exc, "backend", None))
            raise
        for r in results:
            entry.stats.record_success(r.backend, r.queue_time_s, r.compute_time_s)
        return results

    def session(self, name: str, *, backend: str | None = None) -> Session:
        """A new :class:`Session` on model ``name`` (preferring ``backend``)."""
        self._check_open()
        self._entry(name)
        sess = Session(self, name, backend=backend)
        with self._lock:
            for sid in [sid for sid, s in self._sessions.items() if s.expired]:
                del self._sessions[sid]
            self._sessions[sess.id] = sess
        return sess

    def sessions(self) -> list[Session]:
        """Live (unexpired, unclosed) sessions."""
        return [s for s in list(self._sessions.values()) if not s.expired]

    def _forget_session(self, sess: Session) -> None:
        with self._lock:
            self._sessions.pop(sess.id, None)

    # -- lifecycle ----------------------------------------------------------------------------------
    def shutdown(self, *, drain: bool = True, timeout: float | None = None) -> None:
        """Refuse new requests (:class:`ServiceUnavailableError`), finish (``drain``) or refuse queued
        ones, stop the workers and release every model. Safe to call twice."""
        with self._lock:
            self._closed = True
            entries = list(self._entries.values())
            self._entries = {}
            self._sessions.clear()
        freed = 0
        for entry in entries:
            for inst in entry.instances.values():
                inst.close(drain=drain, timeout=timeout)
                freed += inst.memory_bytes or _UNKNOWN
        del entries
        if freed:
            _release_after(freed)

    close = shutdown

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.shutdown)

    def __repr__(self) -> str:
        return f"<Engine models={self.list_models()} batching={self.config.batching}>"

    # -- internals ----------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ServiceUnavailableError("the engine is shut down")

    def _entry(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            raise ModelNotFoundError(name, available=self.list_models())
        return entry

    def _timeout(self, timeout: float | None) -> float | None:
        if timeout is None:
            return self.config.default_timeout_s
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise InvalidInputError("timeout must be a positive number of seconds", name="timeout", expected="> 0", actual=timeout)
        return float(timeout)

    def _check_budget(self, name: str, backend: str, required: int) -> None:
        budget = self.config.memory_budget_bytes
        if budget is None:
            return
        in_use = sum(
            i.memory_bytes for e in list(self._entries.values()) for b, i in e.instances.items() if not (e.name == name and b == backend)
        )
        if in_use + required > budget:
            err = OutOfMemoryError(
                f"loading {name!r} on {backend} needs {required} bytes but the engine's memory budget is {budget} bytes "
                f"with {in_use} in use ({budget - in_use} free)",
                backend=backend,
                model=name,
            )
            err.budget, err.required, err.in_use = budget, required, in_use  # type: ignore[attr-defined]
            err.details.update(budget=budget, required=required, in_use=in_use)
            raise err

    def _warmup(self, name: str, model: AnyModel) -> None:
        with contextlib.suppress(NotImplementedError):
            model.model.warmup()
        dummy: dict[str, Any] = {}
        for spec in model.input_specs:
            if spec.optional:
                continue
            shape = tuple(1 if d is None else d for d in spec.shape)
            dummy[spec.name] = np.zeros(shape, dtype=spec.dtype.to_numpy())
        try:
            model.forward_any(dummy)
        except InvalidInputError:
            pass  # the model refuses all-zero inputs (its own check_inputs): its warmup() must do

    def _candidates(self, entry: _Entry, backend: str | None, tried: set[str]) -> list[ModelInstance]:
        insts = entry.instances
        order: list[str] = []
        if backend:
            order.append(backend.lower())
        order.extend(self.config.backend_preference)
        order.extend(insts)
        seen: set[str] = set()
        out: list[ModelInstance] = []
        for b in order:
            if b in seen or b in tried:
                continue
            seen.add(b)
            inst = insts.get(b)
            if inst is not None:
                out.append(inst)
        return out

    def _current(self, entry: _Entry) -> _Entry:
        self._check_open()  # a caller re-routed after shutdown() gets UNAVAILABLE, not NOT_FOUND
        if self._entries.get(entry.name) is not entry:
            raise ModelNotFoundError(entry.name, available=self.list_models())
        return entry

    def _prepare(self, inst: ModelInstance, inputs: Any, *, index: int | None = None, item: bool = False) -> tuple[dict[str, Any], bool]:
        """Validate one request (or ``infer_batch`` item) for ``inst``: text → ids, then the specs."""
        texts = _text_inputs(inputs, inst.input_specs)
        if texts is not None:
            encoder = inst.text_encoder
            if encoder is None:
                raise InvalidInputError(
                    f"model {inst.name!r} has no text encoder: send tensors", name="text", expected=sorted(inst.input_specs), actual="text", index=index
                )
            encoded = encoder.encode(texts)
            inputs = {k: v for k, v in encoded.items() if k in inst.input_specs}
        squeeze = False
        if item:
            inputs, squeeze = self._unsqueeze(inst, inputs)
        return inst.prepare(inputs, index=index), squeeze

    @staticmethod
    def _unsqueeze(inst: ModelInstance, item: Any) -> tuple[Any, bool]:
        specs = inst.input_specs
        if not isinstance(item, Mapping):
            required = [s for s in specs.values() if not s.optional]
            if len(required) != 1:
                return item, False
            mapping: Mapping[str, Any] = {required[0].name: item}
        else:
            mapping = item
        if not mapping:
            return item, False
        for key, value in mapping.items():
            spec = specs.get(key)
            if spec is None or not spec.is_batched or value is None or _ndim(value) != spec.ndim - 1:
                return item, False
        return {k: (v[None] if hasattr(v, "shape") else [v]) for k, v in mapping.items()}, True

    def _next_instance(self, entry: _Entry, backend: str | None, tried: set[str], last: BackendError | None) -> ModelInstance:
        """The instance to try next (preferred backend first, then the fallback order). When every
        one has been tried, the last backend error is the caller's answer (or, with no instance at
        all, :class:`ModelNotFoundError`)."""
        cands = self._candidates(self._current(entry), backend, tried)
        if cands:
            return cands[0]
        if last is not None:
            raise last
        raise ModelNotFoundError(entry.name, backend=backend, available=self.list_models())

    def _request(self, inst: ModelInstance, inputs: Any, deadline: float | None, timeout: float | None, return_native: bool, *, inline_ok: bool) -> Request:
        """Validate ``inputs`` for ``inst`` and build the request. With batching on it is handed to
        the batcher here; otherwise the caller runs it with ``inst.run_now``."""
        if not self.config.batching:
            prepared, _ = self._prepare(inst, inputs)
            return inst.make_request(prepared, deadline=deadline, timeout=timeout, return_native=return_native)
        with inst.arriving() as arrival:
            prepared, _ = self._prepare(inst, inputs)
            req = inst.make_request(prepared, deadline=deadline, timeout=timeout, return_native=return_native)
            inst.submit(req, arrival, inline_ok=inline_ok)
        return req

    def _backend_name(self, entry: _Entry, backend: Any) -> str | None:
        """The backend a request names, lower-cased; a name that is neither an installed backend
        nor one this model is registered on is the caller's mistake, not a reason to fall back."""
        if backend is None:
            return None
        if not isinstance(backend, str) or not backend.strip():
            raise InvalidInputError("backend must be a backend name", name="backend", expected="str", actual=repr(backend)[:80])
        name = backend.strip().lower()
        if name in entry.instances:
            return name
        from inferox.core.plugins import get_registry

        known = set(get_registry().backend_names()) | {b for e in list(self._entries.values()) for b in e.instances}
        if name not in known:
            raise InvalidInputError(
                f"unknown backend {backend[:80]!r}: the installed backends are {', '.join(sorted(known)) or 'none'}",
                name="backend",
                expected=sorted(known),
                actual=backend[:80],
            )
        return name

    def _served(self, entry: _Entry, backend: str | None, tried: set[str], result: InferenceResult) -> InferenceResult:
        if tried or (backend is not None and result.backend != backend):
            entry.stats.record_fallback(backend, result.backend)
        return result

    def _dispatch(self, entry: _Entry, inputs: Any, backend: str | None, deadline: float | None, timeout: float | None, return_native: bool) -> InferenceResult:
        backend = self._backend_name(entry, backend)
        tried: set[str] = set()
        last: BackendError | None = None
        while True:
            inst = self._next_instance(entry, backend, tried, last)
            try:
                req = self._request(inst, inputs, deadline, timeout, return_native, inline_ok=True)
                if not self.config.batching:
                    # With a deadline the forward pass runs in its own thread, so the caller can
                    # stop waiting at the deadline even if the pass (or the model's lock) hangs.
                    inst.run_now([req], detached=deadline is not None)
                return self._served(entry, backend, tried, self._wait(req.future, entry.name, deadline, timeout))
            except InstanceClosed:
                continue  # hot-swapped or unregistered under us: route again
            except _NO_FALLBACK:
                raise
            except BackendError as exc:
                last = exc
                tried.add(inst.backend_name)

    async def _adispatch(
        self, entry: _Entry, inputs: Any, backend: str | None, deadline: float | None, timeout: float | None, return_native: bool
    ) -> InferenceResult:
        backend = self._backend_name(entry, backend)
        tried: set[str] = set()
        last: BackendError | None = None
        while True:
            inst = self._next_instance(entry, backend, tried, last)
            try:
                # asyncio callers never run inline: their thread is the event loop's.
                req = self._request(inst, inputs, deadline, timeout, return_native, inline_ok=False)
                if not self.config.batching:
                    if deadline is None:
                        await asyncio.to_thread(inst.run_now, [req])
                    else:
                        inst.run_now([req], detached=True)
                return self._served(entry, backend, tried, await self._await(req.future, entry.name, deadline, timeout))
            except InstanceClosed:
                continue
            except _NO_FALLBACK:
                raise
            except BackendError as exc:
                last = exc
                tried.add(inst.backend_name)

    def _dispatch_batch(self, entry: _Entry, items: Sequence[Any], backend: str | None, deadline: float | None, timeout: float | None) -> list[InferenceResult]:
        backend = self._backend_name(entry, backend)
        tried: set[str] = set()
        last: BackendError | None = None
        while True:
            inst = self._next_instance(entry, backend, tried, last)
            try:
                reqs: list[Request] = []
                for i, item in enumerate(items):
                    prepared, squeeze = self._prepare(inst, item, index=i, item=True)
                    reqs.append(inst.make_request(prepared, deadline=deadline, timeout=timeout, return_native=False, squeeze=squeeze))
                inst.run_now(reqs, detached=deadline is not None)
                out: list[InferenceResult] = []
                for i, req in enumerate(reqs):
                    try:
                        out.append(self._served(entry, backend, tried, self._wait(req.future, entry.name, deadline, timeout)))
                    except InferoxTimeoutError:
                        for rest in reqs[i:]:
                            rest.future.cancel()  # not started yet: skipped; running: dropped
                        raise
                    except InferoxError as exc:
                        if isinstance(exc, InvalidInputError) and exc.index is None:
                            exc.index = i
                            exc.details["index"] = i
                        elif not isinstance(exc, InvalidInputError):
                            exc.details.setdefault("index", i)
                        raise
                return out
            except InstanceClosed:
                continue
            except _NO_FALLBACK:
                raise
            except BackendError as exc:
                last = exc
                tried.add(inst.backend_name)

    @staticmethod
    def _expired(name: str, timeout: float | None) -> InferoxTimeoutError:
        return InferoxTimeoutError(f"request to {name!r} timed out after {timeout}s", timeout=timeout, model=name)

    def _wait(self, fut: Future[Any], name: str, deadline: float | None, timeout: float | None) -> InferenceResult:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return fut.result(timeout=remaining)  # type: ignore[no-any-return]
        except InferoxError:
            raise
        except TimeoutError:
            fut.cancel()  # still queued: the worker skips it; already running: its result is dropped
            raise self._expired(name, timeout) from None

    async def _await(self, fut: Future[Any], name: str, deadline: float | None, timeout: float | None) -> InferenceResult:
        wrapped = asyncio.wrap_future(fut)
        if deadline is None:
            return await wrapped  # type: ignore[no-any-return]
        try:
            return await asyncio.wait_for(wrapped, max(0.0, deadline - time.monotonic()))  # type: ignore[no-any-return]
        except InferoxError:
            raise
        except TimeoutError:
            fut.cancel()
            raise self._expired(name, timeout) from None
