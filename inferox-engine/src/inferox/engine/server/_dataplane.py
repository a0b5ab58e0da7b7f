"""The data plane: everything a server does, whatever the transport (REST, Ray, gRPC, OpenAI…).

Transports are thin adapters: they read a request off the wire, call the data plane, and write
its answer back. The data plane owns the served models' lifecycle, inference and metadata, on
one :class:`~inferox.engine.Engine` that is the registry of every model version served (hot swap,
the memory budget and per-model batching settings live there). It imports no web framework.

Public API (``dp = DataPlane(config=ServerConfig(...), repository=...)``; the REST app keeps one
as ``InferoxServer.dataplane``)::

    # lifecycle (async, serialised by one lock)
    await dp.startup(packages={name: path}, models=[(name, instances, settings, version)])
    await dp.load(name)                  # (re)load a repository model: new versions are loaded
                                         # and warmed beside the old, then switched atomically;
                                         # a failure leaves the old serving and raises the typed error
    await dp.add_model(name, instances, settings=..., version="1")
    await dp.unload(name)                # ModelNotFoundError when not served
    await dp.shutdown()
    dp.is_ready() / dp.model_ready(name, version=None) / dp.live

    # inference: decode → engine → encode
    req = dp.decode(body, header_length)            # V2 JSON / binary → InferRequest
    served, result = await dp.infer(name, req, version=None)
    payload, headers = dp.encode(served, req, result)
    # or, for transports with their own wire format: dp.build_inputs(served, req) → engine inputs;
    # dp.served(name, version) → ServedVersion (typed errors: MODEL_NOT_FOUND, UNAVAILABLE)

    # metadata and statistics (plain JSON-able dicts, V2 / Triton shapes)
    dp.server_metadata(); dp.model_metadata(name, version); dp.model_config(name, version)
    dp.repository_index(ready_only=False); dp.statistics(name=None, version=None)
    dp.metrics                            # Prometheus text: dp.metrics.render()

Errors are :class:`~inferox.core.errors.InferoxError` subclasses; a transport maps them with
``error_response_parts`` (REST) or its own table. ``server_metadata`` is also a module function,
for transports that hold no data plane (the Ray ingress).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from inferox.core import __version__ as core_version
from inferox.core.errors import InferoxError, InvalidInputError, ModelNotFoundError, ServiceUnavailableError
from inferox.core.model import AnyModel, Model
from inferox.engine._compose import compose_model
from inferox.engine._config import EngineConfig, ModelOptions
from inferox.engine._engine import Engine, version_key
from inferox.engine._types import InferenceResult
from inferox.engine.server._config import ModelState, ServerConfig
from inferox.engine.server._metrics import UNKNOWN_MODEL, Metrics
from inferox.engine.server._protocol import BYTES, InferRequest, RequestedOutput, encode_infer_response, parse_infer_request
from inferox.engine.server._repository import ModelRepository, ServingSettings, check_model_name

__all__ = ["EXTENSIONS", "DataPlane", "ServedModel", "ServedVersion", "server_metadata"]

log = logging.getLogger("inferox.server")

_T = TypeVar("_T")

#: The V2 protocol extensions every Inferox server speaks.
EXTENSIONS = ("binary_tensor_data", "model_repository", "statistics", "model_configuration")


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
    #: The model's input names, read once at registration (specs may be rebuilt on every access).
    input_names: frozenset[str] = frozenset()


@dataclass
class ServedModel:
    """A model name the server answers for: its versions, its state and the reason for it."""

    name: str
    engine: Engine
    versions: dict[str, ServedVersion] = field(default_factory=dict)
    state: str = ModelState.LOADING
    reason: str = ""
    in_flight: int = 0

    @property
    def latest(self) -> ServedVersion:
        return self.versions[max(self.versions, key=version_key)]

    @property
    def version(self) -> str:
        """The highest served version (what unversioned requests get)."""
        return self.latest.version

    @property
    def primary(self) -> AnyModel:
        """The model answering unversioned requests that name no backend."""
        return self.engine.get_model(self.name)


#: Text requests up to this many bytes are tokenised on the event loop, longer ones on the data
#: plane's tokeniser thread. A short sentence costs ~25 us of tokeniser CPU, far less than the hand-off
#: to a thread and back (two GIL hand-overs and futex wake-ups: on a loaded 2-core machine the
#: hand-off cost ~20 % of req/s at 64 clients, benchmarks/results/server_vs_mlserver.md); 256 bytes
#: (~0.1 ms) is about one request's own event-loop work, so nothing longer holds the loop up.
TOKENISE_INLINE_BYTES = 256


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


class DataPlane:
    """Model lifecycle, inference, metadata and statistics for any transport (see the module doc)."""

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
        self._lock: asyncio.Lock | None = None
        #: One thread tokenises text requests longer than TOKENISE_INLINE_BYTES, in arrival order,
        #: off the event loop (a pool of threads would only take turns holding the GIL). Still per
        #: request and before queueing: each request reaches the engine with its own token length.
        self._tokeniser = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"inferox-tokenise-{id(self):x}")
        self._locks: dict[str, asyncio.Lock] = {}
        #: Loads waiting on their worker thread (see :meth:`_load_step` and :meth:`abandon_loads`).
        self._loads: set[asyncio.Future[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

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
        served.input_names = frozenset(s.name for s in first.input_specs)
        if served.text_encoder is None:
            served.text_encoder = getattr(first.model, "text_encoder", None)

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
        not served is marked UNAVAILABLE with the reason."""
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
        retired = [v for v in model.versions if v not in keep]
        model.versions = {**{v: s for v, s in model.versions.items() if v in keep}, **{s.version: s for s in versions}}
        for version in retired:  # requests routed to them finish there; new ones go to the latest
            with contextlib.suppress(ModelNotFoundError):
                await asyncio.to_thread(self.engine.unregister, name, version=version)
        model.state, model.reason = ModelState.READY, ""
        self.failed.pop(name, None)
        log.info("model %s versions %s ready on %s", name, ", ".join(sorted(model.versions, key=version_key)), ", ".join(model.latest.backends))
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
        a load that hangs holds neither its HTTP request nor the shutdown. Safe from any thread
        (``inferox serve`` calls it from its signal handler); the load's thread is left to finish
        or not (it is a daemon)."""
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

    async def load(self, name: str) -> ServedModel:
        """(Re)load ``name`` from the repository: its versions are re-read, loaded and warmed
        beside what is served, then switched atomically (see :meth:`_load_versions`)."""
        if self.repository is None:
            raise ModelNotFoundError(name, available=[])
        entry = self.repository.entry(name)
        settings = self._settings(entry.settings)
        versions = [ServedVersion(name=name, version=v, path=entry.versions[v], settings=settings) for v in entry.served_versions()]
        async with self.lock(name):
            return await self._load_versions(name, versions)

    async def unload(self, name: str) -> None:
        """Stop serving ``name``: new requests get MODEL_NOT_FOUND, in-flight ones finish."""
        check_model_name(name)
        model = self.models.get(name)
        if model is None:
            raise ModelNotFoundError(name, available=sorted(self.models))
        async with self.lock(name):
            model.state = ModelState.UNLOADING
            if self.models.get(name) is model:
                del self.models[name]
            with contextlib.suppress(ModelNotFoundError):
                await asyncio.to_thread(self.engine.unregister, name)
            model.state, model.reason = ModelState.UNAVAILABLE, "unloaded"
        self.expected.discard(name)

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
        jobs: list[tuple[str, Any]] = []
        for name, instances, settings, version in models:
            jobs.append((name, lambda n=name, i=instances, s=settings, v=version: self.add_model(n, i, settings=s, version=v)))
        for name, path in (packages or {}).items():
            jobs.append((name, lambda n=name, p=path: self.load_package(n, p)))
        if self.repository is not None and load_repository:
            for name in self.repository.names():
                jobs.append((name, lambda n=name: self.load(n)))
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

    async def shutdown(self) -> None:
        """Stop taking requests and shut the engine down (queued requests finish first)."""
        self.shutting_down = True
        self.abandon_loads()
        await asyncio.to_thread(self.engine.shutdown)
        self._tokeniser.shutdown(wait=False)

    # -- inference --------------------------------------------------------------------------------------
    def served(self, name: str, version: str | None = None, *, ready: bool = True) -> ServedVersion:
        """The served ``version`` of ``name`` (the highest when ``None``); MODEL_NOT_FOUND when
        not served, UNAVAILABLE (with ``ready``) while it loads."""
        model = self.models.get(name)
        if model is None or model.state == ModelState.UNLOADING:
            raise ModelNotFoundError(name, available=sorted(n for n, m in self.models.items() if m.state == ModelState.READY))
        if ready and model.state != ModelState.READY:
            raise ServiceUnavailableError(f"model {name!r} is not ready ({model.state.lower()}{': ' + model.reason if model.reason else ''})")
        if not model.versions:
            return ServedVersion(name=name, version="", path=None, settings=ServingSettings())
        if version is None:
            return model.latest
        served = model.versions.get(version)
        if served is None:
            raise ModelNotFoundError(f"{name}/versions/{version}", available=[f"{name}/versions/{v}" for v in sorted(model.versions, key=version_key)])
        return served

    @staticmethod
    def decode(body: bytes, header_length: str | int | None = None) -> InferRequest:
        """A V2 request body (JSON, or JSON + binary tensor data) → :class:`InferRequest`."""
        return parse_infer_request(body, header_length)

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
                        f"two BYTES text inputs ({text_input!r}, {tensor.name!r}); send the texts as one input",
                        name=tensor.name,
                        expected="one text input",
                        actual=[text_input, tensor.name],
                    )
                text_input = tensor.name
                if encoder is None:
                    raise InvalidInputError(
                        f"model {served.name!r} takes no text; BYTES input {tensor.name!r} is not one of its inputs",
                        name=tensor.name,
                        expected=sorted(spec_names),
                        actual=tensor.name,
                    )
                max_length = tensor.parameters.get("max_length", req.parameters.get("max_length"))
                if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
                    raise InvalidInputError("max_length must be a positive integer", name="max_length", actual=max_length)
                encoded = encoder.encode(tensor.texts(), max_length=max_length)
                for key, value in encoded.items():
                    if key in spec_names:
                        inputs[key] = value
                continue
            if tensor.datatype == BYTES:
                raise InvalidInputError("BYTES data for a numeric input", name=tensor.name, expected="a numeric datatype", actual=BYTES)
            inputs[tensor.name] = tensor.data
        return inputs

    def timeout(self, served: ServedVersion, req: InferRequest) -> float | None:
        """The request's deadline: the model's timeout (its ``serving.toml``, else the server's);
        the client's ``parameters.timeout`` can only shorten it."""
        model_timeout = served.settings.timeout_s if served.settings.timeout_s is not None else self.config.request_timeout_s
        asked = req.timeout_s
        if asked is None:
            return model_timeout
        return asked if model_timeout is None else min(asked, model_timeout)

    async def tokenise(self, fn: Callable[..., Any], *args: Any, nbytes: int) -> Any:
        """``fn(*args)`` for transports that turn text into token ids themselves (the OpenAI
        embeddings API), under the V2 rule: ``nbytes`` of text up to TOKENISE_INLINE_BYTES on the
        event loop, more on the tokeniser thread, in order with V2 text requests."""
        if nbytes <= TOKENISE_INLINE_BYTES:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._tokeniser, fn, *args)

    async def infer(self, name: str, req: InferRequest, *, version: str | None = None) -> tuple[ServedVersion, InferenceResult]:
        """Run a decoded request on the engine; the served version (the one that answered) and the result."""
        if self.shutting_down:
            raise ServiceUnavailableError("server is shutting down")
        served = self.served(name, version)
        model = self.models[name]
        model.in_flight += 1
        try:
            if _text_bytes(req) > TOKENISE_INLINE_BYTES:
                inputs = await asyncio.get_running_loop().run_in_executor(self._tokeniser, self.build_inputs, served, req)
            else:
                inputs = self.build_inputs(served, req)
            backend = req.parameters.get("backend")
            if backend is not None and not isinstance(backend, str):
                raise InvalidInputError("parameters.backend must be a string", name="backend", actual=backend)
            result = await self.engine.ainfer(name, inputs, backend=backend, timeout=self.timeout(served, req), version=version)
        finally:
            model.in_flight -= 1
        if result.version is not None and result.version != served.version:
            # A reload switched versions while this request was queued: answer as the one that ran.
            served = model.versions.get(result.version, served)
        return served, result

    def encode(self, served: ServedVersion, req: InferRequest, result: InferenceResult) -> tuple[bytes, dict[str, str]]:
        """The V2 response body and headers of ``result``: the outputs the request names, else the
        package's default outputs, else every output."""
        requested = req.outputs
        if requested is None and served.default_outputs:
            requested = [RequestedOutput(n) for n in served.default_outputs]
        return encode_infer_response(
            model_name=served.name,
            model_version=served.version,
            request_id=req.id,
            outputs=dict(result),
            requested=requested,
            binary_default=req.binary_data_output,
            parameters={"backend": result.backend} if result.backend else None,
        )

    # -- metadata ---------------------------------------------------------------------------------------
    def server_metadata(self) -> dict[str, Any]:
        return server_metadata()

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        """V2 model metadata (``GET /v2/models/{name}[/versions/{v}]``)."""
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
        out["parameters"].update(runtime_parameters(info))
        return out

    def model_config(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Triton's model configuration (``GET /v2/models/{name}/config``, tritonclient's ``get_model_config``)."""
        served = self.served(name, version)
        info = self.engine.model_info(name, version=served.version)
        batched = info.max_batch_size > 0

        def tensor(spec: Any) -> dict[str, Any]:
            dims = [-1 if d is None else d for d in spec.shape]
            return {"name": spec.name, "data_type": f"TYPE_{spec.dtype.v2_name}", "dims": dims[1:] if batched else dims}

        inputs = [tensor(s) for s in info.input_specs]
        if served.text_encoder is not None:
            inputs.append({"name": "text", "data_type": "TYPE_STRING", "dims": [1] if batched else [-1]})
        model = self.models[name]
        return {
            "name": name,
            "platform": f"inferox_{info.backends[0]}",
            "backend": "inferox",
            "max_batch_size": info.max_batch_size,
            "version_policy": {"specific": {"versions": [int(v) if v.isdigit() else v for v in sorted(model.versions, key=version_key)]}},
            "input": inputs,
            "output": [tensor(s) for s in info.output_specs],
            "dynamic_batching": {"max_queue_delay_microseconds": int(self.engine.config.max_queue_delay_ms * 1000)} if batched else {},
            "parameters": {"backends": {"string_value": ",".join(info.backends)}},
        }

    def repository_index(self, *, ready_only: bool = False) -> list[dict[str, Any]]:
        """The repository index: every model the repository holds or the server serves, with state and reason."""
        entries: dict[str, dict[str, Any]] = {}
        if self.repository is not None:
            for name in self.repository.names():
                entries[name] = {"name": name, "state": ModelState.UNAVAILABLE, "reason": "not loaded"}
                with contextlib.suppress(InferoxError):
                    entries[name]["version"] = self.repository.entry(name).latest
        for name, reason in self.failed.items():
            entries[name] = {**entries.get(name, {"name": name}), "state": ModelState.UNAVAILABLE, "reason": reason}
        for name, model in self.models.items():
            version = model.version if model.versions else entries.get(name, {}).get("version", "")
            reason = model.reason or (f"last load failed: {self.failed[name]}" if name in self.failed else "")
            entries[name] = {"name": name, "version": version, "state": model.state, "reason": reason}
        out = [e for e in entries.values() if not ready_only or e["state"] == ModelState.READY]
        return sorted(out, key=lambda e: e["name"])

    def _version_stats(self, name: str, version: str) -> dict[str, Any]:
        """Triton-style statistics of one model version, from the engine's :class:`~inferox.engine.ModelStats`."""
        stats = self.engine.stats(name, version=version)

        def duration(count: int, mean_s: float) -> dict[str, int]:
            return {"count": int(count), "ns": round(count * mean_s * 1e9)}

        return {
            "name": name,
            "version": version,
            "inference_count": stats.successes,
            "execution_count": stats.batches,
            "inference_stats": {
                "success": duration(stats.successes, stats.compute_time.mean + stats.queue_time.mean),
                "fail": {"count": stats.errors, "ns": 0},
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

    def statistics(self, name: str | None = None, version: str | None = None) -> dict[str, Any]:
        """``{"model_stats": [...]}``: every served version (of ``name``; only ``version``)."""
        if name is None:
            chosen = [(m.name, v) for m in self.models.values() if m.state == ModelState.READY for v in sorted(m.versions, key=version_key)]
        elif version is None:
            self.served(name)
            chosen = [(name, v) for v in sorted(self.models[name].versions, key=version_key)]
        else:
            chosen = [(name, self.served(name, version).version)]
        out = []
        for n, v in chosen:
            with contextlib.suppress(ModelNotFoundError):  # retired between the listing and now
                out.append(self._version_stats(n, v))
        return {"model_stats": out}

    def record(self, name: str, *, started: float, result: InferenceResult | None = None, code: str | None = None, version: str | None = None) -> None:
        """Record one finished request in the server's metrics. Label values come only from
        served models: another name counts as ``_unknown``, a version not served as ``""``."""
        duration = time.perf_counter() - started
        model = self.models.get(name)
        if result is not None and result.version is not None:
            version = result.version
        if model is None:
            name, version = UNKNOWN_MODEL, ""
        elif version is None or version not in model.versions:
            version = model.version if version is None and model.versions else ""
        if result is None:
            self.metrics.record_failure(name, code or "INTERNAL", duration=duration, version=version)
        else:
            self.metrics.record_success(
                name, duration=duration, queue=result.queue_time_s, compute=result.compute_time_s, batch_size=result.batch_size, version=version
            )
