"""ONNX implementations of the standard Inferox architectures.

Each module is one architecture and exposes ``create_model`` (the factory the ``onnx`` plugin
registers), its model class and its graph builder: :mod:`~inferox.onnx.models.mlp` (``mlp``) and
:mod:`~inferox.onnx.models.bert` (``bert``). The schemas (config fields, weight names, specs) are
shared with every other backend in :mod:`inferox.core.architectures`.
"""

from __future__ import annotations

from inferox.onnx.models.bert import BertModel, build_bert_graph
from inferox.onnx.models.mlp import MLPModel, build_mlp_graph

__all__ = ["BertModel", "MLPModel", "build_bert_graph", "build_mlp_graph"]
