"""``Engine``: the model registry, routing with fallback, and the sync / async / batch entry points."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

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

    __slots__ = ("config", "default_outputs", "instances", "name", "stats", "timeout_s", "version")

    def __init__(self, name: str, version: str, config: EngineConfig, timeout_s: float | None) -> None:
        self.name = name
        self.version = version
        self.instances: dict[str, ModelInstance] = {}
        self.stats = StatsCollector(name, version=version)
        self.config = config
        self.timeout_s = timeout_s
        #: The outputs :meth:`Engine.encode` returns when it names none (the package's).
        self.default_outputs: tuple[str, ...] | None = None


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
        default_outputs: Sequence[str] | None = None,
    ) -> ModelInfo:
        """Register ``model`` under ``name`` (hot-swapping an instance of the same backend).

        ``version`` defaults to the name's highest registered version (``"1"`` for a new name).
        The model is warmed up (``Model.warmup`` and one forward pass on dummy inputs built from
        its specs) before it takes traffic. ``text_encoder`` (an object with ``encode(texts)``, see
        ``inferox.core.text``) turns string requests into inputs; it defaults to the model's own
        ``text_encoder`` attribute. ``options`` override the engine's batching, queue and timeout
        settings for this model version. ``default_outputs`` are what :meth:`encode` returns when
        it names no output (a package's, e.g. ``sentence_embedding``). Raises :class:`OutOfMemoryError` when the engine's
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
            if default_outputs is not None:
                entry.default_outputs = tuple(default_outputs) or None
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
        int8: bool = False,
        warmup: bool = True,
        verify: bool = False,
        trust_code: bool = False,
        allow_pickle: bool = False,
        version: str | None = None,
        options: ModelOptions | None = None,
        revision: str | None = None,
    ) -> ModelInfo:
        """Load a model and register it.

        ``package`` is a package folder, an ``inferox.mlpkg.Package``, a Hugging Face /
        sentence-transformers model folder, a ``model.toml`` or a Hub id ``hf://org/name[@rev]``
        (``revision=`` also names the revision); a folder or Hub id is packed into the package
        cache first, as ``inferox pack`` would (:func:`inferox.mlpkg.resolve_source`), and a second
        load reuses that package. ``name`` defaults to the package's model name; ``backend`` to
        the first of ``config.backend_preference`` that implements the architecture, else the
        fastest installed backend for it (:func:`~inferox.engine.choose_backend`; the choice and
        its reason are in ``model_info(name).metadata.extra["backend_choice"]``). ``dtype``
        (``f32``/``f16``/``bf16``) and ``device`` are applied at load; ``threads`` sets the
        backend's intra-op threads (default: the CPUs this process may use); ``int8`` loads an
        int8-quantised model (an onnx-backend option: another backend refuses it with a
        :class:`ConfigError` naming ``int8``); ``verify`` checks the package's checksums first;
        ``allow_pickle`` lets a model folder with pickle weights be packed (converted);
        ``version`` and ``options`` are :meth:`register`'s. The package is composed (instances,
        text encoder with the package's truncation, default outputs) by
        :func:`~inferox.engine.compose_model`, as the server and the CLI do.
        """
        self._check_open()
        holder: list[str] = []

        def check_budget(backend_name: str, nbytes: int) -> None:
            self._check_budget(name or holder[0], backend_name, nbytes)  # refuse before reading the weights

        from inferox import mlpkg

        if isinstance(package, mlpkg.Package):
            pkg = package
        else:
            resolved = mlpkg.resolve_source(package, revision=revision, allow_pickle=allow_pickle)
            if resolved.is_repository:
                raise InvalidInputError(
                    f"{resolved.source} is a model repository (several models): load its packages one by one, or serve it with `inferox serve`",
                    name="package",
                    expected="a package, a model folder, a model.toml or hf://org/name",
                    actual=str(resolved.source),
                )
            pkg = mlpkg.load_package(resolved.path)
        holder.append(pkg.name)
        composed = compose_model(
            pkg, backends=(backend,), preference=self.config.backend_preference, device=device, dtype=dtype, threads=threads, int8=int8,
            trust_code=trust_code, allow_pickle=allow_pickle, verify=verify, options=options, check_budget=check_budget,
        )
        try:
            return self.register(
                name or composed.name, composed.instances[0], version=version, warmup=warmup, text_encoder=composed.text_encoder, options=options,
                default_outputs=composed.default_outputs,
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
        self,
        name: str,
        inputs: Any,
        *,
        backend: str | None = None,
        timeout: float | None = None,
        return_native: bool = False,
        version: str | None = None,
        outputs: Sequence[str] | None = None,
    ) -> InferenceResult:
        """Run one request: ``inputs`` is a dict of named array-likes, a single array-like (for a
        one-input model), or text (``str``, ``list[str]``, ``{"text": ...}``) for a model with a text
        encoder. Returns the outputs as numpy (native tensors with ``return_native=True``): those
        named in ``outputs`` (in that order), else every output.

        Raises :class:`ModelNotFoundError`, :class:`InvalidInputError` (naming the input, expected and
        actual; nothing computed; an unknown name in ``outputs`` names ``outputs``),
        :class:`InferoxTimeoutError`, :class:`QueueFullError`, :class:`BackendError` (the
        framework's exception as ``__cause__``) or :class:`ServiceUnavailableError` after
        :meth:`shutdown`. ``version`` names a model version (default: the highest); ``timeout``
        defaults to the model's, else the engine's.
        """
        entry, deadline, timeout = self._begin(name, version, timeout)

        def attempt(inst: ModelInstance) -> InferenceResult:
            req = self._request(inst, inputs, deadline, timeout, return_native, outputs, inline_ok=True)
            if not inst.config.batching:
                # With a deadline the forward pass runs in its own thread, so the caller can
                # stop waiting at the deadline even if the pass (or the model's lock) hangs.
                inst.run_now([req], detached=deadline is not None)
            return self._wait(req.future, entry.name, deadline, timeout)

        return self._finish(entry, lambda: _drive(self._route(entry, version is not None, backend), attempt))

    async def ainfer(
        self,
        name: str,
        inputs: Any,
        *,
        backend: str | None = None,
        timeout: float | None = None,
        return_native: bool = False,
        version: str | None = None,
        outputs: Sequence[str] | None = None,
    ) -> InferenceResult:
        """:meth:`infer` for asyncio callers: the same batcher, awaited without blocking the loop."""
        entry, deadline, timeout = self._begin(name, version, timeout)

        async def attempt(inst: ModelInstance) -> InferenceResult:
            # asyncio callers never run inline: their thread is the event loop's.
            req = self._request(inst, inputs, deadline, timeout, return_native, outputs, inline_ok=False)
            if not inst.config.batching:
                if deadline is None:
                    await asyncio.to_thread(inst.run_now, [req])
                else:
                    inst.run_now([req], detached=True)
            return await self._await(req.future, entry.name, deadline, timeout)

        try:
            result: InferenceResult = await _adrive(self._route(entry, version is not None, backend), attempt)
        except InferoxError as exc:
            entry.stats.record_error(exc.code, getattr(exc, "backend", None))
            raise
        entry.stats.record_success(result.backend, result.queue_time_s, result.compute_time_s)
        return result

    def infer_batch(
        self,
        name: str,
        items: Sequence[Any],
        *,
        backend: str | None = None,
        timeout: float | None = None,
        version: str | None = None,
        outputs: Sequence[str] | None = None,
    ) -> list[InferenceResult]:
        """Run many items as real batched forward passes; results in the items' order.

        Each item is what :meth:`infer` takes. An item whose inputs all lack the leading batch axis
        (e.g. a ``(4,)`` vector for a ``(?, 4)`` input) is one row, and its outputs come back without
        the batch axis. Items are stacked along axis 0 into passes of at most ``max_batch_size``
        rows, padded on paddable dynamic axes and trimmed back (see ``inferox.engine._batching``).
        Every item is validated before anything runs; a bad item raises
        :class:`InvalidInputError` whose ``index`` names it. An empty list gives ``[]``.
        ``outputs`` selects outputs as in :meth:`infer`: for 1,000 sentences, asking for
        ``["sentence_embedding"]`` keeps 1.5 MB of results instead of every token's hidden state.
        For one matrix of embeddings, see :meth:`encode`.
        """
        self._check_open()
        self._entry(name, version)  # an unknown model is reported before a malformed list
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
            raise InvalidInputError("infer_batch takes a sequence of items", name="items", expected="list", actual=type(items).__name__)
        if len(items) == 0:
            return []
        entry, deadline, timeout = self._begin(name, version, timeout)

        def attempt(inst: ModelInstance) -> list[InferenceResult]:
            wanted = inst.check_outputs(outputs)
            reqs: list[Request] = []
            for i, item in enumerate(items):
                prepared, squeeze = self._prepare(inst, item, index=i, item=True)
                reqs.append(inst.make_request(prepared, deadline=deadline, timeout=timeout, return_native=False, squeeze=squeeze, outputs=wanted))
            inst.run_now(reqs, detached=deadline is not None)
            out: list[InferenceResult] = []
            for i, req in enumerate(reqs):
                try:
                    out.append(self._wait(req.future, entry.name, deadline, timeout))
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

        try:
            results: list[InferenceResult] = _drive(self._route(entry, version is not None, backend), attempt)
        except InferoxError as exc:
            entry.stats.record_error(exc.code, getattr(exc, "backend", None))
            raise
        for r in results:
            entry.stats.record_success(r.backend, r.queue_time_s, r.compute_time_s)
        return results

    def encode(
        self,
        name: str,
        texts: str | Sequence[str],
        *,
        batch_size: int | None = None,
        output: str | None = None,
        show_progress: bool | None = None,
        backend: str | None = None,
        version: str | None = None,
        timeout: float | None = None,
    ) -> np.ndarray:
        """Encode many texts into one matrix: row ``i`` is ``texts[i]``'s ``output``.

        ``output`` defaults to the model's default output (a sentence-transformers package's
        ``sentence_embedding``), else its only output; it must have one fixed-size row per text.
        Texts are sorted by length and sent ``batch_size`` at a time (default: the model's
        ``max_batch_size``), so each forward pass pads little; the rows come back in the input
        order. ``show_progress`` draws a progress bar on stderr (default: when stderr is a
        terminal and there are more than ten batches). ``timeout`` applies to each batch. A single
        string is one text (a one-row matrix).
        """
        self._check_open()
        entry = self._entry(name, version)
        if isinstance(texts, str):
            texts = [texts]
        if isinstance(texts, bytes) or not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
            raise InvalidInputError("encode takes a list of strings", name="texts", expected="list[str]", actual=type(texts).__name__)
        if batch_size is None:
            batch_size = entry.config.max_batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError("batch_size must be a positive integer", name="batch_size", expected=">= 1", actual=repr(batch_size))
        chosen = self._encode_output(entry, output)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # longest first: a too-long batch fails early
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if not batches:
            spec = next(iter(entry.instances.values())).output_specs[chosen]
            return np.zeros((0, *(int(d or 0) for d in spec.shape[1:])), dtype=spec.dtype.to_numpy())
        out: np.ndarray | None = None
        with _progress(len(texts), show_progress if show_progress is not None else len(batches) > 10 and _stderr_is_terminal()) as advance:
            for idx in batches:
                result = self.infer(name, [texts[i] for i in idx], backend=backend, version=version, timeout=timeout, outputs=(chosen,))
                rows = np.asarray(result[chosen])
                if out is None:
                    out = np.empty((len(texts), *rows.shape[1:]), dtype=rows.dtype)
                out[idx] = rows
                advance(len(idx))
        assert out is not None
        return out

    def _encode_output(self, entry: _Entry, output: str | None) -> str:
        """The output :meth:`encode` returns: one fixed-size row per text."""
        inst = next(iter(entry.instances.values()), None)
        if inst is None:  # pragma: no cover - entries without instances are removed under the lock
            raise ModelNotFoundError(entry.name, available=self.list_models())
        specs = inst.output_specs
        if output is None:
            if entry.default_outputs:
                output = entry.default_outputs[0]
            elif len(specs) == 1:
                output = next(iter(specs))
            else:
                raise InvalidInputError(
                    f"model {entry.name!r} has several outputs and no default one: name one with output=", name="output", expected=list(specs), actual=None
                )
        spec = specs.get(output)
        if spec is None:
            raise InvalidInputError(f"model {entry.name!r} has no output {output[:80]!r}", name="output", expected=list(specs), actual=output[:80])
        if not spec.is_batched or any(d is None for d in spec.shape[1:]):
            raise InvalidInputError(
                f"output {output!r} has shape {list(spec.shape)}: encode needs one fixed-size row per text (use infer_batch)",
                name="output",
                expected=[n for n, s in specs.items() if s.is_batched and all(d is not None for d in s.shape[1:])],
                actual=output,
            )
        return output

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

    def _request(
        self, inst: ModelInstance, inputs: Any, deadline: float | None, timeout: float | None, return_native: bool, outputs: Any, *, inline_ok: bool
    ) -> Request:
        """Validate ``inputs`` (and the ``outputs`` asked for) for ``inst`` and build the request.
        With batching on it is handed to the batcher here; otherwise the caller runs it with
        ``inst.run_now``."""
        wanted = None if outputs is None else inst.check_outputs(outputs)
        if not inst.config.batching:
            prepared, _ = self._prepare(inst, inputs)
            return inst.make_request(prepared, deadline=deadline, timeout=timeout, return_native=return_native, outputs=wanted)
        with inst.arriving() as arrival:
            prepared, _ = self._prepare(inst, inputs)
            req = inst.make_request(prepared, deadline=deadline, timeout=timeout, return_native=return_native, outputs=wanted)
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

    def _route(self, entry: _Entry, pinned: bool, backend: str | None) -> Generator[ModelInstance, Any, Any]:
        """The routing policy of every entry point, once: yields the instance to try next and is
        sent the attempt's result (its return value) or thrown the attempt's exception.

        It starts with the named backend, then goes through ``backend_preference``, then any other
        instance (:meth:`_candidates`); an instance hot-swapped or unregistered under the caller
        (``InstanceClosed``) is routed again; a :class:`BackendError` moves on to the next backend;
        the caller's own errors (``_NO_FALLBACK``) and everything else end the request. A request
        pinned to a version stays on it; one naming none follows a reload to the new highest
        (:meth:`_current`). When every instance has failed, the last backend error is the answer.
        A result served by another backend than the one asked for (or the first tried) is counted
        in ``stats.fallbacks``.
        """
        backend = self._backend_name(entry, backend)
        tried: set[str] = set()
        last: BackendError | None = None
        while True:
            inst = self._next_instance(entry, pinned, backend, tried, last)
            try:
                result = yield inst
            except InstanceClosed:
                continue
            except _NO_FALLBACK:
                raise
            except BackendError as exc:
                last = exc
                tried.add(inst.backend_name)
                continue
            for r in result if isinstance(result, list) else (result,):
                if tried or (backend is not None and r.backend != backend):
                    entry.stats.record_fallback(backend, r.backend)
            return result

    def _begin(self, name: str, version: str | None, timeout: float | None) -> tuple[_Entry, float | None, float | None]:
        """A request's entry, deadline and timeout."""
        self._check_open()
        entry = self._entry(name, version)
        timeout = self._timeout(timeout, entry)
        return entry, (None if timeout is None else time.monotonic() + timeout), timeout

    @staticmethod
    def _finish(entry: _Entry, run: Callable[[], InferenceResult]) -> InferenceResult:
        try:
            result = run()
        except InferoxError as exc:
            entry.stats.record_error(exc.code, getattr(exc, "backend", None))
            raise
        entry.stats.record_success(result.backend, result.queue_time_s, result.compute_time_s)
        return result

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


_T = TypeVar("_T")


def _drive(route: Generator[ModelInstance, Any, Any], attempt: Callable[[ModelInstance], _T]) -> _T:
    """Run ``attempt`` on the instances :meth:`Engine._route` picks until one answers."""
    inst = next(route)
    while True:
        try:
            result = attempt(inst)
        except Exception as exc:  # noqa: BLE001 - the route decides: retry elsewhere, or re-raise
            inst = route.throw(exc)
            continue
        try:
            route.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        raise AssertionError("the route yielded after a result")  # pragma: no cover


async def _adrive(route: Generator[ModelInstance, Any, Any], attempt: Callable[[ModelInstance], Awaitable[_T]]) -> _T:
    """:func:`_drive` for an asyncio ``attempt``."""
    inst = next(route)
    while True:
        try:
            result = await attempt(inst)
        except Exception as exc:  # noqa: BLE001 - the route decides: retry elsewhere, or re-raise
            inst = route.throw(exc)
            continue
        try:
            route.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        raise AssertionError("the route yielded after a result")  # pragma: no cover


@contextlib.contextmanager
def _progress(total: int, show: bool) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr while :meth:`Engine.encode` runs (a no-op when ``show`` is false)."""
    if not show:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    # On a terminal the bar redraws in place and goes away; elsewhere (a log) its final state is
    # printed once at the end.
    with Progress(TextColumn("encoding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console, transient=console.is_terminal) as bar:
        task = bar.add_task("encode", total=total)
        yield lambda n: bar.advance(task, n)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
