"""The Open Inference Protocol (KServe V2) REST transport: a thin Starlette adapter over the
:class:`~inferox.engine.server.DataPlane`.

This module reads requests off HTTP (body limit, ``Content-Encoding``, the bearer token, client
disconnects), calls the data plane — which owns model lifecycle, inference, metadata and
statistics on the server's one :class:`~inferox.engine.Engine` — and writes its answers back
(compression, request ids, the JSON access log).

Endpoints: health (``/v2/health/live``, ``/v2/health/ready``), server and model metadata
(``/v2``, ``/v2/models/{name}[/versions/{v}]``), model configuration (``.../config``), model
readiness, inference (``POST /v2/models/{name}[/versions/{v}]/infer``, JSON and the binary tensor
data extension), the repository extension (``/v2/repository/index``,
``/v2/repository/models/{name}/load|unload``), statistics and Prometheus metrics (``/metrics``).
Errors are ``{"error": message, "code": CODE}`` with the status of the error class (429 adds
``Retry-After``). :func:`check_bearer` and :func:`http_error` are shared with the Ray ingress.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hmac
import json
import logging
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from inferox.core.errors import InferoxError, InferoxTimeoutError, InvalidInputError
from inferox.core.model import AnyModel, Model
from inferox.engine._types import InferenceResult
from inferox.engine.server._config import ModelState, ServerConfig
from inferox.engine.server._dataplane import DataPlane, ServedModel, ServedVersion
from inferox.engine.server._openai_http import OpenAIEmbeddings
from inferox.engine.server._protocol import HEADER_LENGTH, error_response_parts
from inferox.engine.server._repository import ModelRepository, ServingSettings, check_model_name, is_package
from inferox.engine.server._timing import ACCESS_RECORD

__all__ = ["InferoxServer", "ModelState", "ServedModel", "ServerConfig", "check_bearer", "create_app", "http_error"]

access_log = logging.getLogger("inferox.server.access")
log = logging.getLogger("inferox.server")

#: Codes for conditions the HTTP layer detects itself (the engine never raises them).
PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
UNAUTHORIZED = "UNAUTHORIZED"
NOT_FOUND = "NOT_FOUND"
INTERNAL = "INTERNAL"
CLIENT_DISCONNECTED = "CLIENT_DISCONNECTED"
_DECODE_IN_THREAD_BYTES = 1 << 20


def _error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status, headers=dict(headers or {}))


def _inferox_error_response(exc: InferoxError) -> JSONResponse:
    status, body, headers = error_response_parts(exc)
    return JSONResponse(body, status_code=status, headers=headers)


#: Longest request id copied into the ``x-request-id`` response header.
MAX_REQUEST_ID = 128


def header_safe_id(value: str | None) -> str:
    """The ``x-request-id`` to answer with: the client's id when it is short printable ASCII,
    else a generated one — raw input never becomes a header (a CR/LF would inject headers,
    non-Latin-1 text cannot be encoded, a huge id makes clients refuse the response)."""
    if value and len(value) <= MAX_REQUEST_ID and all(" " < c <= "~" for c in value):
        return value
    return uuid.uuid4().hex


def check_bearer(request: Request, token: str | None) -> JSONResponse | None:
    """``None`` when ``token`` is unset or the request carries it as a bearer token, else the 401."""
    if not token:
        return None
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        return _error(401, UNAUTHORIZED, "missing or invalid bearer token", {"www-authenticate": "Bearer"})
    return None


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own HTTP errors (unknown path, wrong method) in the ``{"error", "code"}`` shape."""
    assert isinstance(exc, HTTPException)
    code = NOT_FOUND if exc.status_code == 404 else "METHOD_NOT_ALLOWED" if exc.status_code == 405 else "HTTP_ERROR"
    return _error(exc.status_code, code, f"{exc.detail}: {request.method} {request.url.path}")


class _BodyTooLarge(Exception):
    pass


class InferoxServer:
    """The REST server: a :class:`DataPlane` (:attr:`dataplane`) and the Starlette app serving it (:attr:`app`).

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
        self.dataplane = DataPlane(config=self.config, repository=repository)
        self.packages = {check_model_name(k): Path(v) for k, v in (packages or {}).items()}
        self.load_repository = load_repository
        self._pending: list[tuple[str, Model | AnyModel | Sequence[Model | AnyModel], ServingSettings, str]] = []
        self._in_flight = 0
        self._drained = asyncio.Event()
        #: The V2 gRPC transport while it runs (``config.grpc_port``), else ``None``.
        self.grpc: Any = None
        if self.config.grpc_port is not None:
            from inferox.engine.server._grpc import require_grpc
            from inferox.engine.server._run import bind_socket

            require_grpc()  # a missing [grpc] extra fails here, before anything listens
            if self.config.grpc_port:
                bind_socket(self.config.host, self.config.grpc_port).close()  # a taken port: InferoxIOError naming it, as for --port
        self.app = self._build_app()

    @classmethod
    def for_path(cls, path: str | Path, *, config: ServerConfig | None = None, name: str | None = None) -> InferoxServer:
        """The server of a package folder (served as ``name``, default its metadata name) or of a
        model repository folder (what ``inferox serve PATH`` runs; nothing loads until it starts)."""
        from inferox.core.errors import ConfigError, PackageNotFoundError

        p = Path(path)
        if not p.exists():
            raise PackageNotFoundError(f"no such package or model repository: {p}", path=str(p))
        if not p.is_dir():
            raise ConfigError("PATH must be a package folder or a model repository folder", field="path", value=str(p))
        if is_package(p):
            return cls(packages={name or package_name(p): p}, config=config)
        return cls(repository=p, config=config)

    # -- the data plane's state, for callers of the old API ------------------------------------------------
    @property
    def repository(self) -> ModelRepository | None:
        return self.dataplane.repository

    @property
    def models(self) -> dict[str, ServedModel]:
        return self.dataplane.models

    @property
    def failed(self) -> dict[str, str]:
        return self.dataplane.failed

    @property
    def metrics(self) -> Any:
        return self.dataplane.metrics

    @property
    def _startup_done(self) -> bool:
        return self.dataplane.startup_done

    @property
    def _shutting_down(self) -> bool:
        return self.dataplane.shutting_down

    def served_model(self, name: str, version: str | None = None) -> ServedVersion:
        return self.dataplane.served(name, version)

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

    def is_ready(self) -> bool:
        return self.dataplane.is_ready()

    async def load_from_repository(self, name: str) -> ServedModel:
        """(Re)load ``name`` from the repository (see :meth:`DataPlane.load`)."""
        return await self.dataplane.load(name)

    async def unload(self, name: str) -> None:
        await self.dataplane.unload(name)

    async def startup(self) -> None:
        """Load every configured model (see :meth:`DataPlane.startup`)."""
        await self.dataplane.startup(packages=self.packages, models=self._pending, load_repository=self.load_repository)

    async def shutdown(self) -> None:
        """Refuse new requests, wait for in-flight ones (bounded), then shut the engine down."""
        self.dataplane.shutting_down = True
        if self._in_flight:
            self._drained.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._drained.wait(), timeout=self.config.graceful_timeout_s)
        await self.dataplane.shutdown()

    # -- helpers ---------------------------------------------------------------------------------------
    def _check_token(self, request: Request) -> JSONResponse | None:
        return check_bearer(request, self.config.token)

    def _protect(self, request: Request) -> JSONResponse | None:
        return self._check_token(request) if self.config.protect_all else None

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
        if not decomp.eof:
            raise InvalidInputError(f"request body is truncated {encoding} data", name="content-encoding", actual=encoding)
        if decomp.unused_data:
            # Bytes after the compressed stream (a second gzip member, garbage) are not ignored.
            raise InvalidInputError(f"request body has {len(decomp.unused_data)} bytes after the end of the {encoding} data", name="content-encoding", actual=encoding)
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
        slot = request.scope.get(ACCESS_RECORD)
        if slot is not None:  # under uvicorn: logged once the response's last byte is written
            slot[:] = [record]
            return
        access_log.info(json.dumps(record, separators=(",", ":")))

    # -- endpoints -----------------------------------------------------------------------------------
    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(self, request: Request) -> Response:
        ok = self.is_ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def server_metadata(self, request: Request) -> Response:
        return self._protect(request) or JSONResponse(self.dataplane.server_metadata())

    async def model_metadata(self, request: Request) -> Response:
        denied = self._protect(request)
        if denied:
            return denied
        try:
            return JSONResponse(self.dataplane.model_metadata(request.path_params["name"], request.path_params.get("version")))
        except InferoxError as exc:
            return _inferox_error_response(exc)

    async def model_config(self, request: Request) -> Response:
        denied = self._protect(request)
        if denied:
            return denied
        try:
            return JSONResponse(self.dataplane.model_config(request.path_params["name"], request.path_params.get("version")))
        except InferoxError as exc:
            return _inferox_error_response(exc)

    async def model_ready(self, request: Request) -> Response:
        denied = self._protect(request)
        if denied:
            return denied
        name = request.path_params["name"]
        try:
            ok = self.dataplane.model_ready(name, request.path_params.get("version"))
        except InferoxError as exc:
            return _inferox_error_response(exc)
        return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)

    async def infer(self, request: Request) -> Response:
        started = time.perf_counter()
        name = request.path_params["name"]
        request_id = header_safe_id(request.headers.get("x-request-id"))
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
        dp = self.dataplane
        version = request.path_params.get("version")
        try:
            try:
                body = await self._read_body(request)
            except _BodyTooLarge:
                dp.record(name, version=version, started=started, code=PAYLOAD_TOO_LARGE)
                return _error(413, PAYLOAD_TOO_LARGE, f"request body exceeds {self.config.max_body_bytes} bytes"), PAYLOAD_TOO_LARGE
            header_length = request.headers.get(HEADER_LENGTH.lower())
            if len(body) > _DECODE_IN_THREAD_BYTES:
                req = await asyncio.to_thread(dp.decode, body, header_length)
            else:
                req = dp.decode(body, header_length)
            if req.id:
                request_id = header_safe_id(req.id)
            answer = await self._run_until_disconnect(request, name, req, version)
            if answer is None:
                dp.record(name, version=version, started=started, code=CLIENT_DISCONNECTED)
                return Response(status_code=499), CLIENT_DISCONNECTED
            served, result = answer
            # Large outputs (JSON especially) would stall the event loop while encoded.
            big = sum(getattr(v, "nbytes", 0) for v in result.values()) > _DECODE_IN_THREAD_BYTES // 4
            payload, headers = await asyncio.to_thread(dp.encode, served, req, result) if big else dp.encode(served, req, result)
            payload = _maybe_compress(request, payload, headers)
            headers["x-request-id"] = request_id
            dp.record(name, started=started, result=result)
            return Response(payload, headers=headers), None
        except InferoxError as exc:
            dp.record(name, version=version, started=started, code=exc.code)
            response = _inferox_error_response(exc)
            response.headers["x-request-id"] = request_id
            return response, exc.code
        except Exception as exc:
            log.exception("internal error serving %s", name)
            dp.record(name, version=version, started=started, code=INTERNAL)
            return _error(500, INTERNAL, f"internal server error ({type(exc).__name__})", {"x-request-id": request_id}), INTERNAL

    async def _run_until_disconnect(self, request: Request, name: str, req: Any, version: str | None) -> tuple[ServedVersion, InferenceResult] | None:
        """Run the request through the data plane; ``None`` if the client went away first (the work is cancelled)."""
        dp = self.dataplane
        timeout = dp.timeout(dp.served(name, version), req)
        infer_task = asyncio.ensure_future(dp.infer(name, req, version=version))
        watch = asyncio.ensure_future(_wait_for_disconnect(request))
        try:
            done, _ = await asyncio.wait({infer_task, watch}, timeout=None if timeout is None else timeout + 1.0, return_when=asyncio.FIRST_COMPLETED)
            if infer_task in done:
                return infer_task.result()
            if watch in done:
                infer_task.cancel()
                log.info("client disconnected; dropped request for %s", name)
                return None
            infer_task.cancel()
            raise InferoxTimeoutError(f"request to model {name!r} timed out after {timeout}s", timeout=timeout, model=name)
        finally:
            watch.cancel()
            if not infer_task.done():
                infer_task.cancel()

    # -- repository extension ------------------------------------------------------------------------
    async def repository_index(self, request: Request) -> Response:
        denied = self._check_token(request)
        if denied:
            return denied
        try:
            body = await self._read_body(request)  # bounded like every other body
        except _BodyTooLarge:
            return _error(413, PAYLOAD_TOO_LARGE, f"request body exceeds {self.config.max_body_bytes} bytes")
        except InferoxError as exc:
            return _inferox_error_response(exc)
        ready_only = False
        if body.strip():
            try:
                doc = json.loads(body)
            except (ValueError, RecursionError):
                return _error(400, InvalidInputError.code, "repository index request body must be a JSON object")
            if not isinstance(doc, dict) or not isinstance(doc.get("ready", False), bool):
                return _error(400, InvalidInputError.code, "repository index request body must be a JSON object whose 'ready' is true or false")
            ready_only = doc.get("ready", False)
        return JSONResponse(self.dataplane.repository_index(ready_only=ready_only))

    async def repository_load(self, request: Request) -> Response:
        started = time.perf_counter()
        denied = self._check_token(request)
        if denied:
            return denied
        name = request.path_params["name"]
        try:
            model = await self.dataplane.load(name)
        except InferoxError as exc:
            self._log_access(request, request_id=uuid.uuid4().hex, status=exc.http_status, started=started, model=name, code=exc.code)
            return _inferox_error_response(exc)
        except Exception as exc:  # noqa: BLE001 - report, do not crash
            return _error(500, INTERNAL, f"loading {name!r} failed: {type(exc).__name__}: {exc}")
        self._log_access(request, request_id=uuid.uuid4().hex, status=200, started=started, model=name)
        return JSONResponse({"name": name, "version": model.version, "versions": sorted(model.versions), "state": model.state})

    async def repository_unload(self, request: Request) -> Response:
        denied = self._check_token(request)
        if denied:
            return denied
        name = request.path_params["name"]
        try:
            await self.dataplane.unload(name)
        except InferoxError as exc:
            return _inferox_error_response(exc)
        return JSONResponse({"name": name, "state": ModelState.UNAVAILABLE})

    async def model_statistics(self, request: Request) -> Response:
        denied = self._protect(request)
        if denied:
            return denied
        try:
            return JSONResponse(self.dataplane.statistics(request.path_params.get("name"), request.path_params.get("version")))
        except InferoxError as exc:
            return _inferox_error_response(exc)

    async def metrics_endpoint(self, request: Request) -> Response:
        denied = self._protect(request)
        if denied:
            return denied
        # Formatted in a worker thread: a scrape never holds up the event loop serving inference.
        page = await asyncio.to_thread(self.metrics.render)
        return PlainTextResponse(page, media_type="text/plain; version=0.0.4")

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
            # while packages load and warm up, as KServe and Triton do. With exit_on_error a
            # model that fails to load stops the server (see ``inferox serve``).
            if self.config.grpc_port is not None:
                from inferox.engine.server._grpc import GrpcServer

                self.grpc = GrpcServer(self.dataplane, config=self.config, port=self.config.grpc_port)
                await self.grpc.start()
            loading = asyncio.create_task(self._startup_or_exit())
            try:
                yield
            finally:
                if not loading.done():
                    loading.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await loading
                if self.grpc is not None:
                    await self.grpc.stop()
                await self.shutdown()

        routes = [
            Route("/v2/health/live", self.health_protected, methods=["GET"]),
            Route("/v2/health/ready", self.health_protected, methods=["GET"]),
            Route("/v2", self.server_metadata, methods=["GET"]),
            Route("/v2/models/stats", self.model_statistics, methods=["GET"]),
            Route("/v2/models/{name}/stats", self.model_statistics, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}/stats", self.model_statistics, methods=["GET"]),
            Route("/v2/models/{name}", self.model_metadata, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}", self.model_metadata, methods=["GET"]),
            Route("/v2/models/{name}/config", self.model_config, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}/config", self.model_config, methods=["GET"]),
            Route("/v2/models/{name}/ready", self.model_ready, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}/ready", self.model_ready, methods=["GET"]),
            Route("/v2/models/{name}/infer", self.infer, methods=["POST"]),
            Route("/v2/models/{name}/versions/{version}/infer", self.infer, methods=["POST"]),
            Route("/v2/repository/index", self.repository_index, methods=["POST"]),
            Route("/v2/repository/models/{name}/load", self.repository_load, methods=["POST"]),
            Route("/v2/repository/models/{name}/unload", self.repository_unload, methods=["POST"]),
            Route("/metrics", self.metrics_endpoint, methods=["GET"]),
            *OpenAIEmbeddings(self).routes(),
        ]
        return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})

    @property
    def startup_error(self) -> BaseException | None:
        """The error start-up failed with (``exit_on_error``): the one ``inferox serve`` exits with."""
        return self.dataplane.startup_error

    #: Called with the error when start-up fails with ``exit_on_error`` (``inferox serve`` stops uvicorn).
    on_startup_error: Any = None

    async def _startup_or_exit(self) -> None:
        try:
            await self.startup()
        except Exception as exc:  # noqa: BLE001 - recorded and handed to whoever runs the server
            log.error("start-up failed, stopping: %s", exc)
            if self.on_startup_error is not None:
                self.on_startup_error(exc)


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

