"""The Ray Serve ingress: the V2 REST API, routed to multiplexed replicas by model name.

Server-wide endpoints (health, server metadata, the repository index) are answered here; every
``/v2/models/{name}/...`` request is forwarded, untouched, to a replica of the model deployment
with ``multiplexed_model_id=name`` — Ray Serve routes it to a replica that already holds the model
when there is one — where the same Starlette app as ``inferox serve`` answers it. A replica that
dies mid-request, or does not answer in time, gives a clear 503/504 ``{"error", "code"}`` body.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from inferox.core.errors import InferoxError, InferoxTimeoutError, ServiceUnavailableError
from inferox.engine.ray._replica import HttpReply, reply_for
from inferox.engine.server._config import ServerConfig
from inferox.engine.server._dataplane import server_metadata
from inferox.engine.server._repository import check_model_name
from inferox.engine.server.app import check_bearer, http_error

__all__ = ["InferoxIngress", "UNSUPPORTED"]

log = logging.getLogger("inferox.ray")

#: Code of a request this deployment does not support (unloading: Ray Serve evicts models itself).
UNSUPPORTED = "UNSUPPORTED"


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _response(reply: HttpReply) -> Response:
    headers = {k: v for k, v in reply.headers if k.lower() not in ("content-length", "transfer-encoding")}
    return Response(reply.body, status_code=reply.status, headers=headers)


class InferoxIngress:
    """The HTTP entry point of an Inferox Ray Serve application (see :func:`~inferox.engine.ray.build_app`).

    ``models`` is the handle of the model deployment; ``digests`` the models the deployment was
    built with; ``token`` protects the repository endpoints (every endpoint with ``protect_all``);
    ``request_timeout_s`` bounds the wait for a replica (a dead or stuck one gives 504, never a hang).
    """

    def __init__(
        self,
        models: Any,
        *,
        digests: Mapping[str, str],
        token: str | None = None,
        protect_all: bool = False,
        max_body_bytes: int = ServerConfig.max_body_bytes,
        request_timeout_s: float | None = ServerConfig.request_timeout_s,
    ) -> None:
        self.models = models
        self.digests = dict(digests)
        self.token = token
        self.protect_all = protect_all
        self.max_body_bytes = max_body_bytes
        self.request_timeout_s = request_timeout_s

    # -- forwarding ------------------------------------------------------------------------------------
    async def forward(self, name: str, method: str, path: str, query: bytes, headers: list[tuple[str, str]], body: bytes) -> HttpReply:
        """Send one request to a replica serving ``name``; errors of the hop become V2 error replies."""
        try:
            check_model_name(name)
        except InferoxError as exc:
            return reply_for(exc)
        handle = self.models.options(multiplexed_model_id=name)
        timeout = None if self.request_timeout_s is None else self.request_timeout_s + 5.0
        try:
            reply = await asyncio.wait_for(handle.handle.remote(method, path, query, headers, body), timeout=timeout)
        except asyncio.TimeoutError:
            return reply_for(InferoxTimeoutError(f"no replica answered for model {name!r} within {timeout}s", timeout=timeout, model=name))
        except InferoxError as exc:
            return reply_for(exc)
        except Exception as exc:  # noqa: BLE001 - a replica died or Ray refused: say so, do not hang
            log.warning("request for %s failed in Ray: %s", name, exc)
            return reply_for(ServiceUnavailableError(f"replica for model {name!r} failed: {type(exc).__name__}; retry the request"))
        assert isinstance(reply, HttpReply)
        return reply

    # -- endpoints ---------------------------------------------------------------------------------------
    def _denied(self, request: Request, *, always: bool) -> Response | None:
        return check_bearer(request, self.token) if always or self.protect_all else None

    async def live(self, request: Request) -> Response:
        return self._denied(request, always=False) or _json({"live": True})

    async def ready(self, request: Request) -> Response:
        denied = self._denied(request, always=False)
        if denied:
            return denied
        try:
            ok = bool(await asyncio.wait_for(self.models.is_ready.remote(), timeout=10.0))
        except Exception:  # noqa: BLE001 - no healthy replica answered
            ok = False
        return _json({"ready": ok}, 200 if ok else 503)

    async def server_metadata(self, request: Request) -> Response:
        return self._denied(request, always=False) or _json(server_metadata({"deployment": "ray-serve"}))

    async def repository_index(self, request: Request) -> Response:
        denied = self._denied(request, always=True)
        if denied:
            return denied
        # Replicas load models on demand (multiplexing): every verified model is servable.
        return _json([{"name": n, "state": "READY", "reason": "loaded on demand by Ray Serve replicas"} for n in sorted(self.digests)])

    async def repository_load(self, request: Request) -> Response:
        denied = self._denied(request, always=True)
        if denied:
            return denied
        name = request.path_params["name"]
        reply = await self.forward(name, "GET", f"/v2/models/{name}/ready", b"", [], b"")
        if reply.status != 200:
            return _response(reply)
        return _json({"name": name, "state": "READY"})

    async def repository_unload(self, request: Request) -> Response:
        denied = self._denied(request, always=True)
        if denied:
            return denied
        return _json(
            {"error": "models are evicted least-recently-used by Ray Serve multiplexing; unload is not supported", "code": UNSUPPORTED}, 405
        )

    async def model_request(self, request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return _json({"error": f"request body exceeds {self.max_body_bytes} bytes", "code": "PAYLOAD_TOO_LARGE"}, 413)
        body = await request.body()
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in ("host", "content-length")]
        reply = await self.forward(request.path_params["name"], request.method, request.url.path, request.url.query.encode("latin-1"), headers, body)
        return _response(reply)

    def __serve_build_asgi_app__(self) -> Starlette:
        """The ingress's Starlette app (Ray Serve calls this once the constructor has run)."""
        return self.build_asgi_app()

    def build_asgi_app(self) -> Starlette:
        """The Starlette app of this ingress (also usable outside Ray Serve, e.g. in tests)."""

        model_methods = ["GET", "POST"]
        routes = [
            Route("/v2/health/live", self.live, methods=["GET"]),
            Route("/v2/health/ready", self.ready, methods=["GET"]),
            Route("/v2", self.server_metadata, methods=["GET"]),
            Route("/v2/repository/index", self.repository_index, methods=["POST"]),
            Route("/v2/repository/models/{name}/load", self.repository_load, methods=["POST"]),
            Route("/v2/repository/models/{name}/unload", self.repository_unload, methods=["POST"]),
            Route("/v2/models/{name}", self.model_request, methods=model_methods),
            Route("/v2/models/{name}/{rest:path}", self.model_request, methods=model_methods),
        ]
        return Starlette(routes=routes, exception_handlers={HTTPException: http_error})

