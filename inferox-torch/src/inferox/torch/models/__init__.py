"""Torch implementations of the standard Inferox architectures.

Each module is one architecture and exposes ``create_model`` (the factory the ``torch`` plugin
registers) and its model class: :mod:`~inferox.torch.models.mlp` (``mlp``) and
:mod:`~inferox.torch.models.bert` (``bert``). The schemas (config fields, weight names, specs) are
shared with every other backend in :mod:`inferox.core.architectures`.
"""

from __future__ import annotations

from inferox.torch.models.bert import BertEncoder, BertModel
from inferox.torch.models.mlp import MLP, MLPModel

__all__ = ["MLP", "BertEncoder", "BertModel", "MLPModel"]
