"""``ServerConfig``: how a server runs — every server-wide default is declared here, once.

The CLI, the REST app, the Ray ingress and the replicas read their defaults from this class
(``ServerConfig.keep_alive_s`` and so on) instead of repeating the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inferox.core.errors import ConfigError
from inferox.engine.server._repository import ServingSettings

__all__ = ["ModelState", "ServerConfig"]


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
    inference request (504 beyond) unless a model's own settings give another; ``defaults`` are
    the serving settings for models without their own; ``engine_config`` is the configuration of
    the server's one engine; ``keep_alive_s`` is how long idle keep-alive connections stay open;
    ``read_timeout_s`` bounds how long a request's headers and body may take to arrive (408) and
    ``max_connections`` the open connections (503 beyond).
    ``exit_on_error``: a model that fails to load at start-up stops the server (Triton's
    default); ``strict_readiness``: ``/v2/health/ready`` is 200 only while every model the server
    is meant to serve is ready (off: once start-up is over and the server takes requests).
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
    #: A request's headers and body must arrive within this long of its first byte (408 and the
    #: connection closed otherwise): a slow or stalled sender cannot hold a connection for ever.
    read_timeout_s: float = 30.0
    #: Open connections beyond this are answered 503 and closed at once.
    max_connections: int = 1024
    allow_pickle: bool = False
    trust_code: bool = False
    #: Check every package file's sha256 (and that every file is listed) before loading; off, a
    #: load checks that the listed files are there with their recorded sizes only.
    verify: bool = False
    exit_on_error: bool = True
    strict_readiness: bool = True
    #: The V2 gRPC port (``None``: no gRPC; 0: a free port). Needs the ``[grpc]`` extra.
    grpc_port: int | None = None
    #: Text longer than a model's ``max_seq_length`` tokens is truncated (sentence-transformers'
    #: rule); ``False`` makes it an error naming the limit, on every protocol.
    truncate_text: bool = True
    #: Per-request limits, checked before any work on every protocol (413 / RESOURCE_EXHAUSTED
    #: naming the limit): rows (texts, or the first axis of tensors), tokens after tokenisation,
    #: bytes of text. A request within them but bigger than one forward pass is split into passes.
    max_request_rows: int = 2048
    max_request_tokens: int = 2**18
    max_request_text_bytes: int = 8 * 2**20
    #: Start with no model to serve (models are then loaded through the repository API); without
    #: it a server pointed at nothing servable refuses to start.
    allow_empty: bool = False

    def __post_init__(self) -> None:
        # Protection asked for without a usable token would protect nothing, silently: refuse.
        if self.token is not None and not isinstance(self.token, str):
            raise ConfigError(f"must be a string, got {type(self.token).__name__} (quote it in TOML)", field="server.token", value="***")
        if self.token is not None and not self.token.strip():
            raise ConfigError("the token is empty: it would protect nothing; give a real token", field="server.token", value="")
        if self.protect_all and self.token is None:
            raise ConfigError(
                "protect_all needs a token (--token or INFEROX_SERVER_TOKEN): without one nothing is protected", field="server.protect_all", value=True
            )
