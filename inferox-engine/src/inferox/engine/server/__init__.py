"""The Inferox server: one data plane, thin transports, one composition root.

:class:`DataPlane` (no web framework) owns every request's lifecycle — authorisation, admission,
limits, tokenisation, forward passes, output selection, metrics, access log, tracing — and the
models' lifecycle, metadata and statistics, on one :class:`~inferox.engine.Engine`. The transports
(V2 over HTTP: :class:`InferoxServer`, Starlette; V2 over gRPC; the OpenAI embeddings routes; the
Ray Serve deployment) only convert wire formats, and :class:`Server` runs them together with
signal handling and one graceful shutdown. The REST names need the ``serve`` extra
(``pip install inferox-engine[serve]``: starlette and uvicorn) and are imported on first use, so
the data plane, :class:`ServerConfig` and the protocol codecs import without it::

    from inferox.engine.server import InferoxServer, ServerConfig, ServerThread

    server = InferoxServer(repository="models/", config=ServerConfig(port=8000))
    with ServerThread(server) as st:   # or run(server) in the foreground (what `inferox serve` does)
        ...
"""

from __future__ import annotations

from typing import Any

from inferox.engine.server._config import ModelState, ServerConfig
from inferox.engine.server._dataplane import (
    DataPlane,
    EmbedResponse,
    InferResponse,
    OutputTensor,
    ServedModel,
    ServedVersion,
    TextResponse,
    server_metadata,
)
from inferox.engine.server._errors import (
    ERROR_STATUS,
    ClientDisconnectedError,
    PayloadTooLargeError,
    RequestLimitError,
    UnauthorizedError,
    error_status,
)
from inferox.engine.server._observe import RequestContext
from inferox.engine.server._protocol import InferRequest, InputTensor, RequestedOutput, encode_infer_response, parse_infer_request
from inferox.engine.server._repository import ModelRepository, RepositoryEntry, ServingSettings, check_model_name

try:
    from importlib.metadata import version as _dist_version

    __version__ = _dist_version("inferox-engine")
except Exception:  # noqa: BLE001 - an uninstalled source tree still imports
    __version__ = "0.0.0"

#: Names that need starlette / uvicorn: imported when first asked for.
_REST = {
    "InferoxServer": "inferox.engine.server.app",
    "create_app": "inferox.engine.server.app",
    "Server": "inferox.engine.server._run",
    "ServerThread": "inferox.engine.server._run",
    "configure_logging": "inferox.engine.server._run",
    "run": "inferox.engine.server._run",
}


def __getattr__(name: str) -> Any:
    module = _REST.get(name)
    if module is None:
        raise AttributeError(f"module 'inferox.engine.server' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "ERROR_STATUS",
    "ClientDisconnectedError",
    "DataPlane",
    "EmbedResponse",
    "InferRequest",
    "InferResponse",
    "InferoxServer",
    "InputTensor",
    "ModelRepository",
    "ModelState",
    "OutputTensor",
    "PayloadTooLargeError",
    "RepositoryEntry",
    "RequestContext",
    "RequestLimitError",
    "RequestedOutput",
    "ServedModel",
    "ServedVersion",
    "Server",
    "ServerConfig",
    "ServerThread",
    "ServingSettings",
    "TextResponse",
    "UnauthorizedError",
    "__version__",
    "check_model_name",
    "configure_logging",
    "create_app",
    "encode_infer_response",
    "error_status",
    "parse_infer_request",
    "run",
    "server_metadata",
]
