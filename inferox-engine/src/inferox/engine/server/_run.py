"""Running the server: under uvicorn in the foreground (``inferox serve``), or in a background
thread on a free loopback port (tests, benchmarks, notebooks)."""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from types import TracebackType
from typing import Any

from inferox.core.errors import InferoxIOError, ServiceUnavailableError
from inferox.engine._memory import limit_heap_fragmentation
from inferox.engine.server._timing import timed_access_log
from inferox.engine.server.app import InferoxServer

__all__ = ["JsonLogFormatter", "ServerThread", "bind_socket", "configure_logging", "run"]

log = logging.getLogger("inferox.server")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: access records pass through, other records are wrapped."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.name == "inferox.server.access":
            return msg
        out: dict[str, Any] = {"ts": record.created, "level": record.levelname.lower(), "logger": record.name, "message": msg}
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


def _uvicorn_config(server: InferoxServer, *, host: str, port: int, log_level: str) -> Any:
    import uvicorn

    from inferox.engine.server._http import guarded_protocol

    return uvicorn.Config(
        # h11 with the read timeout and connection cap (server/_http.py): uvicorn's httptools
        # protocol would parse faster but has no such limits.
        timed_access_log(server.app),
        http=guarded_protocol(read_timeout_s=server.config.read_timeout_s, max_connections=server.config.max_connections),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,  # inferox writes its own structured access log
        timeout_graceful_shutdown=int(server.config.graceful_timeout_s),
        timeout_keep_alive=int(server.config.keep_alive_s),
        lifespan="on",
        log_config=None,
    )


def _uvicorn_server(server: InferoxServer, config: Any) -> Any:
    """uvicorn's server, whose SIGINT/SIGTERM handler also abandons loads in progress: a load is
    not a request to drain, and one that hangs would hold the shutdown (``graceful_timeout_s``)."""
    import uvicorn

    class _Server(uvicorn.Server):  # type: ignore[misc]
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            server.dataplane.abandon_loads()

    return _Server(config)


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


def run(server: InferoxServer, *, log_level: str = "info") -> None:
    """Serve in the foreground until SIGINT/SIGTERM; in-flight requests finish before exit.

    The process is the server's own, so glibc's mmap threshold is fixed first
    (:func:`~inferox.engine.limit_heap_fragmentation`): without it RSS climbs for minutes under
    traffic of varying shapes."""
    configure_logging(log_level)
    threshold = limit_heap_fragmentation()
    log.info("malloc mmap threshold: %s", f"{threshold} bytes (fixed)" if threshold else "glibc default (adaptive)")
    sock = bind_socket(server.config.host, server.config.port)
    uv = _uvicorn_server(server, _uvicorn_config(server, host=server.config.host, port=server.config.port, log_level=log_level))
    server.on_startup_error = lambda exc: setattr(uv, "should_exit", True)
    try:
        uv.run(sockets=[sock])
    finally:
        sock.close()
    if server.startup_error is not None:
        # Triton's model: a model that fails to load at start-up stops the server with its error.
        raise server.startup_error


class ServerThread:
    """The server under uvicorn in a daemon thread, on a free port of ``host``::

        with ServerThread(server) as st:
            httpx.get(st.url + "/v2/health/ready")
    """

    def __init__(self, server: InferoxServer, *, host: str = "127.0.0.1", log_level: str = "warning") -> None:
        self.server = server
        self.host = host
        self._sock = bind_socket(host, 0)
        self.port: int = self._sock.getsockname()[1]
        self._uvicorn = _uvicorn_server(server, _uvicorn_config(server, host=host, port=self.port, log_level=log_level))
        self._thread = threading.Thread(target=self._uvicorn.run, kwargs={"sockets": [self._sock]}, name="inferox-server", daemon=True)
        server.on_startup_error = lambda exc: setattr(self._uvicorn, "should_exit", True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        """``host:port``, as ``tritonclient.http.InferenceServerClient`` takes it."""
        return f"{self.host}:{self.port}"

    @property
    def grpc_address(self) -> str:
        """``host:port`` of the V2 gRPC transport (``ServerConfig(grpc_port=0)`` picks a free port)."""
        if self.server.grpc is None:
            raise ServiceUnavailableError("this server runs no gRPC transport (ServerConfig.grpc_port is None)")
        return f"{self.host}:{self.server.grpc.port}"

    def start(self, *, wait_ready: bool = True, timeout: float = 120.0) -> ServerThread:
        """Start serving; with ``wait_ready``, block until startup loading has finished. A model
        that fails to load with ``exit_on_error`` stops the server and raises its error here."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._uvicorn.started or (wait_ready and not self.server._startup_done):
            if self.server.startup_error is not None:
                self.stop()
                raise self.server.startup_error
            if not self._thread.is_alive():
                raise ServiceUnavailableError("server thread exited during startup")
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(f"server did not start within {timeout}s")
            time.sleep(0.01)
        if self.server.startup_error is not None:
            self.stop()
            raise self.server.startup_error
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Graceful stop: uvicorn stops accepting, finishes in-flight requests, runs shutdown."""
        self._uvicorn.should_exit = True
        self.server.dataplane.abandon_loads()
        self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
