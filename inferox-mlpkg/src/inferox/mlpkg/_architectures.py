"""Per-architecture knowledge: which ``model_type`` values map to an architecture, the input and
output :class:`~inferox.core.TensorSpec`\\ s a package of it declares, the facts worth recording in
``model_info.json`` and the golden inputs a build stores.

This is the one place to teach the package builder a new architecture: call
:func:`register_architecture` with an :class:`ArchitectureDef`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferox.core.dtype import DType
from inferox.core.errors import ArchitectureNotFoundError, PackageFormatError
from inferox.core.spec import TensorSpec
from inferox.mlpkg._format import CONFIG_FILE

__all__ = [
    "MLP_ACTIVATIONS",
    "ArchitectureDef",
    "architecture_for_config",
    "get_architecture",
    "known_architectures",
    "register_architecture",
]

SpecsFn = Callable[[Mapping[str, Any], Mapping[str, Any]], tuple[list[TensorSpec], list[TensorSpec]]]
DescribeFn = Callable[[Mapping[str, Any]], dict[str, Any]]
GoldenFn = Callable[[Mapping[str, Any], Mapping[str, Any], np.random.Generator], dict[str, np.ndarray]]


@dataclass(frozen=True)
class ArchitectureDef:
    """What the package format knows about one architecture.

    ``specs(config, preprocessing)`` returns (inputs, outputs); ``describe(config)`` the
    hidden size / layers / vocabulary facts; ``golden(config, preprocessing, rng)`` a small batch
    of inputs stored in ``golden/inputs.safetensors``.
    """

    name: str
    family: str
    model_types: tuple[str, ...]
    specs: SpecsFn
    describe: DescribeFn
    golden: GoldenFn
    extra: Mapping[str, Any] = field(default_factory=dict)


_lock = threading.Lock()
_defs: dict[str, ArchitectureDef] = {}
_by_model_type: dict[str, str] = {}


def register_architecture(defn: ArchitectureDef, *, replace: bool = False) -> None:
    """Teach the builder an architecture (``replace=True`` overrides an existing definition)."""
    with _lock:
        key = defn.name.lower()
        if key in _defs and not replace:
            raise ValueError(f"architecture {defn.name!r} is already defined")
        _defs[key] = defn
        for mt in (*defn.model_types, defn.name):
            _by_model_type[mt.lower()] = key


def known_architectures() -> list[str]:
    return sorted(_defs)


def get_architecture(name: str) -> ArchitectureDef:
    """The definition of ``name``; :class:`ArchitectureNotFoundError` listing the known ones."""
    defn = _defs.get(name.lower()) or _defs.get(_by_model_type.get(name.lower(), ""))
    if defn is None:
        raise ArchitectureNotFoundError(name, available=known_architectures())
    return defn


def architecture_for_config(config: Mapping[str, Any], *, path: str = CONFIG_FILE) -> ArchitectureDef:
    """The architecture named by ``config.json``'s ``model_type``.

    A missing ``model_type`` or one no definition claims is a :class:`PackageFormatError` naming
    the file and the field (and the types that are known).
    """
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise PackageFormatError(
            f"{path} has no model_type; pass architecture= explicitly (known: {', '.join(known_architectures())})",
            path=path,
            field="model_type",
        )
    key = _by_model_type.get(model_type.lower())
    if key is None:
        raise PackageFormatError(
            f"{path}: unknown model_type {model_type!r}; known architectures: {', '.join(known_architectures())}",
            path=path,
            field="model_type",
        )
    return _defs[key]


def _int_field(config: Mapping[str, Any], key: str, *, required: bool = True) -> int | None:
    value = config.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PackageFormatError(f"{CONFIG_FILE}: {key} must be a positive integer, got {value!r}", path=CONFIG_FILE, field=key)
    return value


# -- mlp ------------------------------------------------------------------------------------------
MLP_ACTIVATIONS = ("relu", "gelu", "tanh", "identity")


def mlp_layer_sizes(config: Mapping[str, Any]) -> list[int]:
    """Validated ``layer_sizes`` of an MLP config ([in, hidden..., out])."""
    sizes = config.get("layer_sizes")
    if not isinstance(sizes, list) or len(sizes) < 2 or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in sizes):
        raise PackageFormatError(
            f"{CONFIG_FILE}: layer_sizes must be a list of at least two positive integers, got {sizes!r}", path=CONFIG_FILE, field="layer_sizes"
        )
    activation = config.get("activation", "relu")
    if activation not in MLP_ACTIVATIONS:
        raise PackageFormatError(
            f"{CONFIG_FILE}: activation must be one of {', '.join(MLP_ACTIVATIONS)}, got {activation!r}", path=CONFIG_FILE, field="activation"
        )
    return list(sizes)


def _mlp_specs(config: Mapping[str, Any], _pre: Mapping[str, Any]) -> tuple[list[TensorSpec], list[TensorSpec]]:
    sizes = mlp_layer_sizes(config)
    return [TensorSpec("input", DType.F32, (None, sizes[0]))], [TensorSpec("output", DType.F32, (None, sizes[-1]))]


def _mlp_describe(config: Mapping[str, Any]) -> dict[str, Any]:
    sizes = mlp_layer_sizes(config)
    return {"num_layers": len(sizes) - 1, "hidden_size": max(sizes[1:-1], default=sizes[-1]), "activation": config.get("activation", "relu")}


def _mlp_golden(config: Mapping[str, Any], _pre: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    sizes = mlp_layer_sizes(config)
    return {"input": rng.standard_normal((3, sizes[0])).astype(np.float32)}


# -- bert -----------------------------------------------------------------------------------------
def _bert_specs(config: Mapping[str, Any], pre: Mapping[str, Any]) -> tuple[list[TensorSpec], list[TensorSpec]]:
    hidden = _int_field(config, "hidden_size")
    inputs = [
        TensorSpec("input_ids", DType.I64, (None, None), pad_value=int(config.get("pad_token_id", 0) or 0)),
        TensorSpec("attention_mask", DType.I64, (None, None), pad_value=0),
        TensorSpec("token_type_ids", DType.I64, (None, None), pad_value=0, optional=True),
        TensorSpec("position_ids", DType.I64, (None, None), pad_value=0, optional=True),
    ]
    outputs = [
        TensorSpec("last_hidden_state", DType.F32, (None, None, hidden)),
        TensorSpec("pooler_output", DType.F32, (None, hidden)),
    ]
    if pre.get("pooling"):
        outputs.append(TensorSpec("sentence_embedding", DType.F32, (None, hidden)))
    return inputs, outputs


def _bert_describe(config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "hidden_size": _int_field(config, "hidden_size"),
        "num_layers": _int_field(config, "num_hidden_layers", required=False),
        "num_attention_heads": _int_field(config, "num_attention_heads", required=False),
        "vocab_size": _int_field(config, "vocab_size", required=False),
        "max_position_embeddings": _int_field(config, "max_position_embeddings", required=False),
    }


def _bert_golden(config: Mapping[str, Any], _pre: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    vocab = int(config.get("vocab_size") or 1000)
    batch, seq = 2, 8
    ids = rng.integers(1000 if vocab > 2000 else 1, vocab, size=(batch, seq), dtype=np.int64)
    ids[:, 0] = 101 if vocab > 102 else 1  # [CLS] where the vocabulary is BERT's
    mask = np.ones((batch, seq), dtype=np.int64)
    mask[1, 5:] = 0  # a padded second row exercises the mask
    ids[1, 5:] = int(config.get("pad_token_id", 0) or 0)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros((batch, seq), dtype=np.int64)}


register_architecture(ArchitectureDef("mlp", "feedforward", ("mlp",), _mlp_specs, _mlp_describe, _mlp_golden))
register_architecture(ArchitectureDef("bert", "encoder", ("bert",), _bert_specs, _bert_describe, _bert_golden))
