"""OnnxOps op by op against core's reference operations: each operation traced (with ONNX Runtime's
fused operators and with standard ones only), run by ONNX Runtime, compared with ``inferox.core.Ops``
on NumPy in float64; and which operator each input layout gets — the fused ``Attention`` for heads
split from projections of one input (packed, or transformers' three), the reference's
MatMul/Softmax where the fused operator cannot express the inputs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import array_api_compat.numpy as npx
import numpy as np
import onnxruntime as ort
import pytest

from inferox.core.ops import Ops
from inferox.onnx import OnnxOps
from inferox.onnx._graph import node_counts
from inferox.onnx._trace import Tracer

RNG = np.random.default_rng(0)
H, HEADS = 8, 2


def w(*shape: int, scale: float = 0.4) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


PARAMS = {
    "qkv_w": w(3 * H, H), "qkv_b": w(3 * H), "q_w": w(H, H), "q_b": w(H), "k_w": w(H, H), "k_b": w(H), "v_w": w(H, H), "v_b": w(H),
    "o_w": w(H, H), "o_b": w(H), "g": 1 + w(H), "beta": w(H), "table": w(11, H), "pos": w(16, H), "types": w(2, H), "rel": w(1, HEADS, 16, 16),
}


def check(fn: Callable[[Any, Any, Mapping[str, Any], Mapping[str, Any]], dict[str, Any]], inputs: dict[str, np.ndarray], *, fuse: bool = True,
          atol: float = 1e-5) -> dict[str, int]:
    """Trace ``fn`` with OnnxOps (dynamic batch and sequence), run it, compare with core's reference
    on NumPy in float64; returns the graph's operator counts."""
    tracer = Tracer("ops")
    symbolic = {k: tracer.input(k, v.dtype, (None, None, *v.shape[2:])) for k, v in inputs.items()}
    params = {k: tracer.constant(v, hint=k) for k, v in PARAMS.items()}
    for name, value in fn(tracer.xp, OnnxOps(tracer.xp, fuse=fuse), symbolic, params).items():
        tracer.output(name, value)
    graph = tracer.build()
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, inputs)))
    as64 = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in inputs.items()}
    want = fn(npx, Ops(npx), as64, {k: v.astype(np.float64) for k, v in PARAMS.items()})
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, atol=atol, rtol=1e-5, err_msg=name)
    return node_counts(graph)


def hidden(batch: int = 3, seq: int = 5) -> dict[str, np.ndarray]:
    mask = np.ones((batch, seq), np.int64)
    mask[0, -2:] = 0
    mask[1, :1] = 0
    return {"x": w(batch, seq, H, scale=1.0), "mask": mask}


def heads(xp: Any, t: Any, b: Any, n: Any) -> Any:
    return xp.permute_dims(xp.reshape(t, (b, n, HEADS, H // HEADS)), (0, 2, 1, 3))


def merged(xp: Any, ctx: Any, b: Any, n: Any) -> Any:
    return xp.reshape(xp.permute_dims(ctx, (0, 2, 1, 3)), (b, n, H))


def packed_attention(bias: str = "mask", scale: float | None = None) -> Callable[..., dict[str, Any]]:
    def fn(xp: Any, ops: Any, x: Mapping[str, Any], p: Mapping[str, Any]) -> dict[str, Any]:
        h = x["x"]
        b, n, _ = h.shape
        qkv = xp.permute_dims(xp.reshape(ops.linear(h, p["qkv_w"], p["qkv_b"]), (b, n, 3, HEADS, H // HEADS)), (2, 0, 3, 1, 4))
        relative = p["rel"][:, :, :n, :n]  # (1, heads, n, n), as MPNet's relative position bias
        extra = {
            "mask": lambda: ops.attention_bias(x["mask"], h.dtype),
            "none": lambda: None,
            "mask+relative": lambda: ops.attention_bias(x["mask"], h.dtype) + relative,
            "relative": lambda: relative,
            "per-row": lambda: xp.astype(x["mask"], h.dtype)[:, None, :, None] * 0.5,  # (b, 1, n, 1): not a key mask
        }[bias]()
        ctx = ops.attention(qkv[0, ...], qkv[1, ...], qkv[2, ...], bias=extra, scale=scale)
        return {"y": ops.linear(merged(xp, ctx, b, n), p["o_w"], p["o_b"])}

    return fn


@pytest.mark.parametrize(("bias", "scale", "fused"), [
    ("mask", None, True), ("none", None, True), ("mask+relative", 0.3, True), ("relative", None, True), ("per-row", None, False),
])
def test_attention_of_a_packed_projection(bias: str, scale: float | None, fused: bool) -> None:
    inputs = hidden(seq=5)
    counts = check(packed_attention(bias, scale), inputs)
    assert ("Attention" in counts) is fused
    assert ("Softmax" in counts) is not fused  # the reference where the fused operator cannot take the bias
    if fused:
        assert "Transpose" not in counts and "Reshape" not in counts  # the heads' split and merge cancelled
    assert "Attention" not in check(packed_attention(bias, scale), inputs, fuse=False)


def separate_attention(same_input: bool = True) -> Callable[..., dict[str, Any]]:
    """transformers' layout: three projections, each split into heads."""

    def fn(xp: Any, ops: Any, x: Mapping[str, Any], p: Mapping[str, Any]) -> dict[str, Any]:
        h = x["x"]
        b, n, _ = h.shape
        other = h if same_input else h * 2.0
        q = heads(xp, ops.linear(h, p["q_w"], p["q_b"]), b, n)
        k = heads(xp, ops.linear(other, p["k_w"], p["k_b"]), b, n)
        v = heads(xp, ops.linear(h, p["v_w"], p["v_b"]), b, n)
        return {"y": merged(xp, ops.attention(q, k, v, bias=ops.attention_bias(x["mask"], h.dtype)), b, n)}

    return fn


@pytest.mark.parametrize("same_input", [True, False])
def test_attention_of_three_projections(same_input: bool) -> None:
    counts = check(separate_attention(same_input), hidden())
    assert ("Attention" in counts) is same_input  # keys from another input: not one fused projection


def test_layer_norms_residuals_and_gelus() -> None:
    def fn(xp: Any, ops: Any, x: Mapping[str, Any], p: Mapping[str, Any]) -> dict[str, Any]:
        h = x["x"]
        residual = ops.layer_norm(h + ops.linear(h, p["o_w"], p["o_b"]), p["g"], p["beta"], 1e-6)  # projection second
        plain = ops.layer_norm(h * 2.0, p["g"], p["beta"], 1e-6)
        broadcast = ops.layer_norm(h + p["beta"], p["g"], p["beta"], 1e-6)  # a constant term: no skip
        return {
            "residual": residual, "plain": plain, "broadcast": broadcast,
            "bias_gelu": ops.gelu(ops.linear(h, p["o_w"], p["o_b"])), "gelu": ops.gelu(h),
            "fast_bias": ops.gelu(ops.linear(h, p["o_w"], p["o_b"]), approximate=True), "fast": ops.gelu(h, approximate=True),
            "no_bias": ops.gelu(ops.linear(h, p["o_w"])),
        }

    counts = check(fn, {"x": w(2, 4, H, scale=1.5)})
    assert counts["SkipLayerNormalization"] == 1 and counts["LayerNormalization"] == 2
    assert counts["BiasGelu"] == 1 and counts["Gelu"] == 2 and counts["FastGelu"] == 2
    standard = check(fn, {"x": w(2, 4, H, scale=1.5)}, fuse=False)
    assert not {"SkipLayerNormalization", "BiasGelu", "Gelu", "FastGelu"} & set(standard) and standard["Erf"] == 3


def test_embedding_norms() -> None:
    """Word + positions 0..n-1 (rows of the table) + token types; word + given positions; a sum whose
    first term is not a look-up."""

    def fn(xp: Any, ops: Any, x: Mapping[str, Any], p: Mapping[str, Any]) -> dict[str, Any]:
        ids, types = x["ids"], x["types"]
        n = ids.shape[1]
        rows = ops.embedding(p["table"], ids) + p["pos"][:n, :] + ops.embedding(p["types"], types)
        given = ops.embedding(p["table"], ids) + ops.embedding(p["pos"], x["positions"])
        return {"rows": ops.layer_norm(rows, p["g"], p["beta"], 1e-12), "given": ops.layer_norm(given, p["g"], p["beta"], 1e-12),
                "scaled": ops.layer_norm(ops.embedding(p["table"], ids) * 2.0 + ops.embedding(p["types"], types), p["g"], p["beta"], 1e-12)}

    ids = RNG.integers(0, 11, size=(2, 6)).astype(np.int64)
    inputs = {"ids": ids, "types": (ids % 2).astype(np.int64), "positions": np.tile(np.arange(3, 9), (2, 1)).astype(np.int64)}
    counts = check(fn, inputs)
    assert counts["EmbedLayerNormalization"] == 2
    assert counts["SkipLayerNormalization"] == 1  # "scaled": its first term is no look-up, so a residual-style norm


def test_small_operations() -> None:
    def fn(xp: Any, ops: Any, x: Mapping[str, Any], p: Mapping[str, Any]) -> dict[str, Any]:
        h = x["x"]
        pooled = ops.tanh(ops.linear(h[:, 0, :], p["o_w"], p["o_b"]))  # a matrix: Gemm
        return {
            "pooled": pooled, "softmax": ops.softmax(h, axis=1), "relu": ops.relu(h), "sigmoid": ops.sigmoid(h), "erf": ops.erf(h),
            "normalized": ops.l2_normalize(h, axis=-1), "gathered": ops.embedding(p["table"], x["ids"]),
            "folded": ops.relu(p["beta"]) + ops.sigmoid(p["beta"]) + ops.erf(p["beta"]) + ops.tanh(p["beta"]) + h[:, :, 0:1],
            "unbiased": ops.linear(h, p["o_w"]), "matrix": ops.linear(h[:, 0, :], p["o_w"]),
        }

    counts = check(fn, {"x": w(3, 4, H, scale=2.0), "ids": RNG.integers(0, 11, size=(3, 4)).astype(np.int64)})
    assert counts["Gemm"] == 2 and counts["Softmax"] == 1 and counts["ReduceL2"] == 1 and counts["Erf"] == 1
    assert "Sigmoid" in counts and "Relu" in counts
