"""What the encoder architectures share with hand-written backends: config fields, BERT's schema
helpers, the legacy pre-processing settings and reading a sentence-transformers folder.

:class:`BertConfig`, :class:`Preprocessing`, ``bert_*_specs``, ``bert_weight_*`` and
:func:`check_bert_inputs` describe the ``bert`` architecture the way a *hand-written* backend
factory reads it (inferox-onnx's graphs do, until they are traced from the definition); the
definitions themselves (:mod:`inferox.core.architectures.encoder`) parse configs with their own,
richer :class:`~inferox.core.architectures.encoder.EncoderConfig`. Nothing here imports a framework.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferox.core.dtype import DType
from inferox.core.errors import ConfigError, InvalidInputError, PackageFormatError
from inferox.core.spec import TensorSpec

__all__ = [
    "ACTIVATIONS",
    "LEGACY_POOLING_MODES",
    "POOLING_MODES",
    "BertConfig",
    "Preprocessing",
    "bert_input_specs",
    "bert_output_specs",
    "bert_weight_names",
    "bert_weight_shapes",
    "check_bert_inputs",
    "pooling_modes",
    "read_sentence_transformers_config",
]

#: Activations an ``mlp`` may use between layers (``"gelu"`` is exact; ``"gelu_new"`` and
#: ``"gelu_pytorch_tanh"`` the tanh approximation, named as Hugging Face configs name them).
ACTIVATIONS = ("relu", "gelu", "gelu_new", "gelu_pytorch_tanh", "tanh", "sigmoid", "identity")
#: Ways an encoder may pool its token states into ``sentence_embedding`` (sentence-transformers'
#: ``Pooling`` modes; a package may name several, concatenated in order).
POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len", "weightedmean", "lasttoken")
#: The pooling modes hand-written factories (:class:`Preprocessing`) compute.
LEGACY_POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len")


def _int_field(config: Mapping[str, Any], key: str, default: int | None = None, *, minimum: int = 1) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"must be an integer >= {minimum}", field=key, value=value)
    return value


# --------------------------------------------------------------------------------------------- BERT
@dataclass(frozen=True)
class BertConfig:
    """The fields of a Hugging Face ``BertConfig`` that inference needs."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pad_token_id: int = 0

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> BertConfig:
        if not isinstance(config, Mapping):
            raise ConfigError("a bert config must be an object", field="config", value=type(config).__name__)
        hidden = _int_field(config, "hidden_size")
        heads = _int_field(config, "num_attention_heads")
        if hidden % heads:
            raise ConfigError(f"hidden_size {hidden} is not a multiple of num_attention_heads {heads}", field="num_attention_heads", value=heads)
        act = config.get("hidden_act", "gelu")
        if act not in ("gelu", "relu", "gelu_new", "gelu_pytorch_tanh", "tanh"):
            raise ConfigError("unsupported activation", field="hidden_act", value=act)
        ptype = config.get("position_embedding_type", "absolute")
        if ptype != "absolute":
            raise ConfigError("only absolute position embeddings are supported", field="position_embedding_type", value=ptype)
        eps = config.get("layer_norm_eps", 1e-12)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps <= 0:
            raise ConfigError("must be a positive number", field="layer_norm_eps", value=eps)
        return cls(
            vocab_size=_int_field(config, "vocab_size"),
            hidden_size=hidden,
            num_hidden_layers=_int_field(config, "num_hidden_layers"),
            num_attention_heads=heads,
            intermediate_size=_int_field(config, "intermediate_size"),
            max_position_embeddings=_int_field(config, "max_position_embeddings", 512),
            type_vocab_size=_int_field(config, "type_vocab_size", 2),
            layer_norm_eps=float(eps),
            hidden_act=str(act),
            pad_token_id=_int_field(config, "pad_token_id", 0, minimum=0),
        )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclass(frozen=True)
class Preprocessing:
    """How a ``bert`` model turns token states into ``sentence_embedding``, and its text length.

    ``pooling`` ``None`` means the model has no ``sentence_embedding`` output (a plain BERT, as a
    package without pooling settings declares). Built from the factory's options: a
    ``preprocessing`` mapping (what the package records) and/or the flat options ``pooling``,
    ``normalize`` and ``max_seq_length``, which win.
    """

    pooling: str | None = None
    normalize: bool = False
    max_seq_length: int | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, limit: int) -> Preprocessing:
        raw: dict[str, Any] = {}
        pre = options.get("preprocessing")
        if pre is not None:
            if not isinstance(pre, Mapping):
                raise ConfigError("must be an object", field="preprocessing", value=type(pre).__name__)
            raw.update(pre)
        for key in ("pooling", "normalize", "max_seq_length"):
            if options.get(key) is not None:
                raw[key] = options[key]
        pooling = raw.get("pooling")
        if pooling is not None and pooling not in LEGACY_POOLING_MODES:
            raise ConfigError(f"must be one of {', '.join(LEGACY_POOLING_MODES)}", field="pooling", value=pooling)
        # What a hand-written factory cannot compute is refused by name, never silently left out.
        for key in ("head", "dense"):
            if raw.get(key):
                raise ConfigError(f"this factory computes no {key!r} (a task head or sentence-transformers Dense layers)", field=key, value=raw[key])
        if raw.get("pooler") is False:
            raise ConfigError("this factory always computes pooler_output", field="pooler", value=False)
        normalize = raw.get("normalize", False)
        if not isinstance(normalize, bool):
            raise ConfigError("must be true or false", field="normalize", value=normalize)
        max_len = raw.get("max_seq_length")
        if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int) or not 2 <= max_len <= limit):
            raise ConfigError(f"must be an integer in 2..{limit} (the model's position table)", field="max_seq_length", value=max_len)
        return cls(None if pooling is None else str(pooling), normalize, max_len)

    def to_dict(self) -> dict[str, Any]:
        return {"pooling": self.pooling, "normalize": self.normalize, "max_seq_length": self.max_seq_length}


#: sentence-transformers' legacy ``pooling_mode_*`` flags, in the order it concatenates them.
_LEGACY_POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
#: sentence-transformers' own spellings of a mode, where Inferox's differs.
_POOLING_ALIASES = {"mean_sqrt_len_tokens": "mean_sqrt_len", "mean_tokens": "mean", "cls_token": "cls", "max_tokens": "max", "weightedmean_tokens": "weightedmean"}


def pooling_modes(config: Mapping[str, Any], *, path: str = "1_Pooling/config.json") -> list[str]:
    """The pooling modes of a sentence-transformers ``Pooling`` module's ``config.json``, in the order
    their vectors are concatenated: its ``pooling_mode`` (a name or a list, sentence-transformers ≥ 5)
    or its legacy ``pooling_mode_*`` flags; ``["mean"]`` when it names none (its default). An unknown
    mode is a :class:`PackageFormatError` naming the file and the mode."""
    raw = config.get("pooling_mode")
    if raw is not None:
        names = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, (list, tuple)) else None
        if not names or not all(isinstance(n, str) for n in names):
            raise PackageFormatError(f"{path}: pooling_mode must be a mode name or a list of them, not {raw!r}", path=path, field="pooling_mode")
    else:
        names = [mode for flag, mode in _LEGACY_POOLING_FLAGS.items() if config.get(flag)] or ["mean"]
    out = [_POOLING_ALIASES.get(n, n) for n in names]
    for mode in out:
        if mode not in POOLING_MODES:
            raise PackageFormatError(f"{path}: unknown pooling mode {mode!r} (known: {', '.join(POOLING_MODES)})", path=path, field="pooling_mode")
    return out


def read_sentence_transformers_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The pre-processing settings of a sentence-transformers model folder (what a package records).

    Reads ``modules.json`` (a ``Normalize`` module → ``normalize``), the pooling module's
    ``config.json`` (``pooling``: a mode, or a list of modes concatenated in order) and
    ``sentence_bert_config.json`` (``max_seq_length``). A folder that is not a sentence-transformers
    model gives ``{}``. (``inferox pack`` reads more: ``Dense`` modules and their weights.)
    """
    root = Path(folder)

    def load(path: Path) -> Any:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PackageFormatError(f"cannot read {path.name}: {exc}", path=str(path)) from exc

    out: dict[str, Any] = {}
    modules = load(root / "modules.json") if (root / "modules.json").is_file() else []
    if not isinstance(modules, list):
        raise PackageFormatError("modules.json must be a list", path=str(root / "modules.json"))
    for module in modules:
        kind = str(module.get("type", "")) if isinstance(module, Mapping) else ""
        if kind.endswith(".Normalize"):
            out["normalize"] = True
        elif kind.endswith(".Pooling"):
            cfg_path = root / str(module.get("path", "")) / "config.json"
            cfg = load(cfg_path) if cfg_path.is_file() else {}
            modes = pooling_modes(cfg if isinstance(cfg, Mapping) else {}, path=str(cfg_path))
            out["pooling"] = modes[0] if len(modes) == 1 else modes
    if modules:
        out.setdefault("normalize", False)
    sbert = root / "sentence_bert_config.json"
    if sbert.is_file():
        data = load(sbert)
        if isinstance(data, Mapping) and isinstance(data.get("max_seq_length"), int):
            out["max_seq_length"] = int(data["max_seq_length"])
    return out


def bert_input_specs(cfg: BertConfig) -> list[TensorSpec]:
    return [
        TensorSpec("input_ids", DType.I64, (None, None), pad_value=cfg.pad_token_id, description="token ids"),
        TensorSpec("attention_mask", DType.I64, (None, None), pad_value=0, description="1 for tokens, 0 for padding"),
        TensorSpec("token_type_ids", DType.I64, (None, None), pad_value=0, optional=True, description="segment ids (default: all 0)"),
        TensorSpec("position_ids", DType.I64, (None, None), pad_value=0, optional=True, description="positions (default: 0..L-1)"),
    ]


def bert_output_specs(cfg: BertConfig, pre: Preprocessing | None = None) -> list[TensorSpec]:
    """``last_hidden_state``, ``pooler_output`` and, when ``pre`` names a pooling, ``sentence_embedding``."""
    h = cfg.hidden_size
    out = [
        TensorSpec("last_hidden_state", DType.F32, (None, None, h)),
        TensorSpec("pooler_output", DType.F32, (None, h)),
    ]
    if pre is not None and pre.pooling is not None:
        out.append(TensorSpec("sentence_embedding", DType.F32, (None, h), description=f"{pre.pooling} pooling" + (", L2-normalised" if pre.normalize else "")))
    return out


def bert_weight_names(cfg: BertConfig) -> list[str]:
    """Every Hugging Face parameter name a ``bert`` model needs (without the ``bert.`` prefix)."""
    names = [
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight",
        "embeddings.LayerNorm.weight",
        "embeddings.LayerNorm.bias",
    ]
    for i in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{i}."
        for sub in (
            "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
            "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm",
        ):
            names += [p + sub + ".weight", p + sub + ".bias"]
    names += ["pooler.dense.weight", "pooler.dense.bias"]
    return names


def bert_weight_shapes(cfg: BertConfig) -> dict[str, tuple[int, ...]]:
    """The shape every Hugging Face BERT weight must have under ``cfg`` (both backends check the same)."""
    h, inter = cfg.hidden_size, cfg.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {}
    for name in bert_weight_names(cfg):
        if name.startswith("embeddings.word_embeddings"):
            shapes[name] = (cfg.vocab_size, h)
        elif name.startswith("embeddings.position_embeddings"):
            shapes[name] = (cfg.max_position_embeddings, h)
        elif name.startswith("embeddings.token_type_embeddings"):
            shapes[name] = (cfg.type_vocab_size, h)
        elif "intermediate.dense" in name:
            shapes[name] = (inter, h) if name.endswith("weight") else (inter,)
        elif ".output.dense" in name and "attention" not in name:
            shapes[name] = (h, inter) if name.endswith("weight") else (h,)
        elif name.endswith("weight") and "LayerNorm" not in name:
            shapes[name] = (h, h)
        else:
            shapes[name] = (h,)
    return shapes


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in value.shape)


def check_bert_inputs(cfg: BertConfig, inputs: Mapping[str, Any], value_range: Callable[[Any], tuple[int, int]]) -> None:
    """Reject what would make a BERT forward fail or silently misbehave, with :class:`InvalidInputError`.

    ``value_range(tensor) -> (min, max)`` is the backend's way to read an integer tensor's range.
    Checks: an empty batch or sequence, a sequence longer than the position table, ids outside
    ``[0, vocab_size)``, token types outside ``[0, type_vocab_size)``, positions outside the table,
    an attention mask that is not 0/1, and any companion input whose shape differs from
    ``input_ids``'s.
    """
    ids = inputs.get("input_ids")
    if ids is None:
        raise InvalidInputError("missing input 'input_ids'", name="input_ids", expected="(batch, seq) token ids", actual=None)
    shape = _shape(ids)
    if len(shape) != 2:
        raise InvalidInputError("input_ids must be 2-D (batch, seq)", name="input_ids", expected="(?, ?)", actual=shape)
    batch, seq = shape
    if batch == 0 or seq == 0:
        raise InvalidInputError("empty input", name="input_ids", expected="at least one sequence of at least one token", actual=shape)
    if seq > cfg.max_position_embeddings:
        raise InvalidInputError(
            f"sequence length {seq} exceeds the model's {cfg.max_position_embeddings} positions",
            name="input_ids",
            expected=f"seq <= {cfg.max_position_embeddings}",
            actual=seq,
        )
    for name, limit in (("input_ids", cfg.vocab_size), ("token_type_ids", cfg.type_vocab_size), ("position_ids", cfg.max_position_embeddings), ("attention_mask", 2)):
        value = inputs.get(name)
        if value is None:
            continue
        if name != "input_ids" and _shape(value) != shape:
            raise InvalidInputError(f"{name} must have the shape of input_ids", name=name, expected=shape, actual=_shape(value))
        lo, hi = value_range(value)
        if lo < 0 or hi >= limit:
            what = "0 or 1" if name == "attention_mask" else f"in [0, {limit})"
            raise InvalidInputError(f"{name} values must be {what}", name=name, expected=f"[0, {limit - 1}]", actual=f"[{lo}, {hi}]")
