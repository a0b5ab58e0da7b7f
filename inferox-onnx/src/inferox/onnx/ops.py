"""``OnnxOps``: the fused operations of :class:`inferox.core.Ops` as ONNX Runtime's operators.

Definitions are traced into ONNX graphs (:mod:`inferox.onnx._trace`) with these operations. Each
method appends the node ONNX Runtime runs fastest for it; with ``fuse=True`` (the ``optimize``
load option, the default) that is one of its fused contrib operators wherever the inputs allow,
found by looking at what produced them:

* ``attention`` — ``Attention`` (``com.microsoft``): one operator for the query/key/value projection,
  the scaled dot products, the padding mask (a raw 0/1 mask, so left and right padding both work),
  an additive bias such as MPNet's relative positions, the softmax and the weighted sum. It is used
  when ``q``, ``k`` and ``v`` are heads split from projections of one input — one packed
  projection (``prepare`` fuses them) or three — and the bias is a padding mask
  (:meth:`attention_bias`) and/or a ``(1 | batch, heads, queries, keys)`` bias; otherwise the
  reference (``MatMul``, ``Softmax``, ``MatMul``);
* ``layer_norm`` — ``EmbedLayerNormalization`` over a sum of embedding look-ups (word, positions
  ``0..n-1`` or given ones, token types), ``SkipLayerNormalization`` over a residual sum (with the
  projection's bias folded in), else ``LayerNormalization`` (opset 17);
* ``gelu`` — ``BiasGelu`` / ``FastGelu`` with the bias of the projection it follows, else ``Gelu`` /
  ``FastGelu``;
* ``linear`` — ``Gemm`` on matrices, ``MatMul`` + ``Add`` on batches of sequences (the pattern the
  fusions above and the int8 quantisers read);
* ``embedding`` — ``Gather``; ``softmax``, ``erf``, ``relu``, ``sigmoid``, ``tanh`` — their ONNX
  operators; ``l2_normalize`` — ``ReduceL2`` and a division.

With ``fuse=False`` every node is a standard ONNX operator (``LayerNormalization``, ``Erf``,
``Softmax`` …), for runtimes without ONNX Runtime's contrib operators. On all-MiniLM-L6-v2 the fused
graph has the operators of the hand-written graph this replaced (``tests/onnx/test_trace.py``
compares them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from inferox.core.ops import Ops
from inferox.onnx._graph import MS_DOMAIN
from inferox.onnx._trace import Dim, TracedArray, TraceNamespace, Tracer, same_dim, same_shape

__all__ = ["OnnxOps"]

_SQRT_HALF = math.sqrt(0.5)
_TANH_GELU_SCALE = math.sqrt(2.0 / math.pi)


def _is_const(x: Any) -> bool:
    return isinstance(x, TracedArray) and x.value is not None


def _op(x: Any, op_type: str) -> bool:
    return isinstance(x, TracedArray) and x.node is not None and x.node.op_type == op_type


class OnnxOps(Ops):
    """:class:`~inferox.core.Ops` emitting ONNX Runtime's operators (see the module docstring)."""

    name: ClassVar[str] = "onnx"

    def __init__(self, xp: TraceNamespace, *, fuse: bool = True) -> None:
        super().__init__(xp)
        #: Whether ONNX Runtime's contrib operators may be used (the ``optimize`` load option).
        self.fuse = fuse

    @property
    def _t(self) -> Tracer:
        tracer: Tracer = self.xp._t
        return tracer

    # -- dense ----------------------------------------------------------------------------------------
    def linear(self, x: Any, weight: Any, bias: Any = None) -> Any:
        xp = self.xp
        x = xp.asarray(x)
        out_features = weight.shape[0]
        if x.ndim == 2:
            # Gemm reads the (out, in) weight as it is stored: no transposed copy.
            inputs = [x, weight] + ([] if bias is None else [bias])
            return self._t.emit("Gemm", inputs, shape=(x.shape[0], out_features), dtype=x.dtype, transB=1)
        wt = xp.matrix_transpose(weight)
        if _is_const(weight):
            wt.hint = f"{weight.hint or 'weight'}_t"
        y = xp.matmul(x, wt)
        if bias is None:
            return y
        out = xp.add(y, bias)
        out.meta["linear"] = (x, y, bias)
        return out

    def layer_norm(self, x: Any, weight: Any, bias: Any, eps: float) -> Any:
        x = self.xp.asarray(x)
        if self.fuse and _is_const(weight) and _is_const(bias):
            fused = self._embed_layer_norm(x, weight, bias, eps)
            if fused is None:
                fused = self._skip_layer_norm(x, weight, bias, eps)
            if fused is not None:
                return fused
        return self._t.emit("LayerNormalization", [x, weight, bias], shape=x.shape, dtype=x.dtype, axis=-1, epsilon=float(eps))

    def _skip_layer_norm(self, x: TracedArray, weight: Any, bias: Any, eps: float) -> TracedArray | None:
        """``SkipLayerNormalization(input, skip, gamma, beta, bias)`` for ``layer_norm(a + r)``."""
        if not _op(x, "Add") or x.ndim != 3:
            return None
        a, r = x.node.inputs  # type: ignore[union-attr]
        if not all(isinstance(v, TracedArray) and v.value is None and v.fill is None and same_shape(v.shape, x.shape) for v in (a, r)):
            return None
        if "linear" not in a.meta and "linear" in r.meta:
            a, r = r, a
        projection_bias: TracedArray | None = None
        if "linear" in a.meta and _is_const(a.meta["linear"][2]):
            _, a, projection_bias = a.meta["linear"]  # the projection's MatMul; its bias goes in
        return self._t.emit("SkipLayerNormalization", [a, r, weight, bias, projection_bias], shape=x.shape, dtype=x.dtype,
                            domain=MS_DOMAIN, epsilon=float(eps))

    def _embed_layer_norm(self, x: TracedArray, weight: Any, bias: Any, eps: float) -> TracedArray | None:
        """``EmbedLayerNormalization`` for ``layer_norm(word[ids] + positions + types[token_types])``."""
        terms = _sum_terms(x)
        if terms is None or len(terms) not in (2, 3):
            return None
        word = terms[0].meta.get("embedding")
        if word is None or not _is_const(word[0]):
            return None
        table, ids = word
        if ids.ndim != 2 or ids.dtype.kind not in "iu" or x.ndim != 3:
            return None
        b, n = ids.shape
        width = table.shape[1]
        position_ids = None
        pos = terms[1]
        if "rows" in pos.meta and same_dim(pos.meta["rows"][1], n):
            position_table = pos.meta["rows"][0]  # table[:n]: positions 0..n-1, the operator's default
        elif "embedding" in pos.meta and same_shape(pos.meta["embedding"][1].shape, ids.shape):
            position_table, position_ids = pos.meta["embedding"]
        else:
            return None
        segment_ids = segment_table = None
        if len(terms) == 3:
            if "embedding" not in terms[2].meta or not same_shape(terms[2].meta["embedding"][1].shape, ids.shape):
                return None
            segment_table, segment_ids = terms[2].meta["embedding"]
        tables = [t for t in (table, position_table, segment_table) if t is not None]
        if not all(_is_const(t) and t.ndim == 2 and same_dim(t.shape[1], width) for t in tables):
            return None
        xp = self.xp
        i32 = np.dtype(np.int32)
        inputs = [
            xp.astype(ids, i32), None if segment_ids is None else xp.astype(segment_ids, i32), table, position_table, segment_table,
            weight, bias, None, None if position_ids is None else xp.astype(position_ids, i32),
        ]
        # Its second output (a per-row count of the mask, which nothing here reads) is required.
        return self._t.emit("EmbedLayerNormalization", inputs, shape=(b, n, width), dtype=x.dtype, domain=MS_DOMAIN, outputs=2, epsilon=float(eps))

    # -- activations ----------------------------------------------------------------------------------
    def erf(self, x: Any) -> Any:
        return self.xp._unary("Erf", _np_erf, x)

    def gelu(self, x: Any, *, approximate: bool = False) -> Any:
        x = self.xp.asarray(x)
        if not self.fuse:
            if approximate:
                return 0.5 * x * (1.0 + self.tanh(_TANH_GELU_SCALE * (x + 0.044715 * (x * x * x))))
            return x * 0.5 * (1.0 + self.erf(x * _SQRT_HALF))
        inputs: list[Any] = [x]
        if "linear" in x.meta and _is_const(x.meta["linear"][2]) and x.meta["linear"][2].ndim == 1:
            _, projected, projection_bias = x.meta["linear"]
            inputs = [projected, projection_bias]
            op = "FastGelu" if approximate else "BiasGelu"
        else:
            op = "FastGelu" if approximate else "Gelu"
        return self._t.emit(op, inputs, shape=x.shape, dtype=x.dtype, domain=MS_DOMAIN)

    def relu(self, x: Any) -> Any:
        return self.xp._unary("Relu", lambda v: np.maximum(v, 0), x)

    def sigmoid(self, x: Any) -> Any:
        return self.xp._unary("Sigmoid", lambda v: 1.0 / (1.0 + np.exp(-v)), x)

    def tanh(self, x: Any) -> Any:
        return self.xp.tanh(x)

    def softmax(self, x: Any, *, axis: int = -1) -> Any:
        x = self.xp.asarray(x)
        return self._t.emit("Softmax", [x], shape=x.shape, dtype=x.dtype, axis=int(axis))

    # -- attention --------------------------------------------------------------------------------------
    def attention_bias(self, mask: Any, dtype: Any) -> Any:
        bias = super().attention_bias(mask, dtype)
        bias.meta["mask"] = self.xp.asarray(mask)  # what the fused Attention takes instead
        return bias

    def attention(self, q: Any, k: Any, v: Any, *, bias: Any = None, scale: float | None = None) -> Any:
        if self.fuse:
            fused = self._fused_attention(q, k, v, bias, scale)
            if fused is not None:
                return fused
        return super().attention(q, k, v, bias=bias, scale=scale)

    def _fused_attention(self, q: Any, k: Any, v: Any, bias: Any, scale: float | None) -> TracedArray | None:
        projection = _packed_heads(q, k, v) or _separate_heads(q, k, v)
        if projection is None:
            return None
        x, weight_t, projection_bias, heads = projection
        b, n = x.shape[0], x.shape[1]
        if not (same_dim(q.shape[2], n) and same_dim(k.shape[2], n)):
            return None
        split = _split_bias(bias, heads, n)
        if split is None:
            return None
        mask, extra = split
        hidden = int(weight_t.shape[1]) // 3
        # mask_filter_value: the most negative f32, as the reference's bias: a row that is all
        # padding then attends uniformly, as it does there (ONNX Runtime's default, -10000, would not).
        attrs: dict[str, Any] = {"num_heads": heads, "mask_filter_value": float(np.finfo(np.float32).min)}
        if scale is not None:
            attrs["scale"] = float(scale)
        xp = self.xp
        raw_mask = None if mask is None else xp.astype(mask, np.dtype(np.int32))
        out = self._t.emit("Attention", [x, weight_t, projection_bias, raw_mask, None, extra], shape=(b, n, hidden), dtype=x.dtype,
                           domain=MS_DOMAIN, **attrs)
        # Back to (batch, heads, queries, head_dim), the layout attention returns: the definition's
        # merge of the heads (a transpose and a reshape) then cancels these two nodes out.
        result: TracedArray = xp.permute_dims(xp.reshape(out, (b, n, heads, hidden // heads)), (0, 2, 1, 3))
        return result

    # -- gathers and norms ------------------------------------------------------------------------------
    def embedding(self, table: Any, ids: Any) -> Any:
        out = self.xp.take(table, ids, axis=0)
        if isinstance(out, TracedArray) and out.value is None:
            out.meta["embedding"] = (self.xp.asarray(table), self.xp.asarray(ids))
        return out

    def l2_normalize(self, x: Any, *, axis: int = -1, eps: float = 1e-12) -> Any:
        x = self.xp.asarray(x)
        axis = axis % x.ndim
        norm = self._t.emit("ReduceL2", [x], shape=[1 if i == axis else d for i, d in enumerate(x.shape)], dtype=x.dtype, axes=[axis], keepdims=1)
        return x / self.xp.maximum(norm, eps)


def _np_erf(v: Any) -> Any:
    from math import erf

    return np.vectorize(erf)(v)


def _sum_terms(x: TracedArray) -> list[TracedArray] | None:
    """The terms of a chain of additions ``((a + b) + c)`` (``None`` when ``x`` is no sum)."""
    if not _op(x, "Add"):
        return None
    out: list[TracedArray] = []
    for term in x.node.inputs:  # type: ignore[union-attr]
        if not isinstance(term, TracedArray) or term.value is not None:
            return None
        inner = _sum_terms(term) if "embedding" not in term.meta and "rows" not in term.meta else None
        out.extend(inner if inner is not None else [term])
    return out


def _heads_of(t: Any) -> tuple[TracedArray, int, int] | None:
    """``(projected, heads, head_dim)`` when ``t`` is ``permute(reshape(projected, (b, n, heads, head_dim)), (0, 2, 1, 3))``."""
    if not _op(t, "Transpose") or list(t.node.attrs["perm"]) != [0, 2, 1, 3]:
        return None
    r = t.node.inputs[0]
    if not _op(r, "Reshape") or r.ndim != 4 or isinstance(r.shape[2], Dim) or isinstance(r.shape[3], Dim):
        return None
    projected = r.node.inputs[0]
    if projected.ndim != 3 or not (same_dim(r.shape[0], projected.shape[0]) and same_dim(r.shape[1], projected.shape[1])):
        return None
    return projected, int(r.shape[2]), int(r.shape[3])


def _linear_parts(y: Any) -> tuple[TracedArray, TracedArray, TracedArray] | None:
    """``(x, weight_t, bias)`` of a traced ``linear`` (``weight_t`` the ``(in, out)`` MatMul operand),
    when its weight and bias are constants."""
    if not isinstance(y, TracedArray) or "linear" not in y.meta:
        return None
    x, product, bias = y.meta["linear"]
    if not _op(product, "MatMul") or not _is_const(bias) or bias.ndim != 1:
        return None
    weight_t = product.node.inputs[1]
    if not _is_const(weight_t) or weight_t.ndim != 2 or x.ndim != 3:
        return None
    return x, weight_t, bias


Projection = tuple[TracedArray, TracedArray, TracedArray, int]


def _packed_heads(q: Any, k: Any, v: Any) -> Projection | None:
    """``(x, weight_t, bias, heads)`` for one projection to ``(b, n, 3, heads, head_dim)`` split
    along the 3 (the layout ``prepare`` packs query, key and value into)."""
    sources = []
    for index, part in enumerate((q, k, v)):
        if not _op(part, "Gather") or part.node.attrs.get("axis") != 0:
            return None
        at = part.node.inputs[1]
        if not _is_const(at) or at.value.shape != () or int(at.value) != index:
            return None
        sources.append(part.node.inputs[0])
    t = sources[0]
    if any(s is not t for s in sources) or not _op(t, "Transpose") or list(t.node.attrs["perm"]) != [2, 0, 3, 1, 4]:
        return None
    r = t.node.inputs[0]
    if not _op(r, "Reshape") or r.ndim != 5 or r.shape[2] != 3 or isinstance(r.shape[3], Dim) or isinstance(r.shape[4], Dim):
        return None
    parts = _linear_parts(r.node.inputs[0])
    if parts is None:
        return None
    x, weight_t, bias = parts
    if not (same_dim(r.shape[0], x.shape[0]) and same_dim(r.shape[1], x.shape[1])):
        return None
    if weight_t.shape[1] != 3 * int(r.shape[3]) * int(r.shape[4]):
        return None
    return x, weight_t, bias, int(r.shape[3])


def _separate_heads(q: Any, k: Any, v: Any) -> Projection | None:
    """``(x, weight_t, bias, heads)`` for three projections of one input, each split into heads
    (``transformers``' layout): their weights are packed side by side here."""
    found = []
    for part in (q, k, v):
        heads = _heads_of(part)
        parts = None if heads is None else _linear_parts(heads[0])
        if heads is None or parts is None:
            return None
        found.append((parts, heads[1], heads[2]))
    x = found[0][0][0]
    if any(p[0][0] is not x for p in found) or len({(h, d) for _, h, d in found}) != 1:
        return None
    if any(p[0][1].shape != found[0][0][1].shape for p in found):
        return None
    tracer = x.tracer
    weight_t = tracer.constant(np.concatenate([p[0][1].value for p in found], axis=1), hint=f"{found[0][0][1].hint or 'query'}_qkv")
    bias = tracer.constant(np.concatenate([p[0][2].value for p in found]), hint=f"{found[0][0][2].hint or 'query'}_qkv")
    return x, weight_t, bias, found[0][1]


def _split_bias(bias: Any, heads: int, n: int | Dim) -> tuple[TracedArray | None, TracedArray | None] | None:
    """``(padding mask, additive bias)`` for the fused operator from attention's ``bias``."""
    if bias is None:
        return None, None
    if not isinstance(bias, TracedArray):
        return None
    if "mask" in bias.meta:
        checked = _checked_mask(bias.meta["mask"], n)
        return None if checked is None else (checked, None)
    terms: Sequence[Any] = bias.node.inputs if bias.node is not None and _op(bias, "Add") else (bias,)
    mask: TracedArray | None = None
    extra: TracedArray | None = None
    for term in terms:
        if isinstance(term, TracedArray) and "mask" in term.meta and mask is None:
            mask = _checked_mask(term.meta["mask"], n)
            if mask is None:
                return None
        elif isinstance(term, TracedArray) and extra is None and term.ndim == 4 and term.shape[1] == heads and same_dim(term.shape[2], n) and same_dim(term.shape[3], n):
            extra = term
        else:
            return None
    return mask, extra


def _checked_mask(mask: TracedArray, n: int | Dim) -> TracedArray | None:
    return mask if mask.ndim == 2 and same_dim(mask.shape[1], n) else None
