"""The composition root: one data plane, its transports, signals and one graceful shutdown.

:class:`Server` runs what ``inferox serve`` runs, on one event loop: the REST app (V2 and the
OpenAI routes) under uvicorn, the V2 gRPC server beside it when ``grpc_port`` is set — a sibling
transport, not something the REST app starts — the models' loading, and the shutdown that
SIGTERM or SIGINT (Ctrl-C) starts:

1. one log line says which signal and how many requests are in flight; readiness turns false and
   new requests get 503 / ``UNAVAILABLE``; loads in progress are abandoned;
2. both transports stop taking connections and let their in-flight requests finish (at most
   ``graceful_timeout_s``); requests still queued in the engine finish too;
3. the engine shuts down, and a last log line says how many requests were drained and how long
   it took. The process exits 0.

A start-up that fails (a model that does not load, with ``exit_on_error``) stops everything and
raises that error. :func:`run` serves in the foreground; :class:`ServerThread` serves in a daemon
thread on a free loopback port (tests, benchmarks, notebooks), with the same root.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Generator
from types import TracebackType
from typing import Any

from inferox.core.errors import InferoxIOError, ServiceUnavailableError
from inferox.engine._memory import limit_heap_fragmentation
from inferox.engine.server._observe import ACCESS_LOGGER, iso_time
from inferox.engine.server._timing import timed_access_log
from inferox.engine.server.app import InferoxServer

__all__ = ["JsonLogFormatter", "Server", "ServerThread", "bind_socket", "configure_logging", "run"]

log = logging.getLogger("inferox.server")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: access records pass through (they are JSON already), other
    records are wrapped in the same shape (``time``, ``level``, ``logger``, ``message``)."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.name == ACCESS_LOGGER:
            return msg
        out: dict[str, Any] = {"time": iso_time(record.created), "ts": record.created, "level": record.levelname.lower(), "logger": record.name, "message": msg}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"))


#: Loggers a server writes: its own (access log included), the engine's (which backend each model
#: was loaded on, and why) and mlpkg's (packing, golden outputs).
SERVER_LOGGERS = ("inferox.server", "inferox.engine", "inferox.mlpkg")


def configure_logging(level: str = "info", *, stream: Any = None) -> None:
    """Send the :data:`SERVER_LOGGERS` to ``stream`` as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port``; :class:`InferoxIOError` names the address when
    it is taken or not ours (so ``inferox serve`` says so in one line, with the I/O exit code)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio (and uvloop) turn Nagle off (TCP_NODELAY) only on sockets
    # whose ``proto`` says TCP, and accepted connections inherit the listener's. With Nagle on, a
    # response written as two sends (headers, then a small body) waits for the client's delayed
    # ACK: ~40 ms per small response on Linux. TCP_NODELAY on the listener too (Linux hands it down).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InferoxIOError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", path=f"{host}:{port}", errno_=exc.errno) from exc
    return sock


def _uvicorn_config(rest: InferoxServer, *, host: str, port: int, log_level: str) -> Any:
    import uvicorn

    from inferox.engine.server._http import guarded_protocol

    return uvicorn.Config(
        # h11 with the read timeout, the connection cap and request smuggling refused
        # (server/_http.py): uvicorn's httptools protocol would parse faster but has no such limits.
        timed_access_log(rest.app),
        http=guarded_protocol(read_timeout_s=rest.config.read_timeout_s, max_connections=rest.config.max_connections),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,  # inferox writes its own structured access log
        timeout_graceful_shutdown=int(rest.config.graceful_timeout_s),
        timeout_keep_alive=int(rest.config.keep_alive_s),
        lifespan="on",
        log_config=None,
    )


def _uvicorn_server(config: Any) -> Any:
    """uvicorn's server without its own signal handling: the root handles signals (uvicorn would
    re-raise a captured SIGTERM after its shutdown, and the process would die with 143)."""
    import uvicorn

    class _Server(uvicorn.Server):  # type: ignore[misc]
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield

    return _Server(config)


class Server:
    """The composition root of a serving process (see the module doc).

    ``rest`` holds the data plane and the REST app; ``sock`` is the bound REST socket (default:
    bound here from ``rest.config``); ``install_signals`` makes SIGTERM / SIGINT start the
    graceful shutdown (only in the main thread).
    """

    def __init__(self, rest: InferoxServer, *, sock: socket.socket | None = None, log_level: str = "info", install_signals: bool = True) -> None:
        self.rest = rest
        self.config = rest.config
        self.dataplane = rest.dataplane
        rest.check_servable()  # nothing to serve is an error before anything listens
        self.sock = sock if sock is not None else bind_socket(self.config.host, self.config.port)
        self.port: int = self.sock.getsockname()[1]
        self.install_signals = install_signals
        self.uvicorn = _uvicorn_server(_uvicorn_config(rest, host=self.config.host, port=self.port, log_level=log_level))
        rest.managed = True
        self.grpc: Any = None
        self.started = threading.Event()
        #: Why the server stopped: the signal's name, "requested", or the start-up error.
        self.stop_reason: str | None = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exit: asyncio.Event | None = None

    # -- stopping -----------------------------------------------------------------------------------------
    def request_exit(self, reason: str = "requested") -> None:
        """Start the graceful shutdown (from any thread, or a signal handler)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.dataplane.shutting_down = True  # readiness false, new requests 503, at once
        self.dataplane.abandon_loads()
        loop, event = self._loop, self._exit
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    def _startup_failed(self, exc: BaseException) -> None:
        if self.stop_reason is not None:
            return  # stopping already (a signal abandoned the load): not a start-up failure
        self.error = exc
        self.request_exit(f"start-up failed: {exc}")

    # -- running ------------------------------------------------------------------------------------------
    async def serve(self) -> None:
        """Serve until asked to stop, then shut down gracefully; raises the start-up error if any."""
        self._loop = asyncio.get_running_loop()
        self._exit = asyncio.Event()
        if self.stop_reason is not None:
            self._exit.set()
        if self.install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows
                    self._loop.add_signal_handler(sig, self.request_exit, signal.Signals(sig).name)
        self.rest.on_startup_error = self._startup_failed
        uv_task: asyncio.Task[None] | None = None
        try:
            if self.config.grpc_port is not None:
                from inferox.engine.server._grpc import GrpcServer

                self.grpc = self.rest.grpc = GrpcServer(self.dataplane, config=self.config, port=self.config.grpc_port)
                await self.grpc.start()
            uv_task = asyncio.create_task(self.uvicorn.serve(sockets=[self.sock]))
            while not self.uvicorn.started and not uv_task.done():
                await asyncio.sleep(0.01)
            if uv_task.done():
                uv_task.result()  # uvicorn failed to start: its error
            self.rest.start_loading()
            self.started.set()
            await self._exit.wait()
        finally:
            await self._shutdown(uv_task)
        if self.error is not None:
            raise self.error

    async def _shutdown(self, uv_task: asyncio.Task[None] | None) -> None:
        started = time.monotonic()
        dp = self.dataplane
        in_flight = dp.in_flight
        reason = self.stop_reason or "requested"
        if self.error is None:
            log.info("shutting down (%s): draining %d in-flight request(s), at most %gs", reason, in_flight, self.config.graceful_timeout_s)
        dp.shutting_down = True
        dp.abandon_loads()
        await self.rest.stop_loading(wait=1.0)  # an abandoned load ends at once, saying so
        self.uvicorn.should_exit = True
        stopping = []
        if uv_task is not None:
            stopping.append(uv_task)
        if self.grpc is not None:
            stopping.append(asyncio.ensure_future(self.grpc.stop()))
        if stopping:
            await asyncio.gather(*stopping, return_exceptions=True)
        drained = await dp.drain(max(0.0, self.config.graceful_timeout_s - (time.monotonic() - started)))
        await dp.shutdown()
        with contextlib.suppress(OSError):
            self.sock.close()
        if dp.tracing is not None:
            await asyncio.to_thread(dp.tracing.flush)  # the provider is the process's: flushed, not shut
        log.info(
            "inferox stopped (%s): %d request(s) drained in %.3fs%s",
            reason,
            in_flight,
            time.monotonic() - started,
            "" if drained else f"; {dp.in_flight} still running at the graceful timeout",
        )

    def run(self) -> None:
        """:meth:`serve` on a new event loop (uvloop when installed), in this thread."""
        asyncio_run = _asyncio_run()
        asyncio_run(self.serve(), loop_factory=self.uvicorn.config.get_loop_factory())


def _asyncio_run() -> Any:
    from uvicorn._compat import asyncio_run

    return asyncio_run


def run(server: InferoxServer, *, log_level: str = "info") -> None:
    """Serve in the foreground until SIGINT/SIGTERM, then shut down gracefully (exit 0).

    The process is the server's own, so glibc's mmap threshold is fixed first
    (:func:`~inferox.engine.limit_heap_fragmentation`): without it RSS climbs for minutes under
    traffic of varying shapes."""
    configure_logging(log_level)
    threshold = limit_heap_fragmentation()
    log.info("malloc mmap threshold: %s", f"{threshold} bytes (fixed)" if threshold else "glibc default (adaptive)")
    Server(server, log_level=log_level).run()


class ServerThread:
    """The server (:class:`Server`, REST and gRPC) in a daemon thread, on a free port of ``host``::

        with ServerThread(server) as st:
            httpx.get(st.url + "/v2/health/ready")
    """

    def __init__(self, server: InferoxServer, *, host: str = "127.0.0.1", log_level: str = "warning") -> None:
        self.server = server
        self.host = host
        self.root = Server(server, sock=bind_socket(host, 0), log_level=log_level, install_signals=False)
        self.port: int = self.root.port
        self._thread = threading.Thread(target=self._run, name="inferox-server", daemon=True)
        self._failure: BaseException | None = None

    def _run(self) -> None:
        try:
            self.root.run()
        except BaseException as exc:  # noqa: BLE001 - handed to start()/stop()
            self._failure = exc

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def _uvicorn(self) -> Any:
        return self.root.uvicorn

    @property
    def address(self) -> str:
        """``host:port``, as ``tritonclient.http.InferenceServerClient`` takes it."""
        return f"{self.host}:{self.port}"

    @property
    def grpc_address(self) -> str:
        """``host:port`` of the V2 gRPC transport (``ServerConfig(grpc_port=0)`` picks a free port)."""
        if self.root.grpc is None:
            raise ServiceUnavailableError("this server runs no gRPC transport (ServerConfig.grpc_port is None)")
        return f"{self.host}:{self.root.grpc.port}"

    def start(self, *, wait_ready: bool = True, timeout: float = 120.0) -> ServerThread:
        """Start serving; with ``wait_ready``, block until startup loading has finished. A model
        that fails to load with ``exit_on_error`` stops the server and raises its error here."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.root.started.is_set() or (wait_ready and not self.server._startup_done):
            if self.server.startup_error is not None:
                self.stop()
                raise self.server.startup_error
            if not self._thread.is_alive():
                if self._failure is not None:
                    raise self._failure
                raise ServiceUnavailableError("server thread exited during startup")
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(f"server did not start within {timeout}s")
            time.sleep(0.01)
        if self.server.startup_error is not None:
            self.stop()
            raise self.server.startup_error
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Graceful stop: both transports stop accepting, in-flight requests finish, the engine shuts down."""
        self.root.request_exit("stopped")
        self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self.root.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
