"""The ``bert`` architecture as an ONNX graph: Hugging Face BERT weights, no exporter, no torch.

:func:`build_bert_graph` writes the encoder node by node with ``onnx.helper`` (through
:class:`~inferox.onnx.models._common.GraphBuilder`) in the layout ONNX Runtime's BERT fusions recognise —
the one ``torch.onnx`` produces for ``transformers``' ``BertModel``: separate query/key/value
``MatMul`` + ``Add``, ``Reshape``/``Transpose`` to heads, ``Div`` by √d, an additive mask
``(1 - mask) * -10000``, ``Softmax``, erf-GELU and ``Add`` + ``LayerNormalization`` residuals.
:func:`optimize_bert_graph` then runs ``onnxruntime.transformers.optimizer`` over it, which
replaces those subgraphs by ONNX Runtime's fused contrib operators (``Attention``,
``SkipLayerNormalization``, ``BiasGelu``, ``EmbedLayerNormalization`` where they match); the counts
land in :attr:`BertModel.fusions`. Pooling and normalisation of ``sentence_embedding`` are part of
the graph, as the package's pre-processing settings say.

The graph is built once per package content, options and device kind and kept in the graph cache
(see :mod:`inferox.onnx.models._common`); later loads read the optimised graph from there.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import onnx

from inferox.core import Backend, DeviceId, DType, ModelMetadata
from inferox.core.architectures import (
    BertConfig,
    Preprocessing,
    bert_input_specs,
    bert_output_specs,
    bert_weight_shapes,
    check_bert_inputs,
    select_weights,
)
from inferox.core.errors import BackendError, InvalidInputError
from inferox.onnx.model import OnnxModel, check_load_dtype, check_threads
from inferox.onnx.models._common import GraphBuilder, GraphOptions, check_float, obtain_graph, read_weights

__all__ = ["BertModel", "build_bert_graph", "create_model", "optimize_bert_graph"]

GRAPH_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
# The additive mask value ONNX Runtime's Attention operator uses too (exp(-10000) is 0 in f32).
MASK_VALUE = -10000.0


def _linear(g: GraphBuilder, x: str, w: np.ndarray, b: np.ndarray, name: str) -> str:
    """``x @ w.T + b`` as MatMul + Add (Hugging Face stores ``(out, in)``)."""
    y = g.op("MatMul", [x, g.const(f"{name}.weight", np.ascontiguousarray(w.T))], name=f"{name}/MatMul")
    return str(g.op("Add", [g.const(f"{name}.bias", b), y], name=f"{name}/Add"))


def _activation(g: GraphBuilder, x: str, act: str, name: str) -> str:
    if act == "gelu":
        # x * 0.5 * (1 + erf(x / sqrt 2)): the exact GELU, in the form ORT's Gelu fusion matches.
        d = g.op("Div", [x, g.const(f"{name}.sqrt2", np.float32(math.sqrt(2.0)))])
        e = g.op("Erf", [d])
        a = g.op("Add", [e, g.const(f"{name}.one", np.float32(1.0))])
        m = g.op("Mul", [x, a])
        return str(g.op("Mul", [m, g.const(f"{name}.half", np.float32(0.5))]))
    if act in ("gelu_new", "gelu_pytorch_tanh"):
        # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): the tanh approximation (FastGelu pattern).
        cube = g.op("Pow", [x, g.const(f"{name}.three", np.float32(3.0))])
        inner = g.op("Add", [x, g.op("Mul", [cube, g.const(f"{name}.c", np.float32(0.044715))])])
        t = g.op("Tanh", [g.op("Mul", [inner, g.const(f"{name}.k", np.float32(math.sqrt(2.0 / math.pi)))])])
        half = g.op("Mul", [x, g.const(f"{name}.half", np.float32(0.5))])
        return str(g.op("Mul", [half, g.op("Add", [t, g.const(f"{name}.one", np.float32(1.0))])]))
    if act == "relu":
        return str(g.op("Relu", [x]))
    return str(g.op("Tanh", [x]))  # "tanh": BertConfig accepts no other activation


def build_bert_graph(cfg: BertConfig, pre: Preprocessing, weights: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """The f32 BERT encoder (+ pooler, + sentence pooling when ``pre`` names one) as an ONNX graph.

    ``weights`` are Hugging Face parameter names without the ``bert.`` prefix (see
    :func:`inferox.core.architectures.bert_weight_names`), as float32 arrays.
    """
    w = weights
    h, heads, d = cfg.hidden_size, cfg.num_attention_heads, cfg.head_dim
    eps = float(cfg.layer_norm_eps)
    g = GraphBuilder("inferox_bert")
    for name in GRAPH_INPUTS:
        g.input(name, DType.I64, ["batch", "sequence"])

    def layer_norm(x: str, prefix: str) -> str:
        return str(g.op("LayerNormalization", [x, g.const(f"{prefix}.weight", w[f"{prefix}.weight"]), g.const(f"{prefix}.bias", w[f"{prefix}.bias"])],
                        name=f"{prefix}/LayerNormalization", axis=-1, epsilon=eps))

    # Embeddings: word + token type + position, then LayerNorm (Hugging Face's order).
    word = g.op("Gather", [g.const("embeddings.word_embeddings.weight", w["embeddings.word_embeddings.weight"]), "input_ids"], name="embeddings/word")
    token_type = g.op("Gather", [g.const("embeddings.token_type_embeddings.weight", w["embeddings.token_type_embeddings.weight"]), "token_type_ids"],
                      name="embeddings/token_type")
    position = g.op("Gather", [g.const("embeddings.position_embeddings.weight", w["embeddings.position_embeddings.weight"]), "position_ids"],
                    name="embeddings/position")
    x = g.op("Add", [g.op("Add", [word, token_type]), position])
    x = layer_norm(x, "embeddings.LayerNorm")

    # Additive attention mask (batch, 1, 1, seq): (1 - mask) * -10000.
    m = g.op("Unsqueeze", ["attention_mask", g.const("mask.axis1", np.array([1], np.int64))])
    m = g.op("Unsqueeze", [m, g.const("mask.axis2", np.array([2], np.int64))])
    m = g.op("Cast", [m], to=onnx.TensorProto.FLOAT)
    m = g.op("Sub", [g.const("mask.one", np.float32(1.0)), m])
    mask = g.op("Mul", [m, g.const("mask.value", np.float32(MASK_VALUE))])

    heads_shape = g.const("shape.heads", np.array([0, 0, heads, d], np.int64))
    merged_shape = g.const("shape.merged", np.array([0, 0, h], np.int64))
    scale = g.const("attention.scale", np.float32(math.sqrt(d)))
    for i in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{i}."

        def split(t: str, perm: Sequence[int], name: str, p: str = p) -> str:
            r = g.op("Reshape", [t, heads_shape], name=f"{p}{name}/Reshape")
            return str(g.op("Transpose", [r], name=f"{p}{name}/Transpose", perm=list(perm)))

        q = split(_linear(g, x, w[p + "attention.self.query.weight"], w[p + "attention.self.query.bias"], p + "attention.self.query"), (0, 2, 1, 3), "q")
        k = split(_linear(g, x, w[p + "attention.self.key.weight"], w[p + "attention.self.key.bias"], p + "attention.self.key"), (0, 2, 3, 1), "k")
        v = split(_linear(g, x, w[p + "attention.self.value.weight"], w[p + "attention.self.value.bias"], p + "attention.self.value"), (0, 2, 1, 3), "v")
        scores = g.op("Add", [g.op("Div", [g.op("MatMul", [q, k]), scale]), mask])
        probs = g.op("Softmax", [scores], axis=-1)
        ctx = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [ctx, merged_shape])
        attn = _linear(g, ctx, w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"], p + "attention.output.dense")
        x = layer_norm(g.op("Add", [attn, x]), p + "attention.output.LayerNorm")
        inter = _linear(g, x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"], p + "intermediate.dense")
        inter = _activation(g, inter, cfg.hidden_act, p + "intermediate.act")
        out = _linear(g, inter, w[p + "output.dense.weight"], w[p + "output.dense.bias"], p + "output.dense")
        x = layer_norm(g.op("Add", [out, x]), p + "output.LayerNorm")

    hidden = g.op("Identity", [x], name="last_hidden_state/Identity")
    g.rename_output(hidden, "last_hidden_state")
    g.output("last_hidden_state", DType.F32, ["batch", "sequence", h])
    first = g.op("Gather", ["last_hidden_state", g.const("pooler.index", np.array(0, np.int64))], axis=1)
    pooled = g.op("Tanh", [_linear(g, first, w["pooler.dense.weight"], w["pooler.dense.bias"], "pooler.dense")])
    g.rename_output(pooled, "pooler_output")
    g.output("pooler_output", DType.F32, ["batch", h])
    if pre.pooling is not None:
        emb = _sentence_embedding(g, "last_hidden_state", pre)
        g.rename_output(emb, "sentence_embedding")
        g.output("sentence_embedding", DType.F32, ["batch", h])
    return g.build()


def _sentence_embedding(g: GraphBuilder, x: str, pre: Preprocessing) -> str:
    """Pooling over the sequence (``mean``, ``max``, ``cls``, ``mean_sqrt_len``), then L2 normalisation."""
    axis1 = g.const("pool.axis1", np.array([1], np.int64))
    if pre.pooling == "cls":
        emb = g.op("Gather", [x, g.const("pool.cls", np.array(0, np.int64))], axis=1)
    else:
        m = g.op("Cast", [g.op("Unsqueeze", ["attention_mask", g.const("pool.axis2", np.array([2], np.int64))])], to=onnx.TensorProto.FLOAT)
        if pre.pooling == "max":
            # Padding positions get -1e9 so they never win the max (as sentence-transformers does).
            masked = g.op("Where", [g.op("Equal", [m, g.const("pool.zero", np.float32(0.0))]), g.const("pool.neg", np.float32(-1e9)), x])
            emb = g.op("ReduceMax", [masked], axes=[1], keepdims=0)
        else:
            total = g.op("ReduceSum", [g.op("Mul", [x, m]), axis1], keepdims=0)
            counts = g.op("Max", [g.op("ReduceSum", [m, axis1], keepdims=0), g.const("pool.min_count", np.float32(1e-9))])
            if pre.pooling == "mean_sqrt_len":
                counts = g.op("Sqrt", [counts])
            emb = g.op("Div", [total, counts])
    if pre.normalize:
        norm = g.op("ReduceL2", [emb], axes=[1], keepdims=1)
        emb = g.op("Div", [emb, g.op("Max", [norm, g.const("pool.eps", np.float32(1e-12))])])
    return str(emb)


def optimize_bert_graph(model: onnx.ModelProto, cfg: BertConfig, *, use_gpu: bool = False) -> tuple[onnx.ModelProto, dict[str, int]]:
    """ONNX Runtime's BERT fusions over ``model``; returns the optimised graph and the fused-operator counts.

    Only the Python fusions run here (``opt_level=0``): the result stays portable across machines,
    and the session applies ONNX Runtime's own graph optimisations, tuned to the machine, at load.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    # The optimizer warns when a graph's producer is not "pytorch" (ours is "inferox-onnx", written
    # in the exporter's layout on purpose): quiet that one logger for the call.
    quiet = logging.getLogger("onnxruntime.transformers.optimizer")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        optimized = optimize_model(
            model, model_type="bert", num_heads=cfg.num_attention_heads, hidden_size=cfg.hidden_size, opt_level=0, use_gpu=use_gpu
        )
    finally:
        quiet.setLevel(level)
    stats = {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}
    result = optimized.model
    # The fused operators live in the com.microsoft domain; declare it so that onnx's checker and
    # shape inference (which quantisation runs) accept the graph.
    if any(n.domain == "com.microsoft" for n in result.graph.node) and not any(o.domain == "com.microsoft" for o in result.opset_import):
        result.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return result, stats


class BertModel(OnnxModel):
    """A BERT ONNX graph behind the Inferox model interface.

    ``text_encoder`` (a :class:`~inferox.core.text.TextEncoder`, or ``None``) turns strings into this
    model's inputs; ``preprocessing`` says how ``sentence_embedding`` is pooled; ``fusions`` counts
    the fused operators ONNX Runtime's optimizer put in the graph; ``int8`` names the int8 scheme the
    graph was quantised with (``None``: f32); ``from_cache`` says whether the graph came from the cache.
    """

    def __init__(
        self,
        graph: onnx.ModelProto | bytes | str | os.PathLike[str],
        *,
        config: BertConfig,
        preprocessing: Preprocessing,
        metadata: ModelMetadata,
        backend: Backend | None = None,
        device: DeviceId | str | None = None,
        dtype: DType | str | None = None,
        threads: int | None = None,
        text_encoder: Any = None,
        info: Mapping[str, Any] | None = None,
        weight_bytes: int | None = None,
    ) -> None:
        super().__init__(
            graph,
            metadata=metadata,
            input_specs=bert_input_specs(config),
            output_specs=bert_output_specs(config, preprocessing),
            backend=backend,
            device=device,
            dtype=dtype,
            threads=threads,
            weight_bytes=weight_bytes,
        )
        self.config = config
        self.preprocessing = preprocessing
        self.text_encoder = text_encoder
        facts = dict(info or {})
        self.fusions: dict[str, int] = dict(facts.get("fusions", {}))
        self.int8: str | None = facts.get("int8") or None
        self.from_cache = bool(facts.get("from_cache", False))
        self._positions: dict[tuple[int, int], np.ndarray] = {}

    @staticmethod
    def _value_range(value: Any) -> tuple[int, int]:
        a = np.asarray(value)
        return int(a.min()), int(a.max())

    def check_inputs(self, inputs: Mapping[str, Any]) -> None:
        """Empty input, over-long sequences, ids outside the vocabulary, mismatched shapes → InvalidInputError."""
        check_bert_inputs(self.config, inputs, self._value_range)

    def _default_positions(self, batch: int, seq: int) -> np.ndarray:
        key = (batch, seq)
        positions = self._positions.get(key)
        if positions is None:
            positions = np.ascontiguousarray(np.broadcast_to(np.arange(seq, dtype=np.int64), (batch, seq)))
            if len(self._positions) < 64:  # a handful of shapes repeat under batching; bound the memo
                self._positions[key] = positions
        return positions

    def feeds(self, inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        ids = np.asarray(inputs["input_ids"], dtype=np.int64)
        batch, seq = ids.shape
        out: dict[str, Any] = {"input_ids": ids}
        for name in ("attention_mask", "token_type_ids"):
            value = inputs.get(name)
            out[name] = np.ones_like(ids) if value is None and name == "attention_mask" else (
                np.zeros_like(ids) if value is None else np.asarray(value, dtype=np.int64))
        position_ids = inputs.get("position_ids")
        out["position_ids"] = self._default_positions(batch, seq) if position_ids is None else np.asarray(position_ids, dtype=np.int64)
        return out

    def encode_text(self, texts: Sequence[str] | str, *, max_length: int | None = None) -> dict[str, Any]:
        """Tokenise and run ``texts`` in one call (needs ``text_encoder``); returns numpy outputs."""
        if self.text_encoder is None:
            raise InvalidInputError("this model has no tokenizer; build it with the tokenizer_path option", name="text")
        batch = self.text_encoder.encode(texts, max_length=max_length)
        self.check_inputs(batch)
        return self.forward(batch)

    def warmup(self) -> None:
        ids = np.full((1, 8), 1, dtype=np.int64)
        self.forward({"input_ids": ids, "attention_mask": np.ones_like(ids)})


def create_model(
    *,
    backend: Backend,
    config: Mapping[str, Any],
    weights: str | os.PathLike[str] | Mapping[str, Any],
    metadata: ModelMetadata,
    device: DeviceId | str | None = None,
    dtype: DType | str | None = None,
    **options: Any,
) -> BertModel:
    """The ``bert`` factory.

    Options: ``preprocessing`` (``{"pooling", "normalize", "max_seq_length"}``, as the package
    records), or the flat ``pooling`` / ``normalize`` / ``max_seq_length``, which win;
    ``tokenizer_path`` (a ``tokenizer.json``) to attach a :class:`~inferox.core.text.TextEncoder`;
    ``threads`` (this model's intra-op threads); ``optimize`` (ONNX Runtime's transformer fusions,
    default true); ``int8`` (int8 quantisation, default false) with ``int8_scheme`` (``"blockwise"``,
    the default, or ``"dynamic"``: see :data:`inferox.onnx.models._common.INT8_SCHEMES`); ``cache``
    (keep the built graph in the graph cache, default true). Others are ignored.
    """
    cfg = BertConfig.from_dict(config)
    pre = Preprocessing.from_options(options, limit=cfg.max_position_embeddings)
    check_load_dtype(dtype)
    threads = check_threads(options.get("threads"))
    graph_options = GraphOptions.from_options(options)
    dev = backend.check_device(device)

    def build() -> tuple[onnx.ModelProto, dict[str, Any]]:
        tensors, source = read_weights(weights)
        chosen = check_float(select_weights(tensors, bert_weight_shapes(cfg), prefixes=("", "bert."), source=source), source)
        model = build_bert_graph(cfg, pre, chosen)
        fusions: dict[str, int] = {}
        if graph_options.optimize:
            model, fusions = optimize_bert_graph(model, cfg, use_gpu=dev.is_cuda)
        return model, {"fusions": fusions, "weight_bytes": sum(int(a.nbytes) for a in chosen.values())}

    text_encoder = None
    if options.get("tokenizer_path") is not None:
        from inferox.core.text import TextEncoder

        text_encoder = TextEncoder.from_file(options["tokenizer_path"], max_length=pre.max_seq_length, limit=cfg.max_position_embeddings)

    def make(obtained: Any) -> BertModel:
        return BertModel(obtained.graph, config=cfg, preprocessing=pre, metadata=metadata, backend=backend, device=dev, dtype=dtype,
                         threads=threads, text_encoder=text_encoder, info={**obtained.info, "from_cache": obtained.from_cache},
                         weight_bytes=obtained.info.get("weight_bytes"))

    obtained = obtain_graph(architecture="bert", config=asdict(cfg), weights=weights, device=dev, options=graph_options, build=build,
                            extra_key={"preprocessing": pre.to_dict()})
    try:
        return make(obtained)
    except BackendError:
        if not obtained.from_cache:
            raise
        # A cached graph the runtime cannot load (truncated, edited): drop that entry, rebuild once.
        obtained.discard()
        obtained = obtain_graph(architecture="bert", config=asdict(cfg), weights=weights, device=dev, options=graph_options, build=build,
                                extra_key={"preprocessing": pre.to_dict()})
        return make(obtained)
