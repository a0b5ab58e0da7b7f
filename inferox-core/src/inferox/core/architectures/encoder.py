"""The transformer encoders, defined once: BERT, DistilBERT, RoBERTa, XLM-RoBERTa, MPNet and ELECTRA.

One definition (:func:`encoder_forward`) computes every family; a :class:`Family` configures it —
where the weights live and what they are called, how positions are numbered, whether there are
token types, a relative position bias, a pooler or an embedding projection, and what its
sequence-classification head looks like. **Adding a family is one more** :class:`Family` **in**
:data:`FAMILIES` (plus its tests): no backend code.

On top of the encoder, what the package's pre-processing settings (``preprocessing.json``) say:

* ``pooling`` — sentence-transformers ``Pooling``: ``cls``, ``mean``, ``max``, ``mean_sqrt_len``,
  ``weightedmean``, ``lasttoken``, or a list of them concatenated in order → ``sentence_embedding``;
* ``dense`` — sentence-transformers ``Dense`` modules after pooling (weights ``dense.{i}.linear.*``
  in the package's ``model.safetensors``), then ``normalize`` (``Normalize``: L2);
* ``head`` — a ``*ForSequenceClassification`` head: ``{"task": "classify", "labels": [...]}`` →
  ``logits`` and ``label`` (the argmax, its names in the spec's ``extra["labels"]``), or
  ``{"task": "rerank", "activation": "sigmoid" | "identity"}`` → one ``score`` per pair;
* ``pooler`` — whether ``pooler_output`` is computed (the checkpoint holds a pooler).

``inferox pack`` decides the head from ``config.json``'s ``architectures`` (:func:`resolve_package`)
and refuses one no family supports, naming it, unless ``--encoder-only``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferox.core.architectures._common import POOLING_MODES, _int_field
from inferox.core.definition import Definition, TextSettings, select_weights
from inferox.core.dtype import DType
from inferox.core.errors import ConfigError, InvalidInputError, UnsupportedHeadError
from inferox.core.ops import Ops
from inferox.core.schema import ArchitectureSchema
from inferox.core.spec import TensorSpec

__all__ = [
    "ENCODER_DEFINITION",
    "FAMILIES",
    "HIDDEN_ACTIVATIONS",
    "SCORE_ACTIVATIONS",
    "DenseLayer",
    "EncoderConfig",
    "Family",
    "Head",
    "HeadLayout",
    "check_encoder_inputs",
    "encoder_forward",
    "encoder_schema",
    "family_for",
    "relative_position_buckets",
    "resolve_package",
]

#: ``hidden_act`` values an encoder may use (``gelu`` is the exact erf form).
HIDDEN_ACTIVATIONS = ("gelu", "relu", "gelu_new", "gelu_pytorch_tanh", "tanh")
#: Activations a rerank score or a Dense module may apply.
SCORE_ACTIVATIONS = ("sigmoid", "identity", "tanh", "relu", "gelu")
#: torch.nn activation classes (sentence-transformers saves their dotted paths) → Inferox names.
_TORCH_ACTIVATIONS = {"Sigmoid": "sigmoid", "Identity": "identity", "Tanh": "tanh", "ReLU": "relu", "GELU": "gelu"}


# -- families -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HeadLayout:
    """Where a family's ``*ForSequenceClassification`` head lives and how it computes.

    ``dense`` (``None`` for BERT, whose head reads the pooler) is a square projection of the first
    token followed by ``activation``; ``out`` the projection to the labels.
    """

    out: str
    dense: str | None = None
    activation: str = "tanh"


@dataclass(frozen=True)
class Family:
    """One encoder family: how :func:`encoder_forward` is configured for it and where its weights are."""

    #: The architecture name packages record (``"bert"``).
    name: str
    #: ``config.json``'s ``model_type`` values it claims.
    model_types: tuple[str, ...]
    #: Hugging Face class-name stem: ``Bert`` → ``BertModel``, ``BertForSequenceClassification``.
    class_prefix: str
    #: The prefix of the encoder's weights inside a task checkpoint (``"bert."``).
    prefix: str
    #: Per-layer weight names (``{i}`` the layer): ``q``, ``k``, ``v``, ``o``, ``attn_norm``,
    #: ``inter``, ``out``, ``out_norm`` → the checkpoint's names, without ``.weight`` / ``.bias``.
    layer: Mapping[str, str]
    head: HeadLayout
    #: Embedding weights: ``word``, ``position``, ``type`` (when the family has token types), ``norm``.
    embeddings: Mapping[str, str] = field(default_factory=lambda: {
        "word": "embeddings.word_embeddings", "position": "embeddings.position_embeddings",
        "type": "embeddings.token_type_embeddings", "norm": "embeddings.LayerNorm",
    })
    #: ``config.json`` keys of the dimensions, where they differ from BERT's.
    fields: Mapping[str, str] = field(default_factory=dict)
    #: ``"absolute"`` (0..L-1) or ``"padding"`` (RoBERTa: numbered from ``padding_idx + 1``, from the ids).
    positions: str = "absolute"
    token_types: bool = True
    #: The pooler's weights (``None``: the family has none).
    pooler: str | None = "pooler.dense"
    #: The projection from ``embedding_size`` to ``hidden_size`` (ELECTRA), when they differ.
    projection: str | None = None
    #: The relative position bias table (MPNet).
    relative_bias: str | None = None
    #: A fixed padding index (MPNet's is 1 whatever ``pad_token_id`` says).
    padding_idx: int | None = None
    #: A fixed layer-norm epsilon (DistilBERT's is 1e-12, not in its config).
    layer_norm_eps: float | None = None
    #: Whether ``position_embedding_type`` may appear (and must then be ``absolute``).
    position_embedding_type: bool = True

    @property
    def encoder_class(self) -> str:
        return f"{self.class_prefix}Model"

    @property
    def classifier_class(self) -> str:
        return f"{self.class_prefix}ForSequenceClassification"

    def key(self, name: str) -> str:
        """The ``config.json`` key of a BERT-named field."""
        return self.fields.get(name, name)


_BERT_LAYER = {
    "q": "encoder.layer.{i}.attention.self.query", "k": "encoder.layer.{i}.attention.self.key",
    "v": "encoder.layer.{i}.attention.self.value", "o": "encoder.layer.{i}.attention.output.dense",
    "attn_norm": "encoder.layer.{i}.attention.output.LayerNorm", "inter": "encoder.layer.{i}.intermediate.dense",
    "out": "encoder.layer.{i}.output.dense", "out_norm": "encoder.layer.{i}.output.LayerNorm",
}
_DENSE_TANH = HeadLayout(out="classifier.out_proj", dense="classifier.dense", activation="tanh")

#: Every encoder family, by architecture name.
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("bert", ("bert",), "Bert", "bert.", _BERT_LAYER, HeadLayout(out="classifier")),
        Family("roberta", ("roberta",), "Roberta", "roberta.", _BERT_LAYER, _DENSE_TANH, positions="padding"),
        Family("xlm-roberta", ("xlm-roberta",), "XLMRoberta", "roberta.", _BERT_LAYER, _DENSE_TANH, positions="padding"),
        Family(
            "electra", ("electra",), "Electra", "electra.", _BERT_LAYER,
            HeadLayout(out="classifier.out_proj", dense="classifier.dense", activation="gelu"), pooler=None, projection="embeddings_project",
        ),
        Family(
            "distilbert", ("distilbert",), "DistilBert", "distilbert.",
            {
                "q": "transformer.layer.{i}.attention.q_lin", "k": "transformer.layer.{i}.attention.k_lin",
                "v": "transformer.layer.{i}.attention.v_lin", "o": "transformer.layer.{i}.attention.out_lin",
                "attn_norm": "transformer.layer.{i}.sa_layer_norm", "inter": "transformer.layer.{i}.ffn.lin1",
                "out": "transformer.layer.{i}.ffn.lin2", "out_norm": "transformer.layer.{i}.output_layer_norm",
            },
            HeadLayout(out="classifier", dense="pre_classifier", activation="relu"),
            fields={"hidden_size": "dim", "num_hidden_layers": "n_layers", "num_attention_heads": "n_heads", "intermediate_size": "hidden_dim", "hidden_act": "activation"},
            token_types=False, pooler=None, layer_norm_eps=1e-12, position_embedding_type=False,
        ),
        Family(
            "mpnet", ("mpnet",), "MPNet", "mpnet.",
            {
                "q": "encoder.layer.{i}.attention.attn.q", "k": "encoder.layer.{i}.attention.attn.k",
                "v": "encoder.layer.{i}.attention.attn.v", "o": "encoder.layer.{i}.attention.attn.o",
                "attn_norm": "encoder.layer.{i}.attention.LayerNorm", "inter": "encoder.layer.{i}.intermediate.dense",
                "out": "encoder.layer.{i}.output.dense", "out_norm": "encoder.layer.{i}.output.LayerNorm",
            },
            _DENSE_TANH, positions="padding", token_types=False, relative_bias="encoder.relative_attention_bias",
            padding_idx=1, position_embedding_type=False,
        ),
    )
}


def family_for(name: str) -> Family:
    """The family called ``name`` (an architecture name or a ``model_type`` it claims)."""
    for fam in FAMILIES.values():
        if name == fam.name or name in fam.model_types:
            return fam
    raise ConfigError(f"unknown encoder family {name!r} (known: {', '.join(FAMILIES)})", field="model_type", value=name)


# -- the config -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DenseLayer:
    """A sentence-transformers ``Dense`` module: ``activation(x @ W.T + b)`` (``+ x`` or ``+ x @ R.T`` with a residual)."""

    in_features: int
    out_features: int
    bias: bool = True
    activation: str = "tanh"
    residual: bool = False


@dataclass(frozen=True)
class Head:
    """A sequence-classification head: ``classify`` (logits and the argmax label) or ``rerank`` (one score)."""

    task: str
    num_labels: int
    labels: tuple[str, ...] = ()
    #: What turns a rerank logit into its score (``sigmoid`` / ``identity`` …); ``identity`` for classify.
    activation: str = "identity"


@dataclass(frozen=True)
class EncoderConfig:
    """Everything :func:`encoder_forward` needs, parsed from ``config.json`` and the pre-processing settings."""

    family: str
    vocab_size: int
    hidden_size: int
    embedding_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    hidden_act: str
    pad_token_id: int
    positions: str = "absolute"
    relative_buckets: int = 0
    pooler: bool = False
    pooling: tuple[str, ...] = ()
    normalize: bool = False
    max_seq_length: int | None = None
    dense: tuple[DenseLayer, ...] = ()
    head: Head | None = None

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def max_tokens(self) -> int:
        """The longest sequence the position table allows (RoBERTa's starts at ``padding_idx + 1``)."""
        return self.max_positions - (self.pad_token_id + 1 if self.positions == "padding" else 0)

    @property
    def embedding_width(self) -> int:
        """The width of ``sentence_embedding``: pooled modes side by side, then the last Dense layer."""
        if self.dense:
            return self.dense[-1].out_features
        return self.hidden_size * len(self.pooling)


def _float_field(config: Mapping[str, Any], key: str, default: float) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError("must be a positive number", field=key, value=value)
    return float(value)


def _architecture_name(config: Mapping[str, Any]) -> str | None:
    names = config.get("architectures")
    if isinstance(names, list) and names and isinstance(names[0], str):
        return names[0]
    return None


def _config_has_pooler(fam: Family, config: Mapping[str, Any]) -> bool:
    """Whether a checkpoint of this ``config.json`` holds the family's pooler (what transformers saves)."""
    if fam.pooler is None:
        return False
    arch = _architecture_name(config)
    return arch in (None, fam.encoder_class) or (arch == fam.classifier_class and fam.head.dense is None)


def parse_encoder(config: Mapping[str, Any], preprocessing: Mapping[str, Any] | None = None, *, family: str | None = None) -> EncoderConfig:
    """An :class:`EncoderConfig` from ``config.json`` (and the package's pre-processing settings).

    A bad field is a :class:`ConfigError` naming it (``config.json``'s key, or the settings' key).
    """
    if not isinstance(config, Mapping):
        raise ConfigError("an encoder config must be an object", field="config", value=type(config).__name__)
    fam = family_for(family or str(config.get("model_type") or "bert"))
    pre = dict(preprocessing or {})
    k = fam.key
    hidden = _int_field(config, k("hidden_size"))
    heads = _int_field(config, k("num_attention_heads"))
    if hidden % heads:
        raise ConfigError(f"hidden_size {hidden} is not a multiple of num_attention_heads {heads}", field=k("num_attention_heads"), value=heads)
    act = config.get(k("hidden_act"), "gelu")
    if act not in HIDDEN_ACTIVATIONS:
        raise ConfigError(f"unsupported activation (supported: {', '.join(HIDDEN_ACTIVATIONS)})", field=k("hidden_act"), value=act)
    ptype = config.get("position_embedding_type", "absolute")
    if fam.position_embedding_type and ptype != "absolute":
        raise ConfigError("only absolute position embeddings are supported", field="position_embedding_type", value=ptype)
    eps = fam.layer_norm_eps if fam.layer_norm_eps is not None else _float_field(config, "layer_norm_eps", 1e-12)
    pad = fam.padding_idx if fam.padding_idx is not None else _int_field(config, "pad_token_id", 0, minimum=0)
    max_positions = _int_field(config, "max_position_embeddings", 512)
    if fam.positions == "padding" and max_positions <= pad + 2:
        raise ConfigError(f"max_position_embeddings must exceed padding_idx + 2 ({pad + 2})", field="max_position_embeddings", value=max_positions)
    embedding = _int_field(config, "embedding_size", hidden) if fam.projection else hidden
    pooler = pre.get("pooler")
    if pooler is None:
        pooler = _config_has_pooler(fam, config) and (pre.get("head") is None or fam.head.dense is None)
    if not isinstance(pooler, bool) or (pooler and fam.pooler is None):
        raise ConfigError(f"must be true or false (and false for {fam.name}, which has no pooler)", field="pooler", value=pooler)
    cfg = EncoderConfig(
        family=fam.name,
        vocab_size=_int_field(config, "vocab_size"),
        hidden_size=hidden,
        embedding_size=embedding,
        num_layers=_int_field(config, k("num_hidden_layers")),
        num_heads=heads,
        intermediate_size=_int_field(config, k("intermediate_size")),
        max_positions=max_positions,
        type_vocab_size=_int_field(config, "type_vocab_size", 2) if fam.token_types else 0,
        layer_norm_eps=eps,
        hidden_act=str(act),
        pad_token_id=pad,
        positions=fam.positions,
        relative_buckets=_int_field(config, "relative_attention_num_buckets", 32) if fam.relative_bias else 0,
        pooler=pooler,
    )
    return _with_preprocessing(cfg, fam, pre)


def _with_preprocessing(cfg: EncoderConfig, fam: Family, pre: Mapping[str, Any]) -> EncoderConfig:
    raw_pooling = pre.get("pooling")
    pooling: tuple[str, ...] = ()
    if raw_pooling is not None:
        modes = [raw_pooling] if isinstance(raw_pooling, str) else raw_pooling if isinstance(raw_pooling, (list, tuple)) else None
        if not modes or any(m not in POOLING_MODES for m in modes):
            raise ConfigError(f"must be one of {', '.join(POOLING_MODES)}, or a list of them", field="pooling", value=raw_pooling)
        pooling = tuple(str(m) for m in modes)
    normalize = pre.get("normalize", False)
    if not isinstance(normalize, bool):
        raise ConfigError("must be true or false", field="normalize", value=normalize)
    max_len = pre.get("max_seq_length")
    if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int) or not 2 <= max_len <= cfg.max_tokens):
        raise ConfigError(f"must be an integer in 2..{cfg.max_tokens} (the model's position table)", field="max_seq_length", value=max_len)
    dense = _parse_dense(pre.get("dense"), width=cfg.hidden_size * max(len(pooling), 1))
    if dense and not pooling:
        raise ConfigError("Dense layers need a pooling to act on", field="dense", value=pre.get("dense"))
    head = _parse_head(pre.get("head"))
    if head is not None and pooling:
        raise ConfigError("a model has a task head or a sentence pooling, not both", field="head", value=pre.get("head"))
    if head is not None and fam.head.dense is None and not cfg.pooler:
        raise ConfigError(f"the {fam.name} classification head reads the pooler", field="pooler", value=cfg.pooler)
    return EncoderConfig(**{**cfg.__dict__, "pooling": pooling, "normalize": normalize, "max_seq_length": max_len, "dense": dense, "head": head})


def _parse_dense(raw: Any, *, width: int) -> tuple[DenseLayer, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, (list, tuple)):
        raise ConfigError("must be a list of Dense layers", field="dense", value=raw)
    out: list[DenseLayer] = []
    for i, layer in enumerate(raw):
        where = f"dense[{i}]"
        if not isinstance(layer, Mapping):
            raise ConfigError("must be an object", field=where, value=layer)
        n_in, n_out = _int_field(layer, "in_features"), _int_field(layer, "out_features")
        if n_in != width:
            raise ConfigError(f"in_features {n_in} does not match the {width} features it receives", field=f"{where}.in_features", value=n_in)
        act = layer.get("activation", "identity")
        if act not in SCORE_ACTIVATIONS:
            raise ConfigError(f"unsupported activation (supported: {', '.join(SCORE_ACTIVATIONS)})", field=f"{where}.activation", value=act)
        bias, residual = layer.get("bias", True), layer.get("residual", False)
        if not isinstance(bias, bool) or not isinstance(residual, bool):
            raise ConfigError("bias and residual must be true or false", field=where, value=layer)
        out.append(DenseLayer(n_in, n_out, bias, str(act), residual))
        width = n_out
    return tuple(out)


def _parse_head(raw: Any) -> Head | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError("must be an object", field="head", value=raw)
    task = raw.get("task")
    if task not in ("classify", "rerank"):
        raise ConfigError("head.task must be 'classify' or 'rerank'", field="head.task", value=task)
    num = _int_field(raw, "num_labels", 1)
    labels = raw.get("labels") or []
    if not isinstance(labels, (list, tuple)) or not all(isinstance(x, str) for x in labels) or (labels and len(labels) != num):
        raise ConfigError(f"head.labels must be {num} strings", field="head.labels", value=labels)
    act = raw.get("activation", "identity")
    if act not in SCORE_ACTIVATIONS:
        raise ConfigError(f"unsupported activation (supported: {', '.join(SCORE_ACTIVATIONS)})", field="head.activation", value=act)
    if task == "rerank" and num != 1:
        raise ConfigError("a rerank head has one output", field="head.num_labels", value=num)
    return Head(str(task), num, tuple(labels), str(act))


# -- weights ------------------------------------------------------------------------------------------------
def _pair(name: str, out: int, inp: int | None = None, *, bias: bool = True) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {f"{name}.weight": (out,) if inp is None else (out, inp)}
    if bias:
        shapes[f"{name}.bias"] = (out,)
    return shapes


def encoder_weight_shapes(cfg: EncoderConfig) -> dict[str, tuple[int, ...]]:
    """The encoder's weights (names relative to the family's prefix) with their shapes, pooler included when configured."""
    fam = FAMILIES[cfg.family]
    h, e, emb = cfg.hidden_size, cfg.embedding_size, fam.embeddings
    shapes: dict[str, tuple[int, ...]] = {f"{emb['word']}.weight": (cfg.vocab_size, e), f"{emb['position']}.weight": (cfg.max_positions, e)}
    if cfg.type_vocab_size:
        shapes[f"{emb['type']}.weight"] = (cfg.type_vocab_size, e)
    shapes.update(_pair(emb["norm"], e))
    if fam.projection and e != h:
        shapes.update(_pair(fam.projection, h, e))
    for i in range(cfg.num_layers):
        names = {part: template.format(i=i) for part, template in fam.layer.items()}
        for part in ("q", "k", "v", "o"):
            shapes.update(_pair(names[part], h, h))
        shapes.update(_pair(names["attn_norm"], h))
        shapes.update(_pair(names["inter"], cfg.intermediate_size, h))
        shapes.update(_pair(names["out"], h, cfg.intermediate_size))
        shapes.update(_pair(names["out_norm"], h))
    if fam.relative_bias:
        shapes[f"{fam.relative_bias}.weight"] = (cfg.relative_buckets, cfg.num_heads)
    if cfg.pooler and fam.pooler:
        shapes.update(_pair(fam.pooler, h, h))
    return shapes


def head_weight_shapes(cfg: EncoderConfig, num_labels: int | None = None) -> dict[str, tuple[int, ...]]:
    """The classification head's weights (top-level names) for ``num_labels`` (default: the configured head's)."""
    fam = FAMILIES[cfg.family]
    labels = num_labels if num_labels is not None else (cfg.head.num_labels if cfg.head else 0)
    if not labels:
        return {}
    shapes: dict[str, tuple[int, ...]] = {}
    if fam.head.dense:
        shapes.update(_pair(fam.head.dense, cfg.hidden_size, cfg.hidden_size))
    shapes.update(_pair(fam.head.out, labels, cfg.hidden_size))
    return shapes


def dense_weight_shapes(cfg: EncoderConfig) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for i, layer in enumerate(cfg.dense):
        shapes.update(_pair(f"dense.{i}.linear", layer.out_features, layer.in_features, bias=layer.bias))
        if layer.residual and layer.in_features != layer.out_features:
            shapes[f"dense.{i}.residual.weight"] = (layer.out_features, layer.in_features)
    return shapes


def _select(weights: Mapping[str, Any], cfg: EncoderConfig, source: str | None) -> dict[str, Any]:
    fam = FAMILIES[cfg.family]
    # The encoder is prefixed in task checkpoints (bert.embeddings…) and bare in base ones; heads and
    # sentence-transformers Dense layers are always top level (no family's encoder uses their names).
    out = select_weights(weights, encoder_weight_shapes(cfg), prefixes=("", fam.prefix), source=source)
    out.update(select_weights(weights, head_weight_shapes(cfg), source=source))
    out.update(select_weights(weights, dense_weight_shapes(cfg), source=source))
    return out


def relative_position_buckets(max_positions: int, *, num_buckets: int = 32, max_distance: int = 128) -> np.ndarray:
    """MPNet's (T5's) bucket of every relative distance ``j - i`` in ``-(P-1)..(P-1)``, as int64.

    Computed in float32 like ``transformers``' ``MPNetEncoder.relative_position_bucket``, so that the
    distances on a bucket boundary (16, 32, 64) land where the model was trained to see them.
    """
    rel = np.arange(-(max_positions - 1), max_positions, dtype=np.int64)
    n = -rel
    half = num_buckets // 2
    ret = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    max_exact = half // 2
    with np.errstate(divide="ignore"):
        scaled = np.log(n.astype(np.float32) / np.float32(max_exact)) / np.float32(math.log(max_distance / max_exact)) * np.float32(half - max_exact)
    large = max_exact + np.where(np.isfinite(scaled), scaled, 0).astype(np.int64)
    large = np.minimum(large, half - 1)
    return ret + np.where(n < max_exact, n, large)


def _prepare(xp: Any, w: Mapping[str, Any], cfg: EncoderConfig) -> dict[str, Any]:
    """Rename to the layout :func:`encoder_forward` reads and fuse query/key/value into one matrix."""
    fam = FAMILIES[cfg.family]
    e = fam.embeddings

    def enc(name: str) -> Any:
        return w[name]

    emb: dict[str, Any] = {"word": enc(f"{e['word']}.weight"), "position": enc(f"{e['position']}.weight"),
                           "norm_w": enc(f"{e['norm']}.weight"), "norm_b": enc(f"{e['norm']}.bias")}
    if cfg.type_vocab_size:
        emb["type"] = enc(f"{e['type']}.weight")
    if fam.projection and cfg.embedding_size != cfg.hidden_size:
        emb["project_w"], emb["project_b"] = enc(f"{fam.projection}.weight"), enc(f"{fam.projection}.bias")
    layers = []
    for i in range(cfg.num_layers):
        n = {part: template.format(i=i) for part, template in fam.layer.items()}
        layers.append({
            # One (3h, h) projection instead of three: one matmul per layer, split by a reshape.
            "qkv_w": xp.concat([enc(f"{n[p]}.weight") for p in ("q", "k", "v")], axis=0),
            "qkv_b": xp.concat([enc(f"{n[p]}.bias") for p in ("q", "k", "v")], axis=0),
            "o_w": enc(f"{n['o']}.weight"), "o_b": enc(f"{n['o']}.bias"),
            "attn_norm_w": enc(f"{n['attn_norm']}.weight"), "attn_norm_b": enc(f"{n['attn_norm']}.bias"),
            "inter_w": enc(f"{n['inter']}.weight"), "inter_b": enc(f"{n['inter']}.bias"),
            "out_w": enc(f"{n['out']}.weight"), "out_b": enc(f"{n['out']}.bias"),
            "out_norm_w": enc(f"{n['out_norm']}.weight"), "out_norm_b": enc(f"{n['out_norm']}.bias"),
        })
    params: dict[str, Any] = {"embeddings": emb, "layers": layers}
    if fam.relative_bias:
        # A bias per relative distance and head, gathered once here: forward indexes it by j - i.
        table = enc(f"{fam.relative_bias}.weight")
        params["relative_bias"] = xp.take(table, xp.asarray(relative_position_buckets(cfg.max_positions)), axis=0)
    if cfg.pooler and fam.pooler:
        params["pooler"] = {"w": enc(f"{fam.pooler}.weight"), "b": enc(f"{fam.pooler}.bias")}
    if cfg.head is not None:
        head: dict[str, Any] = {"out_w": w[f"{fam.head.out}.weight"], "out_b": w[f"{fam.head.out}.bias"]}
        if fam.head.dense:
            head["dense_w"], head["dense_b"] = w[f"{fam.head.dense}.weight"], w[f"{fam.head.dense}.bias"]
        params["head"] = head
    if cfg.dense:
        params["dense"] = [
            {k: w[f"dense.{i}.{name}"] for k, name in (("w", "linear.weight"), ("b", "linear.bias"), ("r", "residual.weight")) if f"dense.{i}.{name}" in w}
            for i in range(len(cfg.dense))
        ]
    return params


# -- the definition ---------------------------------------------------------------------------------------------
def _at_least(xp: Any, x: Any, floor: float) -> Any:
    return xp.where(x > floor, x, xp.full_like(x, floor))


def encoder_forward(xp: Any, ops: Ops, params: Any, inputs: Mapping[str, Any], cfg: EncoderConfig) -> dict[str, Any]:
    """Embeddings, the transformer layers, then the pooler, the sentence pooling or the task head."""
    ids = inputs["input_ids"]
    b, n = ids.shape
    emb = params["embeddings"]
    dtype = emb["word"].dtype
    x = ops.embedding(emb["word"], ids)
    positions = inputs.get("position_ids")
    if positions is not None:
        x = x + ops.embedding(emb["position"], positions)
    elif cfg.positions == "padding":
        # RoBERTa: real tokens are numbered from padding_idx + 1, padding keeps padding_idx.
        real = xp.astype(ids != cfg.pad_token_id, ids.dtype)
        x = x + ops.embedding(emb["position"], xp.cumulative_sum(real, axis=1) * real + cfg.pad_token_id)
    else:
        x = x + emb["position"][:n, :]  # one broadcast row per position instead of a gather of aranges
    if cfg.type_vocab_size:
        types = inputs.get("token_type_ids")
        x = x + (emb["type"][0, :] if types is None else ops.embedding(emb["type"], types))
    x = ops.layer_norm(x, emb["norm_w"], emb["norm_b"], cfg.layer_norm_eps)
    if "project_w" in emb:
        x = ops.linear(x, emb["project_w"], emb["project_b"])
    mask = inputs.get("attention_mask")
    bias = None if mask is None else ops.attention_bias(mask, dtype)
    if "relative_bias" in params:
        pos = xp.arange(n)
        distance = ops.embedding(params["relative_bias"], pos[None, :] - pos[:, None] + (cfg.max_positions - 1))  # (n, n, heads)
        relative = xp.reshape(xp.permute_dims(distance, (2, 0, 1)), (1, cfg.num_heads, n, n))
        bias = relative if bias is None else bias + relative
    heads, hd, h = cfg.num_heads, cfg.head_dim, cfg.hidden_size
    act = ops.activation(cfg.hidden_act)
    for layer in params["layers"]:
        qkv = xp.permute_dims(xp.reshape(ops.linear(x, layer["qkv_w"], layer["qkv_b"]), (b, n, 3, heads, hd)), (2, 0, 3, 1, 4))
        ctx = ops.attention(qkv[0, ...], qkv[1, ...], qkv[2, ...], bias=bias)
        ctx = xp.reshape(xp.permute_dims(ctx, (0, 2, 1, 3)), (b, n, h))
        x = ops.layer_norm(ops.linear(ctx, layer["o_w"], layer["o_b"]) + x, layer["attn_norm_w"], layer["attn_norm_b"], cfg.layer_norm_eps)
        inner = act(ops.linear(x, layer["inter_w"], layer["inter_b"]))
        x = ops.layer_norm(ops.linear(inner, layer["out_w"], layer["out_b"]) + x, layer["out_norm_w"], layer["out_norm_b"], cfg.layer_norm_eps)
    out: dict[str, Any] = {}
    pooled = ops.tanh(ops.linear(x[:, 0, :], params["pooler"]["w"], params["pooler"]["b"])) if "pooler" in params else None
    if cfg.head is not None:
        out.update(_head(xp, ops, params["head"], cfg, pooled if pooled is not None and FAMILIES[cfg.family].head.dense is None else x[:, 0, :]))
        return out
    out["last_hidden_state"] = x
    if pooled is not None:
        out["pooler_output"] = pooled
    if cfg.pooling:
        keep = xp.ones((b, n), dtype=dtype) if mask is None else xp.astype(mask, dtype)
        emb_out = xp.concat([_pool(xp, x, keep, mode) for mode in cfg.pooling], axis=-1) if len(cfg.pooling) > 1 else _pool(xp, x, keep, cfg.pooling[0])
        for layer_cfg, layer_params in zip(cfg.dense, params.get("dense", ())):
            y = ops.activation(layer_cfg.activation)(ops.linear(emb_out, layer_params["w"], layer_params.get("b")))
            if layer_cfg.residual:
                y = y + (ops.linear(emb_out, layer_params["r"]) if "r" in layer_params else emb_out)
            emb_out = y
        out["sentence_embedding"] = ops.l2_normalize(emb_out, axis=-1) if cfg.normalize else emb_out
    return out


def _head(xp: Any, ops: Ops, p: Mapping[str, Any], cfg: EncoderConfig, first: Any) -> dict[str, Any]:
    layout = FAMILIES[cfg.family].head
    assert cfg.head is not None
    h = ops.activation(layout.activation)(ops.linear(first, p["dense_w"], p["dense_b"])) if layout.dense else first
    logits = ops.linear(h, p["out_w"], p["out_b"])
    if cfg.head.task == "rerank":
        return {"score": ops.activation(cfg.head.activation)(logits[:, 0]), "logits": logits}
    return {"logits": logits, "label": xp.argmax(logits, axis=-1)}


def _first_index(xp: Any, keep: Any, *, last: bool = False) -> Any:
    """Per row, the position of the first (or last) kept token, as a one-hot float ``(b, n)``."""
    n = keep.shape[1]
    seq = xp.flip(keep, axis=1) if last else keep
    idx = xp.argmax(seq, axis=1)
    if last:
        idx = (n - 1) - idx
    pos = xp.arange(n)
    return xp.astype(pos[None, :] == xp.astype(idx, pos.dtype)[:, None], keep.dtype)


def _pool(xp: Any, x: Any, keep: Any, mode: str) -> Any:
    """One sentence-transformers ``Pooling`` mode over ``x`` ``(b, n, h)`` with ``keep`` ``(b, n)`` 0/1."""
    m3 = keep[:, :, None]
    if mode == "cls":  # the first real token (sentence-transformers reads past left padding)
        return xp.sum(x * _first_index(xp, keep)[:, :, None], axis=1)
    if mode == "lasttoken":
        return xp.sum(x * m3 * _first_index(xp, keep, last=True)[:, :, None], axis=1)
    if mode == "max":
        floor = xp.full_like(x, float(xp.finfo(x.dtype).min))
        return xp.max(xp.where(m3 > 0, x, floor), axis=1)
    if mode == "weightedmean":
        # Weights 1..n counted from the first real token (left padding shifts them), as sentence-transformers does.
        start = xp.astype(xp.argmax(keep, axis=1), x.dtype)
        weights = (xp.astype(xp.arange(1, keep.shape[1] + 1), x.dtype)[None, :] - start[:, None]) * keep
        return xp.sum(x * weights[:, :, None], axis=1) / _at_least(xp, xp.sum(weights, axis=1)[:, None], 1e-9)
    counts = _at_least(xp, xp.sum(m3, axis=1), 1e-9)
    total = xp.sum(x * m3, axis=1)
    return total / (counts if mode == "mean" else xp.sqrt(counts))


def check_encoder_inputs(cfg: EncoderConfig, inputs: Mapping[str, Any], value_range: Callable[[Any], tuple[int, int]]) -> None:
    """Reject what would make an encoder fail or silently misbehave, with :class:`InvalidInputError`.

    An empty batch or sequence, a sequence longer than the position table allows, ids outside the
    vocabulary, token types outside ``[0, type_vocab_size)``, positions outside the table, an
    attention mask that is not 0/1, and any companion input whose shape differs from ``input_ids``'s.
    """
    ids = inputs.get("input_ids")
    if ids is None:
        raise InvalidInputError("missing input 'input_ids'", name="input_ids", expected="(batch, seq) token ids", actual=None)
    shape = tuple(int(s) for s in ids.shape)
    if len(shape) != 2:
        raise InvalidInputError("input_ids must be 2-D (batch, seq)", name="input_ids", expected="(?, ?)", actual=shape)
    batch, seq = shape
    if batch == 0 or seq == 0:
        raise InvalidInputError("empty input", name="input_ids", expected="at least one sequence of at least one token", actual=shape)
    if seq > cfg.max_tokens:
        raise InvalidInputError(f"sequence length {seq} exceeds the model's {cfg.max_tokens} positions", name="input_ids", expected=f"seq <= {cfg.max_tokens}", actual=seq)
    limits = [("input_ids", cfg.vocab_size), ("position_ids", cfg.max_positions), ("attention_mask", 2)]
    if cfg.type_vocab_size:
        limits.insert(1, ("token_type_ids", cfg.type_vocab_size))
    for name, limit in limits:
        value = inputs.get(name)
        if value is None:
            continue
        if name != "input_ids" and tuple(int(s) for s in value.shape) != shape:
            raise InvalidInputError(f"{name} must have the shape of input_ids", name=name, expected=shape, actual=tuple(int(s) for s in value.shape))
        lo, hi = value_range(value)
        if lo < 0 or hi >= limit:
            what = "0 or 1" if name == "attention_mask" else f"in [0, {limit})"
            raise InvalidInputError(f"{name} values must be {what}", name=name, expected=f"[0, {limit - 1}]", actual=f"[{lo}, {hi}]")


def _input_defaults(cfg: EncoderConfig) -> dict[str, int]:
    return {"attention_mask": 1, **({"token_type_ids": 0} if cfg.type_vocab_size else {})}


def _text(cfg: EncoderConfig) -> TextSettings:
    names = ("input_ids", "attention_mask", "token_type_ids") if cfg.type_vocab_size else ("input_ids", "attention_mask")
    return TextSettings(limit=cfg.max_tokens, max_length=cfg.max_seq_length, inputs=names)


ENCODER_DEFINITION = Definition(
    forward=encoder_forward,
    configure=lambda config, pre: parse_encoder(config, pre),
    select=_select,
    prepare=_prepare,
    check_inputs=check_encoder_inputs,
    input_defaults=_input_defaults,
    text=_text,
)


# -- packaging: heads at pack time, the task a server serves ------------------------------------------------------
def _activation_from_path(path: Any, *, where: str) -> str:
    name = str(path).rsplit(".", 1)[-1]
    if name not in _TORCH_ACTIVATIONS:
        raise ConfigError(f"unsupported activation {path!r} (supported: torch.nn {', '.join(_TORCH_ACTIVATIONS)})", field=where, value=path)
    return _TORCH_ACTIVATIONS[name]


def _labels(config: Mapping[str, Any]) -> tuple[int, tuple[str, ...]]:
    id2label = config.get("id2label")
    if isinstance(id2label, Mapping) and id2label:
        try:
            ordered = sorted(((int(k), str(v)) for k, v in id2label.items()), key=lambda kv: kv[0])
        except (TypeError, ValueError) as exc:
            raise ConfigError("id2label keys must be label indices", field="id2label", value=dict(id2label)) from exc
        if [i for i, _ in ordered] != list(range(len(ordered))):
            raise ConfigError("id2label must number its labels 0..n-1", field="id2label", value=dict(id2label))
        return len(ordered), tuple(v for _, v in ordered)
    num = config.get("num_labels", 2)
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ConfigError("must be a positive integer", field="num_labels", value=num)
    return num, tuple(f"LABEL_{i}" for i in range(num))


def resolve_package(family: str, config: Mapping[str, Any], preprocessing: Mapping[str, Any], *, weight_names: Sequence[str], encoder_only: bool = False) -> dict[str, Any]:
    """The pre-processing settings a package of this family records: its head and its pooler.

    ``config.json``'s ``architectures`` says what the checkpoint is: ``<Family>Model`` (or nothing)
    is the encoder; ``<Family>ForSequenceClassification`` adds the classification head — ``rerank``
    (one score, through the activation sentence-transformers' ``CrossEncoder`` would apply) with one
    label, ``classify`` (logits and labels from ``id2label``) with more. A sentence-transformers
    embedding model (one with a pooling) is the encoder whatever its checkpoint says, as
    sentence-transformers loads it. Any other head is refused with :class:`UnsupportedHeadError`
    naming it and the supported ones, unless ``encoder_only`` keeps the encoder.
    """
    fam = family_for(family)
    pre = dict(preprocessing)
    arch = _architecture_name(config)
    supported = [fam.encoder_class, fam.classifier_class]
    names = set(weight_names)
    if arch == fam.classifier_class and not encoder_only and pre.get("pooling") is None:
        num, labels = _labels(config)
        st = config.get("sentence_transformers")
        path = st.get("activation_fn") if isinstance(st, Mapping) else None
        path = path or config.get("sbert_ce_default_activation_function") or pre.pop("activation_fn", None)
        activation = _activation_from_path(path, where="activation_fn") if path else ("sigmoid" if num == 1 else "identity")
        pre["head"] = {"task": "rerank" if num == 1 else "classify", "num_labels": num, "labels": list(labels), "activation": activation}
        if isinstance(config.get("problem_type"), str):
            pre["head"]["problem_type"] = config["problem_type"]
    elif arch is not None and arch not in supported and not encoder_only and pre.get("pooling") is None:
        raise UnsupportedHeadError(arch, supported=supported, architecture=fam.name)
    pre.pop("activation_fn", None)
    if fam.pooler is not None:
        pre["pooler"] = any(f"{p}{fam.pooler}.weight" in names for p in ("", fam.prefix))
    if pre.get("head") is not None and fam.head.dense is None and not pre["pooler"]:
        raise UnsupportedHeadError(arch or fam.classifier_class, supported=supported, architecture=fam.name, reason="its checkpoint has no pooler, which the head reads")
    return pre


def encoder_task(config: Mapping[str, Any], preprocessing: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a server needs to serve a package of an encoder (recorded as ``model_info.json``'s ``task``)."""
    cfg = parse_encoder(config, preprocessing)
    if cfg.head is not None:
        task: dict[str, Any] = {"task": cfg.head.task, "output": "score" if cfg.head.task == "rerank" else "logits", "activation": cfg.head.activation}
        if cfg.head.task == "classify":
            task.update(labels=list(cfg.head.labels), label_output="label")
        return task
    if cfg.pooling:
        return {"task": "embed", "output": "sentence_embedding", "dimensions": cfg.embedding_width, "normalized": cfg.normalize}
    return None


# -- the schemas ----------------------------------------------------------------------------------------------
def _specs(family: str, config: Mapping[str, Any], pre: Mapping[str, Any]) -> tuple[list[TensorSpec], list[TensorSpec]]:
    cfg = parse_encoder(config, pre, family=family)
    inputs = [
        TensorSpec("input_ids", DType.I64, (None, None), pad_value=cfg.pad_token_id, description="token ids"),
        TensorSpec("attention_mask", DType.I64, (None, None), pad_value=0, description="1 for tokens, 0 for padding"),
    ]
    if cfg.type_vocab_size:
        inputs.append(TensorSpec("token_type_ids", DType.I64, (None, None), pad_value=0, optional=True, description="segment ids (default: all 0)"))
    first = cfg.pad_token_id + 1 if cfg.positions == "padding" else 0
    inputs.append(TensorSpec("position_ids", DType.I64, (None, None), pad_value=0, optional=True, description=f"positions (default: {first}..{first}+L-1)"))
    h = cfg.hidden_size
    if cfg.head is not None:
        if cfg.head.task == "rerank":
            return inputs, [
                TensorSpec("score", DType.F32, (None,), description=f"relevance of each pair ({cfg.head.activation} of the logit)"),
                TensorSpec("logits", DType.F32, (None, 1)),
            ]
        return inputs, [
            TensorSpec("logits", DType.F32, (None, cfg.head.num_labels), extra={"labels": list(cfg.head.labels)}),
            TensorSpec("label", DType.I32, (None,), description="index of the largest logit (names: extra['labels'])", extra={"labels": list(cfg.head.labels)}),
        ]
    outputs = [TensorSpec("last_hidden_state", DType.F32, (None, None, h))]
    if cfg.pooler:
        outputs.append(TensorSpec("pooler_output", DType.F32, (None, h)))
    if cfg.pooling:
        what = "+".join(cfg.pooling) + " pooling" + (f", {len(cfg.dense)} Dense" if cfg.dense else "") + (", L2-normalised" if cfg.normalize else "")
        outputs.append(TensorSpec("sentence_embedding", DType.F32, (None, cfg.embedding_width), description=what))
    return inputs, outputs


def _default_outputs(family: str, config: Mapping[str, Any], pre: Mapping[str, Any]) -> list[str]:
    cfg = parse_encoder(config, pre, family=family)
    if cfg.head is not None:
        return ["score"] if cfg.head.task == "rerank" else ["logits", "label"]
    # A sentence-transformers package serves its embedding; a plain encoder its standard outputs.
    if cfg.pooling:
        return ["sentence_embedding"]
    return ["last_hidden_state", "pooler_output"] if cfg.pooler else ["last_hidden_state"]


def _weight_shapes(family: str, config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """What a checkpoint of this ``config.json`` must hold (encoder names without the family's
    prefix; the head's when ``architectures`` names the classification head)."""
    cfg = parse_encoder(config, {}, family=family)
    shapes = encoder_weight_shapes(cfg)
    if _architecture_name(config) == FAMILIES[family].classifier_class:
        shapes.update(head_weight_shapes(cfg, _labels(config)[0]))
    return shapes


def _describe(family: str, config: Mapping[str, Any]) -> dict[str, Any]:
    cfg = parse_encoder(config, {}, family=family)
    return {
        "hidden_size": cfg.hidden_size, "num_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.intermediate_size, "vocab_size": cfg.vocab_size, "max_position_embeddings": cfg.max_positions,
    }


def _golden(family: str, config: Mapping[str, Any], pre: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    cfg = parse_encoder(config, pre, family=family)
    batch, seq = 2, min(8, cfg.max_tokens)
    vocab, pad = cfg.vocab_size, cfg.pad_token_id
    ids = rng.integers(1000 if vocab > 2000 else 0, vocab, size=(batch, seq), dtype=np.int64)
    ids[ids == pad] = (pad + 1) % vocab  # real tokens are never the padding id (RoBERTa numbers positions by it)
    if vocab > 102 and family in ("bert", "electra", "distilbert"):
        ids[:, 0] = 101  # [CLS] where the vocabulary is BERT's
    mask = np.ones((batch, seq), dtype=np.int64)
    cut = max(1, seq - 3)
    mask[1, cut:] = 0  # a padded second row exercises the mask
    ids[1, cut:] = pad
    out = {"input_ids": ids, "attention_mask": mask}
    if cfg.type_vocab_size:
        out["token_type_ids"] = np.zeros((batch, seq), dtype=np.int64)
    return out


def _example_config(fam: Family) -> dict[str, Any]:
    k = fam.key
    config: dict[str, Any] = {
        "model_type": fam.model_types[0], "vocab_size": 40, k("hidden_size"): 16, k("num_hidden_layers"): 2,
        k("num_attention_heads"): 4, k("intermediate_size"): 32, "max_position_embeddings": 20, k("hidden_act"): "gelu",
        "pad_token_id": 1 if fam.positions == "padding" else 0,
    }
    if fam.token_types:
        config["type_vocab_size"] = 2
    if fam.projection:
        config["embedding_size"] = 8  # not the hidden size: the projection is exercised
    return config


def encoder_schema(family: Family) -> ArchitectureSchema:
    """The :class:`ArchitectureSchema` of one encoder family, running :data:`ENCODER_DEFINITION`."""
    name = family.name
    return ArchitectureSchema(
        name=name,
        family="encoder",
        model_types=family.model_types,
        parse=lambda config: parse_encoder(config, {}, family=name),
        weight_shapes=lambda config: _weight_shapes(name, config),
        specs=lambda config, pre: _specs(name, config, pre),
        golden=lambda config, pre, rng: _golden(name, config, pre, rng),
        default_outputs=lambda config, pre: _default_outputs(name, config, pre),
        describe=lambda config: _describe(name, config),
        example_config=_example_config(family),
        # Mean pooling + L2 normalisation, as sentence-transformers packages record: checks sentence_embedding too.
        example_preprocessing={"pooling": "mean", "normalize": True},
        definition=Definition(**{**ENCODER_DEFINITION.__dict__, "configure": lambda config, pre: parse_encoder(config, pre, family=name)}),
        resolve=lambda config, pre, *, weight_names, encoder_only=False: resolve_package(name, config, pre, weight_names=weight_names, encoder_only=encoder_only),
        task=lambda config, pre: encoder_task({**config, "model_type": family.model_types[0]}, pre),
    )
