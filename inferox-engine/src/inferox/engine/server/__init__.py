"""The Open Inference Protocol (KServe V2) server of Inferox: one data plane, thin transports.

:class:`DataPlane` (no web framework) owns model lifecycle, inference, metadata and statistics on
one :class:`~inferox.engine.Engine`; the REST transport (:class:`InferoxServer`, Starlette) and the
Ray Serve deployment are adapters over it. The REST names need the ``serve`` extra
(``pip install inferox-engine[serve]``: starlette and uvicorn) and are imported on first use, so
the data plane, :class:`ServerConfig` and the protocol codecs import without it::

    from inferox.engine.server import InferoxServer, ServerConfig, ServerThread

    server = InferoxServer(repository="models/", config=ServerConfig(port=8000))
    with ServerThread(server) as st:   # or run(server) in the foreground
        ...
"""

from __future__ import annotations

from typing import Any

from inferox.engine.server._config import ModelState, ServerConfig
from inferox.engine.server._dataplane import DataPlane, ServedModel, ServedVersion, server_metadata
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
    "DataPlane",
    "InferRequest",
    "InferoxServer",
    "InputTensor",
    "ModelRepository",
    "ModelState",
    "RepositoryEntry",
    "RequestedOutput",
    "ServedModel",
    "ServedVersion",
    "ServerConfig",
    "ServerThread",
    "ServingSettings",
    "__version__",
    "check_model_name",
    "configure_logging",
    "create_app",
    "encode_infer_response",
    "parse_infer_request",
    "run",
    "server_metadata",
]
