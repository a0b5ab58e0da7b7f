"""The architectures core defines, once, for every backend (``mlp`` and the transformer encoders).

Each architecture is an :class:`~inferox.core.ArchitectureSchema` (what it *is*: config fields,
weights, specs, golden inputs) carrying a :class:`~inferox.core.definition.Definition` (its
compute, written against an array namespace and :class:`~inferox.core.ops.Ops`). Every backend that
declares a namespace runs every definition; the definition run on NumPy in float64 is the reference.

==================  =============================================================================
module              what it defines
==================  =============================================================================
``mlp``             ``mlp``: ``Linear → activation → … → Linear`` (:data:`MLP`)
``encoder``         the encoder families ``bert``, ``distilbert``, ``roberta``, ``xlm-roberta``,
                    ``mpnet``, ``electra`` (one definition, :data:`FAMILIES` configure it), their
                    sentence pooling, sentence-transformers Dense layers and classification /
                    rerank heads (:data:`ENCODER_SCHEMAS`)
``_common``         what hand-written backends read (:class:`BertConfig`, :class:`Preprocessing`,
                    ``bert_*`` specs and weight names) and reading a sentence-transformers folder
==================  =============================================================================

Nothing here imports a framework.
"""

from __future__ import annotations

from inferox.core.architectures._common import (
    ACTIVATIONS,
    LEGACY_POOLING_MODES,
    POOLING_MODES,
    BertConfig,
    Preprocessing,
    bert_input_specs,
    bert_output_specs,
    bert_weight_names,
    bert_weight_shapes,
    check_bert_inputs,
    pooling_modes,
    read_sentence_transformers_config,
)
from inferox.core.architectures.encoder import (
    ENCODER_DEFINITION,
    FAMILIES,
    HIDDEN_ACTIVATIONS,
    DenseLayer,
    EncoderConfig,
    Family,
    Head,
    HeadLayout,
    check_encoder_inputs,
    encoder_forward,
    encoder_schema,
    family_for,
    parse_encoder,
    relative_position_buckets,
    resolve_package,
)
from inferox.core.architectures.mlp import MLP, MLP_DEFINITION, MLPConfig, mlp_forward, mlp_input_specs, mlp_output_specs
from inferox.core.definition import select_weights

#: The schema of every encoder family, by architecture name.
ENCODER_SCHEMAS = {name: encoder_schema(family) for name, family in FAMILIES.items()}
#: The ``bert`` schema (an encoder family like the others).
BERT = ENCODER_SCHEMAS["bert"]

__all__ = [
    "ACTIVATIONS",
    "BERT",
    "ENCODER_DEFINITION",
    "ENCODER_SCHEMAS",
    "FAMILIES",
    "HIDDEN_ACTIVATIONS",
    "LEGACY_POOLING_MODES",
    "MLP",
    "MLP_DEFINITION",
    "POOLING_MODES",
    "BertConfig",
    "DenseLayer",
    "EncoderConfig",
    "Family",
    "Head",
    "HeadLayout",
    "MLPConfig",
    "Preprocessing",
    "bert_input_specs",
    "bert_output_specs",
    "bert_weight_names",
    "bert_weight_shapes",
    "check_bert_inputs",
    "check_encoder_inputs",
    "encoder_forward",
    "encoder_schema",
    "family_for",
    "mlp_forward",
    "mlp_input_specs",
    "mlp_output_specs",
    "parse_encoder",
    "pooling_modes",
    "read_sentence_transformers_config",
    "relative_position_buckets",
    "resolve_package",
    "select_weights",
]
