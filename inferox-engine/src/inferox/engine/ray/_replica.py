"""The Ray Serve replica: one deployment that is both the HTTP ingress and the model server.

Ray Serve's proxy hands each HTTP request straight to a replica of this deployment (one hop); the
replica answers it with the very Starlette app ``inferox serve`` runs (:class:`InferoxServer`) over
its own :class:`~inferox.engine.server.DataPlane` — every route of the REST app (V2, OpenAI
``/v1/embeddings``, ``/metrics``, health, the repository extension, and whatever the route table
gains later) with its versions, limits, timeouts, error table, metrics and access log. Nothing of
the protocol is written again for Ray.

What Ray adds sits in front of that app, in :class:`ReplicaApp`: the model a request names (the
path's ``/v2/models/NAME``, else the JSON body's ``"model"`` or ``?model=``, else the repository's
only model) is verified and loaded first through
Ray Serve model multiplexing (``@serve.multiplexed``: least recently used models are evicted),
``…/load`` loads through the same path and ``…/unload`` is refused (eviction is Ray Serve's job).

Packages are checked before anything loads: the digest of each package's ``metadata.json`` must be
the one the driver saw, and every file's sha256 must match it (``load_package(verify=True)``); a
missing or corrupt package makes :meth:`InferoxReplica.check_health` raise with the reason, so Ray
Serve replaces the replica instead of letting it serve wrong answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from inferox.core.errors import InferoxError, InvalidInputError, ModelNotFoundError, PackageIntegrityError, PackageNotFoundError
from inferox.engine.server._dataplane import REPOSITORY
from inferox.engine.server._repository import PACKAGE_MARKER, ModelRepository, check_model_name
from inferox.engine.server.app import InferoxServer, ServerConfig, error_response, request_context

__all__ = ["UNSUPPORTED", "InferoxReplica", "ReplicaApp", "metadata_digest", "package_digests"]

log = logging.getLogger("inferox.ray")

#: Code of a request this deployment does not support (unloading: Ray Serve evicts models itself).
UNSUPPORTED = "UNSUPPORTED"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: ``/v2/models/NAME[/...]`` (``/v2/models/stats`` is server-wide, not a model).
_MODEL_PATH = re.compile(r"^/v2/models/([^/]+)(?:/|$)")
_REPOSITORY_PATH = re.compile(r"^/v2/repository/models/([^/]+)/(load|unload)$")


def metadata_digest(package: Path) -> str:
    """sha256 of a package's ``metadata.json`` (which itself records every file's sha256)."""
    return hashlib.sha256((package / PACKAGE_MARKER).read_bytes()).hexdigest()


def package_digests(repository: str | Path) -> dict[str, str]:
    """``{model name: metadata digest}`` of the served version of every model in ``repository``."""
    repo = ModelRepository(repository)
    out: dict[str, str] = {}
    for name in repo.names():
        entry = repo.entry(name)
        out[name] = metadata_digest(entry.versions[entry.latest])
    return out


def _reason(exc: BaseException) -> str:
    return f"{exc.code}: {exc.message}" if isinstance(exc, InferoxError) else f"{type(exc).__name__}: {exc}"


class _LoadedModel:
    """What the multiplexer caches per model; Ray Serve calls ``__del__`` when it evicts one
    (least recently used), which unloads the model from this replica's server."""

    def __init__(self, replica: InferoxReplica, name: str) -> None:
        self.replica = replica
        self.name = name
        self.closed = False

    def __del__(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.replica._evict(self.name)


class InferoxReplica:
    """A Ray Serve replica serving the models of a repository every node can read, over HTTP.

    ``digests`` (name → sha256 of ``metadata.json``, see :func:`package_digests`) are what the
    driver saw; a model missing here or differing from them makes the replica unhealthy. The class
    is a plain Python class: :func:`~inferox.engine.ray.build_app` wraps it in ``serve.ingress``
    and ``serve.deployment``; :meth:`asgi_app` is what Ray Serve's proxy calls.
    """

    def __init__(
        self,
        repository: str | Path,
        *,
        digests: Mapping[str, str] | None = None,
        config: ServerConfig | None = None,
        verify_on_start: bool = True,
    ) -> None:
        self.digests = dict(digests or {})
        self.config = config or ServerConfig(access_log=False)
        #: Why this replica must not serve (``None`` while healthy); :meth:`check_health` raises it.
        self.problem: InferoxError | None = None
        self.server: InferoxServer | None = None
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        #: What :meth:`get_model` keeps loaded outside Ray Serve (its multiplexer holds them there).
        self._held: dict[str, _LoadedModel] = {}
        try:
            self.repository = ModelRepository(repository)
        except InferoxError as exc:
            self.problem = PackageNotFoundError(f"model repository not readable on this node: {_reason(exc)}", path=str(repository))
            return
        # The replica loads models when a request names them (multiplexing), not at start-up.
        self.server = InferoxServer(repository=self.repository, config=self.config, load_repository=False)
        self.server.managed = True  # ReplicaApp runs start-up and shutdown, not the app's lifespan
        if verify_on_start:
            for name in sorted(set(self.digests) | set(self.repository.names())):
                try:
                    self.verify(name)
                except InferoxError as exc:
                    self.problem = exc
                    log.error("replica unhealthy: %s", _reason(exc))
                    break

    # -- packages ----------------------------------------------------------------------------------
    def verify(self, name: str) -> Path:
        """The package path of ``name``'s highest version once its digest and every served
        version's files check out; :class:`PackageNotFoundError` / :class:`PackageIntegrityError`
        naming the path otherwise."""
        from inferox.mlpkg import load_package

        check_model_name(name)
        try:
            entry = self.repository.entry(name)
        except ModelNotFoundError as exc:
            if name in self.digests:
                raise PackageNotFoundError(f"package of model {name!r} is missing on this node", path=str(self.repository.root / name)) from exc
            raise
        path = entry.versions[entry.latest]
        expected = self.digests.get(name)
        if expected is not None and metadata_digest(path) != expected:
            raise PackageIntegrityError(
                f"package of model {name!r} differs from the one the deployment was built from (metadata.json digest)", path=str(path), field="sha256"
            )
        for version in entry.served_versions():
            load_package(entry.versions[version], verify=True)
        return path

    # -- health -----------------------------------------------------------------------------------------
    def check_health(self) -> None:
        """Ray Serve's health check: raises the reason this replica must not serve."""
        if self.problem is not None:
            raise self.problem

    async def is_ready(self) -> bool:
        """Whether this replica can serve."""
        return self.problem is None

    async def start(self) -> InferoxServer:
        """Start this replica's server (once; Ray Serve runs it as the app's lifespan start-up)."""
        if self.problem is not None:
            raise self.problem
        assert self.server is not None
        if not self._started:
            self._loop = asyncio.get_running_loop()
            await self.server.startup()  # nothing configured to preload: marks start-up done
            self._started = True
        return self.server

    async def shutdown(self) -> None:
        """Drain and shut down this replica's server (Ray Serve runs it as the lifespan shutdown)."""
        if self.server is not None and self._started:
            self._started = False
            await self.server.shutdown()

    # -- multiplexing -----------------------------------------------------------------------------------
    async def load(self, name: str) -> _LoadedModel:
        """Verify and load ``name`` into this replica's server (the multiplexed loader calls this)."""
        server = await self.start()
        try:
            await asyncio.to_thread(self.verify, name)
        except (PackageIntegrityError, PackageNotFoundError) as exc:
            # The package on this node is not the one we were deployed with: stop serving here.
            self.problem = exc
            raise
        await server.load_from_repository(name)
        return _LoadedModel(self, name)

    async def get_model(self, model_id: str) -> _LoadedModel:
        """The loaded model ``model_id``, loading it on first use. Under Ray Serve,
        :func:`~inferox.engine.ray.replica_class` replaces this with the ``@serve.multiplexed``
        loader (an LRU of ``max_models_per_replica``); outside it, every model loaded stays."""
        loaded = self._held.get(model_id)
        if loaded is None:
            loaded = self._held[model_id] = await self.load(model_id)
        return loaded

    async def ensure_model(self, name: str) -> None:
        """``name`` loaded here before its request runs: unknown names are refused before the
        multiplexer sees them (it would evict a served model to make room for nothing)."""
        check_model_name(name)
        assert self.server is not None
        if name not in self.server.models:
            self.repository.entry(name)  # MODEL_NOT_FOUND naming what is served
        await self.get_model(name)

    def only_model(self) -> str | None:
        """The repository's model when it holds exactly one (the deployment's models: the digests)."""
        names = sorted(self.digests) if self.digests else self.repository.names()
        return names[0] if len(names) == 1 else None

    def _evict(self, name: str) -> None:
        """Unload ``name`` (called from a worker thread by the multiplexer, or on garbage collection)."""
        server, loop = self.server, self._loop
        if server is None or loop is None or loop.is_closed() or name not in server.models:
            return
        fut = asyncio.run_coroutine_threadsafe(server.unload(name), loop)
        with contextlib.suppress(RuntimeError):
            if asyncio.get_running_loop() is loop:
                return  # on the loop itself: the unload runs once we yield; never block here
        with contextlib.suppress(Exception):
            fut.result(timeout=self.config.graceful_timeout_s + 5)

    # -- HTTP -------------------------------------------------------------------------------------------
    def __serve_build_asgi_app__(self) -> ReplicaApp:
        """The replica's ASGI app (Ray Serve calls this once the constructor has run)."""
        return self.asgi_app(behind_ray_proxy=True)

    def asgi_app(self, *, behind_ray_proxy: bool = False) -> ReplicaApp:
        """The ASGI app of this replica (also runnable outside Ray Serve, e.g. in tests); see
        :class:`ReplicaApp` for ``behind_ray_proxy``."""
        return ReplicaApp(self, behind_ray_proxy=behind_ray_proxy)


class ReplicaApp:
    """The ASGI app of a replica: the server's own Starlette app, after the model the request
    names is loaded here (see the module doc). Lifespan start-up and shutdown start and drain the
    replica's server.

    ``behind_ray_proxy``: Ray Serve's proxy gives every request an ``X-Request-ID`` (the client's,
    or one it makes up) and adds that header to every response; the app's own header with the same
    value is then dropped, so a response carries the id once (a V2 body's ``id``, which the data
    plane answers with, still differs and stays)."""

    def __init__(self, replica: InferoxReplica, *, behind_ray_proxy: bool = False) -> None:
        self.replica = replica
        self.behind_ray_proxy = behind_ray_proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        replica = self.replica
        if replica.problem is not None or replica.server is None:
            await self._unhealthy(scope, receive, send)
            return
        server = await replica.start()
        if scope["type"] != "http":
            await server.app(scope, receive, send)
            return
        if self.behind_ray_proxy:
            send = _without_header(send, b"x-request-id", dict(scope["headers"]).get(b"x-request-id"))
        path: str = scope.get("path", "")
        repo = _REPOSITORY_PATH.match(path)
        if repo is not None and scope["method"] == "POST":
            await self._repository(scope, receive, send, repo.group(1), repo.group(2))
            return
        match = _MODEL_PATH.match(path)
        name = match.group(1) if match is not None and match.group(1) != "stats" else None
        if name is None and not path.startswith("/v2") and path != "/metrics":
            # The OpenAI-style routes and TEI's name the model in the JSON body or in ?model=;
            # a request naming none goes to the repository's only model, when it has one.
            if scope["method"] == "POST":
                name, receive = await _model_in_body(receive, server.config.max_body_bytes)
            name = name or _model_in_query(scope) or replica.only_model()
        if name is not None:
            try:
                await replica.ensure_model(name)
            except (ModelNotFoundError, InvalidInputError):
                pass  # names nothing servable: the app answers exactly as `inferox serve` does
            except InferoxError as exc:
                await _error(scope, receive, send, exc)
                return
        await server.app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.replica.problem is None:
                    try:
                        await self.replica.start()
                    except Exception as exc:  # noqa: BLE001 - reported to Ray Serve, which retries the replica
                        await send({"type": "lifespan.startup.failed", "message": _reason(exc)})
                        return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.replica.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _unhealthy(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Everything but liveness answers the reason this replica must not serve."""
        problem = self.replica.problem or PackageNotFoundError("model repository not readable on this node", path="")
        path = scope.get("path", "")
        if scope["type"] != "http":
            return
        if path == "/v2/health/live":
            await JSONResponse({"live": True})(scope, receive, send)
        elif path == "/v2/health/ready":
            await JSONResponse({"ready": False}, status_code=503)(scope, receive, send)
        else:
            await _error(scope, receive, send, problem)

    async def _repository(self, scope: Scope, receive: Receive, send: Send, name: str, action: str) -> None:
        """``…/load`` loads through the multiplexer (authorised and logged by the data plane);
        ``…/unload`` is refused: Ray Serve evicts least recently used models itself."""
        replica = self.replica
        assert replica.server is not None
        dp = replica.server.dataplane
        request = Request(scope, receive)
        ctx = request_context(request)
        try:
            with dp.call(ctx, f"repository_{action}", model=name[:200], scope=REPOSITORY):
                if action == "unload":
                    response: Response = JSONResponse(
                        {"error": "models are evicted least-recently-used by Ray Serve multiplexing; unload is not supported", "code": UNSUPPORTED},
                        status_code=405,
                    )
                else:
                    await replica.ensure_model(name)
                    model = replica.server.models[name]
                    response = JSONResponse({"name": name, "version": model.version, "versions": sorted(model.versions), "state": model.state})
        except InferoxError as exc:
            response = error_response(exc, ctx)
        await response(scope, receive, send)


async def _error(scope: Scope, receive: Receive, send: Send, exc: InferoxError) -> None:
    """``exc`` in the error shape of the route asked for (OpenAI's under ``/v1/``, V2's elsewhere)."""
    if scope.get("path", "").startswith("/v1/"):
        from inferox.engine.server._openai_http import openai_error

        response: Response = openai_error(exc)
    else:
        response = error_response(exc)
    await response(scope, receive, send)


def _without_header(send: Send, name: bytes, value: bytes | None) -> Send:
    """``send`` leaving out the response header ``name: value`` (exactly that value)."""
    if value is None:
        return send

    async def filtered(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [(k, v) for k, v in message.get("headers", []) if not (k.lower() == name and v == value)]
        await send(message)

    return filtered


def _model_in_query(scope: Scope) -> str | None:
    """``?model=NAME`` (TEI's routes take the model there too)."""
    from urllib.parse import parse_qs

    values = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1")).get("model")
    return values[0] if values else None


async def _model_in_body(receive: Receive, limit: int) -> tuple[str | None, Receive]:
    """The ``"model"`` of a JSON request body, and a ``receive`` that replays the body to the app.

    Reads at most ``limit`` bytes: a larger body (or one that is not a JSON object naming a model)
    names nothing here, and the app answers it as it answers it anywhere."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            break
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    name: str | None = None
    complete = size <= limit and messages[-1]["type"] == "http.request" and not messages[-1].get("more_body", False)
    if complete:
        with contextlib.suppress(ValueError, RecursionError):
            doc = json.loads(b"".join(chunks))
            if isinstance(doc, dict) and isinstance(doc.get("model"), str):
                name = doc["model"]
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return name, replay
