"""``Engine``: the model registry, routing with fallback, and the sync / async / batch entry points."""

from __future__ import annotations

import asyncio
import contextlib
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
from inferox.engine._compose import compose_model
from inferox.engine._config import EngineConfig, ModelOptions
from inferox.engine._instance import InstanceClosed, ModelInstance
from inferox.engine._memory import release_memory
from inferox.engine._session import Session
from inferox.engine._stats import StatsCollector
from inferox.engine._types import InferenceResult, ModelInfo, ModelStats

__all__ = ["Engine"]

#: Errors that are the caller's answer: never retried on another backend.
_NO_FALLBACK = (InvalidInputError, InferoxTimeoutError, ServiceUnavailableError)


class _Entry:
    """A model version: its instances by backend (replaced copy-on-write), its statistics and its
    settings (the engine's, with the model's :class:`ModelOptions` applied)."""

    __slots__ = ("config", "instances", "name", "stats", "timeout_s", "version")

    def __init__(self, name: str, version: str, config: EngineConfig, timeout_s: float | None) -> None:
        self.name = name
        self.version = version
        self.instances: dict[str, ModelInstance] = {}
        self.stats = StatsCollector(name, version=version)
        self.config = config
        self.timeout_s = timeout_s


#: The version a model registered without one gets.
DEFAULT_VERSION = "1"


def version_key(version: str) -> tuple[int, int, str]:
    """Sort key of versions: numeric ones as numbers, above them the others by name."""
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


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

    A model *name* has one or more *versions* (strings; numeric ones order as numbers, and a
    request naming no version goes to the highest), and each version may have one instance per
    backend; ``register`` / ``load`` the same (name, version, backend) again hot-swaps that
    instance: the new one is warmed up beside the old, then requests already queued or running
    finish on the old one, new ones go to the new one, and none fail. Per-model
    :class:`ModelOptions` (batch size, batching delay, queue bound, timeout) override the engine's
    settings for that model. ``infer`` validates inputs against the model's
    specs before any compute, routes to the named backend (falling back in
    ``config.backend_preference`` order, then to any other instance, when that backend is missing
    or raises a :class:`BackendError`), and — with batching on — goes through the instance's
    dynamic batcher. Use it as a (async) context manager to shut it down on exit.
    """

    def __init__(self, config: EngineConfig | None = None) -> None:
        if config is not None and not isinstance(config, EngineConfig):
            raise TypeMismatchError("Engine(config=...) takes an EngineConfig", expected="EngineConfig", actual=type(config).__name__)
        self.config = config or EngineConfig()
        #: name → version → entry: the registry.
        self._versions: dict[str, dict[str, _Entry]] = {}
        #: name → the entry of its highest version (what unversioned requests get; kept in step
        #: with ``_versions`` under the lock, so the request path does no sorting).
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.RLock()
        self._closed = False
        self._sessions: dict[str, Session] = {}

    # -- registry -----------------------------------------------------------------------------------
    def register(
        self,
        name: str,
        model: Model | AnyModel,
        *,
        version: str | None = None,
        warmup: bool = True,
        text_encoder: Any = None,
        options: ModelOptions | None = None,
    ) -> ModelInfo:
        """Register ``model`` under ``name`` (hot-swapping an instance of the same backend).

        ``version`` defaults to the name's highest registered version (``"1"`` for a new name).
        The model is warmed up (``Model.warmup`` and one forward pass on dummy inputs built from
        its specs) before it takes traffic. ``text_encoder`` (an object with ``encode(texts)``, see
        ``inferox.core.text``) turns string requests into inputs; it defaults to the model's own
        ``text_encoder`` attribute. ``options`` override the engine's batching, queue and timeout
        settings for this model version. Raises :class:`OutOfMemoryError` when the engine's
        ``memory_budget_bytes`` cannot hold it — a hot swap counts the instance it replaces too,
        since both are loaded until the swap — and the error's ``budget``, ``required`` and
        ``in_use`` say by how much; what was registered keeps serving.
        """
        self._check_open()
        if not isinstance(name, str) or not name.strip():
            raise InvalidInputError("a model name must be a non-empty string", name="name", expected="str", actual=repr(name))
        if version is not None and (not isinstance(version, str) or not version.strip()):
            raise InvalidInputError("a model version must be a non-empty string", name="version", expected="str", actual=repr(version))
        if options is not None and not isinstance(options, ModelOptions):
            raise TypeMismatchError("register(options=...) takes a ModelOptions", expected="ModelOptions", actual=type(options).__name__)
        any_model = model if isinstance(model, AnyModel) else AnyModel(model)
        backend = any_model.backend_name
        self._check_budget(name, backend, any_model.memory_requirements())
        if warmup:
            self._warmup(name, any_model)
        with self._lock:
            self._check_open()
            self._check_budget(name, backend, any_model.memory_requirements())
            versions = self._versions.get(name, {})
            if version is None:
                version = self._latest(versions) if versions else DEFAULT_VERSION
            entry = versions.get(version)
            if entry is None or options is not None:
                opts = options or ModelOptions()
                config, timeout = opts.apply(self.config), opts.timeout_s
                if entry is None:
                    entry = _Entry(name, version, config, timeout)
                else:  # new options apply to the instances registered from now on
                    entry.config, entry.timeout_s = config, timeout
            instance = ModelInstance(name, any_model, entry.config, entry.stats, version=version)
            if text_encoder is not None:
                instance.text_encoder = text_encoder
            instance.start()
            old = entry.instances.get(backend)
            # Copy-on-write: readers hold a snapshot dict and never see a half-updated one.
            entry.instances = {**entry.instances, backend: instance}
            self._versions[name] = {**versions, version: entry}
            self._entries[name] = self._versions[name][self._latest(self._versions[name])]
        if old is not None:
            old.close(drain=True)  # callers routed to it before the swap finish there
            _release_after(old.memory_bytes)
            del old
        return self.model_info(name, version=version)

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
        version: str | None = None,
        options: ModelOptions | None = None,
    ) -> ModelInfo:
        """Load a model package (a path or an ``inferox.mlpkg.Package``) and register it.

        ``name`` defaults to the package's model name; ``backend`` to the first backend in
        ``config.backend_preference`` that implements the architecture (else mlpkg's choice);
        ``dtype`` (``f32``/``f16``/``bf16``) and ``device`` are applied at load; ``threads`` sets the
        backend's intra-op threads; ``verify`` checks the package's checksums first; ``version``
        and ``options`` are :meth:`register`'s. The package is composed (instances, text encoder
        with the package's truncation) by :func:`~inferox.engine.compose_model`, as the server
        and the CLI do.
        """
        self._check_open()
        holder: list[str] = []

        def check_budget(backend_name: str, nbytes: int) -> None:
            self._check_budget(name or holder[0], backend_name, nbytes)  # refuse before reading the weights

        from inferox import mlpkg

        pkg = package if isinstance(package, mlpkg.Package) else mlpkg.load_package(package)
        holder.append(pkg.name)
        composed = compose_model(
            pkg, backends=(backend,), preference=self.config.backend_preference, device=device, dtype=dtype,
            threads=threads, trust_code=trust_code, verify=verify, options=options, check_budget=check_budget,
        )
        try:
            return self.register(
                name or composed.name, composed.instances[0], version=version, warmup=warmup, text_encoder=composed.text_encoder, options=options
            )
        except BaseException:
            composed.close()
            raise

    def unregister(self, name: str, *, backend: str | None = None, version: str | None = None) -> None:
        """Remove ``name`` (every version, or only ``version``; every instance, or only the one
        on ``backend``) and free its memory.

        Requests already queued on a removed instance finish first; new ones raise
        :class:`ModelNotFoundError` (or, naming no version, go to the highest version left).
        """
        with self._lock:
            entries = [self._entry(name, version)] if version is not None else list(self._versions_of(name).values())
            removed: list[ModelInstance] = []
            for entry in entries:
                if backend is None:
                    removed += entry.instances.values()
                    entry.instances = {}
                else:
                    key = backend.lower()
                    inst = entry.instances.get(key)
                    if inst is None:
                        raise ModelNotFoundError(name, backend=backend, available=[f"{name}@{b}" for b in entry.instances])
                    removed.append(inst)
                    entry.instances = {b: i for b, i in entry.instances.items() if b != key}
            left = {v: e for v, e in self._versions[name].items() if e.instances}
            if left:
                self._versions[name] = left
                self._entries[name] = left[self._latest(left)]
            else:
                del self._versions[name]
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

    def versions(self, name: str) -> list[str]:
        """The registered versions of ``name``, lowest first (:class:`ModelNotFoundError` if none)."""
        return sorted(self._versions_of(name), key=version_key)

    def model_info(self, name: str, *, version: str | None = None) -> ModelInfo:
        """Metadata, version, instances (backend, device, ready, memory), specs and live statistics."""
        entry = self._entry(name, version)
        instances = list(entry.instances.values())
        if not instances:  # pragma: no cover - entries without instances are removed under the lock
            raise ModelNotFoundError(name, available=self.list_models())
        first = instances[0]
        model = first.model
        if model is None:  # swapped out between the snapshot and now: take the fresh one
            return self.model_info(name, version=version)
        return ModelInfo(
            name=name,
            metadata=model.metadata,
            instances=[i.info() for i in instances],
            input_specs=list(model.input_specs),
            output_specs=list(model.output_specs),
            stats=entry.stats.snapshot(),
            has_text_encoder=any(i.text_encoder is not None for i in instances),
            version=entry.version,
            max_batch_size=entry.config.max_batch_size if entry.config.batching and first.batchable else 0,
        )

    def get_model(self, name: str, *, backend: str | None = None, version: str | None = None) -> AnyModel:
        """The registered ``AnyModel`` (for ``downcast`` to the concrete backend model)."""
        entry = self._entry(name, version)
        insts = entry.instances
        inst = insts.get(backend.lower()) if backend else next(iter(insts.values()), None)
        if inst is None or inst.model is None:
            raise ModelNotFoundError(name, backend=backend, available=list(insts))
        return inst.model

    def stats(self, name: str, *, version: str | None = None) -> ModelStats:
        """Request and error counts, queue / compute time percentiles and batch-size histogram of
        one model version (the highest when ``version`` is not given)."""
        return self._entry(name, version).stats.snapshot()

    def is_ready(self, name: str | None = None, *, version: str | None = None) -> bool:
        """Whether the engine takes requests (and, with ``name``, whether that model — or that
        version of it — has a ready instance)."""
        if self._closed:
            return False
        if name is None:
            return all(i.ready for vs in list(self._versions.values()) for e in vs.values() for i in e.instances.values())
        entry = self._entries.get(name) if version is None else self._versions.get(name, {}).get(version)
        return entry is not None and any(i.ready for i in entry.instances.values())

    # -- inference ----------------------------------------------------------------------------------
    def infer(
        self, name: str, inputs: Any, *, backend: str | None = None, timeout: float | None = None, return_native: bool = False, version: str | None = None
    ) -> InferenceResult:
        """Run one request: ``inputs`` is a dict of named array-likes, a single array-like (for a
        one-input model), or text (``str``, ``list[str]``, ``{"text": ...}``) for a model with a text
        encoder. Returns the outputs as numpy (native tensors with ``return_native=True``).

        Raises :class:`ModelNotFoundError`, :class:`InvalidInputError` (naming the input, expected and
        actual; nothing computed), :class:`InferoxTimeoutError`, :class:`QueueFullError`,
        :class:`BackendError` (the framework's exception as ``__cause__``) or
        :class:`ServiceUnavailableError` after :meth:`shutdown`. ``version`` names a model
        version (default: the highest); ``timeout`` defaults to the model's, else the engine's.
        """
        self._check_open()
        entry = self._entry(name, version)
        timeout = self._timeout(timeout, entry)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            result = self._dispatch(entry, version is not None, inputs, backend, deadline, timeout, return_native)
        except InferoxError as exc:
            entry.stats.record_error(exc.code, getattr(exc, "backend", None))
            raise
        entry.stats.record_success(result.backend, result.queue_time_s, result.compute_time_s)
        return result

    async def ainfer(
        self, name: str, inputs: Any, *, backend: str | None = None, timeout: float | None = None, return_native: bool = False, version: str | None = None
    ) -> InferenceResult:
        """:meth:`infer` for asyncio callers: the same batcher, awaited without blocking the loop."""
        self._check_open()
        entry = self._entry(name, version)
        timeout = self._timeout(timeout, entry)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            result = await self._adispatch(entry, version is not None, inputs, backend, deadline, timeout, return_native)
        except InferoxError as exc:
            entry.stats.record_error(exc.code, getattr(exc, "backend", None))
            raise
        entry.stats.record_success(result.backend, result.queue_time_s, result.compute_time_s)
        return result

    def infer_batch(
        self, name: str, items: Sequence[Any], *, backend: str | None = None, timeout: float | None = None, version: str | None = None
    ) -> list[InferenceResult]:
        """Run many items as real batched forward passes; results in the items' order.

        Each item is what :meth:`infer` takes. An item whose inputs all lack the leading batch axis
        (e.g. a ``(4,)`` vector for a ``(?, 4)`` input) is one row, and its outputs come back without
        the batch axis. Items are stacked along axis 0 into passes of at most ``max_batch_size``
        rows, padded on paddable dynamic axes and trimmed back (see ``inferox.engine._batching``).
        Every item is validated before anything runs; a bad item raises
        :class:`InvalidInputError` whose ``index`` names it. An empty list gives ``[]``.
        """
        self._check_open()
        entry = self._entry(name, version)
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
            raise InvalidInputError("infer_batch takes a sequence of items", name="items", expected="list", actual=type(items).__name__)
        if len(items) == 0:
            return []
        timeout = self._timeout(timeout, entry)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            results = self._dispatch_batch(entry, version is not None, items, backend, deadline, timeout)
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
            entries = [e for vs in self._versions.values() for e in vs.values()]
            self._entries = {}
            self._versions = {}
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

    def _entry(self, name: str, version: str | None = None) -> _Entry:
        if version is None:
            entry = self._entries.get(name)
            if entry is None:
                raise ModelNotFoundError(name, available=self.list_models())
            return entry
        versions = self._versions_of(name)
        entry = versions.get(version)
        if entry is None:
            raise ModelNotFoundError(f"{name}/versions/{version}", available=[f"{name}/versions/{v}" for v in sorted(versions, key=version_key)])
        return entry

    def _versions_of(self, name: str) -> dict[str, _Entry]:
        versions = self._versions.get(name)
        if versions is None:
            raise ModelNotFoundError(name, available=self.list_models())
        return versions

    @staticmethod
    def _latest(versions: Mapping[str, _Entry]) -> str:
        return max(versions, key=version_key)

    def _timeout(self, timeout: float | None, entry: _Entry | None = None) -> float | None:
        if timeout is None:
            if entry is not None and entry.timeout_s is not None:
                return entry.timeout_s
            return self.config.default_timeout_s
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise InvalidInputError("timeout must be a positive number of seconds", name="timeout", expected="> 0", actual=timeout)
        return float(timeout)

    def check_budget(self, name: str, backend: str, required: int) -> None:
        """Raise :class:`OutOfMemoryError` when ``required`` more bytes for ``name`` on ``backend``
        would exceed ``memory_budget_bytes`` (what :func:`compose_model` asks before reading weights)."""
        self._check_budget(name, backend, required)

    def _check_budget(self, name: str, backend: str, required: int) -> None:
        budget = self.config.memory_budget_bytes
        if budget is None:
            return
        # Every loaded instance counts, the one a hot swap would replace included: both are loaded
        # (the new one warming up) until the swap, so refusing here keeps the old one serving.
        in_use = sum(i.memory_bytes for vs in list(self._versions.values()) for e in vs.values() for i in e.instances.values())
        if in_use + required > budget:
            err = OutOfMemoryError(
                f"loading {name!r} on {backend} needs {required} bytes but the engine's memory budget is {budget} bytes "
                f"with {in_use} in use ({budget - in_use} free; an instance being replaced stays loaded until the swap)",
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

    def _current(self, entry: _Entry, pinned: bool) -> _Entry:
        """``entry`` if it is still registered; for a request that named no version, the highest
        version now (a reload to a new version retired the one it was routed to)."""
        self._check_open()  # a caller re-routed after shutdown() gets UNAVAILABLE, not NOT_FOUND
        if self._versions.get(entry.name, {}).get(entry.version) is entry:
            return entry
        if not pinned:
            latest = self._entries.get(entry.name)
            if latest is not None:
                return latest
        raise ModelNotFoundError(entry.name if not pinned else f"{entry.name}/versions/{entry.version}", available=self.list_models())

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

    def _next_instance(self, entry: _Entry, pinned: bool, backend: str | None, tried: set[str], last: BackendError | None) -> ModelInstance:
        """The instance to try next (preferred backend first, then the fallback order). When every
        one has been tried, the last backend error is the caller's answer (or, with no instance at
        all, :class:`ModelNotFoundError`)."""
        cands = self._candidates(self._current(entry, pinned), backend, tried)
        if cands:
            return cands[0]
        if last is not None:
            raise last
        raise ModelNotFoundError(entry.name, backend=backend, available=self.list_models())

    def _request(self, inst: ModelInstance, inputs: Any, deadline: float | None, timeout: float | None, return_native: bool, *, inline_ok: bool) -> Request:
        """Validate ``inputs`` for ``inst`` and build the request. With batching on it is handed to
        the batcher here; otherwise the caller runs it with ``inst.run_now``."""
        if not inst.config.batching:
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

    def _dispatch(
        self, entry: _Entry, pinned: bool, inputs: Any, backend: str | None, deadline: float | None, timeout: float | None, return_native: bool
    ) -> InferenceResult:
        backend = self._backend_name(entry, backend)
        tried: set[str] = set()
        last: BackendError | None = None
        while True:
            inst = self._next_instance(entry, pinned, backend, tried, last)
            try:
                req = self._request(inst, inputs, deadline, timeout, return_native, inline_ok=True)
                if not inst.config.batching:
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
        self, entry: _Entry, pinned: bool, inputs: Any, backend: str | None, deadline: float | None, timeout: float | None, return_native: bool
    ) -> InferenceResult:
        backend = self._backend_name(entry, backend)
        tried: set[str] = set()
        last: BackendError | None = None
        while True:
            inst = self._next_instance(entry, pinned, backend, tried, last)
            try:
                # asyncio callers never run inline: their thread is the event loop's.
                req = self._request(inst, inputs, deadline, timeout, return_native, inline_ok=False)
                if not inst.config.batching:
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

    def _dispatch_batch(
        self, entry: _Entry, pinned: bool, items: Sequence[Any], backend: str | None, deadline: float | None, timeout: float | None
    ) -> list[InferenceResult]:
        backend = self._backend_name(entry, backend)
        tried: set[str] = set()
        last: BackendError | None = None
        while True:
            inst = self._next_instance(entry, pinned, backend, tried, last)
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
