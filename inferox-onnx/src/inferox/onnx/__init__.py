"""inferox.onnx — the ONNX Runtime backend of Inferox.

Public names are listed in ``__all__`` and resolved lazily: ``import inferox.onnx`` imports neither
``onnx`` nor ``onnxruntime``; the first access to :class:`OnnxBackend`, :class:`OnnxModel` … does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inferox.core import distribution_version, lazy_exports
from inferox.onnx.plugin import DISTRIBUTION

if TYPE_CHECKING:
    from inferox.onnx._errors import onnx_errors, wrap_onnx_error
    from inferox.onnx._graph import INT8_SCHEMES, GraphBuilder, graph_cache_dir
    from inferox.onnx.backend import CPU_PROVIDER, CUDA_PROVIDER, OnnxBackend, providers_for
    from inferox.onnx.model import LOAD_DTYPES, OnnxDefinitionModel, OnnxModel, check_threads, session_options
    from inferox.onnx.ops import OnnxOps
    from inferox.onnx.tensor import OnnxTensor, OnnxTensorBuilder

__all__ = [
    "CPU_PROVIDER",
    "CUDA_PROVIDER",
    "INT8_SCHEMES",
    "LOAD_DTYPES",
    "GraphBuilder",
    "OnnxBackend",
    "OnnxDefinitionModel",
    "OnnxModel",
    "OnnxOps",
    "OnnxTensor",
    "OnnxTensorBuilder",
    "__version__",
    "check_threads",
    "graph_cache_dir",
    "onnx_errors",
    "providers_for",
    "session_options",
    "wrap_onnx_error",
]

_LAZY: dict[str, str] = {
    "CPU_PROVIDER": "inferox.onnx.backend",
    "CUDA_PROVIDER": "inferox.onnx.backend",
    "OnnxBackend": "inferox.onnx.backend",
    "providers_for": "inferox.onnx.backend",
    "LOAD_DTYPES": "inferox.onnx.model",
    "OnnxDefinitionModel": "inferox.onnx.model",
    "OnnxModel": "inferox.onnx.model",
    "OnnxOps": "inferox.onnx.ops",
    "check_threads": "inferox.onnx.model",
    "session_options": "inferox.onnx.model",
    "INT8_SCHEMES": "inferox.onnx._graph",
    "GraphBuilder": "inferox.onnx._graph",
    "graph_cache_dir": "inferox.onnx._graph",
    "OnnxTensor": "inferox.onnx.tensor",
    "OnnxTensorBuilder": "inferox.onnx.tensor",
    "onnx_errors": "inferox.onnx._errors",
    "wrap_onnx_error": "inferox.onnx._errors",
}

__version__ = distribution_version(DISTRIBUTION)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, eager=["__version__"])
