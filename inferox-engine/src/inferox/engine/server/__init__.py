"""The Open Inference Protocol (KServe V2) HTTP server of Inferox.

Needs the ``serve`` extra (``pip install inferox-engine[serve]``: starlette and uvicorn)::

    from inferox.engine.server import InferoxServer, ServerConfig, ServerThread

    server = InferoxServer(repository="models/", config=ServerConfig(port=8000))
    with ServerThread(server) as st:   # or run(server) in the foreground
        ...
"""

from __future__ import annotations

from inferox.engine.server._protocol import InferRequest, InputTensor, RequestedOutput, encode_infer_response, parse_infer_request
from inferox.engine.server._repository import ModelRepository, RepositoryEntry, ServingSettings, check_model_name
from inferox.engine.server._run import ServerThread, configure_logging, run
from inferox.engine.server.app import InferoxServer, ModelState, ServedModel, ServerConfig, create_app

try:
    from importlib.metadata import version as _dist_version

    __version__ = _dist_version("inferox-engine")
except Exception:  # noqa: BLE001 - an uninstalled source tree still imports
    __version__ = "0.0.0"

__all__ = [
    "InferRequest",
    "InferoxServer",
    "InputTensor",
    "ModelRepository",
    "ModelState",
    "RepositoryEntry",
    "RequestedOutput",
    "ServedModel",
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
]
