"""Per-architecture knowledge: which ``model_type`` values map to an architecture, the input and
output :class:`~inferox.core.TensorSpec`\\ s a package of it declares, the facts worth recording in
``model_info.json`` and the golden inputs a build stores.

This is the one place to teach the package builder a new architecture: call
:func:`register_architecture` with an :class:`ArchitectureDef`. The ``mlp`` and ``bert`` schemas
themselves (config fields, specs) come from :mod:`inferox.core.architectures`, which the backends
implement too, so a package and the model a backend builds from it always agree.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from inferox.core.architectures import (
    ACTIVATIONS,
    BertConfig,
    MLPConfig,
    Preprocessing,
    bert_input_specs,
    bert_output_specs,
    mlp_input_specs,
    mlp_output_specs,
)
from inferox.core.errors import ArchitectureNotFoundError, ConfigError, PackageFormatError
from inferox.core.spec import TensorSpec
from inferox.mlpkg._format import CONFIG_FILE, PREPROCESSING_FILE

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


T = TypeVar("T")


def _parsed(parse: Callable[[Mapping[str, Any]], T], config: Mapping[str, Any]) -> T:
    """Parse a config with core's schema; its ConfigError becomes a PackageFormatError naming config.json."""
    try:
        return parse(config)
    except ConfigError as exc:
        raise PackageFormatError(f"{CONFIG_FILE}: {exc.message}", path=CONFIG_FILE, field=exc.field) from exc


def _preprocessing(pre: Mapping[str, Any], limit: int) -> Preprocessing:
    try:
        return Preprocessing.from_options({"preprocessing": dict(pre)}, limit=limit)
    except ConfigError as exc:
        raise PackageFormatError(f"{PREPROCESSING_FILE}: {exc.message}", path=PREPROCESSING_FILE, field=exc.field) from exc


# -- mlp (schema in inferox.core.architectures) --------------------------------------------------------
MLP_ACTIVATIONS = ACTIVATIONS


def _mlp_specs(config: Mapping[str, Any], _pre: Mapping[str, Any]) -> tuple[list[TensorSpec], list[TensorSpec]]:
    cfg = _parsed(MLPConfig.from_dict, config)
    return mlp_input_specs(cfg), mlp_output_specs(cfg)


def _mlp_describe(config: Mapping[str, Any]) -> dict[str, Any]:
    cfg = _parsed(MLPConfig.from_dict, config)
    sizes = cfg.layer_sizes
    return {"num_layers": cfg.num_layers, "hidden_size": max(sizes[1:-1], default=sizes[-1]), "activation": cfg.activation}


def _mlp_golden(config: Mapping[str, Any], _pre: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    cfg = _parsed(MLPConfig.from_dict, config)
    return {"input": rng.standard_normal((3, cfg.layer_sizes[0])).astype(np.float32)}


# -- bert ----------------------------------------------------------------------------------------------
def _bert_specs(config: Mapping[str, Any], pre: Mapping[str, Any]) -> tuple[list[TensorSpec], list[TensorSpec]]:
    cfg = _parsed(BertConfig.from_dict, config)
    return bert_input_specs(cfg), bert_output_specs(cfg, _preprocessing(pre, cfg.max_position_embeddings))


def _bert_describe(config: Mapping[str, Any]) -> dict[str, Any]:
    cfg = _parsed(BertConfig.from_dict, config)
    return {
        "hidden_size": cfg.hidden_size,
        "num_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "intermediate_size": cfg.intermediate_size,
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.max_position_embeddings,
    }


def _bert_golden(config: Mapping[str, Any], _pre: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    cfg = _parsed(BertConfig.from_dict, config)
    vocab = cfg.vocab_size
    batch, seq = 2, 8
    ids = rng.integers(1000 if vocab > 2000 else 1, vocab, size=(batch, seq), dtype=np.int64)
    ids[:, 0] = 101 if vocab > 102 else 1  # [CLS] where the vocabulary is BERT's
    mask = np.ones((batch, seq), dtype=np.int64)
    mask[1, 5:] = 0  # a padded second row exercises the mask
    ids[1, 5:] = cfg.pad_token_id
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros((batch, seq), dtype=np.int64)}


register_architecture(ArchitectureDef("mlp", "feedforward", ("mlp",), _mlp_specs, _mlp_describe, _mlp_golden))
register_architecture(ArchitectureDef("bert", "encoder", ("bert",), _bert_specs, _bert_describe, _bert_golden))
