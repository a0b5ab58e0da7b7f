"""The data plane: everything a server does with a request, whatever the transport.

A transport (V2 over HTTP, V2 over gRPC, OpenAI's embeddings API, TEI's routes, a Ray replica)
reads a request off the wire into a typed request, describes where it came from with a
:class:`~._observe.RequestContext`, calls the data plane, and writes the typed answer — or the
typed error, through the one status table of ``_errors`` — back in its own wire format. The data
plane does the rest, once, the same way for every transport:

    typed request → authorisation → admission (model, version, per-request limits, outputs)
      → text → token ids (on a pool, under the request's deadline)
      → forward passes (split by the model's batch limits, grouped by length)
      → output selection → typed response
    and, however it ends: one access-log line, the metrics, the span.

It also owns the served models' lifecycle (load, hot reload, versions, unload), metadata and
statistics, on one :class:`~inferox.engine.Engine` that registers every model version served. It
imports no web framework.

API (``dp = DataPlane(config=ServerConfig(...), repository=...)``; ``ctx`` is a
:class:`RequestContext` — pass one from every transport; without it nothing is logged or
checked for a token, as for a library call)::

    # inference
    await dp.infer(name, InferRequest, version=None, ctx=ctx) -> InferResponse     # V2 (REST, gRPC)
    await dp.embed(name, texts | token_ids, version=None, ctx=ctx) -> EmbedResponse # OpenAI, TEI /embed
    await dp.rerank(name, query, documents, raw_scores=False, ctx=ctx) -> RerankResponse # /v1/rerank, TEI /rerank
    await dp.classify(name, texts | pairs, raw_scores=False, ctx=ctx) -> ClassifyResponse # /v1/classify, TEI /predict
    await dp.predict_text(name, texts=… | token_ids=… | pairs=…, outputs=[…], ctx=ctx) -> TextResponse
        # the text path every text API is an adapter over
    dp.task(name) -> "embed" | "classify" | "rerank" | None                          # what a model is for
    dp.text_models(output=None) / dp.embedding_size(name)                          # what serves text

    # health, metadata, statistics (plain JSON-able dicts, V2 / Triton shapes)
    dp.health(ctx=…) / dp.readiness(ctx=…) / dp.model_readiness(name, version, ctx=…)
    dp.server_metadata(ctx=…) / dp.model_metadata(name, version, ctx=…) / dp.model_config(…)
    dp.statistics(name, version, ctx=…) / dp.metrics_text(ctx=…)

    # repository and lifecycle
    await dp.repository_index(ready_only=False, ctx=…) / dp.load(name, ctx=…) / dp.unload(name, ctx=…)
    await dp.startup(packages=…, models=…) / dp.drain(timeout) / dp.shutdown()

Every method raises only :class:`~inferox.core.errors.InferoxError` subclasses (an unexpected
exception becomes ``INTERNAL``, logged with its traceback once); ``_errors.error_status`` says
how each is answered on HTTP and on gRPC.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from inferox.core import __version__ as core_version
from inferox.core.errors import InferoxError, InferoxTimeoutError, InvalidInputError, ModelNotFoundError, ServiceUnavailableError
from inferox.core.model import AnyModel, Model
from inferox.engine._compose import compose_model
from inferox.engine._config import EngineConfig, ModelOptions, batch_tokens_for
from inferox.engine._engine import Engine, version_key
from inferox.engine._types import InferenceResult
from inferox.engine.server._config import ModelState, ServerConfig
from inferox.engine.server._errors import ClientDisconnectedError, RequestLimitError, UnauthorizedError, bounded, error_status
from inferox.engine.server._metrics import UNKNOWN_MODEL, Metrics
from inferox.engine.server._observe import ACCESS_LOGGER, Call, RequestContext, access_line
from inferox.engine.server._passes import Pass, assemble, plan_passes, take_rows
from inferox.engine.server._protocol import BYTES, InferRequest, RequestedOutput, encode_outputs, parse_infer_request
from inferox.engine.server._repository import ModelRepository, ServingSettings, check_model_name

__all__ = [
    "EXTENSIONS",
    "DataPlane",
    "ClassifyResponse",
    "EmbedResponse",
    "InferResponse",
    "OutputTensor",
    "RequestContext",
    "RerankResponse",
    "ServedModel",
    "ServedVersion",
    "TextResponse",
    "server_metadata",
]

log = logging.getLogger("inferox.server")
access_log = logging.getLogger(ACCESS_LOGGER)

_T = TypeVar("_T")

#: The V2 protocol extensions every Inferox server speaks.
EXTENSIONS = ("binary_tensor_data", "model_repository", "statistics", "model_configuration")

#: Who may call: ``open`` always, ``inference`` with the token when ``protect_all``, ``repository``
#: with the token whenever one is set.
OPEN, INFERENCE, REPOSITORY = "open", "inference", "repository"

#: The output OpenAI's and TEI's embedding routes return (sentence-transformers' name, kept by packages).
EMBEDDING_OUTPUT = "sentence_embedding"

#: What a served text model is for: the ``task`` a package records for its head (``model_info.json``),
#: else ``embed`` for a model with an embedding output. Each text API serves one task.
EMBED, CLASSIFY, RERANK = "embed", "classify", "rerank"


def _server_version() -> str:
    try:
        from importlib.metadata import version

        return version("inferox-engine")
    except Exception:  # noqa: BLE001 - an uninstalled source tree still answers
        return "0.0.0"


def server_metadata(parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The V2 server metadata (``GET /v2``) of an Inferox server."""
    out: dict[str, Any] = {"name": "inferox", "version": _server_version(), "extensions": list(EXTENSIONS), "core_version": core_version}
    if parameters:
        out["parameters"] = dict(parameters)
    return out


def _reason(exc: BaseException) -> str:
    return f"{exc.code}: {exc.message}" if isinstance(exc, InferoxError) else f"{type(exc).__name__}: {exc}"


def _options(settings: ServingSettings, default_timeout: float | None) -> ModelOptions:
    return ModelOptions(
        max_batch_size=settings.max_batch_size,
        max_batch_tokens=settings.max_batch_tokens,
        max_queue_delay_ms=settings.batch_delay_ms,
        max_queue_size=settings.max_queue_size,
        timeout_s=settings.timeout_s if settings.timeout_s is not None else default_timeout,
    )


@dataclass
class ServedVersion:
    """One version of a served model: where it came from, how it is served, and its extras."""

    name: str
    version: str
    path: Path | None
    settings: ServingSettings
    text_encoder: Any = None
    #: Outputs a request gets when it names none (``None``: every output).
    default_outputs: tuple[str, ...] | None = None
    backends: tuple[str, ...] = ()
    #: The device of its (first) instance: a pass's default token budget depends on it.
    device: str = "cpu"
    #: The model's input and output names, read once at registration.
    input_names: frozenset[str] = frozenset()
    output_names: tuple[str, ...] = ()
    #: Inputs padded on a dynamic axis (``input_ids`` …): a pass of short rows is cut to its length.
    paddable: tuple[str, ...] = ()
    #: Whether every input and output has a batch axis (only then is a request split into passes).
    batchable: bool = False
    #: What a request naming no outputs gets (read once at registration).
    default_selection: tuple[RequestedOutput, ...] = ()
    #: The model's task head as its package records it (``{"task": "classify", "labels": [...], ...}``),
    #: ``None`` for a model without one (read once at registration; see :meth:`DataPlane.task`).
    task: Mapping[str, Any] | None = None
    #: Data-plane requests admitted to this version and not finished (a reload retiring it waits for them).
    in_flight: int = 0
    #: Triton's statistics of this version: requests answered, rows they held, failures, their time.
    answered: int = 0
    answered_rows: int = 0
    answered_ns: int = 0
    failures: int = 0
    idle: asyncio.Event | None = field(default=None, repr=False)

    def retire_when_idle(self) -> asyncio.Event:
        """An event set once no admitted request is left on this version."""
        if self.idle is None:
            self.idle = asyncio.Event()
        if self.in_flight == 0:
            self.idle.set()
        return self.idle


@dataclass
class ServedModel:
    """A model name the server answers for: its versions, its state and the reason for it."""

    name: str
    engine: Engine
    versions: dict[str, ServedVersion] = field(default_factory=dict)
    state: str = ModelState.LOADING
    reason: str = ""

    @property
    def latest(self) -> ServedVersion:
        return self.versions[max(self.versions, key=version_key)]

    @property
    def in_flight(self) -> int:
        """Requests admitted to one of its versions and not finished."""
        return sum(v.in_flight for v in self.versions.values())

    @property
    def version(self) -> str:
        """The highest served version (what unversioned requests get)."""
        return self.latest.version

    @property
    def primary(self) -> AnyModel:
        """The model answering unversioned requests that name no backend."""
        return self.engine.get_model(self.name)


@dataclass(slots=True)
class OutputTensor:
    """One output of a response: its name, its array, and whether the client asked for it as
    binary data (``None``: the request's default)."""

    name: str
    data: np.ndarray
    binary: bool | None = None


@dataclass(slots=True)
class InferResponse:
    """A V2 inference answer, for any transport to write: the version that answered, the request's
    id, the selected outputs in the order asked, and response parameters (the backend)."""

    model_name: str
    model_version: str
    id: str | None
    outputs: list[OutputTensor]
    parameters: dict[str, Any]
    binary_default: bool = False


@dataclass(frozen=True)
class TextResponse:
    """The answer of :meth:`DataPlane.predict_text`: each output with one row per input, in the
    inputs' order, and the tokens the model processed (special tokens included, after truncation)."""

    model_name: str
    model_version: str
    outputs: dict[str, np.ndarray]
    tokens: int
    backend: str | None = None


@dataclass(frozen=True)
class RerankResponse:
    """The answer of :meth:`DataPlane.rerank`: one relevance score per document, in the documents'
    order (the transports sort), and the tokens the model processed."""

    model_name: str
    model_version: str
    scores: np.ndarray
    tokens: int


@dataclass(frozen=True)
class ClassifyResponse:
    """The answer of :meth:`DataPlane.classify`: ``scores[i, j]`` is input ``i``'s score for
    ``labels[j]`` (probabilities, or logits with ``raw_scores``), and the tokens processed."""

    model_name: str
    model_version: str
    scores: np.ndarray
    labels: tuple[str, ...]
    tokens: int


@dataclass(frozen=True)
class EmbedResponse:
    """The answer of :meth:`DataPlane.embed`: one embedding per input, in order, and the tokens used."""

    model_name: str
    model_version: str
    embeddings: np.ndarray
    tokens: int


#: Text requests up to this many bytes are tokenised on the event loop, longer ones on the data
#: plane's tokenisation pool. A short sentence costs ~25 us of tokeniser CPU, far less than the
#: hand-off to a thread and back (two GIL hand-overs and futex wake-ups: on a loaded 2-core
#: machine the hand-off cost ~20 % of req/s at 64 clients, benchmarks/results/server_vs_mlserver.md);
#: 256 bytes (~0.1 ms) is about one request's own event-loop work, so nothing longer holds the loop up.
TOKENISE_INLINE_BYTES = 256
#: Threads of the tokenisation pool. The Rust tokenizer lets go of the GIL while it works, so a
#: long text on one thread never holds up a short one on another.
TOKENISE_THREADS = max(2, min(4, os.cpu_count() or 2))
#: Passes of one request in the engine's queue at once: the next is queued while one runs (the
#: batcher never idles between them), and other requests interleave with a long one.
PASS_WINDOW = 2


def _text_bytes(req: InferRequest) -> int:
    """Total bytes of a request's BYTES (text) inputs."""
    return sum(len(x) for t in req.inputs if t.datatype == BYTES for x in t.data.reshape(-1))


def runtime_parameters(info: Any) -> dict[str, Any]:
    """How the model's first instance runs, as flat V2 metadata parameters: the backend choice
    and its reason (``compose_model`` records them) and the instance's thread pools."""
    out: dict[str, Any] = {}
    choice = info.metadata.extra.get("backend_choice")
    if isinstance(choice, Mapping):
        out["backend_choice"] = str(choice.get("how", ""))
        out["backend_choice_reason"] = str(choice.get("reason", ""))
    threads = info.instances[0].threads if info.instances else {}
    for key, value in threads.items():
        if isinstance(value, (bool, int, float, str)):
            out[f"threads_{key}"] = value
    return out


def _rows(req: InferRequest) -> int:
    """The request's rows: the longest first axis of its inputs (a text input: its texts)."""
    rows = 1
    for t in req.inputs:
        n = int(t.data.size) if t.datatype == BYTES else (int(t.shape[0]) if t.shape else 1)
        rows = max(rows, n)
    return rows


class DataPlane:
    """One request lifecycle for every transport, the served models and their metadata (see the module doc)."""

    def __init__(self, *, config: ServerConfig | None = None, repository: str | Path | ModelRepository | None = None, engine: Engine | None = None) -> None:
        self.config = config or ServerConfig()
        self.repository = repository if isinstance(repository, ModelRepository) or repository is None else ModelRepository(repository)
        self.engine = engine or Engine(self.config.engine_config or EngineConfig())
        self.models: dict[str, ServedModel] = {}
        #: Models whose last load failed: name → "CODE: message" (shown by the repository index).
        self.failed: dict[str, str] = {}
        #: Models the server is meant to serve (strict readiness waits for each).
        self.expected: set[str] = set()
        self.metrics = Metrics(models_loaded=lambda: sum(1 for m in self.models.values() if m.state == ModelState.READY))
        self.startup_done = False
        #: The error that ended start-up (``exit_on_error``), else ``None``.
        self.startup_error: BaseException | None = None
        self.shutting_down = False
        from inferox.engine.server._tracing import tracing_from_env

        #: OpenTelemetry tracing (``None``: off; see ``_tracing``).
        self.tracing = tracing_from_env()
        self._lock: asyncio.Lock | None = None
        #: The tokenisation pool (see TOKENISE_THREADS). Tokenising stays per request and before
        #: queueing: each request reaches the engine with its own token length.
        self._tokeniser = concurrent.futures.ThreadPoolExecutor(TOKENISE_THREADS, thread_name_prefix=f"inferox-tokenise-{id(self):x}")
        self._locks: dict[str, asyncio.Lock] = {}
        #: Loads waiting on their worker thread (see :meth:`_load_step` and :meth:`abandon_loads`).
        self._loads: set[asyncio.Future[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Inference requests in progress (a graceful stop waits for them), under ``_count_lock``:
        #: a Ray replica may call from several threads.
        self._in_flight = 0
        self._count_lock = threading.Lock()
        self._drained = threading.Event()
        self._drained.set()

    # -- the request lifecycle --------------------------------------------------------------------------
    def call(self, ctx: RequestContext | None, op: str, *, model: str | None = None, version: str | None = None, scope: str = INFERENCE, inference: bool = False) -> Call:
        """Open the record of one request (a context manager; see :class:`~._observe.Call`),
        checking its token first. Transports call the data plane's methods, which open it; a
        transport with a route of its own (a health probe, say) may open one itself."""
        ctx = ctx if ctx is not None else RequestContext("python", authorization=None)
        call = ctx.open_call.join(op, model=model, version=version, inference=inference) if ctx.open_call is not None else Call(self, ctx, op, model=model, version=version, inference=inference)
        if scope != OPEN and ctx.protocol != "python" and not self._authorised(ctx, scope):
            with call:  # the refusal is logged (and counted) like any other answer
                raise UnauthorizedError()
        return call

    def _authorised(self, ctx: RequestContext, scope: str) -> bool:
        token = self.config.token
        if not token or (scope == INFERENCE and not self.config.protect_all):
            return True
        from inferox.engine.server._auth import bearer_ok

        return bearer_ok(ctx.authorization, token)

    def _request_started(self) -> None:
        with self._count_lock:
            self._in_flight += 1
            self._drained.clear()
        self.metrics.request_started()

    def _request_finished(self) -> None:
        with self._count_lock:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._drained.set()
        self.metrics.request_finished()

    def _finish(self, call: Call, error: InferoxError | None) -> None:
        """Record a finished call: metrics (inference calls), the version's statistics, the span, the access log."""
        duration = time.perf_counter() - call.ctx.started
        if call.inference:
            self._record_metrics(call, error, duration)
        span = call.span
        record = None
        if self.config.access_log and call.ctx.protocol != "python" and access_log.isEnabledFor(logging.INFO):
            record = call.record(error)
        if span is not None:
            trace_id = self.tracing.trace_id(span) if self.tracing is not None else None
            if record is not None:
                record["trace_id"] = trace_id
            status = 200 if error is None else error_status(error).http
            span.set_attribute("http.response.status_code", status)
            if call.model is not None:
                span.set_attribute("inferox.model", call.model)
            if call.version:
                span.set_attribute("inferox.version", call.version)
            if error is not None:
                span.set_attribute("inferox.error_code", error.code)
                if status >= 500 and error.code != "CLIENT_DISCONNECTED":
                    from opentelemetry.trace import Status, StatusCode

                    span.set_status(Status(StatusCode.ERROR, error.message[:200]))
            span.end()
        elif record is not None and call.ctx.traceparent:
            from inferox.engine.server._tracing import parse_traceparent

            record["trace_id"] = parse_traceparent(call.ctx.traceparent)
        if record is None:
            return
        slot = call.ctx.log_slot
        if slot is not None:  # the transport logs it once the response is written
            slot[:] = [record]
            return
        access_log.log(logging.ERROR if record["level"] == "error" else logging.INFO, access_line(record))

    def _record_metrics(self, call: Call, error: InferoxError | None, duration: float) -> None:
        """Metrics labels come only from served models: another name counts as ``_unknown``, a
        version the request was not admitted to as ``""`` (a request admitted to a version a
        reload retires meanwhile still counts under that version)."""
        model = self.models.get(call.model) if call.model is not None else None
        if model is None:
            name, version = UNKNOWN_MODEL, ""
        else:
            name, version = model.name, (call.version or "") if call.admitted is not None else ""
        protocol = call.ctx.protocol
        if error is None:
            self.metrics.record_success(
                name, duration=duration, queue=call.queue_s, compute=call.compute_s, batch_size=call.batch_size, version=version, protocol=protocol
            )
        else:
            self.metrics.record_failure(name, error.code, duration=duration, version=version, protocol=protocol)
            if call.admitted is not None:
                call.admitted.failures += 1

    async def _watched(self, ctx: RequestContext, work: Awaitable[_T]) -> _T:
        """``work``, abandoned (and cancelled) when the client goes away first."""
        if ctx.disconnected is None:
            return await work
        task = asyncio.ensure_future(work)
        watch = asyncio.ensure_future(ctx.disconnected())
        try:
            await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
            task.cancel()
            log.info("client disconnected; dropped its request")
            raise ClientDisconnectedError()
        finally:
            watch.cancel()
            if not task.done():
                task.cancel()

    # -- readiness ------------------------------------------------------------------------------------
    @property
    def live(self) -> bool:
        return not self.engine.closed

    def is_ready(self) -> bool:
        """Strict: start-up is over, every model meant to be served is READY, not stopping.
        Without ``strict_readiness``: start-up is over and the server is not stopping."""
        if not self.startup_done or self.shutting_down:
            return False
        if not self.config.strict_readiness:
            return True
        return all(name in self.models and self.models[name].state == ModelState.READY for name in self.expected) and all(
            m.state == ModelState.READY for m in self.models.values()
        )

    def model_ready(self, name: str, version: str | None = None) -> bool:
        served = self.served(name, version, ready=False)
        model = self.models[served.name]
        return model.state == ModelState.READY and not self.shutting_down and self.engine.is_ready(name, version=version)

    def health(self, *, ctx: RequestContext | None = None) -> bool:
        """Liveness (``/v2/health/live``, ``ServerLive``)."""
        with self.call(ctx, "live"):
            return self.live

    def readiness(self, *, ctx: RequestContext | None = None) -> bool:
        """Readiness (``/v2/health/ready``, ``ServerReady``)."""
        with self.call(ctx, "ready"):
            return self.is_ready()

    def model_readiness(self, name: str, version: str | None = None, *, ctx: RequestContext | None = None) -> bool:
        """A model's readiness (MODEL_NOT_FOUND when it is not served)."""
        with self.call(ctx, "model_ready", model=name, version=version):
            return self.model_ready(name, version)

    # -- lifecycle ------------------------------------------------------------------------------------
    def lock(self, name: str | None = None) -> asyncio.Lock:
        """The lock of model ``name``'s lifecycle (loads, reloads, unloads of that name run one at
        a time); other models never wait for it, so a load that is slow — or stuck reading a
        file — cannot hold up the repository's other loads, unloads or readiness. Without a
        name: one lock for the whole data plane."""
        if name is None:
            if self._lock is None:
                self._lock = asyncio.Lock()
            return self._lock
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    def _settings(self, settings: ServingSettings | None) -> ServingSettings:
        return (settings or ServingSettings()).merged_over(self.config.defaults)

    def _register(self, served: ServedVersion, instances: Sequence[Model | AnyModel]) -> None:
        """Warm up and register ``instances`` as ``served`` (a hot swap when the version is served)."""
        options = _options(served.settings, self.config.request_timeout_s)
        if served.text_encoder is not None and hasattr(served.text_encoder, "truncate"):
            # One server-wide rule for over-long text, whichever protocol brings it.
            served.text_encoder.truncate = self.config.truncate_text
        backends: list[str] = []
        for inst in instances:
            any_model = inst if isinstance(inst, AnyModel) else AnyModel(inst)
            self.engine.register(
                served.name, any_model, version=served.version, warmup=served.settings.warmup is not False, text_encoder=served.text_encoder, options=options
            )
            backends.append(any_model.backend_name)
        served.backends = tuple(backends)
        first = instances[0] if isinstance(instances[0], AnyModel) else AnyModel(instances[0])
        specs = list(first.input_specs)
        served.device = str(first.device)
        served.input_names = frozenset(s.name for s in specs)
        served.paddable = tuple(s.name for s in specs if len(s.shape) > 1 and s.shape[1] is None and s.pad_value is not None)
        served.output_names = tuple(s.name for s in first.output_specs)
        served.batchable = bool(specs) and all(s.is_batched for s in specs) and all(s.is_batched for s in first.output_specs)
        served.default_selection = tuple(RequestedOutput(n) for n in (served.default_outputs or served.output_names))
        served.task = _task_head(first)
        if served.text_encoder is None:
            served.text_encoder = getattr(first.model, "text_encoder", None)
        if served.text_encoder is not None and hasattr(served.text_encoder, "truncate"):
            served.text_encoder.truncate = self.config.truncate_text

    def _compose_and_register(self, served: ServedVersion) -> None:
        """Compose ``served`` from its package (in a worker thread) and register it."""
        assert served.path is not None
        settings = served.settings

        def check_budget(backend: str, nbytes: int) -> None:
            self.engine.check_budget(served.name, backend, nbytes)

        composed = compose_model(
            served.path,
            backends=settings.backends or (None,),
            preference=self.engine.config.backend_preference,
            device=settings.device,
            dtype=settings.dtype,
            threads=settings.threads,
            int8=bool(settings.int8),
            trust_code=self.config.trust_code,
            allow_pickle=self.config.allow_pickle,
            verify=self.config.verify,
            check_budget=check_budget,
        )
        served.text_encoder = composed.text_encoder
        served.default_outputs = composed.default_outputs
        try:
            self._register(served, composed.instances)
        except BaseException:
            composed.close()
            raise

    async def _load_versions(self, name: str, versions: Sequence[ServedVersion], instances: Sequence[Model | AnyModel] | None = None) -> ServedModel:
        """Load ``versions`` of ``name`` beside what is served, switch, retire versions not listed.

        On failure, what was served keeps serving and the typed error is raised; a model that was
        not served is marked UNAVAILABLE with the reason. A retired version is unregistered once
        the requests admitted to it have finished (each runs all its passes on the version it was
        admitted to, and is counted under it)."""
        model = self.models.get(name)
        first = model is None or model.state != ModelState.READY
        if model is None:
            model = self.models[name] = ServedModel(name=name, engine=self.engine)
        if first:
            model.state = ModelState.LOADING
        try:
            for served in versions:
                if instances is not None:
                    await self._load_step(self._register, served, instances)
                else:
                    await self._load_step(self._compose_and_register, served)
        except Exception as exc:
            reason = _reason(exc)
            self.failed[name] = reason
            if first:
                model.state, model.reason = ModelState.UNAVAILABLE, reason
                # Versions registered before the failing one are dropped: a model loads whole.
                with contextlib.suppress(ModelNotFoundError):
                    await asyncio.to_thread(self.engine.unregister, name)
                if self.models.get(name) is model:
                    del self.models[name]
            log.error("model %s failed to load: %s", name, reason, exc_info=not isinstance(exc, InferoxError))
            raise
        keep = {v.version for v in versions}
        retired = [s for v, s in model.versions.items() if v not in keep]
        for served in versions:  # a hot swap of a version keeps its statistics
            old = model.versions.get(served.version)
            if old is not None:
                served.answered, served.answered_rows, served.answered_ns, served.failures = old.answered, old.answered_rows, old.answered_ns, old.failures
        model.versions = {**{v: s for v, s in model.versions.items() if v in keep}, **{s.version: s for s in versions}}
        model.state, model.reason = ModelState.READY, ""
        self.failed.pop(name, None)
        log.info("model %s versions %s ready on %s", name, ", ".join(sorted(model.versions, key=version_key)), ", ".join(model.latest.backends))
        for served in retired:  # requests admitted to them finish there; new ones go to the latest
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(served.retire_when_idle().wait(), timeout=self.config.graceful_timeout_s)
            with contextlib.suppress(ModelNotFoundError):
                await asyncio.to_thread(self.engine.unregister, name, version=served.version)
        return model

    async def _load_step(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run one step of a load (reading a package, building and warming a model) on a daemon
        thread of its own. Loads run framework and file-system code that may never return (a
        stalled network file system, a hung driver): a daemon thread cannot hold the process's exit
        the way a pool thread (joined at exit) does, and :meth:`abandon_loads` ends the wait."""
        loop = self._loop = asyncio.get_running_loop()
        fut: asyncio.Future[_T] = loop.create_future()

        def settle(set_outcome: Callable[[Any], None], value: Any) -> None:
            if not fut.done():
                set_outcome(value)

        def work() -> None:
            try:
                outcome: tuple[Callable[[Any], None], Any] = (fut.set_result, fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                outcome = (fut.set_exception, exc)
            with contextlib.suppress(RuntimeError):  # the loop is closed: the server has gone
                loop.call_soon_threadsafe(settle, *outcome)

        self._loads.add(fut)
        threading.Thread(target=work, name="inferox-load", daemon=True).start()
        try:
            return await fut
        finally:
            self._loads.discard(fut)

    def abandon_loads(self) -> None:
        """Fail every load still in progress with UNAVAILABLE ("the server is shutting down"), so
        a load that hangs holds neither its request nor the shutdown. Safe from any thread (the
        signal handler calls it); the load's thread is left to finish or not (it is a daemon)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def abandon() -> None:
            for fut in list(self._loads):
                if not fut.done():
                    fut.set_exception(ServiceUnavailableError("the server is shutting down: the load was abandoned"))

        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(abandon)

    async def add_model(self, name: str, instances: Model | AnyModel | Sequence[Model | AnyModel], *, settings: ServingSettings | None = None, version: str = "1") -> ServedModel:
        """Serve in-memory model instances (one, or several on different backends)."""
        check_model_name(name)
        check_model_name(version, what="model version")
        insts = list(instances) if isinstance(instances, Sequence) else [instances]
        served = ServedVersion(name=name, version=version, path=None, settings=self._settings(settings))
        async with self.lock(name):
            return await self._load_versions(name, [served], insts)

    async def load_package(self, name: str, path: Path, *, settings: ServingSettings | None = None, version: str = "1") -> ServedModel:
        """Serve the package at ``path`` as ``name`` (its ``serving.toml`` applies unless ``settings``)."""
        check_model_name(name)
        if settings is None:
            settings_file = Path(path) / "serving.toml"
            settings = ServingSettings.from_file(settings_file) if settings_file.is_file() else ServingSettings()
        served = ServedVersion(name=name, version=version, path=Path(path), settings=self._settings(settings))
        async with self.lock(name):
            return await self._load_versions(name, [served])

    async def load(self, name: str, *, ctx: RequestContext | None = None) -> ServedModel:
        """(Re)load ``name`` from the repository: its versions are re-read, loaded and warmed
        beside what is served, then switched atomically (see :meth:`_load_versions`)."""
        with self.call(ctx, "repository_load", model=name, scope=REPOSITORY):
            if self.repository is None:
                raise ModelNotFoundError(bounded(name).strip("'"), available=[])
            entry = self.repository.entry(name)
            settings = self._settings(entry.settings)
            versions = [ServedVersion(name=name, version=v, path=entry.versions[v], settings=settings) for v in entry.served_versions()]
            async with self.lock(name):
                return await self._load_versions(name, versions)

    async def unload(self, name: str, *, ctx: RequestContext | None = None) -> None:
        """Stop serving ``name``: new requests get MODEL_NOT_FOUND, in-flight ones finish."""
        with self.call(ctx, "repository_unload", model=name, scope=REPOSITORY):
            check_model_name(name)
            model = self.models.get(name)
            if model is None:
                raise ModelNotFoundError(name, available=sorted(self.models))
            async with self.lock(name):
                model.state = ModelState.UNLOADING
                if self.models.get(name) is model:
                    del self.models[name]
                for served in model.versions.values():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(served.retire_when_idle().wait(), timeout=self.config.graceful_timeout_s)
                with contextlib.suppress(ModelNotFoundError):
                    await asyncio.to_thread(self.engine.unregister, name)
                model.state, model.reason = ModelState.UNAVAILABLE, "unloaded"
            self.expected.discard(name)

    def startup_jobs(self, *, packages: Mapping[str, Path] | None = None, models: Sequence[tuple[str, Any, ServingSettings, str]] = (), load_repository: bool = True) -> list[tuple[str, Any]]:
        """What :meth:`startup` will load: ``(name, job)`` per model (``job()`` loads it)."""
        jobs: list[tuple[str, Any]] = []
        for name, instances, settings, version in models:
            jobs.append((name, lambda n=name, i=instances, s=settings, v=version: self.add_model(n, i, settings=s, version=v)))
        for name, path in (packages or {}).items():
            jobs.append((name, lambda n=name, p=path: self.load_package(n, p)))
        if self.repository is not None and load_repository:
            for name in self.repository.names():
                jobs.append((name, lambda n=name: self._load_unlogged(n)))
        return jobs

    async def _load_unlogged(self, name: str) -> ServedModel:
        return await self.load(name)

    async def startup(
        self,
        *,
        packages: Mapping[str, Path] | None = None,
        models: Sequence[tuple[str, Any, ServingSettings, str]] = (),
        load_repository: bool = True,
    ) -> None:
        """Load every configured model, one after the other (loading is CPU-bound and framework
        imports do not like re-entry). With ``exit_on_error`` the first failure is raised (the
        server exits with it); otherwise failures are logged and shown by the repository index."""
        jobs = self.startup_jobs(packages=packages, models=models, load_repository=load_repository)
        self.expected.update(name for name, _ in jobs)
        try:
            for name, job in jobs:
                try:
                    await job()
                except Exception as exc:
                    self.failed[name] = _reason(exc)
                    if self.config.exit_on_error:
                        self.startup_error = exc  # before startup_done: watchers see both together
                        raise
        finally:
            self.startup_done = True

    async def drain(self, timeout: float | None = None) -> bool:
        """Stop admitting requests (new ones get UNAVAILABLE) and wait, at most ``timeout``
        seconds, for those in progress; whether they all finished."""
        self.shutting_down = True
        if self._in_flight == 0:
            return True
        done = await asyncio.to_thread(self._drained.wait, timeout)
        return bool(done)

    async def shutdown(self) -> None:
        """Stop taking requests and shut the engine down (queued requests finish first)."""
        self.shutting_down = True
        self.abandon_loads()
        await asyncio.to_thread(self.engine.shutdown)
        self._tokeniser.shutdown(wait=False)

    @property
    def in_flight(self) -> int:
        """Inference requests in progress."""
        return self._in_flight

    # -- admission --------------------------------------------------------------------------------------
    def served(self, name: str, version: str | None = None, *, ready: bool = True) -> ServedVersion:
        """The served ``version`` of ``name`` (the highest when ``None``); MODEL_NOT_FOUND when
        not served, UNAVAILABLE (with ``ready``) while it loads."""
        model = self.models.get(name)
        if model is None or model.state == ModelState.UNLOADING:
            raise ModelNotFoundError(bounded(name).strip("'"), available=sorted(n for n, m in self.models.items() if m.state == ModelState.READY))
        if ready and model.state != ModelState.READY:
            raise ServiceUnavailableError(f"model {name!r} is not ready ({model.state.lower()}{': ' + model.reason if model.reason else ''})")
        if not model.versions:
            return ServedVersion(name=name, version="", path=None, settings=ServingSettings())
        if version is None:
            return model.latest
        served = model.versions.get(version)
        if served is None:
            raise ModelNotFoundError(
                f"{name}/versions/{bounded(version).strip(chr(39))}", available=[f"{name}/versions/{v}" for v in sorted(model.versions, key=version_key)]
            )
        return served

    def _admit(self, call: Call, name: str, version: str | None) -> ServedVersion:
        if self.shutting_down:
            raise ServiceUnavailableError("the server is shutting down")
        served = self.served(name, version)
        call.version = served.version
        call.admitted = served
        return served

    def _check_limits(self, *, rows: int, text_bytes: int = 0) -> None:
        """Refuse a request over the server's per-request limits before any work (413, naming the limit)."""
        cfg = self.config
        if rows > cfg.max_request_rows:
            raise RequestLimitError("rows", actual=rows, limit=cfg.max_request_rows, setting="server.max_request_rows")
        if text_bytes > cfg.max_request_text_bytes:
            raise RequestLimitError("bytes of text", actual=text_bytes, limit=cfg.max_request_text_bytes, setting="server.max_request_text_bytes")

    def check_rows(self, rows: int) -> None:
        """Refuse a request of more than ``max_request_rows`` rows (for a transport that knows the
        rows before it decodes the tensors: gRPC refuses a huge message before copying it)."""
        self._check_limits(rows=rows)

    def _check_tokens(self, tokens: int | None) -> None:
        if tokens is not None and tokens > self.config.max_request_tokens:
            raise RequestLimitError("tokens", actual=tokens, limit=self.config.max_request_tokens, setting="server.max_request_tokens")

    @staticmethod
    def select_outputs(served: ServedVersion, requested: Sequence[RequestedOutput] | None) -> Sequence[RequestedOutput]:
        """The outputs a request gets, in order: those it names (each once, each one the model
        has), else the package's default outputs, else every output."""
        if requested is None:
            return served.default_selection
        seen: set[str] = set()
        for out in requested:
            if served.output_names and out.name not in served.output_names:
                raise InvalidInputError(f"unknown output {bounded(out.name)}", name=out.name[:80], expected=list(served.output_names), actual=out.name[:80])
            if out.name in seen:
                raise InvalidInputError(f"output {bounded(out.name)} is requested more than once", name=out.name[:80], expected="each output once", actual=out.name[:80])
            seen.add(out.name)
        return list(requested)

    def timeout(self, served: ServedVersion, req: InferRequest | None = None) -> float | None:
        """The request's deadline: the model's timeout (its ``serving.toml``, else the server's);
        the client's ``parameters.timeout`` can only shorten it."""
        model_timeout = served.settings.timeout_s if served.settings.timeout_s is not None else self.config.request_timeout_s
        asked = req.timeout_s if req is not None else None
        if asked is None:
            return model_timeout
        return asked if model_timeout is None else min(asked, model_timeout)

    # -- V2 inference -------------------------------------------------------------------------------------
    @staticmethod
    def decode(body: bytes, header_length: str | int | None = None) -> InferRequest:
        """A V2 request body (JSON, or JSON + binary tensor data) → :class:`InferRequest`."""
        return parse_infer_request(body, header_length)

    async def infer(self, name: str, request: InferRequest, *, version: str | None = None, ctx: RequestContext | None = None) -> InferResponse:
        """Answer a V2 inference request (see the module doc for the stages)."""
        if ctx is not None and request.id:
            ctx.request_id = request.id
        with self.call(ctx, "infer", model=name, version=version, inference=True) as call:
            work = self._infer(call, name, request, version)
            return await (self._watched(call.ctx, work) if call.ctx.disconnected is not None else work)

    async def _infer(self, call: Call, name: str, req: InferRequest, version: str | None) -> InferResponse:
        served = self._admit(call, name, version)
        selected = self.select_outputs(served, req.outputs)
        backend = req.parameters.get("backend")
        if backend is not None and not isinstance(backend, str):
            raise InvalidInputError("parameters.backend must be a string", name="backend", actual=bounded(backend))
        timeout = self.timeout(served, req)
        deadline = None if timeout is None else time.monotonic() + timeout
        rows = _rows(req)
        nbytes = _text_bytes(req)
        self._check_limits(rows=rows, text_bytes=nbytes)
        served.in_flight += 1
        try:
            if nbytes > TOKENISE_INLINE_BYTES:
                inputs = await self._on_pool(call, served, deadline, timeout, self.build_inputs, served, req)
            elif nbytes and call.span is not None:
                with call.traced("tokenize"):
                    inputs = self.build_inputs(served, req)
            else:
                inputs = self.build_inputs(served, req)
            outputs, backend_used = await self._run(call, served, inputs, [o.name for o in selected], backend=backend, deadline=deadline, timeout=timeout)
        finally:
            self._version_done(served)
        response = InferResponse(
            model_name=served.name,
            model_version=served.version,
            id=req.id,
            outputs=[OutputTensor(o.name, outputs[o.name], o.binary_data) for o in selected],
            parameters={"backend": backend_used} if backend_used else {},
            binary_default=req.binary_data_output,
        )
        self._answered(served, call)
        return response

    def _version_done(self, served: ServedVersion) -> None:
        served.in_flight -= 1
        if served.in_flight == 0 and served.idle is not None:
            served.idle.set()

    def _answered(self, served: ServedVersion, call: Call) -> None:
        served.answered += 1
        served.answered_rows += call.rows or 0
        served.answered_ns += int((time.perf_counter() - call.ctx.started) * 1e9)

    def build_inputs(self, served: ServedVersion, req: InferRequest) -> dict[str, Any]:
        """A V2 request's tensors as engine inputs; BYTES text goes through the model's text encoder."""
        inputs: dict[str, Any] = {}
        spec_names = served.input_names
        encoder = served.text_encoder
        text_input: str | None = None
        for tensor in req.inputs:
            if tensor.datatype == BYTES and tensor.name not in spec_names:
                if text_input is not None:
                    # Two texts would each fill input_ids/attention_mask: the second would silently win.
                    raise InvalidInputError(
                        f"two BYTES text inputs ({bounded(text_input)}, {bounded(tensor.name)}); send the texts as one input",
                        name=tensor.name[:80],
                        expected="one text input",
                        actual=[text_input[:80], tensor.name[:80]],
                    )
                text_input = tensor.name
                if encoder is None:
                    raise InvalidInputError(
                        f"model {served.name!r} takes no text; BYTES input {bounded(tensor.name)} is not one of its inputs",
                        name=tensor.name[:80],
                        expected=sorted(spec_names),
                        actual=tensor.name[:80],
                    )
                max_length = tensor.parameters.get("max_length", req.parameters.get("max_length"))
                if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
                    raise InvalidInputError("max_length must be a positive integer", name="max_length", actual=bounded(max_length))
                encoded = encoder.encode(tensor.texts(), max_length=max_length)
                for key, value in encoded.items():
                    if key in spec_names:
                        inputs[key] = value
                continue
            if tensor.datatype == BYTES:
                raise InvalidInputError("BYTES data for a numeric input", name=tensor.name[:80], expected="a numeric datatype", actual=BYTES)
            inputs[tensor.name] = tensor.data
        return inputs

    async def _on_pool(self, call: Call, served: ServedVersion, deadline: float | None, timeout: float | None, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` on the tokenisation pool, given up (and skipped if not started) at the deadline."""
        span = call.stage("tokenize")
        fut = asyncio.get_running_loop().run_in_executor(self._tokeniser, fn, *args)
        try:
            if deadline is None:
                return await fut
            try:
                return await asyncio.wait_for(fut, max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise InferoxTimeoutError(f"request to {served.name!r} timed out after {timeout}s while its text was tokenised", timeout=timeout, model=served.name) from None
        finally:
            if span is not None:
                span.end()

    async def _run(
        self, call: Call, served: ServedVersion, inputs: dict[str, Any], wanted: Sequence[str], *, backend: str | None, deadline: float | None, timeout: float | None
    ) -> tuple[dict[str, Any], str | None]:
        """Run ``inputs`` as one pass or several (see ``_passes``) and return the ``wanted``
        outputs, rows in order, and the backend that answered. The request's token count is
        checked against the limit first; a deadline stops the passes not yet run."""
        mask = inputs.get("attention_mask")
        lengths = None
        tokens: int | None = None
        rows = None
        if isinstance(mask, np.ndarray) and mask.ndim == 2:
            lengths = mask.sum(axis=1)
            tokens = int(lengths.sum())
            rows = int(mask.shape[0])
        else:
            ids = inputs.get("input_ids")
            if isinstance(ids, np.ndarray) and ids.ndim == 2:
                tokens = int(ids.size)
        if rows is None:
            first = next(iter(inputs.values()), None)
            rows = int(first.shape[0]) if isinstance(first, np.ndarray) and first.ndim > 0 else 1
        call.rows = rows
        call.tokens = tokens
        self._check_limits(rows=rows)
        self._check_tokens(tokens)
        passes = None
        if rows > 1 and served.batchable:
            opts = self.engine.config
            entry_config = self._model_batching(served)
            max_rows = entry_config[0] if entry_config else opts.max_batch_size
            max_tokens = entry_config[1] if entry_config else opts.max_batch_tokens
            # the engine's budget for this model, so that each pass is one the batcher would form
            max_tokens = batch_tokens_for(max_tokens, text=served.text_encoder is not None and lengths is not None, device=served.device)
            width = None
            if lengths is None and served.paddable:
                width = max((int(inputs[n].shape[1]) for n in served.paddable if isinstance(inputs.get(n), np.ndarray) and inputs[n].ndim > 1), default=None)
            passes = plan_passes(rows, max_rows=max_rows, max_tokens=max_tokens, lengths=lengths if served.paddable else None, width=width)
        name, version = served.name, served.version or None
        if passes is None:
            started_ns = time.time_ns() if call.span is not None else 0
            result = await self.engine.ainfer(name, inputs, backend=backend, timeout=self._remaining(deadline, timeout), version=version)
            self._pass_done(call, result, started_ns, tokens)
            call.queue_s, call.compute_s, call.batch_size = result.queue_time_s, result.compute_time_s, result.batch_size
            return self._pick(result, wanted), result.backend
        return await self._run_passes(call, served, inputs, passes, wanted, backend=backend, deadline=deadline, timeout=timeout)

    def _model_batching(self, served: ServedVersion) -> tuple[int, int | None] | None:
        """``(max_batch_size, max_batch_tokens)`` of the served version (its own options applied)."""
        s = served.settings
        if s.max_batch_size is None and s.max_batch_tokens is None:
            return None
        cfg = self.engine.config
        return (s.max_batch_size or cfg.max_batch_size, s.max_batch_tokens if s.max_batch_tokens is not None else cfg.max_batch_tokens)

    @staticmethod
    def _remaining(deadline: float | None, timeout: float | None) -> float | None:
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise InferoxTimeoutError(f"request timed out after {timeout}s", timeout=timeout)
        return left

    @staticmethod
    def _pick(result: InferenceResult, wanted: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for n in wanted:
            if n not in result:
                raise InvalidInputError(f"the model produced no output {bounded(n)} for this request", name=n[:80], expected=sorted(result), actual=n[:80])
            out[n] = result[n]
        return out

    def _pass_done(self, call: Call, result: InferenceResult, started_ns: int, tokens: int | None) -> None:
        """Trace one finished forward pass as ``queue`` and ``forward`` spans (timed by the engine)."""
        if call.span is None:
            return
        queue_end = started_ns + int(result.queue_time_s * 1e9)
        q = call.stage("queue", start_ns=started_ns)
        q.end(end_time=queue_end)
        attrs: dict[str, Any] = {"inferox.batch_size": int(result.batch_size), "inferox.backend": result.backend}
        if tokens is not None:
            attrs["inferox.tokens"] = tokens
        f = call.stage("forward", start_ns=queue_end, **attrs)
        f.end(end_time=queue_end + int(result.compute_time_s * 1e9))

    async def _run_passes(
        self,
        call: Call,
        served: ServedVersion,
        inputs: dict[str, Any],
        passes: list[Pass],
        wanted: Sequence[str],
        *,
        backend: str | None,
        deadline: float | None,
        timeout: float | None,
    ) -> tuple[dict[str, Any], str | None]:
        """Run a request's passes, at most PASS_WINDOW queued at once; the first failure (a
        deadline included) cancels the others and is the request's answer."""
        name, version = served.name, served.version or None
        mask_name = "attention_mask" if "attention_mask" in inputs else None
        results: list[InferenceResult | None] = [None] * len(passes)
        running: dict[asyncio.Task[InferenceResult], int] = {}
        queue_s = compute_s = 0.0
        next_pass = 0
        try:
            while next_pass < len(passes) or running:
                while next_pass < len(passes) and len(running) < PASS_WINDOW:
                    p = passes[next_pass]
                    part = take_rows(inputs, p, served.paddable)
                    started_ns = time.time_ns() if call.span is not None else 0
                    task = asyncio.ensure_future(self.engine.ainfer(name, part, backend=backend, timeout=self._remaining(deadline, timeout), version=version))
                    task.started_ns = started_ns  # type: ignore[attr-defined]
                    task.tokens = int(part[mask_name].sum()) if mask_name else None  # type: ignore[attr-defined]
                    running[task] = next_pass
                    next_pass += 1
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    i = running.pop(task)
                    result = task.result()  # a failed pass fails the request
                    results[i] = result
                    queue_s += result.queue_time_s
                    compute_s += result.compute_time_s
                    call.batch_size = max(call.batch_size or 0, result.batch_size)
                    self._pass_done(call, result, task.started_ns, task.tokens)  # type: ignore[attr-defined]
        finally:
            for task in running:
                task.cancel()
        call.queue_s, call.compute_s = queue_s, compute_s
        picked = [self._pick(r, wanted) for r in results if r is not None]
        rows = sum(len(p.rows) for p in passes)
        return assemble(passes, picked, rows, wanted), results[0].backend if results[0] is not None else None

    # -- text -------------------------------------------------------------------------------------------
    def text_models(self, output: str | None = None) -> list[str]:
        """Served models that take text (and, with ``output``, have that output), sorted."""
        out = []
        for name in sorted(self.models):
            try:
                served = self.served(name)
            except InferoxError:  # loading or unloading right now
                continue
            if served.text_encoder is not None and (output is None or output in served.output_names):
                out.append(name)
        return out

    def embedding_size(self, name: str, version: str | None = None, *, output: str = EMBEDDING_OUTPUT) -> int | None:
        """The embedding size of a served text model's fixed-size ``output``, ``None`` when the
        model takes no text or has no such output of fixed size."""
        served = self.served(name, version)
        if served.text_encoder is None:
            return None
        # get_model, not model_info: the latter snapshots live statistics, too dear per request.
        model = self.engine.get_model(name, version=served.version or None)
        for spec in model.output_specs:
            if spec.name == output and len(spec.shape) == 2 and isinstance(spec.shape[-1], int):
                return int(spec.shape[-1])
        return None

    async def predict_text(
        self,
        name: str,
        *,
        texts: Sequence[str] | None = None,
        token_ids: Sequence[Sequence[int]] | None = None,
        outputs: Sequence[str] | None = None,
        version: str | None = None,
        ctx: RequestContext | None = None,
        op: str = "predict_text",
        truncate: bool | None = None,
        pairs: Sequence[tuple[str, str] | str] | None = None,
        task: str | None = None,
    ) -> TextResponse:
        """Run a text model on ``texts`` (or ``token_ids``: the model's own vocabulary) and return
        the ``outputs`` (default: the package's default outputs) with one row per input.

        The stages and the limits of :meth:`infer` apply: rows, text bytes and tokens are checked
        before any work, the text is tokenised on the pool under the request's deadline, and the
        rows are split into passes grouped by length. ``truncate`` overrides the server's rule
        for this call (TEI's ``truncate``). ``pairs`` (instead of ``texts``) are text pairs, each
        encoded as one sequence (a cross-encoder's query and document). ``task`` refuses a model
        served for another task (see :meth:`task`) before any work. Other text APIs are adapters
        over this method.
        """
        with self.call(ctx, op, model=name, version=version, inference=True) as call:
            work = self._predict_text(call, name, texts, token_ids, outputs, version, truncate, pairs, task)
            return await (self._watched(call.ctx, work) if call.ctx.disconnected is not None else work)

    async def _predict_text(
        self,
        call: Call,
        name: str,
        texts: Sequence[str] | None,
        token_ids: Sequence[Sequence[int]] | None,
        outputs: Sequence[str] | None,
        version: str | None,
        truncate: bool | None,
        pairs: Sequence[tuple[str, str] | str] | None = None,
        task: str | None = None,
    ) -> TextResponse:
        if sum(x is not None for x in (texts, token_ids, pairs)) != 1:
            raise InvalidInputError("give texts, text pairs or token ids", name="input", expected="texts | pairs | token_ids")
        served = self._admit(call, name, version)
        encoder = served.text_encoder
        if encoder is None:
            raise InvalidInputError(f"model {name!r} takes no text", name="model", expected=self.text_models(), actual=name)
        if task is not None:
            self._check_task(served, task, call.op)
        selected = self.select_outputs(served, None if outputs is None else [RequestedOutput(n) for n in outputs])
        items: Sequence[Any] = texts if texts is not None else pairs if pairs is not None else token_ids  # type: ignore[assignment]
        rows = len(items)
        if pairs is not None:
            if not callable(getattr(encoder, "encode_pairs", None)):
                # A model's own text encoder (a plugin's) need not know pairs: say so, never a 500.
                raise InvalidInputError(f"model {name!r} takes single texts only: its text encoder does not encode text pairs", name="input", expected="str", actual="text pairs")
            for i, p in enumerate(pairs):
                if not isinstance(p, str) and not (isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(t, str) for t in p)):
                    raise InvalidInputError("each item must be a text or a pair of texts", name="input", expected="str | [str, str]", actual=bounded(p), index=i)
            sides = [t for p in pairs for t in ((p,) if isinstance(p, str) else p)]
            self._check_limits(rows=rows, text_bytes=sum(len(t) for t in sides))
            nbytes = _utf8_bytes(sides)
            self._check_limits(rows=rows, text_bytes=nbytes)
            given_pairs: Any = [p if isinstance(p, str) else (p[0], p[1]) for p in pairs]

            def encode() -> dict[str, Any]:
                return encoder.encode_pairs(given_pairs, truncate=truncate)  # type: ignore[no-any-return]
        elif texts is not None:
            for i, t in enumerate(texts):
                if not isinstance(t, str):
                    raise InvalidInputError("texts must be strings", name="input", expected="str", actual=type(t).__name__, index=i)
            # Characters bound the UTF-8 bytes from below: refuse before encoding a huge text.
            self._check_limits(rows=rows, text_bytes=sum(len(t) for t in texts))
            nbytes = _utf8_bytes(texts)
            self._check_limits(rows=rows, text_bytes=nbytes)
            given: Any = list(texts)

            def encode() -> dict[str, Any]:
                return encoder.encode(given, truncate=truncate)  # type: ignore[no-any-return]
        else:
            nbytes = 4 * sum(len(ids) for ids in token_ids or ())
            self._check_limits(rows=rows)
            self._check_tokens(nbytes // 4)

            def encode() -> dict[str, Any]:
                return encoder.encode_ids(token_ids, truncate=truncate)  # type: ignore[no-any-return]
        timeout = self.timeout(served)
        deadline = None if timeout is None else time.monotonic() + timeout
        served.in_flight += 1
        try:
            if nbytes > TOKENISE_INLINE_BYTES:
                tensors = await self._on_pool(call, served, deadline, timeout, encode)
            else:
                with call.traced("tokenize"):
                    tensors = encode()
            inputs = {k: v for k, v in tensors.items() if k in served.input_names}
            result, backend = await self._run(call, served, inputs, [o.name for o in selected], backend=None, deadline=deadline, timeout=timeout)
        finally:
            self._version_done(served)
        self._answered(served, call)
        return TextResponse(served.name, served.version, result, call.tokens or 0, backend)

    async def embed(
        self,
        name: str,
        inputs: Sequence[str] | Sequence[Sequence[int]],
        *,
        version: str | None = None,
        ctx: RequestContext | None = None,
        output: str = EMBEDDING_OUTPUT,
        truncate: bool | None = None,
    ) -> EmbedResponse:
        """Embed texts (or token-id sequences): one row of ``output`` per input, and the tokens used."""
        task = EMBED if output == EMBEDDING_OUTPUT else None
        if len(inputs) and all(isinstance(x, str) for x in inputs):
            r = await self.predict_text(name, texts=inputs, outputs=[output], version=version, ctx=ctx, op="embed", truncate=truncate, task=task)  # type: ignore[arg-type]
        else:
            r = await self.predict_text(name, token_ids=inputs, outputs=[output], version=version, ctx=ctx, op="embed", truncate=truncate, task=task)  # type: ignore[arg-type]
        return EmbedResponse(r.model_name, r.model_version, r.outputs[output], r.tokens)

    # -- task heads -------------------------------------------------------------------------------------
    def task(self, name: str, version: str | None = None) -> str | None:
        """What served text model ``name`` is for: ``"classify"`` or ``"rerank"`` (its package's task
        head), ``"embed"`` (a text model with an embedding output), else ``None``."""
        return _task_name(self.served(name, version))

    def task_models(self, task: str) -> list[str]:
        """Served text models of ``task``, sorted (what a route serving that task may choose from)."""
        out = []
        for name in self.text_models():
            with contextlib.suppress(InferoxError):  # loading or unloading right now
                if self.task(name) == task:
                    out.append(name)
        return out

    def require_task(self, name: str, task: str, *, op: str, version: str | None = None) -> None:
        """:class:`InvalidInputError` (400) naming the model's task unless ``name`` serves ``task``
        (for a transport that looks a model up before calling: OpenAI's embeddings route)."""
        self._check_task(self.served(name, version), task, op)

    def choose_model(self, task: str, asked: str | None, *, op: str) -> str:
        """The model a request for ``task`` goes to: ``asked`` when given (checked to serve
        ``task``), else the one served model of that task — with none, or several, an error
        naming ``model`` and the candidates (APIs without a model field: TEI's routes)."""
        if asked is not None:
            self.require_task(asked, task, op=op)
            return asked
        found = self.task_models(task)
        if len(found) == 1:
            return found[0]
        if not found:
            text = self.text_models()
            if len(text) == 1:  # the one model served is for another task: say which
                self.require_task(text[0], task, op=op)
            raise ModelNotFoundError(f"(a {task} model)", available=[f"{n} (task {self._task_or_none(n) or 'none'})" for n in text])
        raise InvalidInputError(
            f"{len(found)} {task} models are served ({', '.join(found)}); name one with 'model' in the body or ?model= in the URL",
            name="model", expected=found, actual=None,
        )

    def _task_or_none(self, name: str) -> str | None:
        try:
            return self.task(name)
        except InferoxError:
            return None

    def _check_task(self, served: ServedVersion, want: str, op: str) -> None:
        """A call for one task on a model of another is the client's mistake: 400 naming both."""
        have = _task_name(served)
        if have == want:
            return
        others = self.task_models(want)
        raise InvalidInputError(
            f"model {served.name!r} is served for task {have or 'none'!r}, not {want!r}: {op} needs a {want} model "
            f"({'served ' + want + ' models: ' + ', '.join(others) if others else 'none is served'})",
            name="model",
            expected=f"a model whose task is {want!r}",
            actual=f"{served.name!r} (task {have or 'none'!r})",
        )

    async def rerank(
        self,
        name: str,
        query: str,
        documents: Sequence[str],
        *,
        raw_scores: bool = False,
        version: str | None = None,
        ctx: RequestContext | None = None,
        truncate: bool | None = None,
    ) -> RerankResponse:
        """Score each of ``documents`` against ``query`` with a cross-encoder (task ``rerank``): one
        ``(query, document)`` pair per row, encoded as one sequence, split into passes like any text
        request. Scores come in the documents' order, after the model's activation (sigmoid unless
        its config says otherwise) — or the raw logits with ``raw_scores``."""
        if not isinstance(query, str):
            raise InvalidInputError("'query' must be a string", name="query", expected="str", actual=type(query).__name__)
        if isinstance(documents, str) or not isinstance(documents, Sequence) or len(documents) == 0:
            raise InvalidInputError("'documents' must be a non-empty list of strings", name="documents", expected="list[str]", actual=type(documents).__name__ if documents else "[]")
        for i, d in enumerate(documents):
            if not isinstance(d, str):
                raise InvalidInputError("documents must be strings", name="documents", expected="str", actual=type(d).__name__, index=i)
        output = "logits" if raw_scores else "score"
        r = await self.predict_text(name, pairs=[(query, d) for d in documents], outputs=[output], version=version, ctx=ctx, op="rerank", truncate=truncate, task=RERANK)
        scores = np.asarray(r.outputs[output], dtype=np.float32)
        return RerankResponse(r.model_name, r.model_version, scores.reshape(len(documents), -1)[:, 0], r.tokens)

    async def classify(
        self,
        name: str,
        inputs: Sequence[str | tuple[str, str]],
        *,
        raw_scores: bool = False,
        version: str | None = None,
        ctx: RequestContext | None = None,
        truncate: bool | None = None,
    ) -> ClassifyResponse:
        """Classify texts (or text pairs) with a sequence classifier (task ``classify``): each row's
        softmax over the labels (the raw logits with ``raw_scores``), labels from the package's ``id2label``."""
        if isinstance(inputs, str) or not isinstance(inputs, Sequence) or len(inputs) == 0:
            raise InvalidInputError("'input' must be a non-empty list of texts", name="input", expected="list[str]", actual=type(inputs).__name__ if inputs else "[]")
        if all(isinstance(x, str) for x in inputs):
            r = await self.predict_text(name, texts=inputs, outputs=["logits"], version=version, ctx=ctx, op="classify", truncate=truncate, task=CLASSIFY)  # type: ignore[arg-type]
        else:
            r = await self.predict_text(name, pairs=inputs, outputs=["logits"], version=version, ctx=ctx, op="classify", truncate=truncate, task=CLASSIFY)
        logits = np.asarray(r.outputs["logits"], dtype=np.float64).reshape(len(inputs), -1)
        if raw_scores:
            scores = logits
        else:
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            scores = shifted / shifted.sum(axis=1, keepdims=True)
        served = self.served(r.model_name, r.model_version or None)
        return ClassifyResponse(r.model_name, r.model_version, scores.astype(np.float32), _labels(served, logits.shape[1]), r.tokens)

    # -- metadata ---------------------------------------------------------------------------------------
    def server_metadata(self, *, ctx: RequestContext | None = None) -> dict[str, Any]:
        with self.call(ctx, "server_metadata"):
            return server_metadata()

    def model_metadata(self, name: str, version: str | None = None, *, ctx: RequestContext | None = None) -> dict[str, Any]:
        """V2 model metadata (``GET /v2/models/{name}[/versions/{v}]``)."""
        with self.call(ctx, "model_metadata", model=name, version=version):
            served = self.served(name, version)
            info = self.engine.model_info(name, version=served.version)
            model = self.engine.get_model(name, version=served.version)
            inputs = [{"name": s.name, "datatype": s.dtype.v2_name, "shape": [-1 if d is None else d for d in s.shape]} for s in info.input_specs]
            if served.text_encoder is not None:
                inputs.append({"name": "text", "datatype": BYTES, "shape": [-1]})
            out: dict[str, Any] = {
                "name": name,
                "versions": sorted(self.models[name].versions, key=version_key),
                "platform": f"inferox_{model.backend_name}",
                "inputs": inputs,
                "outputs": [{"name": s.name, "datatype": s.dtype.v2_name, "shape": [-1 if d is None else d for d in s.shape]} for s in info.output_specs],
                "parameters": {
                    "backends": list(info.backends),
                    "architecture": info.metadata.architecture,
                    "text_input": served.text_encoder is not None,
                },
            }
            if served.default_outputs:
                out["parameters"]["default_outputs"] = list(served.default_outputs)
            task = _task_name(served)
            if task is not None:
                # What the model is for, and a classifier's label names (``label`` is their index).
                out["parameters"]["task"] = task
                if served.task is not None and served.task.get("labels"):
                    out["parameters"]["labels"] = [str(x) for x in served.task["labels"]]
            out["parameters"].update(runtime_parameters(info))
            return out

    @staticmethod
    def _version_policy(served: ServedVersion) -> dict[str, Any]:
        """Triton's ``version_policy`` of the model's own policy (``latest`` / ``all`` / ``specific``)."""
        policy = served.settings.version_policy
        if policy is None or policy[0] == "latest":
            return {"latest": {"num_versions": policy[1] if policy else 1}}
        if policy[0] == "all":
            return {"all": {}}
        return {"specific": {"versions": [int(v) if v.isdigit() else v for v in policy[1]]}}

    def model_config(self, name: str, version: str | None = None, *, ctx: RequestContext | None = None) -> dict[str, Any]:
        """Triton's model configuration (``GET /v2/models/{name}/config``, tritonclient's ``get_model_config``)."""
        with self.call(ctx, "model_config", model=name, version=version):
            served = self.served(name, version)
            info = self.engine.model_info(name, version=served.version)
            batched = info.max_batch_size > 0

            def tensor(spec: Any) -> dict[str, Any]:
                dims = [-1 if d is None else d for d in spec.shape]
                return {"name": spec.name, "data_type": f"TYPE_{spec.dtype.v2_name}", "dims": dims[1:] if batched else dims}

            inputs = [tensor(s) for s in info.input_specs]
            if served.text_encoder is not None:
                inputs.append({"name": "text", "data_type": "TYPE_STRING", "dims": [1] if batched else [-1]})
            return {
                "name": name,
                "platform": f"inferox_{info.backends[0]}",
                "backend": "inferox",
                "max_batch_size": info.max_batch_size,
                "version_policy": self._version_policy(served),
                "input": inputs,
                "output": [tensor(s) for s in info.output_specs],
                "dynamic_batching": {"max_queue_delay_microseconds": int(self.engine.config.max_queue_delay_ms * 1000)} if batched else {},
                "parameters": {"backends": {"string_value": ",".join(info.backends)}},
            }

    async def repository_index(self, *, ready_only: bool = False, ctx: RequestContext | None = None) -> list[dict[str, Any]]:
        """The repository index (Triton's): one entry per served version, and one per model the
        repository holds that is not served (with its state and reason)."""
        with self.call(ctx, "repository_index", scope=REPOSITORY):
            return await asyncio.to_thread(self.index, ready_only=ready_only) if self.repository is not None else self.index(ready_only=ready_only)

    def index(self, *, ready_only: bool = False) -> list[dict[str, Any]]:
        """:meth:`repository_index` without the request record (reads the repository folder)."""
        entries: dict[str, list[dict[str, Any]]] = {}
        if self.repository is not None:
            for name in self.repository.names():
                entry: dict[str, Any] = {"name": name, "state": ModelState.UNAVAILABLE, "reason": "not loaded"}
                with contextlib.suppress(InferoxError):
                    entry["version"] = self.repository.entry(name).latest
                entries[name] = [entry]
        for name, reason in self.failed.items():
            base = entries.get(name, [{"name": name}])[0]
            entries[name] = [{**base, "state": ModelState.UNAVAILABLE, "reason": reason}]
        for name, model in self.models.items():
            reason = model.reason or (f"last load failed: {self.failed[name]}" if name in self.failed else "")
            if model.versions:
                entries[name] = [{"name": name, "version": v, "state": model.state, "reason": reason} for v in sorted(model.versions, key=version_key)]
            else:
                version = entries.get(name, [{}])[0].get("version", "")
                entries[name] = [{"name": name, "version": version, "state": model.state, "reason": reason}]
        out = [e for name in sorted(entries) for e in entries[name] if not ready_only or e["state"] == ModelState.READY]
        return out

    def _version_stats(self, name: str, served: ServedVersion) -> dict[str, Any]:
        """Triton-style statistics of one model version: requests, rows and failures as the data
        plane answered them; queue, compute and batches from the engine's passes."""
        stats = self.engine.stats(name, version=served.version)

        def duration(count: int, mean_s: float) -> dict[str, int]:
            return {"count": int(count), "ns": round(count * mean_s * 1e9)}

        return {
            "name": name,
            "version": served.version,
            "inference_count": served.answered_rows,
            "execution_count": stats.batches,
            "inference_stats": {
                "success": {"count": served.answered, "ns": served.answered_ns},
                "fail": {"count": served.failures, "ns": 0},
                "queue": duration(stats.queue_time.count, stats.queue_time.mean),
                "compute_infer": duration(stats.compute_time.count, stats.compute_time.mean),
            },
            "batch_stats": [
                {"batch_size": int(k), "compute_infer": {"count": int(v), "ns": round(stats.batch_compute_s.get(k, 0.0) * 1e9)}}
                for k, v in sorted(stats.batch_sizes.items())
            ],
            "inferox": {
                "errors_by_code": dict(stats.errors_by_code),
                "requests_by_backend": dict(stats.requests_by_backend),
                "queue_time": stats.queue_time.to_dict(),
                "compute_time": stats.compute_time.to_dict(),
            },
        }

    def statistics(self, name: str | None = None, version: str | None = None, *, ctx: RequestContext | None = None) -> dict[str, Any]:
        """``{"model_stats": [...]}``: every served version (of ``name``; only ``version``)."""
        with self.call(ctx, "statistics", model=name, version=version):
            if name is None:
                chosen = [(m.name, m.versions[v]) for m in list(self.models.values()) if m.state == ModelState.READY for v in sorted(m.versions, key=version_key)]
            elif version is None:
                self.served(name)
                model = self.models[name]
                chosen = [(name, model.versions[v]) for v in sorted(model.versions, key=version_key)]
            else:
                chosen = [(name, self.served(name, version))]
            out = []
            for n, served in chosen:
                with contextlib.suppress(ModelNotFoundError):  # retired between the listing and now
                    out.append(self._version_stats(n, served))
            return {"model_stats": out}

    def metrics_text(self, *, ctx: RequestContext | None = None) -> str:
        """The Prometheus exposition (``GET /metrics``)."""
        with self.call(ctx, "metrics"):
            return self.metrics.render()

    # -- responses for transports that speak V2 JSON ------------------------------------------------------
    @staticmethod
    def encode(response: InferResponse) -> tuple[bytes, dict[str, str]]:
        """The V2 REST body and headers of ``response``."""
        default = response.binary_default
        return encode_outputs(
            model_name=response.model_name,
            model_version=response.model_version,
            request_id=response.id,
            outputs=[(o.name, o.data, default if o.binary is None else o.binary) for o in response.outputs],
            parameters=response.parameters or None,
        )


def _task_head(model: AnyModel) -> Mapping[str, Any] | None:
    """The task head a model's package records (``model_info.json``'s ``task``), or an in-memory
    model's own ``metadata.extra["task"]``; ``None`` for neither."""
    extra = model.metadata.extra if isinstance(model.metadata.extra, Mapping) else {}
    info = extra.get("model_info")
    task = info.get("task") if isinstance(info, Mapping) else extra.get("task")
    return dict(task) if isinstance(task, Mapping) and isinstance(task.get("task"), str) else None


def _task_name(served: ServedVersion) -> str | None:
    if served.task is not None:
        return str(served.task["task"])
    if served.text_encoder is not None and EMBEDDING_OUTPUT in served.output_names:
        return EMBED
    return None


def _labels(served: ServedVersion, n: int) -> tuple[str, ...]:
    """A classifier's label names (its ``id2label``), ``LABEL_i`` where the package names none."""
    labels = served.task.get("labels") if served.task is not None else None
    if isinstance(labels, Sequence) and not isinstance(labels, str) and len(labels) == n:
        return tuple(str(x) for x in labels)
    return tuple(f"LABEL_{i}" for i in range(n))


def _utf8_bytes(texts: Sequence[str]) -> int:
    """The UTF-8 size of ``texts``; a text that is not valid Unicode (a lone surrogate, which JSON's
    ``"\\ud800"`` decodes to) is an :class:`InvalidInputError` naming it — a client's fault, not a 500."""
    total = 0
    for i, text in enumerate(texts):
        try:
            total += len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise InvalidInputError(
                f"input {i} is not valid Unicode text: {exc.reason} at position {exc.start}",
                name="input",
                expected="UTF-8 text",
                actual=repr(exc.object[exc.start : exc.end]),
                index=i,
            ) from None
    return total
