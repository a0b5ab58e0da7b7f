"""The Open Inference Protocol over gRPC: a thin transport on the data plane.

``inference.GRPCInferenceService`` as Triton's ``grpc_service.proto`` defines it (what
``tritonclient.grpc`` and KServe's V2 gRPC clients speak), plus the standard ``grpc.health.v1``
service for probes, on a ``grpc.aio`` server that runs on the REST server's event loop and is
started and stopped with it (``inferox serve --grpc-port P``, ``grpc_port`` in the config file).

Every RPC calls the same :class:`~inferox.engine.server._dataplane.DataPlane` the REST routes
call; decoding and encoding live in ``_grpc_codec``. Served: ServerLive, ServerReady, ModelReady,
ServerMetadata, ModelMetadata, ModelInfer, ModelConfig, ModelStatistics, RepositoryIndex,
RepositoryModelLoad, RepositoryModelUnload; the others (streaming, shared memory, trace and log
settings) answer UNIMPLEMENTED. Errors: the status of :data:`~._grpc_codec.GRPC_STATUS_FOR_HTTP`
for the Inferox error's HTTP status, its message as details, its code in the trailing metadata
(``inferox-error-code``; ``retry-after`` on QUEUE_FULL). Auth: the REST rules — with a token the
repository RPCs need ``authorization: Bearer <token>`` metadata, with ``protect_all`` every RPC of
the inference service does; the health service stays open for probes (it tells only
SERVING / NOT_SERVING).

Needs the ``[grpc]`` extra (grpcio, grpcio-health-checking, protobuf); :func:`require_grpc` turns
its absence into a :class:`~inferox.core.errors.BackendUnavailableError` naming the extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from inferox.core.errors import BackendUnavailableError, InferoxError, InferoxIOError, ModelNotFoundError, QueueFullError

__all__ = ["UNSUPPORTED_RPCS", "GrpcServer", "require_grpc"]

log = logging.getLogger("inferox.server.grpc")

#: RPCs of Triton's service that Inferox does not serve (they answer UNIMPLEMENTED, naming themselves).
UNSUPPORTED_RPCS = (
    "ModelStreamInfer",
    "SystemSharedMemoryStatus",
    "SystemSharedMemoryRegister",
    "SystemSharedMemoryUnregister",
    "CudaSharedMemoryStatus",
    "CudaSharedMemoryRegister",
    "CudaSharedMemoryUnregister",
    "TraceSetting",
    "LogSettings",
)
_SERVICE = "inference.GRPCInferenceService"
_HEALTH_POLL_S = 0.5


def require_grpc() -> None:
    """Raise :class:`BackendUnavailableError` naming the ``[grpc]`` extra unless its packages import."""
    missing = []
    for module in ("grpc", "grpc_health.v1", "google.protobuf"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise BackendUnavailableError(
            "grpc", reason=f"V2 over gRPC needs the [grpc] extra: pip install 'inferox-engine[grpc]' (missing: {', '.join(missing)})"
        )


def _rpc(*, repository: bool = False) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Wrap an RPC: the bearer check, then typed errors → gRPC status + trailing code."""

    def wrap(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def handler(self: _Servicer, request: Any, context: Any) -> Any:
            import grpc

            from inferox.engine.server._grpc_codec import CODE_KEY, bearer_ok, grpc_status_name

            token = self.config.token
            if token and (repository or self.config.protect_all) and not bearer_ok(context.invocation_metadata(), token):
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token", ((CODE_KEY, "UNAUTHORIZED"),))
            try:
                return await fn(self, request, context)
            except InferoxError as exc:
                trailing: list[tuple[str, str]] = [(CODE_KEY, exc.code)]
                if isinstance(exc, QueueFullError):
                    trailing.append(("retry-after", str(max(1, math.ceil(exc.retry_after)))))
                await context.abort(grpc.StatusCode[grpc_status_name(exc.http_status)], exc.message, tuple(trailing))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # grpc's own (an abort inside the handler) pass through; anything else is ours
                if type(exc).__module__.startswith("grpc"):
                    raise
                log.exception("internal error in %s", fn.__name__)
                await context.abort(grpc.StatusCode.INTERNAL, f"internal server error ({type(exc).__name__})", ((CODE_KEY, "INTERNAL"),))

        return handler

    return wrap


def _unimplemented(name: str) -> Callable[..., Awaitable[Any]]:
    async def handler(self: Any, request: Any, context: Any) -> Any:
        import grpc

        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{_SERVICE}/{name} is not supported by Inferox")

    handler.__name__ = name
    return handler


class _Servicer:
    """The RPC handlers: each decodes, calls the data plane, encodes (built lazily on grpc's base class)."""

    def __init__(self, dataplane: Any, config: Any) -> None:
        self.dp = dataplane
        self.config = config

    @_rpc()
    async def ServerLive(self, request: Any, context: Any) -> Any:
        from inferox.engine._proto import grpc_service_pb2 as pb

        return pb.ServerLiveResponse(live=bool(self.dp.live))

    @_rpc()
    async def ServerReady(self, request: Any, context: Any) -> Any:
        from inferox.engine._proto import grpc_service_pb2 as pb

        return pb.ServerReadyResponse(ready=self.dp.is_ready())

    @_rpc()
    async def ModelReady(self, request: Any, context: Any) -> Any:
        from inferox.engine._proto import grpc_service_pb2 as pb

        try:
            ready = self.dp.model_ready(request.name, request.version or None)
        except ModelNotFoundError:  # not served: not ready, as REST's /ready answers (no error)
            ready = False
        return pb.ModelReadyResponse(ready=ready)

    @_rpc()
    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        from inferox.engine._proto import grpc_service_pb2 as pb
        from inferox.engine.server._grpc_codec import message_from_dict

        return message_from_dict(pb.ServerMetadataResponse, self.dp.server_metadata())

    @_rpc()
    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        from inferox.engine._proto import grpc_service_pb2 as pb
        from inferox.engine.server._grpc_codec import message_from_dict

        return message_from_dict(pb.ModelMetadataResponse, self.dp.model_metadata(request.name, request.version or None))

    @_rpc()
    async def ModelConfig(self, request: Any, context: Any) -> Any:
        from inferox.engine._proto import grpc_service_pb2 as pb
        from inferox.engine.server._grpc_codec import message_from_dict

        config = dict(self.dp.model_config(request.name, request.version or None))
        policy = config.get("version_policy", {}).get("specific", {}).get("versions")
        if policy is not None:  # Triton's versions are integers; others cannot be listed there
            config["version_policy"] = {"specific": {"versions": [v for v in policy if isinstance(v, int)]}}
        return pb.ModelConfigResponse(config=message_from_dict(_model_config_type(), config))

    @_rpc()
    async def ModelStatistics(self, request: Any, context: Any) -> Any:
        from inferox.engine._proto import grpc_service_pb2 as pb
        from inferox.engine.server._grpc_codec import message_from_dict

        return message_from_dict(pb.ModelStatisticsResponse, self.dp.statistics(request.name or None, request.version or None))

    @_rpc(repository=True)
    async def RepositoryIndex(self, request: Any, context: Any) -> Any:
        from inferox.engine._proto import grpc_service_pb2 as pb
        from inferox.engine.server._grpc_codec import message_from_dict

        return message_from_dict(pb.RepositoryIndexResponse, {"models": self.dp.repository_index(ready_only=request.ready)})

    @_rpc(repository=True)
    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        from inferox.engine._proto import grpc_service_pb2 as pb

        await self.dp.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    @_rpc(repository=True)
    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        from inferox.engine._proto import grpc_service_pb2 as pb

        await self.dp.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    @_rpc()
    async def ModelInfer(self, request: Any, context: Any) -> Any:
        from inferox.engine.server._grpc_codec import decode_infer_request, encode_infer_response

        started = time.perf_counter()
        name = request.model_name
        try:
            req = decode_infer_request(request)
            served, result = await self.dp.infer(name, req, version=request.model_version or None)
            response = encode_infer_response(
                model_name=served.name,
                model_version=served.version,
                request_id=req.id,
                outputs=dict(result),
                requested=req.outputs,
                parameters={"backend": result.backend} if result.backend else None,
            )
        except InferoxError as exc:
            self.dp.record(name, started=started, code=exc.code)
            raise
        self.dp.record(name, started=started, result=result)
        return response


def _model_config_type() -> Any:
    from inferox.engine._proto import model_config_pb2

    return model_config_pb2.ModelConfig


def _servicer_class() -> type:
    """``_Servicer`` on the generated base class, with the unsupported RPCs answering UNIMPLEMENTED."""
    from inferox.engine._proto import grpc_service_pb2_grpc as pb_grpc

    namespace: dict[str, Any] = {name: _unimplemented(name) for name in UNSUPPORTED_RPCS}
    return type("InferoxGRPCServicer", (_Servicer, pb_grpc.GRPCInferenceServiceServicer), namespace)


class GrpcServer:
    """A ``grpc.aio`` server for one data plane: :meth:`start` on the serving loop, :meth:`stop` with it.

    ``port`` 0 picks a free port (:attr:`port` holds the bound one after :meth:`start`). Messages
    are bounded by ``config.max_body_bytes`` (the REST body limit) in both directions.
    """

    def __init__(self, dataplane: Any, *, config: Any, host: str | None = None, port: int = 0) -> None:
        require_grpc()
        self.dp = dataplane
        self.config = config
        self.host = host if host is not None else config.host
        self.port = port
        self._server: Any = None
        self._health: Any = None
        self._poll: asyncio.Task[None] | None = None

    async def start(self) -> int:
        import grpc
        from grpc_health.v1 import health, health_pb2_grpc

        from inferox.engine._proto import grpc_service_pb2_grpc as pb_grpc

        limit = int(self.config.max_body_bytes)
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit), ("grpc.so_reuseport", 0)])
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(_servicer_class()(self.dp, self.config), server)  # type: ignore[no-untyped-call]
        refresh = self._refresh

        class Health(health.aio.HealthServicer):  # type: ignore[misc,name-defined]
            async def Check(self, request: Any, context: Any) -> Any:
                await refresh()  # answer from readiness now, not from the last poll
                return await super().Check(request, context)

        self._health = Health()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError:  # grpcio raises ("Failed to bind") where older versions returned 0
            bound = 0
        if bound == 0:
            raise InferoxIOError(f"cannot listen for gRPC on {address}: the port is in use or not available", path=address)
        await server.start()
        self._server, self.port = server, int(bound)
        await self._refresh()
        self._poll = asyncio.create_task(self._watch_readiness())
        log.info("V2 gRPC listening on %s:%d", self.host, bound)
        return int(bound)

    async def _refresh(self) -> None:
        from grpc_health.v1 import health_pb2

        serving = health_pb2.HealthCheckResponse.SERVING if self.dp.is_ready() else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", _SERVICE):
            await self._health.set(service, serving)

    async def _watch_readiness(self) -> None:
        # Health answers follow /v2/health/ready: the data plane has no change events, so poll it.
        while True:
            await asyncio.sleep(_HEALTH_POLL_S)
            await self._refresh()

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, stop taking calls, let in-flight ones finish for ``grace`` seconds."""
        if self._server is None:
            return
        if self._poll is not None:
            self._poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll
        await self._health.enter_graceful_shutdown()
        await self._server.stop(self.config.graceful_timeout_s if grace is None else grace)
        self._server = None
