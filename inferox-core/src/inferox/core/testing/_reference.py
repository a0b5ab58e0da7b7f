"""The NumPy references of the standard architectures: their definitions, run on NumPy in float64.

There is no second, hand-written implementation to drift from: :func:`mlp_reference` and
:func:`bert_reference` are :func:`~inferox.core.definition.definition_reference` of the built-in
schemas — the same code every backend runs, on NumPy with the reference
:class:`~inferox.core.ops.Ops`, parameters and float inputs in float64. The conformance suite
compares each backend's factory with them; ``inferox pack`` computes golden outputs with them.
``"gelu"`` is the exact (erf) GELU, as PyTorch's ``F.gelu`` and Hugging Face's ``"gelu"``;
``"gelu_new"`` / ``"gelu_pytorch_tanh"`` the tanh approximation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from inferox.core.architectures import BERT, MLP
from inferox.core.definition import definition_reference, numpy_namespace
from inferox.core.ops import ACTIVATION_NAMES, Ops

__all__ = ["ACTIVATIONS", "bert_reference", "gelu_exact", "gelu_tanh", "mlp_reference"]

_OPS = Ops(numpy_namespace())


def gelu_exact(x: np.ndarray) -> np.ndarray:
    """``x · Φ(x)`` with the normal CDF through erf (``F.gelu``, Hugging Face ``"gelu"``), in float64."""
    return np.asarray(_OPS.gelu(np.asarray(x, dtype=np.float64)))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """The tanh approximation (``F.gelu(approximate="tanh")``, Hugging Face ``"gelu_new"``), in float64."""
    return np.asarray(_OPS.gelu(np.asarray(x, dtype=np.float64), approximate=True))


#: Activation name → its float64 NumPy definition (the reference ops').
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    name: (lambda fn: lambda x: np.asarray(fn(np.asarray(x, dtype=np.float64))))(_OPS.activation(name)) for name in ACTIVATION_NAMES
}

#: ``mlp`` (``reference(config, weights, inputs, **options)``): its definition on NumPy in float64.
mlp_reference = definition_reference(MLP)
#: ``bert`` (``reference(config, weights, inputs, **options)``, options as the factories take them:
#: ``preprocessing`` or flat ``pooling`` / ``normalize``): its definition on NumPy in float64.
bert_reference = definition_reference(BERT)
