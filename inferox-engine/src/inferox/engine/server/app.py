"""The Open Inference Protocol (KServe V2) REST server, as an ASGI (Starlette) application.

Each served model gets its own :class:`~inferox.engine.Engine`, configured from the server's
defaults overlaid with the model's ``serving.toml`` (batch size, delay, queue bound, timeout), so
that one model's batching settings never affect another's and unloading a model shuts down only
its engine. Requests go through ``engine.ainfer`` — the engine's dynamic batcher.

Endpoints: health (``/v2/health/live``, ``/v2/health/ready``), server and model metadata
(``/v2``, ``/v2/models/{name}[/versions/{v}]``), model readiness, inference
(``POST /v2/models/{name}[/versions/{v}]/infer``, JSON and the binary tensor data extension), the
repository extension (``/v2/repository/index``, ``/v2/repository/models/{name}/load|unload``) and
Prometheus metrics (``/metrics``). Errors are ``{"error": message, "code": CODE}`` with the status
of the error class (429 adds ``Retry-After``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import hmac
import json
import logging
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from inferox.core import __version__ as core_version
from inferox.core.errors import (
    InferoxError,
    InferoxTimeoutError,
    InvalidInputError,
    ModelNotFoundError,
    ServiceUnavailableError,
)
from inferox.core.model import AnyModel, Model
from inferox.engine.server._metrics import Metrics
from inferox.engine.server._protocol import (
    BYTES,
    HEADER_LENGTH,
    InferRequest,
    encode_infer_response,
    error_response_parts,
    parse_infer_request,
)
from inferox.engine.server._repository import ModelRepository, ServingSettings, check_model_name, is_package

__all__ = ["InferoxServer", "ModelState", "ServedModel", "ServerConfig", "create_app", "text_encoder_for"]

access_log = logging.getLogger("inferox.server.access")
log = logging.getLogger("inferox.server")

#: Codes for conditions the HTTP layer detects itself (the engine never raises them).
PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
UNAUTHORIZED = "UNAUTHORIZED"
NOT_FOUND = "NOT_FOUND"
INTERNAL = "INTERNAL"
CLIENT_DISCONNECTED = "CLIENT_DISCONNECTED"
_DECODE_IN_THREAD_BYTES = 1 << 20


class ModelState:
    """States of a served model, as the repository index reports them."""

    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass(frozen=True)
class ServerConfig:
    """How the server runs. Binds to loopback unless ``host`` says otherwise.

    ``token`` protects the repository endpoints (and every endpoint with ``protect_all``);
    ``max_body_bytes`` bounds request bodies (413 beyond); ``request_timeout_s`` bounds each
    inference request (504 beyond) unless a model's settings give a shorter one; ``defaults`` are
    the serving settings for models without their own; ``engine_config`` is the base engine
    configuration each model's engine starts from; ``keep_alive_s`` is how long idle keep-alive
    connections stay open.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    protect_all: bool = False
    max_body_bytes: int = 64 * 2**20
    request_timeout_s: float | None = 60.0
    defaults: ServingSettings = field(default_factory=ServingSettings)
    engine_config: Any = None
    access_log: bool = True
    graceful_timeout_s: float = 30.0
    #: How long an idle keep-alive connection stays open. Longer than clients' own idle expiry
    #: (httpx 5 s, cloud load balancers 60 s): were the server to close first, a request sent just
    #: then would meet a reset connection.
    keep_alive_s: float = 75.0
    allow_pickle: bool = False
    trust_code: bool = False


@dataclass
class ServedModel:
    """One model the server answers for: its engine, its backend instances and its state."""

    name: str
    version: str
    path: Path | None
    settings: ServingSettings
    state: str = ModelState.LOADING
    reason: str = ""
    engine: Any = None
    models: dict[str, AnyModel] = field(default_factory=dict)
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    encoder: Any = None

    @property
    def primary(self) -> AnyModel:
        return next(iter(self.models.values()))

    @property
    def text_encoder(self) -> Any:
        """The model's own text encoder, else one built from the package's tokenizer, else ``None``."""
        if self.encoder is None and self.models:
            self.encoder = getattr(self.primary.model, "text_encoder", None)
        return self.encoder


def text_encoder_for(model: AnyModel, package: Path | None) -> Any:
    """``model.text_encoder``, or a :class:`~inferox.core.text.TextEncoder` over the package's
    ``tokenizer.json`` when the model does not carry one; ``None`` for models that take no text."""
    encoder = getattr(model.model, "text_encoder", None)
    if encoder is not None or package is None or not (package / "tokenizer.json").is_file():
        return encoder
    if not any(s.name == "input_ids" for s in model.input_specs):
        return None
    from inferox.core.text import TextEncoder

    return TextEncoder.from_file(package / "tokenizer.json")


def _error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status, headers=dict(headers or {}))


def _inferox_error_response(exc: InferoxError) -> JSONResponse:
    status, body, headers = error_response_parts(exc)
    return JSONResponse(body, status_code=status, headers=headers)


class _BodyTooLarge(Exception):
    pass


class InferoxServer:
    """The server's state, and the Starlette app serving it (:attr:`app`).

    Build one with a model repository (``repository``), single packages (``packages``: name →
    package folder) and/or in-memory models (:meth:`add_model`); models load when the app starts
    and ``/v2/health/ready`` turns true once every one of them has loaded and warmed up.
    """

    def __init__(
        self,
        *,
        repository: str | Path | ModelRepository | None = None,
        packages: Mapping[str, str | Path] | None = None,
        config: ServerConfig | None = None,
        load_repository: bool = True,
    ) -> None:
        self.config = config or ServerConfig()
        self.repository = repository if isinstance(repository, ModelRepository) or repository is None else ModelRepository(repository)
        self.packages = {check_model_name(k): Path(v) for k, v in (packages or {}).items()}
        self.load_repository = load_repository
        self.models: dict[str, ServedModel] = {}
        #: Models whose last load failed: name → "CODE: message" (shown by the repository index).
        self.failed: dict[str, str] = {}
        #: Models that failed to load at startup: the server stays not ready until each loads.
        self._startup_failed: set[str] = set()
        self.metrics = Metrics(models_loaded=lambda: sum(1 for m in self.models.values() if m.state == ModelState.READY))
        self._pending: list[tuple[str, Model | AnyModel | Sequence[Model | AnyModel], ServingSettings, str]] = []
        self._started = False
        self._startup_done = False
        self._shutting_down = False
        self._in_flight = 0
        self._drained = asyncio.Event()
        self._load_lock: asyncio.Lock | None = None
        self.app = self._build_app()

    # -- programmatic models ------------------------------------------------------------------------
    def add_model(
        self,
        name: str,
        model: Model | AnyModel | Sequence[Model | AnyModel],
        *,
        settings: ServingSettings | None = None,
        version: str = "1",
    ) -> None:
        """Serve an in-memory model (one instance, or several on different backends) from startup."""
        check_model_name(name)
        check_model_name(version, what="model version")
        self._pending.append((name, model, settings or ServingSettings(), version))

    # -- readiness ---------------------------------------------------------------------------------
    def is_ready(self) -> bool:
        """True once startup loading finished, every model is READY and the server is not stopping."""
        return (
            self._startup_done
            and not self._startup_failed
            and not self._shutting_down
            and all(m.state == ModelState.READY for m in self.models.values())
        )

    # -- model lifecycle ------------------------------------------------------------------------------
    def _engine_config(self, settings: ServingSettings) -> Any:
        from inferox.engine import EngineConfig

        base = self.config.engine_config or EngineConfig()
        changes: dict[str, Any] = {}
        if settings.max_batch_size is not None:
            changes["max_batch_size"] = settings.max_batch_size
        if settings.max_batch_tokens is not None:
            changes["max_batch_tokens"] = settings.max_batch_tokens
        if settings.batch_delay_ms is not None:
            changes["max_queue_delay_ms"] = settings.batch_delay_ms
        if settings.max_queue_size is not None:
            changes["max_queue_size"] = settings.max_queue_size
        return base.replace(**changes) if changes else base

    def _load_sync(self, served: ServedModel, instances: Sequence[Model | AnyModel] | None) -> None:
        """Load (from the package, unless instances are given) and register with a fresh engine."""
        from inferox.engine import Engine

        settings = served.settings
        if instances is None:
            from inferox.mlpkg import load_model

            assert served.path is not None
            backends: Sequence[str | None] = settings.backends or (None,)
            instances = [
                load_model(
                    served.path,
                    backend=b,
                    device=settings.device,
                    dtype=settings.dtype,
                    trust_code=self.config.trust_code,
                    allow_pickle=self.config.allow_pickle,
                )
                for b in backends
            ]
        engine = Engine(self._engine_config(settings))
        try:
            models: dict[str, AnyModel] = {}
            for inst in instances:
                any_model = inst if isinstance(inst, AnyModel) else AnyModel(inst)
                engine.register(served.name, any_model, warmup=settings.warmup is not False)
                models[any_model.backend_name] = any_model
        except BaseException:
            engine.shutdown()
            raise
        served.engine = engine
        served.models = models
        served.encoder = text_encoder_for(next(iter(models.values())), served.path)

    async def _load(self, served: ServedModel, instances: Sequence[Model | AnyModel] | None = None) -> ServedModel:
        served.state = ModelState.LOADING
        self.models[served.name] = served
        try:
            await asyncio.to_thread(self._load_sync, served, instances)
        except Exception as exc:
            reason = f"{exc.code}: {exc.message}" if isinstance(exc, InferoxError) else f"{type(exc).__name__}: {exc}"
            served.state, served.reason = ModelState.UNAVAILABLE, reason
            if self.models.get(served.name) is served:
                del self.models[served.name]
            self.failed[served.name] = reason
            if not self._startup_done:
                self._startup_failed.add(served.name)
            log.error("model %s failed to load: %s", served.name, reason, exc_info=not isinstance(exc, InferoxError))
            raise
        served.state, served.reason = ModelState.READY, ""
        self.failed.pop(served.name, None)
        self._startup_failed.discard(served.name)
        served.idle.set()
        log.info("model %s version %s ready on %s", served.name, served.version, ", ".join(served.models))
        return served

    def _served_from_path(self, name: str, version: str, path: Path, settings: ServingSettings) -> ServedModel:
        return ServedModel(name=name, version=version, path=path, settings=settings.merged_over(self.config.defaults))

    async def load_from_repository(self, name: str) -> ServedModel:
        """Load (or reload) ``name`` from the repository; names are checked to stay inside it."""
        if self.repository is None:
            raise ModelNotFoundError(name, available=[])
        entry = self.repository.entry(name)
        async with self._lock():
            old = self.models.get(name)
            if old is not None and old.state in (ModelState.READY, ModelState.UNLOADING):
                await self._unload(old)
            version = entry.latest
            served = self._served_from_path(name, version, entry.versions[version], entry.settings)
            return await self._load(served)

    async def _unload(self, served: ServedModel) -> None:
        """Stop routing new requests to ``served``, let in-flight ones finish, shut its engine down."""
        served.state = ModelState.UNLOADING
        if served.in_flight:
            served.idle.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(served.idle.wait(), timeout=self.config.graceful_timeout_s)
        if self.models.get(served.name) is served:
            del self.models[served.name]
        if served.engine is not None:
            await asyncio.to_thread(served.engine.shutdown)
        served.state = ModelState.UNAVAILABLE
        served.reason = "unloaded"

    async def unload(self, name: str) -> None:
        """Unload ``name``; :class:`ModelNotFoundError` when it is not served."""
        check_model_name(name)
        served = self.models.get(name)
        if served is None:
            raise ModelNotFoundError(name, available=sorted(self.models))
        async with self._lock():
            await self._unload(served)

    def _lock(self) -> asyncio.Lock:
        if self._load_lock is None:
            self._load_lock = asyncio.Lock()
        return self._load_lock

    async def startup(self) -> None:
        """Load every configured model (failures are reported and leave the server not ready)."""
        self._started = True
        jobs: list[Any] = []
        for name, model, settings, version in self._pending:
            instances = list(model) if isinstance(model, Sequence) else [model]
            served = ServedModel(name=name, version=version, path=None, settings=settings.merged_over(self.config.defaults))
            jobs.append(self._load(served, instances))
        for name, path in self.packages.items():
            settings_file = path / "serving.toml"
            settings = ServingSettings.from_file(settings_file) if settings_file.is_file() else ServingSettings()
            jobs.append(self._load(self._served_from_path(name, "1", path, settings)))
        if self.repository is not None and self.load_repository:
            for name in self.repository.names():
                try:
                    entry = self.repository.entry(name)
                except InferoxError as exc:
                    self.failed[name] = f"{exc.code}: {exc.message}"
                    self._startup_failed.add(name)
                    continue
                version = entry.latest
                jobs.append(self._load(self._served_from_path(name, version, entry.versions[version], entry.settings)))
        # Sequentially: loading is CPU-bound and framework imports are not re-entrant-friendly.
        for job in jobs:
            with contextlib.suppress(Exception):
                await job
        self._startup_done = True

    async def shutdown(self) -> None:
        """Refuse new requests, wait for in-flight ones (bounded), then shut every engine down."""
        self._shutting_down = True
        if self._in_flight:
            self._drained.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._drained.wait(), timeout=self.config.graceful_timeout_s)
        for served in list(self.models.values()):
            if served.engine is not None:
                await asyncio.to_thread(served.engine.shutdown)

    # -- helpers ---------------------------------------------------------------------------------------
    def _check_token(self, request: Request) -> JSONResponse | None:
        token = self.config.token
        if not token:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return _error(401, UNAUTHORIZED, "missing or invalid bearer token", {"www-authenticate": "Bearer"})
        return None

    def served_model(self, name: str, version: str | None = None) -> ServedModel:
        """The model serving ``name`` (at ``version`` when given); :class:`ModelNotFoundError` otherwise."""
        served = self.models.get(name)
        if served is None or served.state == ModelState.UNLOADING:
            raise ModelNotFoundError(name, available=sorted(n for n, m in self.models.items() if m.state == ModelState.READY))
        if version is not None and version != served.version:
            raise ModelNotFoundError(f"{name}/versions/{version}", available=[f"{name}/versions/{served.version}"])
        return served

    async def _read_body(self, request: Request) -> bytes:
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _BodyTooLarge
            chunks.append(chunk)
        body = b"".join(chunks)
        encoding = request.headers.get("content-encoding", "").strip().lower()
        if encoding in ("", "identity"):
            return body
        if encoding not in ("gzip", "deflate"):
            raise InvalidInputError(f"unsupported Content-Encoding {encoding!r}", name="content-encoding", expected="gzip, deflate or identity", actual=encoding)
        # Bounded decompression: a small compressed body must not expand past the body limit.
        decomp = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
        try:
            out = decomp.decompress(body, limit + 1)
        except zlib.error as exc:
            raise InvalidInputError(f"request body is not valid {encoding} data: {exc}", name="content-encoding", actual=encoding) from exc
        if len(out) > limit or decomp.unconsumed_tail:
            raise _BodyTooLarge
        return out

    def _log_access(self, request: Request, *, request_id: str, status: int, started: float, model: str | None = None, code: str | None = None) -> None:
        if not self.config.access_log or not access_log.isEnabledFor(logging.INFO):
            return
        record: dict[str, Any] = {
            "ts": time.time(),
            "request_id": request_id,
            "method": request.method,
            "path": request.url.path,
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            "client": f"{request.client.host}:{request.client.port}" if request.client else None,
        }
        if model is not None:
            record["model"] = model
        if code is not None:
            record["code"] = code
        access_log.info(json.dumps(record, separators=(",", ":")))

    # -- endpoints -----------------------------------------------------------------------------------
    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(self, request: Request) -> Response:
        ok = self.is_ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def server_metadata(self, request: Request) -> Response:
        from inferox.engine.server import __version__

        denied = self._protect(request)
        if denied:
            return denied

        return JSONResponse(
            {
                "name": "inferox",
                "version": __version__,
                "extensions": ["binary_tensor_data", "model_repository", "statistics"],
                "core_version": core_version,
            }
        )

    def _model_metadata(self, served: ServedModel) -> dict[str, Any]:
        model = served.primary
        inputs = [{"name": s.name, "datatype": s.dtype.v2_name, "shape": [-1 if d is None else d for d in s.shape]} for s in model.input_specs]
        if served.text_encoder is not None:
            inputs.append({"name": "text", "datatype": BYTES, "shape": [-1]})
        return {
            "name": served.name,
            "versions": [served.version],
            "platform": f"inferox_{model.backend_name}",
            "inputs": inputs,
            "outputs": [{"name": s.name, "datatype": s.dtype.v2_name, "shape": [-1 if d is None else d for d in s.shape]} for s in model.output_specs],
            "parameters": {
                "backends": list(served.models),
                "architecture": model.metadata.architecture,
                "text_input": served.text_encoder is not None,
            },
        }

    async def model_metadata(self, request: Request) -> Response:
        denied = self._protect(request)
        if denied:
            return denied
        try:
            served = self.served_model(request.path_params["name"], request.path_params.get("version"))
            if served.state != ModelState.READY:
                raise ServiceUnavailableError(f"model {served.name!r} is {served.state.lower()}: {served.reason}".rstrip(": "))
        except InferoxError as exc:
            return _inferox_error_response(exc)
        return JSONResponse(self._model_metadata(served))

    async def model_ready(self, request: Request) -> Response:
        denied = self._protect(request)
        if denied:
            return denied
        try:
            served = self.served_model(request.path_params["name"], request.path_params.get("version"))
        except InferoxError as exc:
            return _inferox_error_response(exc)
        ok = served.state == ModelState.READY and not self._shutting_down
        return JSONResponse({"name": served.name, "ready": ok}, status_code=200 if ok else 503)

    def _protect(self, request: Request) -> JSONResponse | None:
        return self._check_token(request) if self.config.protect_all else None

    def build_inputs(self, served: ServedModel, req: InferRequest) -> dict[str, Any]:
        """A V2 request's tensors as engine inputs; BYTES text goes through the model's text encoder."""
        inputs: dict[str, Any] = {}
        spec_names = {s.name for s in served.primary.input_specs}
        encoder = served.text_encoder
        for tensor in req.inputs:
            if tensor.datatype == BYTES and tensor.name not in spec_names:
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

    async def infer(self, request: Request) -> Response:
        started = time.perf_counter()
        name = request.path_params["name"]
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        denied = self._protect(request)
        if denied:
            self._log_access(request, request_id=request_id, status=401, started=started, model=name, code=UNAUTHORIZED)
            return denied
        self._in_flight += 1
        self.metrics.request_started()
        try:
            response, code = await self._infer(request, name, request_id, started)
            rid = response.headers.get("x-request-id", request_id)
            self._log_access(request, request_id=rid, status=response.status_code, started=started, model=name, code=code)
            return response
        finally:
            self._in_flight -= 1
            self.metrics.request_finished()
            if self._in_flight == 0:
                self._drained.set()

    async def _infer(self, request: Request, name: str, request_id: str, started: float) -> tuple[Response, str | None]:
        served: ServedModel | None = None
        try:
            if self._shutting_down:
                raise ServiceUnavailableError("server is shutting down")
            try:
                body = await self._read_body(request)
            except _BodyTooLarge:
                self.metrics.record_failure(name, PAYLOAD_TOO_LARGE, duration=time.perf_counter() - started)
                return _error(413, PAYLOAD_TOO_LARGE, f"request body exceeds {self.config.max_body_bytes} bytes"), PAYLOAD_TOO_LARGE
            header_length = request.headers.get(HEADER_LENGTH.lower())
            if len(body) > _DECODE_IN_THREAD_BYTES:
                req = await asyncio.to_thread(parse_infer_request, body, header_length)
            else:
                req = parse_infer_request(body, header_length)
            if req.id:
                request_id = req.id
            served = self.served_model(name, request.path_params.get("version"))
            if served.state != ModelState.READY:
                raise ServiceUnavailableError(f"model {name!r} is not ready ({served.state.lower()})")
            served.in_flight += 1
            try:
                inputs = self.build_inputs(served, req)
                backend = req.parameters.get("backend")
                if backend is not None and not isinstance(backend, str):
                    raise InvalidInputError("parameters.backend must be a string", name="backend", actual=backend)
                timeouts = [t for t in (self.config.request_timeout_s, served.settings.timeout_s, req.timeout_s) if t is not None]
                timeout = min(timeouts) if timeouts else None
                result = await self._run_until_disconnect(request, served, inputs, backend, timeout)
            finally:
                served.in_flight -= 1
                if served.in_flight == 0:
                    served.idle.set()
            if result is None:
                self.metrics.record_failure(name, CLIENT_DISCONNECTED, duration=time.perf_counter() - started)
                return Response(status_code=499), CLIENT_DISCONNECTED
            params = {"backend": result.backend} if getattr(result, "backend", None) else None
            outputs = dict(result)
            encode = functools.partial(
                encode_infer_response,
                model_name=name,
                model_version=served.version,
                request_id=req.id,
                outputs=outputs,
                requested=req.outputs,
                binary_default=req.binary_data_output,
                parameters=params,
            )
            # Large outputs (JSON especially) would stall the event loop while encoded.
            big = sum(getattr(v, "nbytes", 0) for v in outputs.values()) > _DECODE_IN_THREAD_BYTES // 4
            payload, headers = await asyncio.to_thread(encode) if big else encode()
            payload = _maybe_compress(request, payload, headers)
            headers["x-request-id"] = request_id
            self.metrics.record_success(
                name,
                duration=time.perf_counter() - started,
                queue=getattr(result, "queue_time_s", None),
                compute=getattr(result, "compute_time_s", None),
                batch_size=getattr(result, "batch_size", None),
            )
            return Response(payload, headers=headers), None
        except InferoxError as exc:
            self.metrics.record_failure(name, exc.code, duration=time.perf_counter() - started)
            response = _inferox_error_response(exc)
            response.headers["x-request-id"] = request_id
            return response, exc.code
        except Exception as exc:
            log.exception("internal error serving %s", name)
            self.metrics.record_failure(name, INTERNAL, duration=time.perf_counter() - started)
            return _error(500, INTERNAL, f"internal server error ({type(exc).__name__})", {"x-request-id": request_id}), INTERNAL

    async def _run_until_disconnect(self, request: Request, served: ServedModel, inputs: dict[str, Any], backend: str | None, timeout: float | None) -> Any:
        """Run the request on the model's engine; ``None`` if the client went away first (the work is cancelled)."""
        infer_task = asyncio.ensure_future(served.engine.ainfer(served.name, inputs, backend=backend, timeout=timeout))
        watch = asyncio.ensure_future(_wait_for_disconnect(request))
        try:
            done, _ = await asyncio.wait({infer_task, watch}, timeout=None if timeout is None else timeout + 1.0, return_when=asyncio.FIRST_COMPLETED)
            if infer_task in done:
                return infer_task.result()
            if watch in done:
                infer_task.cancel()
                log.info("client disconnected; dropped request for %s", served.name)
                return None
            infer_task.cancel()
            raise InferoxTimeoutError(f"request to model {served.name!r} timed out after {timeout}s", timeout=timeout, model=served.name)
        finally:
            watch.cancel()
            if not infer_task.done():
                infer_task.cancel()

    # -- repository extension ------------------------------------------------------------------------
    async def repository_index(self, request: Request) -> Response:
        denied = self._check_token(request)
        if denied:
            return denied
        entries: dict[str, dict[str, Any]] = {}
        if self.repository is not None:
            for name in self.repository.names():
                entries[name] = {"name": name, "state": ModelState.UNAVAILABLE, "reason": "not loaded"}
                with contextlib.suppress(InferoxError):
                    entries[name]["version"] = self.repository.entry(name).latest
        for name, reason in self.failed.items():
            entries[name] = {**entries.get(name, {"name": name}), "state": ModelState.UNAVAILABLE, "reason": reason}
        for name, served in self.models.items():
            entries[name] = {"name": name, "version": served.version, "state": served.state, "reason": served.reason}
        try:
            body = await request.body()
            ready_only = bool(json.loads(body).get("ready")) if body.strip() else False
        except (ValueError, AttributeError):
            return _error(400, InvalidInputError.code, "repository index request body must be a JSON object")
        out = [e for e in entries.values() if not ready_only or e["state"] == ModelState.READY]
        return JSONResponse(sorted(out, key=lambda e: e["name"]))

    async def repository_load(self, request: Request) -> Response:
        started = time.perf_counter()
        denied = self._check_token(request)
        if denied:
            return denied
        name = request.path_params["name"]
        try:
            served = await self.load_from_repository(name)
        except InferoxError as exc:
            self._log_access(request, request_id=uuid.uuid4().hex, status=exc.http_status, started=started, model=name, code=exc.code)
            return _inferox_error_response(exc)
        except Exception as exc:  # noqa: BLE001 - report, do not crash
            return _error(500, INTERNAL, f"loading {name!r} failed: {type(exc).__name__}: {exc}")
        self._log_access(request, request_id=uuid.uuid4().hex, status=200, started=started, model=name)
        return JSONResponse({"name": name, "version": served.version, "state": served.state})

    async def repository_unload(self, request: Request) -> Response:
        denied = self._check_token(request)
        if denied:
            return denied
        name = request.path_params["name"]
        try:
            await self.unload(name)
        except InferoxError as exc:
            return _inferox_error_response(exc)
        return JSONResponse({"name": name, "state": ModelState.UNAVAILABLE})

    def _model_stats(self, served: ServedModel) -> dict[str, Any]:
        """Triton-style statistics of one model, from the engine's :class:`~inferox.engine.ModelStats`."""
        stats = served.engine.stats(served.name)

        def duration(count: int, mean_s: float) -> dict[str, int]:
            return {"count": int(count), "ns": round(count * mean_s * 1e9)}

        return {
            "name": served.name,
            "version": served.version,
            "inference_count": stats.successes,
            "execution_count": stats.batches,
            "inference_stats": {
                "success": duration(stats.successes, stats.compute_time.mean + stats.queue_time.mean),
                "fail": {"count": stats.errors, "ns": 0},
                "queue": duration(stats.queue_time.count, stats.queue_time.mean),
                "compute_infer": duration(stats.compute_time.count, stats.compute_time.mean),
            },
            "batch_stats": [{"batch_size": int(k), "compute_infer": {"count": int(v), "ns": 0}} for k, v in sorted(stats.batch_sizes.items())],
            "inferox": {
                "errors_by_code": dict(stats.errors_by_code),
                "requests_by_backend": dict(stats.requests_by_backend),
                "queue_time": stats.queue_time.to_dict(),
                "compute_time": stats.compute_time.to_dict(),
            },
        }

    async def model_statistics(self, request: Request) -> Response:
        denied = self._protect(request)
        if denied:
            return denied
        name = request.path_params.get("name")
        try:
            if name is None:
                chosen = [m for m in self.models.values() if m.state == ModelState.READY]
            else:
                chosen = [self.served_model(name, request.path_params.get("version"))]
            return JSONResponse({"model_stats": [self._model_stats(m) for m in chosen]})
        except InferoxError as exc:
            return _inferox_error_response(exc)

    async def metrics_endpoint(self, request: Request) -> Response:
        denied = self._protect(request)
        if denied:
            return denied
        return PlainTextResponse(self.metrics.render(), media_type="text/plain; version=0.0.4")

    async def health_protected(self, request: Request) -> Response:
        denied = self._protect(request)
        if denied:
            return denied
        return await (self.live(request) if request.url.path.endswith("live") else self.ready(request))

    # -- app -------------------------------------------------------------------------------------------
    def _build_app(self) -> Starlette:
        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            # Models load in the background: the server is live (and answers /ready with 503)
            # while packages load and warm up, as KServe and Triton do.
            loading = asyncio.create_task(self.startup())
            try:
                yield
            finally:
                if not loading.done():
                    loading.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await loading
                await self.shutdown()

        async def http_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, HTTPException)
            code = NOT_FOUND if exc.status_code == 404 else "METHOD_NOT_ALLOWED" if exc.status_code == 405 else "HTTP_ERROR"
            return _error(exc.status_code, code, f"{exc.detail}: {request.method} {request.url.path}")

        routes = [
            Route("/v2/health/live", self.health_protected, methods=["GET"]),
            Route("/v2/health/ready", self.health_protected, methods=["GET"]),
            Route("/v2", self.server_metadata, methods=["GET"]),
            Route("/v2/models/stats", self.model_statistics, methods=["GET"]),
            Route("/v2/models/{name}/stats", self.model_statistics, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}/stats", self.model_statistics, methods=["GET"]),
            Route("/v2/models/{name}", self.model_metadata, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}", self.model_metadata, methods=["GET"]),
            Route("/v2/models/{name}/ready", self.model_ready, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}/ready", self.model_ready, methods=["GET"]),
            Route("/v2/models/{name}/infer", self.infer, methods=["POST"]),
            Route("/v2/models/{name}/versions/{version}/infer", self.infer, methods=["POST"]),
            Route("/v2/repository/index", self.repository_index, methods=["POST"]),
            Route("/v2/repository/models/{name}/load", self.repository_load, methods=["POST"]),
            Route("/v2/repository/models/{name}/unload", self.repository_unload, methods=["POST"]),
            Route("/metrics", self.metrics_endpoint, methods=["GET"]),
        ]
        return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})


def _maybe_compress(request: Request, payload: bytes, headers: dict[str, str]) -> bytes:
    """gzip/deflate the response when the client asks (tritonclient's ``response_compression_algorithm``).

    ``Inference-Header-Content-Length`` keeps describing the uncompressed body, as Triton does.
    """
    accepted = {e.split(";")[0].strip().lower() for e in request.headers.get("accept-encoding", "").split(",")}
    if len(payload) < 1024:
        return payload
    if "gzip" in accepted:
        headers["content-encoding"] = "gzip"
        return gzip.compress(payload, compresslevel=1)
    if "deflate" in accepted:
        headers["content-encoding"] = "deflate"
        return zlib.compress(payload, 1)
    return payload


async def _wait_for_disconnect(request: Request) -> None:
    # The body has been read, so the next ASGI message can only be the disconnect.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def create_app(
    *,
    repository: str | Path | ModelRepository | None = None,
    packages: Mapping[str, str | Path] | None = None,
    models: Mapping[str, Model | AnyModel | Sequence[Model | AnyModel]] | None = None,
    config: ServerConfig | None = None,
) -> Starlette:
    """A ready-to-run ASGI app (see :class:`InferoxServer`); the server object is ``app.state.server``."""
    server = InferoxServer(repository=repository, packages=packages, config=config)
    for name, model in (models or {}).items():
        server.add_model(name, model)
    server.app.state.server = server
    return server.app


def package_name(path: Path) -> str:
    """The serving name of a single package folder: its metadata name, else the folder name."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        meta = json.loads((path / "metadata.json").read_text(encoding="utf-8"))
        name = meta.get("name") or meta.get("model", {}).get("name")
        if isinstance(name, str):
            return check_model_name(name.replace("/", "-"))
    return check_model_name(path.name)


def is_repository(path: Path) -> bool:
    """Whether ``path`` is a model repository (not itself a package)."""
    return path.is_dir() and not is_package(path)

