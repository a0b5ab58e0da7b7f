"""Core's built-in plugin: the schemas of the standard architectures, ``mlp`` and ``bert``.

Registered by every :class:`~inferox.core.PluginRegistry` under the name ``inferox-core``, through
the same ``inferox_register_schemas`` hook a third-party plugin implements: nothing else in Inferox
knows these two names. Their definitions (config fields, weight names, specs) live in
:mod:`inferox.core.architectures`; their NumPy references in :mod:`inferox.core.testing` (the
``testing`` extra).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from inferox.core.architectures import (
    BertConfig,
    MLPConfig,
    Preprocessing,
    bert_input_specs,
    bert_output_specs,
    bert_weight_shapes,
    mlp_input_specs,
    mlp_output_specs,
)
from inferox.core.constants import CONTRACT_VERSION
from inferox.core.hookspecs import hookimpl
from inferox.core.schema import ArchitectureSchema
from inferox.core.spec import TensorSpec

__all__ = ["BERT", "MLP", "PLUGIN_NAME", "inferox_contract_version", "inferox_register_schemas"]

#: The name the built-in plugin is registered under.
PLUGIN_NAME = "inferox-core"


# -- mlp -------------------------------------------------------------------------------------------
def _mlp_specs(config: Mapping[str, Any], _pre: Mapping[str, Any]) -> tuple[list[TensorSpec], list[TensorSpec]]:
    cfg = MLPConfig.from_dict(config)
    return mlp_input_specs(cfg), mlp_output_specs(cfg)


def _mlp_describe(config: Mapping[str, Any]) -> dict[str, Any]:
    cfg = MLPConfig.from_dict(config)
    sizes = cfg.layer_sizes
    return {"num_layers": cfg.num_layers, "hidden_size": max(sizes[1:-1], default=sizes[-1]), "activation": cfg.activation}


def _mlp_golden(config: Mapping[str, Any], _pre: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    cfg = MLPConfig.from_dict(config)
    return {"input": rng.standard_normal((3, cfg.layer_sizes[0])).astype(np.float32)}


MLP = ArchitectureSchema(
    name="mlp",
    family="feedforward",
    model_types=("mlp",),
    parse=MLPConfig.from_dict,
    weight_shapes=lambda config: MLPConfig.from_dict(config).weight_shapes(),
    specs=_mlp_specs,
    golden=_mlp_golden,
    describe=_mlp_describe,
    # Square first layer: a backend that applies a weight transposed gets wrong numbers, not a shape error.
    example_config={"model_type": "mlp", "layer_sizes": [8, 8, 5, 3], "activation": "gelu"},
    # Pre-activations of a few units: where exact and tanh GELU differ by ~1e-3, far above f32's tolerance.
    example_weight_scale=0.5,
    reference="inferox.core.testing._reference:mlp_reference",
)


# -- bert ------------------------------------------------------------------------------------------
def _bert_pre(cfg: BertConfig, pre: Mapping[str, Any]) -> Preprocessing:
    return Preprocessing.from_options({"preprocessing": dict(pre)}, limit=cfg.max_position_embeddings)


def _bert_specs(config: Mapping[str, Any], pre: Mapping[str, Any]) -> tuple[list[TensorSpec], list[TensorSpec]]:
    cfg = BertConfig.from_dict(config)
    return bert_input_specs(cfg), bert_output_specs(cfg, _bert_pre(cfg, pre))


def _bert_default_outputs(config: Mapping[str, Any], pre: Mapping[str, Any]) -> list[str]:
    # A sentence-transformers package serves its embedding; a plain BERT its two standard outputs.
    cfg = BertConfig.from_dict(config)
    return ["sentence_embedding"] if _bert_pre(cfg, pre).pooling is not None else ["last_hidden_state", "pooler_output"]


def _bert_describe(config: Mapping[str, Any]) -> dict[str, Any]:
    cfg = BertConfig.from_dict(config)
    return {
        "hidden_size": cfg.hidden_size,
        "num_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "intermediate_size": cfg.intermediate_size,
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.max_position_embeddings,
    }


def _bert_golden(config: Mapping[str, Any], _pre: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    cfg = BertConfig.from_dict(config)
    vocab = cfg.vocab_size
    batch, seq = 2, 8
    ids = rng.integers(1000 if vocab > 2000 else 1, vocab, size=(batch, seq), dtype=np.int64)
    ids[:, 0] = 101 if vocab > 102 else 1  # [CLS] where the vocabulary is BERT's
    mask = np.ones((batch, seq), dtype=np.int64)
    mask[1, 5:] = 0  # a padded second row exercises the mask
    ids[1, 5:] = cfg.pad_token_id
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros((batch, seq), dtype=np.int64)}


BERT = ArchitectureSchema(
    name="bert",
    family="encoder",
    model_types=("bert",),
    parse=BertConfig.from_dict,
    weight_shapes=lambda config: bert_weight_shapes(BertConfig.from_dict(config)),
    specs=_bert_specs,
    golden=_bert_golden,
    default_outputs=_bert_default_outputs,
    describe=_bert_describe,
    example_config={
        "model_type": "bert", "vocab_size": 40, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 32, "max_position_embeddings": 16, "type_vocab_size": 2, "hidden_act": "gelu",
    },
    # Mean pooling + L2 normalisation, as sentence-transformers packages record: checks sentence_embedding too.
    example_preprocessing={"pooling": "mean", "normalize": True},
    # Weights large enough that the intermediate activations reach where exact and tanh GELU differ:
    # at the default 0.2 a tanh-GELU bert stayed within f32's tolerance (the conformance suite's
    # sensitivity probe, gelu_sensitivity, checks this).
    example_weight_scale=0.5,
    reference="inferox.core.testing._reference:bert_reference",
)


@hookimpl
def inferox_contract_version() -> str:
    return CONTRACT_VERSION


@hookimpl
def inferox_register_schemas(register: Callable[[ArchitectureSchema], None]) -> None:
    """The standard architectures, contributed like any plugin's."""
    register(MLP)
    register(BERT)
