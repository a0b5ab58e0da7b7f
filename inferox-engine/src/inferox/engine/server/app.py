"""The Open Inference Protocol (KServe V2) over HTTP: a transport of the data plane (Starlette).

Each route reads its request off HTTP (the body within the limit, ``Content-Encoding``, the
headers the data plane needs: ``Authorization``, ``X-Request-ID``, ``traceparent``), calls the
:class:`~inferox.engine.server.DataPlane` — which authorises, admits, runs, records and logs — and
writes the answer: V2 JSON / binary tensor data (compressed when asked), or the error as
``{"error": message, "code": CODE}`` with the HTTP status of ``_errors.ERROR_STATUS`` (429 adds
``Retry-After``). The text APIs — OpenAI's embeddings (``_openai_http``), rerank/classify and TEI's
routes (``_text_http``) — ride on the same app.

Endpoints: health (``/v2/health/live``, ``/v2/health/ready``), server and model metadata
(``/v2``, ``/v2/models/{name}[/versions/{v}]``), model configuration (``.../config``), model
readiness, inference (``POST /v2/models/{name}[/versions/{v}]/infer``), the repository extension
(``/v2/repository/index``, ``/v2/repository/models/{name}/load|unload``), statistics and Prometheus
metrics (``/metrics``). Run it with the composition root (``_run.Server``: REST, gRPC, signals,
shutdown); as a bare ASGI app (``create_app``) its lifespan loads the models.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from inferox.core.errors import ConfigError, InferoxError, InvalidInputError, PackageNotFoundError
from inferox.core.model import AnyModel, Model
from inferox.engine.server._config import ModelState, ServerConfig
from inferox.engine.server._dataplane import DataPlane, InferResponse, ServedModel, ServedVersion
from inferox.engine.server._errors import (
    ClientDisconnectedError,
    PayloadTooLargeError,
    error_status,
    retry_after_s,
    v2_error_body,
)
from inferox.engine.server._observe import RequestContext, header_safe_id
from inferox.engine.server._protocol import HEADER_LENGTH, parse_infer_request
from inferox.engine.server._repository import ModelRepository, ServingSettings, check_model_name, is_package
from inferox.engine.server._text_http import text_routes
from inferox.engine.server._timing import ACCESS_RECORD

__all__ = ["InferoxServer", "ModelState", "ServedModel", "ServerConfig", "check_bearer", "create_app", "header_safe_id", "http_error"]

log = logging.getLogger("inferox.server")

_DECODE_IN_THREAD_BYTES = 1 << 20
#: The protocol label of this transport (metrics, access log, spans).
PROTOCOL = "rest"


def error_response(exc: InferoxError, ctx: RequestContext | None = None) -> JSONResponse:
    """The V2 error response of ``exc``: its status from the one table, ``Retry-After`` on overload."""
    headers: dict[str, str] = {}
    retry = retry_after_s(exc)
    if retry is not None:
        headers["retry-after"] = str(retry)
    if exc.code == "UNAUTHORIZED":
        headers["www-authenticate"] = "Bearer"
    if ctx is not None:
        headers["x-request-id"] = ctx.response_id
    return JSONResponse(v2_error_body(exc), status_code=error_status(exc).http, headers=headers)


def check_bearer(request: Request, token: str | None) -> JSONResponse | None:
    """``None`` when ``token`` is unset or the request carries it as a bearer token, else the 401
    (for routes outside the data plane: the Ray ingress)."""
    from inferox.engine.server._auth import bearer_ok
    from inferox.engine.server._errors import UnauthorizedError

    if not token or bearer_ok(request.headers.get("authorization"), token):
        return None
    return error_response(UnauthorizedError())


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own HTTP errors (unknown path, wrong method) in the ``{"error", "code"}`` shape."""
    assert isinstance(exc, HTTPException)
    code = "NOT_FOUND" if exc.status_code == 404 else "METHOD_NOT_ALLOWED" if exc.status_code == 405 else "HTTP_ERROR"
    path = request.scope.get("path", "")
    shown = path if len(path) <= 200 else path[:200] + "…"
    return JSONResponse({"error": f"{exc.detail}: {request.method} {shown}", "code": code}, status_code=exc.status_code)


#: The request headers the data plane reads (one pass over the raw headers finds them all).
_CONTEXT_HEADERS = {b"x-request-id": "request_id", b"authorization": "authorization", b"traceparent": "traceparent", b"tracestate": "tracestate"}


def request_context(request: Request, *, protocol: str = PROTOCOL) -> RequestContext:
    """The data plane's view of an HTTP request (headers it needs, the timing slot)."""
    scope = request.scope
    found: dict[str, str] = {}
    for key, value in scope["headers"]:
        field = _CONTEXT_HEADERS.get(key)
        if field is not None and field not in found:
            found[field] = value.decode("latin-1")
    client = scope.get("client")
    return RequestContext(
        protocol,
        f"{scope['method']} {scope.get('path', '')[:200]}",
        found.get("request_id"),
        found.get("authorization"),
        found.get("traceparent"),
        found.get("tracestate"),
        f"{client[0]}:{client[1]}" if client else None,
        log_slot=scope.get(ACCESS_RECORD),
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, decompressed (gzip/deflate), within ``limit`` bytes before and after
    decompression: :class:`PayloadTooLargeError` beyond it, :class:`ClientDisconnectedError` when
    the client goes away mid-body, :class:`InvalidInputError` for bad compressed data."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientDisconnectedError("the client disconnected while sending the request body") from None
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise InvalidInputError(f"unsupported Content-Encoding {encoding[:40]!r}", name="content-encoding", expected="gzip, deflate or identity", actual=encoding[:40])
    # Bounded decompression: a small compressed body must not expand past the body limit.
    decomp = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = decomp.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInputError(f"request body is not valid {encoding} data: {exc}", name="content-encoding", actual=encoding) from exc
    if len(out) > limit or decomp.unconsumed_tail:
        raise _too_large(limit)
    if not decomp.eof:
        raise InvalidInputError(f"request body is truncated {encoding} data", name="content-encoding", actual=encoding)
    if decomp.unused_data:
        # Bytes after the compressed stream (a second gzip member, garbage) are not ignored.
        raise InvalidInputError(f"request body has {len(decomp.unused_data)} bytes after the end of the {encoding} data", name="content-encoding", actual=encoding)
    return out


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"request body exceeds {limit} bytes", limit=limit)


def disconnect_watch(request: Request) -> Callable[[], Awaitable[None]]:
    """A coroutine function returning once the client has gone (call it after the body is read:
    the next ASGI message can then only be the disconnect)."""

    async def wait() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    return wait


class InferoxServer:
    """The REST transport: a :class:`DataPlane` (:attr:`dataplane`) and the Starlette app serving it (:attr:`app`).

    Build one with a model repository (``repository``), single packages (``packages``: name →
    package folder) and/or in-memory models (:meth:`add_model`); models load when the server
    starts and ``/v2/health/ready`` turns true once every one of them has loaded and warmed up.
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
        #: Set by the composition root that runs this app (it starts the models itself); a bare
        #: ASGI server running :attr:`app` leaves it unset and the app's lifespan starts them.
        self.managed = False
        self._loading: asyncio.Task[None] | None = None
        #: Called with the error when start-up fails with ``exit_on_error`` (the root stops serving).
        self.on_startup_error: Callable[[BaseException], None] | None = None
        #: The gRPC transport, when the composition root runs one beside this app.
        self.grpc: Any = None
        if self.config.grpc_port is not None:
            from inferox.engine.server._grpc import require_grpc
            from inferox.engine.server._run import bind_socket

            require_grpc()  # a missing [grpc] extra (or too old a protobuf) fails here, in one line
            if self.config.grpc_port:
                bind_socket(self.config.host, self.config.grpc_port).close()  # a taken port: InferoxIOError naming it, as for --port
        self.app = self._build_app()

    @classmethod
    def for_path(cls, path: str | Path, *, config: ServerConfig | None = None, name: str | None = None) -> InferoxServer:
        """The server of a package folder (served as ``name``, default its metadata name) or of a
        model repository folder (what ``inferox serve PATH`` runs; nothing loads until it starts)."""
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

    def check_servable(self) -> None:
        """Refuse to start with nothing to serve — no package, no in-memory model, a repository
        with no model — unless ``allow_empty`` (models are then loaded through the repository API)."""
        if self.config.allow_empty or self.packages or self._pending:
            return
        if self.load_repository and self.repository is not None and self.repository.names():
            return
        if not self.load_repository and self.repository is not None:
            return
        where = str(self.repository.root) if self.repository is not None else "(nothing given)"
        raise PackageNotFoundError(
            f"nothing to serve in {where}: no package (metadata.json) and no model folder (NAME/ or NAME/VERSION/ holding a package); "
            "start it with --allow-empty to load models later through the repository API",
            path=where,
        )

    async def startup(self) -> None:
        """Load every configured model (see :meth:`DataPlane.startup`)."""
        await self.dataplane.startup(packages=self.packages, models=self._pending, load_repository=self.load_repository)

    def start_loading(self) -> asyncio.Task[None]:
        """Start loading the models in the background (the server is live, not ready, meanwhile)."""
        if self._loading is None:
            self._loading = asyncio.get_running_loop().create_task(self._startup_or_exit())
        return self._loading

    async def stop_loading(self, wait: float = 0.0) -> None:
        """Stop the start-up loads: let them end (abandoned loads do, at once) for ``wait``
        seconds, then cancel what is left."""
        task = self._loading
        if task is None or task.done():
            return
        if wait > 0:
            await asyncio.wait({task}, timeout=wait)
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def shutdown(self) -> None:
        """Refuse new requests, wait for in-flight ones (bounded), then shut the engine down."""
        await self.dataplane.drain(self.config.graceful_timeout_s)
        await self.dataplane.shutdown()

    @property
    def startup_error(self) -> BaseException | None:
        """The error start-up failed with (``exit_on_error``): the one ``inferox serve`` exits with."""
        return self.dataplane.startup_error

    async def _startup_or_exit(self) -> None:
        try:
            await self.startup()
        except Exception as exc:  # noqa: BLE001 - recorded and handed to whoever runs the server
            log.error("start-up failed, stopping: %s", exc)
            if self.on_startup_error is not None:
                self.on_startup_error(exc)

    # -- endpoints -----------------------------------------------------------------------------------
    async def live(self, request: Request) -> Response:
        ctx = request_context(request)
        try:
            return JSONResponse({"live": self.dataplane.health(ctx=ctx)})
        except InferoxError as exc:
            return error_response(exc, ctx)

    async def ready(self, request: Request) -> Response:
        ctx = request_context(request)
        try:
            ok = self.dataplane.readiness(ctx=ctx)
        except InferoxError as exc:
            return error_response(exc, ctx)
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def server_metadata(self, request: Request) -> Response:
        ctx = request_context(request)
        try:
            return JSONResponse(self.dataplane.server_metadata(ctx=ctx))
        except InferoxError as exc:
            return error_response(exc, ctx)

    async def model_metadata(self, request: Request) -> Response:
        ctx = request_context(request)
        try:
            return JSONResponse(self.dataplane.model_metadata(request.path_params["name"], request.path_params.get("version"), ctx=ctx))
        except InferoxError as exc:
            return error_response(exc, ctx)

    async def model_config(self, request: Request) -> Response:
        ctx = request_context(request)
        try:
            return JSONResponse(self.dataplane.model_config(request.path_params["name"], request.path_params.get("version"), ctx=ctx))
        except InferoxError as exc:
            return error_response(exc, ctx)

    async def model_ready(self, request: Request) -> Response:
        ctx = request_context(request)
        name = request.path_params["name"]
        try:
            ok = self.dataplane.model_readiness(name, request.path_params.get("version"), ctx=ctx)
        except InferoxError as exc:
            return error_response(exc, ctx)
        return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)

    async def infer(self, request: Request) -> Response:
        dp = self.dataplane
        ctx = request_context(request)
        name = request.path_params["name"]
        version = request.path_params.get("version")
        try:
            with dp.call(ctx, "infer", model=name, version=version, inference=True) as call:
                body = await read_body(request, self.config.max_body_bytes)
                header_length = request.headers.get(HEADER_LENGTH.lower())
                if len(body) > _DECODE_IN_THREAD_BYTES:
                    req = await asyncio.to_thread(parse_infer_request, body, header_length)
                else:
                    req = parse_infer_request(body, header_length)
                del body
                ctx.disconnected = disconnect_watch(request)
                answer = await dp.infer(name, req, version=version, ctx=ctx)
                with call.traced("encode"):
                    return await self._respond(request, answer, ctx)
        except InferoxError as exc:
            return error_response(exc, ctx)

    async def _respond(self, request: Request, answer: InferResponse, ctx: RequestContext) -> Response:
        # Large outputs (JSON especially) would stall the event loop while encoded.
        big = sum(o.data.nbytes for o in answer.outputs) > _DECODE_IN_THREAD_BYTES // 4
        payload, headers = await asyncio.to_thread(DataPlane.encode, answer) if big else DataPlane.encode(answer)
        payload = _maybe_compress(request, payload, headers)
        headers["x-request-id"] = ctx.response_id
        return Response(payload, headers=headers)

    # -- repository extension ------------------------------------------------------------------------
    async def repository_index(self, request: Request) -> Response:
        dp = self.dataplane
        ctx = request_context(request)
        try:
            with dp.call(ctx, "repository_index", scope="repository"):
                body = await read_body(request, self.config.max_body_bytes)  # bounded like every other body
                ready_only = _index_request(body)
                return JSONResponse(await dp.repository_index(ready_only=ready_only, ctx=ctx))
        except InferoxError as exc:
            return error_response(exc, ctx)

    async def repository_load(self, request: Request) -> Response:
        ctx = request_context(request)
        name = request.path_params["name"]
        try:
            model = await self.dataplane.load(name, ctx=ctx)
        except InferoxError as exc:
            return error_response(exc, ctx)
        return JSONResponse({"name": name, "version": model.version, "versions": sorted(model.versions), "state": model.state})

    async def repository_unload(self, request: Request) -> Response:
        ctx = request_context(request)
        name = request.path_params["name"]
        try:
            await self.dataplane.unload(name, ctx=ctx)
        except InferoxError as exc:
            return error_response(exc, ctx)
        return JSONResponse({"name": name, "state": ModelState.UNAVAILABLE})

    async def model_statistics(self, request: Request) -> Response:
        ctx = request_context(request)
        try:
            return JSONResponse(self.dataplane.statistics(request.path_params.get("name"), request.path_params.get("version"), ctx=ctx))
        except InferoxError as exc:
            return error_response(exc, ctx)

    async def metrics_endpoint(self, request: Request) -> Response:
        ctx = request_context(request)
        dp = self.dataplane
        try:
            with dp.call(ctx, "metrics"):
                # Formatted in a worker thread: a scrape never holds up the event loop serving inference.
                page = await asyncio.to_thread(dp.metrics_text)
        except InferoxError as exc:
            return error_response(exc, ctx)
        return PlainTextResponse(page, media_type="text/plain; version=0.0.4")

    # -- app -------------------------------------------------------------------------------------------
    def _build_app(self) -> Starlette:
        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            # Run as a bare ASGI app, the app loads its models itself; under the composition root
            # (``inferox serve``, ServerThread) the root does, and runs gRPC and the shutdown.
            if self.managed:
                yield
                return
            self.start_loading()
            try:
                yield
            finally:
                await self.stop_loading()
                await self.shutdown()

        routes = [
            Route("/v2/health/live", self.live, methods=["GET"]),
            Route("/v2/health/ready", self.ready, methods=["GET"]),
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
            # The text APIs beside V2 (OpenAI embeddings, rerank/classify, TEI): one list, for any app serving a data plane.
            *text_routes(self),
        ]
        return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})


def _index_request(body: bytes) -> bool:
    """``ready`` of a repository index request body (empty, or a JSON object whose optional
    ``ready`` is a boolean)."""
    if not body.strip():
        return False
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidInputError("repository index request body must be a JSON object", name="body") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("ready", False), bool):
        raise InvalidInputError("repository index request body must be a JSON object whose 'ready' is true or false", name="ready")
    return bool(doc.get("ready", False))


def _maybe_compress(request: Request, payload: bytes, headers: dict[str, str]) -> bytes:
    """gzip/deflate the response when the client asks (tritonclient's ``response_compression_algorithm``).

    ``Inference-Header-Content-Length`` keeps describing the uncompressed body, as Triton does.
    """
    if len(payload) < 1024:
        return payload
    accepted = {e.split(";")[0].strip().lower() for e in request.headers.get("accept-encoding", "").split(",")}
    if "gzip" in accepted:
        headers["content-encoding"] = "gzip"
        return gzip.compress(payload, compresslevel=1)
    if "deflate" in accepted:
        headers["content-encoding"] = "deflate"
        return zlib.compress(payload, 1)
    return payload


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
