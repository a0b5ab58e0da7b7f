"""The Open Inference Protocol over gRPC: a transport of the data plane.

``inference.GRPCInferenceService`` as Triton's ``grpc_service.proto`` defines it (what
``tritonclient.grpc`` and KServe's V2 gRPC clients speak), plus the standard ``grpc.health.v1``
service for probes, on a ``grpc.aio`` server that the composition root (``_run.Server``) runs
beside the REST app on the same event loop, started and stopped with it (``inferox serve
--grpc-port P``, ``grpc_port`` in the config file).

Each RPC builds a :class:`~._observe.RequestContext` from the call (its metadata's
``authorization``, ``x-request-id``, ``traceparent``; the peer), decodes its message *inside* the
data plane's record of the call — the handlers take raw bytes, so a malformed message is an
``INVALID_ARGUMENT`` that is logged like any other answer, not grpc's ``UNKNOWN`` — and calls the
same :class:`~inferox.engine.server._dataplane.DataPlane` the REST routes call. Errors: the gRPC
status of ``_errors.ERROR_STATUS`` for the Inferox code, the message as details, the code in the
trailing metadata ``inferox-error-code``, and on overload ``retry-after`` (whole seconds).
Served: ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer,
ModelConfig, ModelStatistics, RepositoryIndex, RepositoryModelLoad, RepositoryModelUnload; the
others (streaming, shared memory, trace and log settings) answer UNIMPLEMENTED. The health service
stays open for probes (it tells only SERVING / NOT_SERVING).

Needs the ``[grpc]`` extra (grpcio, grpcio-health-checking, protobuf); :func:`require_grpc` turns
its absence — or a protobuf runtime older than the generated code — into a one-line
:class:`~inferox.core.errors.BackendUnavailableError` naming the fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from inferox.core.errors import BackendUnavailableError, InferoxError, InferoxIOError, InvalidInputError, ModelNotFoundError

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
PROTOCOL = "grpc"
#: The protobuf runtime the committed generated code needs (its "Protobuf Python Version" header;
#: the ``[grpc]`` extra's lower bound).
PROTOBUF_REQUIREMENT = "protobuf>=6.33.5"
#: Concurrent streams per client connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS): a client's
#: calls beyond it wait in the client, so what one connection holds in memory is bounded.
MAX_STREAMS_PER_CONNECTION = 128


def require_grpc() -> None:
    """Raise :class:`BackendUnavailableError` naming the fix unless the ``[grpc]`` extra imports
    and the protobuf runtime can load the generated code."""
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
    try:
        from inferox.engine._proto import grpc_service_pb2, model_config_pb2  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - runtime_version.VersionError, an old runtime's ImportError or TypeError
        import google.protobuf

        raise BackendUnavailableError(
            "grpc",
            reason=(
                f"the installed protobuf {google.protobuf.__version__} cannot load Inferox's generated gRPC code "
                f"({type(exc).__name__}); install a newer runtime: pip install '{PROTOBUF_REQUIREMENT}'"
            ),
        ) from None


def _md(context: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if isinstance(value, bytes):
            continue  # -bin metadata: nothing the data plane reads
        out[key.lower()] = value
    return out


class _Servicer:
    """The RPC handlers: each decodes (inside the data plane's record), calls the data plane, encodes."""

    def __init__(self, dataplane: Any, config: Any) -> None:
        self.dp = dataplane
        self.config = config

    def context(self, rpc: str, context: Any) -> Any:
        from inferox.engine.server._observe import RequestContext

        md = _md(context)
        return RequestContext(
            protocol=PROTOCOL,
            endpoint=rpc,
            request_id=md.get("x-request-id"),
            authorization=md.get("authorization"),
            traceparent=md.get("traceparent"),
            tracestate=md.get("tracestate"),
            client=context.peer(),
        )

    @staticmethod
    def parse(message_type: Any, raw: bytes) -> Any:
        from google.protobuf.message import DecodeError

        try:
            return message_type.FromString(raw)
        except (DecodeError, ValueError, RuntimeError) as exc:
            raise InvalidInputError(f"the request is not a valid {message_type.DESCRIPTOR.name} message: {exc}", name="request", expected=message_type.DESCRIPTOR.full_name) from None

    async def ServerLive(self, raw: list[bytes], ctx: Any, pb: Any) -> Any:
        with self.dp.call(ctx, "live"):
            self.parse(pb.ServerLiveRequest, raw.pop())
            return pb.ServerLiveResponse(live=self.dp.health(ctx=ctx))

    async def ServerReady(self, raw: list[bytes], ctx: Any, pb: Any) -> Any:
        with self.dp.call(ctx, "ready"):
            self.parse(pb.ServerReadyRequest, raw.pop())
            return pb.ServerReadyResponse(ready=self.dp.readiness(ctx=ctx))

    async def ModelReady(self, raw: list[bytes], ctx: Any, pb: Any) -> Any:
        with self.dp.call(ctx, "model_ready"):
            request = self.parse(pb.ModelReadyRequest, raw.pop())
            try:
                ready = self.dp.model_readiness(request.name, request.version or None, ctx=ctx)
            except ModelNotFoundError:  # not served: not ready, as tritonclient expects (no error)
                ready = False
            return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, raw: list[bytes], ctx: Any, pb: Any) -> Any:
        from inferox.engine.server._grpc_codec import message_from_dict

        with self.dp.call(ctx, "server_metadata"):
            self.parse(pb.ServerMetadataRequest, raw.pop())
            return message_from_dict(pb.ServerMetadataResponse, self.dp.server_metadata(ctx=ctx))

    async def ModelMetadata(self, raw: list[bytes], ctx: Any, pb: Any) -> Any:
        from inferox.engine.server._grpc_codec import message_from_dict

        with self.dp.call(ctx, "model_metadata"):
            request = self.parse(pb.ModelMetadataRequest, raw.pop())
            return message_from_dict(pb.ModelMetadataResponse, self.dp.model_metadata(request.name, request.version or None, ctx=ctx))

    async def ModelConfig(self, raw: list[bytes], ctx: Any, pb: Any) -> Any:
        from inferox.engine._proto import model_config_pb2
        from inferox.engine.server._grpc_codec import message_from_dict

        with self.dp.call(ctx, "model_config"):
            request = self.parse(pb.ModelConfigRequest, raw.pop())
            config = dict(self.dp.model_config(request.name, request.version or None, ctx=ctx))
            policy = config.get("version_policy", {}).get("specific", {}).get("versions")
            if policy is not None:  # Triton's versions are integers; others cannot be listed there
                config["version_policy"] = {"specific": {"versions": [v for v in policy if isinstance(v, int)]}}
            return pb.ModelConfigResponse(config=message_from_dict(model_config_pb2.ModelConfig, config))

    async def ModelStatistics(self, raw: list[bytes], ctx: Any, pb: Any) -> Any:
        from inferox.engine.server._grpc_codec import message_from_dict

        with self.dp.call(ctx, "statistics"):
            request = self.parse(pb.ModelStatisticsRequest, raw.pop())
            return message_from_dict(pb.ModelStatisticsResponse, self.dp.statistics(request.name or None, request.version or None, ctx=ctx))

    async def RepositoryIndex(self, raw: list[bytes], ctx: Any, pb: Any) -> Any:
        from inferox.engine.server._grpc_codec import message_from_dict

        with self.dp.call(ctx, "repository_index", scope="repository"):
            request = self.parse(pb.RepositoryIndexRequest, raw.pop())
            return message_from_dict(pb.RepositoryIndexResponse, {"models": await self.dp.repository_index(ready_only=request.ready, ctx=ctx)})

    async def RepositoryModelLoad(self, raw: list[bytes], ctx: Any, pb: Any) -> Any:
        with self.dp.call(ctx, "repository_load", scope="repository"):
            request = self.parse(pb.RepositoryModelLoadRequest, raw.pop())
            await self.dp.load(request.model_name, ctx=ctx)
            return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, raw: list[bytes], ctx: Any, pb: Any) -> Any:
        with self.dp.call(ctx, "repository_unload", scope="repository"):
            request = self.parse(pb.RepositoryModelUnloadRequest, raw.pop())
            await self.dp.unload(request.model_name, ctx=ctx)
            return pb.RepositoryModelUnloadResponse()

    async def ModelInfer(self, raw: list[bytes], ctx: Any, pb: Any) -> Any:
        from inferox.engine.server._grpc_codec import decode_infer_request, encode_infer_response

        with self.dp.call(ctx, "infer", inference=True) as call:
            request = self.parse(pb.ModelInferRequest, raw.pop())
            call.model = request.model_name
            version = request.model_version or None
            # What can be refused from the message's header is refused before its tensors are copied.
            self.dp.served(call.model, version)
            self.dp.check_rows(max((int(t.shape[0]) if t.shape else 1) for t in request.inputs) if request.inputs else 1)
            req = decode_infer_request(request)
            del request  # the message's tensors are copied out: let its memory go now
            if req.id:
                ctx.request_id = req.id
            answer = await self.dp.infer(call.model, req, version=version, ctx=ctx)
            with call.traced("encode"):
                return encode_infer_response(answer)


def _handlers(servicer: _Servicer) -> Any:
    """grpc method handlers for the whole service, each taking the request as raw bytes."""
    import grpc

    from inferox.engine._proto import grpc_service_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    handlers: dict[str, Any] = {}
    for method in service.methods:
        response_type = getattr(pb, method.output_type.name)
        if method.name in UNSUPPORTED_RPCS or not hasattr(servicer, method.name):
            handlers[method.name] = _unimplemented(method)
            continue
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _rpc(servicer, method.name, getattr(servicer, method.name), pb), request_deserializer=None, response_serializer=response_type.SerializeToString
        )
    return grpc.method_handlers_generic_handler(_SERVICE, handlers)


#: A message at least this big is followed by giving freed memory back to the OS (see ``_reclaim``).
BIG_MESSAGE_BYTES = 4 << 20


def _rpc(servicer: _Servicer, name: str, fn: Callable[[list[bytes], Any, Any], Awaitable[Any]], pb: Any) -> Callable[[bytes, Any], Awaitable[Any]]:
    async def handle(raw: bytes, context: Any) -> Any:
        ctx = servicer.context(name, context)
        big = len(raw) >= BIG_MESSAGE_BYTES
        # The message travels in a box the handler empties: no frame of ours keeps it alive
        # while the answer goes out (a refused 60 MB message must not outlive its refusal).
        box = [raw]
        del raw
        try:
            return await fn(box, ctx, pb)
        except InferoxError as exc:
            error = exc.with_traceback(None)  # its frames hold the message's tensors
        finally:
            box.clear()
            if big:
                _reclaim()
        await _abort(context, error)

    handle.__name__ = name
    return handle


_reclaiming: asyncio.TimerHandle | None = None
#: Seconds after the last big message before freed memory is handed back (one pass per burst).
RECLAIM_AFTER_S = 0.5


def _reclaim() -> None:
    """Hand the memory of big messages back to the OS once a burst of them is over.

    gRPC receives a message as many small buffers, which glibc serves from its heaps; freed, they
    stay in the process (RSS grew by gigabytes after a flood of refused 60 MB messages). A
    collection and ``malloc_trim`` on a worker thread, half a second after the last big message,
    returns them; small messages never pay for it."""
    global _reclaiming
    loop = asyncio.get_running_loop()
    if _reclaiming is not None:
        _reclaiming.cancel()

    def run() -> None:
        from inferox.engine._memory import release_memory

        loop.run_in_executor(None, release_memory)

    _reclaiming = loop.call_later(RECLAIM_AFTER_S, run)


async def _abort(context: Any, exc: InferoxError) -> None:
    """End the call with the status of the one table, the code (and the retry hint) in the trailers."""
    import grpc

    from inferox.engine.server._errors import error_status, retry_after_s
    from inferox.engine.server._grpc_codec import CODE_KEY

    trailing: list[tuple[str, str]] = [(CODE_KEY, exc.code)]
    retry = retry_after_s(exc)
    if retry is not None:
        trailing.append(("retry-after", str(retry)))
    await context.abort(grpc.StatusCode[error_status(exc).grpc], exc.message, tuple(trailing))


def _unimplemented(method: Any) -> Any:
    import grpc

    async def unary(request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{_SERVICE}/{method.name} is not supported by Inferox")

    async def streaming(request_iterator: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{_SERVICE}/{method.name} is not supported by Inferox")
        yield  # pragma: no cover - an async generator that never yields

    if method.client_streaming and method.server_streaming:
        return grpc.stream_stream_rpc_method_handler(streaming)
    if method.server_streaming:
        return grpc.unary_stream_rpc_method_handler(streaming)
    return grpc.unary_unary_rpc_method_handler(unary)


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

        limit = int(self.config.max_body_bytes)
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),
                ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
            ]
        )
        server.add_generic_rpc_handlers((_handlers(_Servicer(self.dp, self.config)),))
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
