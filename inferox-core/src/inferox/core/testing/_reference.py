"""NumPy references of the standard architectures: what every backend's ``mlp`` and ``bert`` must compute.

They are deliberately plain (float64, no fusion, one loop per layer) so that they are easy to read
against the definitions in :mod:`inferox.core.architectures`. The conformance suite compares each
backend's factory with them on the schema's golden inputs. ``"gelu"`` is the exact (erf) GELU, as
PyTorch's ``F.gelu`` and Hugging Face's ``"gelu"``; ``"gelu_new"`` / ``"gelu_pytorch_tanh"`` the tanh
approximation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from inferox.core.architectures import BertConfig, MLPConfig, Preprocessing, bert_weight_shapes, select_weights

__all__ = ["ACTIVATIONS", "bert_reference", "gelu_exact", "gelu_tanh", "mlp_reference"]

_erf = np.frompyfunc(math.erf, 1, 1)


def gelu_exact(x: np.ndarray) -> np.ndarray:
    """``x · Φ(x)`` with the normal CDF through erf (``F.gelu``, Hugging Face ``"gelu"``)."""
    return np.asarray(0.5 * x * (1.0 + np.asarray(_erf(x / math.sqrt(2.0)), dtype=np.float64)), dtype=np.float64)


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """The tanh approximation (``F.gelu(approximate="tanh")``, Hugging Face ``"gelu_new"``)."""
    return np.asarray(0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))), dtype=np.float64)


#: Activation name → its float64 NumPy definition.
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda x: np.maximum(x, 0.0),
    "gelu": gelu_exact,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "identity": lambda x: x,
}


def _f64(weights: Mapping[str, Any], name: str) -> np.ndarray:
    return np.asarray(weights[name], dtype=np.float64)


def mlp_reference(config: Mapping[str, Any], weights: Mapping[str, Any], inputs: Mapping[str, Any], **options: Any) -> dict[str, np.ndarray]:
    """``mlp``: ``x @ W_i.T + b_i`` per layer (``W_i`` is ``(out, in)``), the activation after all but the last."""
    cfg = MLPConfig.from_dict(config)
    act = ACTIVATIONS[cfg.activation]
    x = np.asarray(inputs["input"], dtype=np.float64)
    for i in range(cfg.num_layers):
        x = x @ _f64(weights, f"layers.{i}.weight").T + _f64(weights, f"layers.{i}.bias")
        if i < cfg.num_layers - 1:
            x = act(x)
    return {"output": x.astype(np.float32)}


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return np.asarray((x - mean) / np.sqrt(var + eps) * gamma + beta)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def bert_reference(config: Mapping[str, Any], weights: Mapping[str, Any], inputs: Mapping[str, Any], **options: Any) -> dict[str, np.ndarray]:
    """``bert`` as Hugging Face's ``BertModel`` computes it, plus the package's sentence pooling.

    Padding (``attention_mask`` 0) is excluded from every token's attention and from mean/max
    pooling; its own rows of ``last_hidden_state`` are still computed. ``options`` as the factories
    take them (``preprocessing`` or flat ``pooling`` / ``normalize``).
    """
    cfg = BertConfig.from_dict(config)
    pre = Preprocessing.from_options(options, limit=cfg.max_position_embeddings)
    w = {k: np.asarray(v, dtype=np.float64) for k, v in select_weights(weights, bert_weight_shapes(cfg), prefixes=("", "bert.")).items()}
    ids = np.asarray(inputs["input_ids"], dtype=np.int64)
    b, n = ids.shape
    types = np.asarray(inputs["token_type_ids"], np.int64) if inputs.get("token_type_ids") is not None else np.zeros_like(ids)
    positions = np.asarray(inputs["position_ids"], np.int64) if inputs.get("position_ids") is not None else np.broadcast_to(np.arange(n), (b, n))
    mask = np.asarray(inputs["attention_mask"], np.float64) if inputs.get("attention_mask") is not None else np.ones((b, n))
    eps, heads, d = cfg.layer_norm_eps, cfg.num_attention_heads, cfg.head_dim
    act = ACTIVATIONS[cfg.hidden_act]

    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.token_type_embeddings.weight"][types] + w["embeddings.position_embeddings.weight"][positions]
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    key_bias = (1.0 - mask)[:, None, None, :] * -1e30  # padded keys get no attention

    def dense(v: np.ndarray, name: str) -> np.ndarray:
        return np.asarray(v @ w[name + ".weight"].T + w[name + ".bias"])

    def split(v: np.ndarray) -> np.ndarray:  # (b, n, h) → (b, heads, n, d)
        return v.reshape(b, n, heads, d).transpose(0, 2, 1, 3)

    for i in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{i}."
        q, k, v = (split(dense(x, p + f"attention.self.{s}")) for s in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + key_bias
        ctx = (_softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(b, n, heads * d)
        x = _layer_norm(dense(ctx, p + "attention.output.dense") + x, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
        hidden = act(dense(x, p + "intermediate.dense"))
        x = _layer_norm(dense(hidden, p + "output.dense") + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    out = {"last_hidden_state": x, "pooler_output": np.tanh(dense(x[:, 0], "pooler.dense"))}
    if pre.pooling is not None:
        m3 = mask[:, :, None]
        if pre.pooling == "cls":
            emb = x[:, 0]
        elif pre.pooling == "max":
            emb = np.where(m3 == 0, -1e9, x).max(axis=1)
        else:
            counts = np.maximum(m3.sum(axis=1), 1e-9)
            emb = (x * m3).sum(axis=1) / (counts if pre.pooling == "mean" else np.sqrt(counts))
        if pre.normalize:
            emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        out["sentence_embedding"] = emb
    return {k: v.astype(np.float32) for k, v in out.items()}
