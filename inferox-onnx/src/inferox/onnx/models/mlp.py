"""The ``mlp`` architecture as an ONNX graph (schema: :mod:`inferox.core.architectures`).

``Linear → activation → … → Linear``: each layer is one ``Gemm`` node (``x @ W.T + b`` with the
weight stored as Hugging Face / torch do, ``(out, in)``), so no transposed copy of the weights is
made. The graph is small and has nothing for ONNX Runtime's transformer fusions to do; the
session's own optimisations still apply.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx

from inferox.core import Backend, DeviceId, DType, ModelMetadata
from inferox.core.architectures import MLPConfig, mlp_input_specs, mlp_output_specs, select_weights
from inferox.core.errors import BackendError
from inferox.onnx.model import OnnxModel, check_load_dtype, check_threads
from inferox.onnx.models._common import GraphBuilder, GraphOptions, check_float, obtain_graph, read_weights

__all__ = ["MLPModel", "build_mlp_graph", "create_model"]

_ACTIVATIONS = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "identity": "Identity"}


def build_mlp_graph(cfg: MLPConfig, weights: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """The MLP as an ONNX graph: input ``input`` (batch, in) → output ``output`` (batch, out), f32."""
    g = GraphBuilder("inferox_mlp")
    x = g.input("input", DType.F32, ["batch", cfg.layer_sizes[0]])
    last = cfg.num_layers - 1
    for i in range(cfg.num_layers):
        w, b = weights[f"layers.{i}.weight"], weights[f"layers.{i}.bias"]
        x = g.op("Gemm", [x, g.const(f"layers.{i}.weight", w), g.const(f"layers.{i}.bias", b)], name=f"layers.{i}/Gemm", transB=1)
        if i < last:
            if cfg.activation == "gelu":
                x = g.op("Gelu", [x], domain="com.microsoft")  # exact (erf) GELU, as torch's F.gelu
            elif cfg.activation in ("gelu_new", "gelu_pytorch_tanh"):
                x = g.op("FastGelu", [x], domain="com.microsoft")  # the tanh approximation
            else:
                x = g.op(_ACTIVATIONS[cfg.activation], [x])
    g.rename_output(x, "output")
    g.output("output", DType.F32, ["batch", cfg.layer_sizes[-1]])
    return g.build()


class MLPModel(OnnxModel):
    """An MLP graph behind the Inferox model interface: input ``input``, output ``output`` (f32)."""

    def __init__(self, graph: Any, *, config: MLPConfig, metadata: ModelMetadata, backend: Backend | None = None,
                 device: DeviceId | str | None = None, dtype: DType | str | None = None, threads: int | None = None,
                 info: Mapping[str, Any] | None = None) -> None:
        super().__init__(graph, metadata=metadata, input_specs=mlp_input_specs(config), output_specs=mlp_output_specs(config),
                         backend=backend, device=device, dtype=dtype, threads=threads, weight_bytes=(info or {}).get("weight_bytes"))
        self.config = config
        self.int8: str | None = (info or {}).get("int8") or None
        self.from_cache = bool((info or {}).get("from_cache", False))

    def feeds(self, inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        return {"input": np.asarray(inputs["input"], dtype=np.float32)}


def create_model(
    *,
    backend: Backend,
    config: Mapping[str, Any],
    weights: str | os.PathLike[str] | Mapping[str, Any],
    metadata: ModelMetadata,
    device: DeviceId | str | None = None,
    dtype: DType | str | None = None,
    **options: Any,
) -> MLPModel:
    """The ``mlp`` factory: build the graph from ``config`` and ``weights``.

    Options: ``threads`` (this model's intra-op threads), ``int8`` with ``int8_scheme`` (the ``"dynamic"`` scheme quantises
    the Gemm layers; ``"blockwise"`` rewrites only MatMul nodes, which an MLP graph has none of),
    ``cache`` (keep the graph in the graph cache, default true). Others are ignored.
    """
    cfg = MLPConfig.from_dict(config)
    check_load_dtype(dtype)
    threads = check_threads(options.get("threads"))
    graph_options = GraphOptions.from_options(options)
    dev = backend.check_device(device)

    def build() -> tuple[onnx.ModelProto, dict[str, Any]]:
        tensors, source = read_weights(weights)
        chosen = check_float(select_weights(tensors, cfg.weight_shapes(), source=source), source)
        return build_mlp_graph(cfg, chosen), {"fusions": {}, "weight_bytes": sum(int(a.nbytes) for a in chosen.values())}

    def obtain() -> Any:
        return obtain_graph(architecture="mlp", config={"layer_sizes": list(cfg.layer_sizes), "activation": cfg.activation},
                            weights=weights, device=dev, options=graph_options, build=build)

    obtained = obtain()
    try:
        return MLPModel(obtained.graph, config=cfg, metadata=metadata, backend=backend, device=dev, dtype=dtype, threads=threads,
                        info={**obtained.info, "from_cache": obtained.from_cache})
    except BackendError:
        if not obtained.from_cache:
            raise
        obtained.discard()  # a cached graph the runtime cannot load: drop that entry, rebuild once
        obtained = obtain()
        return MLPModel(obtained.graph, config=cfg, metadata=metadata, backend=backend, device=dev, dtype=dtype, threads=threads,
                        info={**obtained.info, "from_cache": obtained.from_cache})
