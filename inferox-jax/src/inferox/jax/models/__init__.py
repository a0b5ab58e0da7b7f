"""JAX implementations of the standard Inferox architectures, jit-compiled with shape buckets.

Each module is one architecture and exposes ``create_model`` (the factory the ``jax`` plugin
registers) and its model class: :mod:`~inferox.jax.models.mlp` (``mlp``) and
:mod:`~inferox.jax.models.bert` (``bert``). The schemas (config fields, weight names, specs) are
shared with every other backend in :mod:`inferox.core.architectures`.
"""

from __future__ import annotations

from inferox.jax.models.bert import BertModel, bert_apply, hf_to_params
from inferox.jax.models.mlp import MLPModel, mlp_apply

__all__ = ["BertModel", "MLPModel", "bert_apply", "hf_to_params", "mlp_apply"]
