"""The fused operations' reference implementations (``inferox.core.Ops``): each against a plain
float64 formula, and each written in array-API terms only — the same code runs on
``array_api_strict``, which has nothing but the standard."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from inferox.core import Ops
from inferox.core.definition import numpy_namespace
from inferox.core.ops import ACTIVATION_NAMES

OPS = Ops(numpy_namespace())
RNG = np.random.default_rng(0)


def test_erf_is_accurate_to_float64_everywhere() -> None:
    x = np.linspace(-40, 40, 200_001)
    want = np.array([math.erf(v) for v in x])
    assert np.abs(OPS.erf(x) - want).max() < 1e-15
    assert OPS.erf(np.array([0.0]))[0] == 0.0 and np.isfinite(OPS.erf(np.array([-1e300, 1e300]))).all()


def test_gelu_exact_and_tanh() -> None:
    x = np.linspace(-6, 6, 1001)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x])
    np.testing.assert_allclose(OPS.gelu(x), exact, atol=1e-15)
    tanh = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(OPS.gelu(x, approximate=True), tanh, atol=1e-15)
    assert np.abs(OPS.gelu(x) - OPS.gelu(x, approximate=True)).max() > 1e-4  # the two forms differ measurably


def test_activations_by_name() -> None:
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    expected = {
        "relu": np.maximum(x, 0), "tanh": np.tanh(x), "sigmoid": 1 / (1 + np.exp(-x)), "identity": x, "linear": x,
        "gelu": OPS.gelu(x), "gelu_new": OPS.gelu(x, approximate=True), "gelu_pytorch_tanh": OPS.gelu(x, approximate=True),
        "gelu_fast": OPS.gelu(x, approximate=True),
    }
    assert set(expected) == set(ACTIVATION_NAMES)
    for name, want in expected.items():
        np.testing.assert_allclose(OPS.activation(name)(x), want, atol=1e-15, err_msg=name)
    with pytest.raises(KeyError, match="unknown activation 'swish'"):
        OPS.activation("swish")


def test_linear_uses_the_out_by_in_layout() -> None:
    x, w, b = RNG.standard_normal((2, 3, 4)), RNG.standard_normal((5, 4)), RNG.standard_normal(5)
    np.testing.assert_allclose(OPS.linear(x, w, b), x @ w.T + b, atol=1e-14)
    np.testing.assert_allclose(OPS.linear(x, w), x @ w.T, atol=1e-14)


def test_layer_norm() -> None:
    x, g, b = RNG.standard_normal((3, 7)), RNG.standard_normal(7), RNG.standard_normal(7)
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(OPS.layer_norm(x, g, b, 1e-5), (x - mean) / np.sqrt(var + 1e-5) * g + b, atol=1e-14)


def test_softmax_is_stable() -> None:
    x = np.array([[1000.0, 1001.0, 1002.0], [-5.0, 0.0, 5.0]])
    out = OPS.softmax(x)
    np.testing.assert_allclose(out.sum(-1), 1.0)
    np.testing.assert_allclose(out[0], np.exp([-2.0, -1.0, 0.0]) / np.exp([-2.0, -1.0, 0.0]).sum())


def test_attention_with_a_padding_bias_and_a_relative_one() -> None:
    b, h, n, d = 2, 3, 5, 4
    q, k, v = (RNG.standard_normal((b, h, n, d)) for _ in range(3))
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    pad = OPS.attention_bias(mask, np.float64)
    assert pad.shape == (b, 1, 1, n) and pad[1, 0, 0, 3] == np.finfo(np.float64).min and pad[0].max() == 0
    relative = RNG.standard_normal((1, h, n, n))
    got = OPS.attention(q, k, v, bias=pad + relative)
    for i in range(b):
        for j in range(h):
            scores = q[i, j] @ k[i, j].T / math.sqrt(d) + relative[0, j]
            scores[:, mask[i] == 0] = -np.inf
            p = np.exp(scores - scores.max(-1, keepdims=True))
            np.testing.assert_allclose(got[i, j], (p / p.sum(-1, keepdims=True)) @ v[i, j], atol=1e-12)
    np.testing.assert_allclose(OPS.attention(q, k, v, scale=0.5), OPS.softmax(q @ np.swapaxes(k, -1, -2) * 0.5) @ v, atol=1e-12)
    # A row that is all padding attends uniformly, never NaN.
    empty = OPS.attention(q, k, v, bias=OPS.attention_bias(np.zeros((b, n)), np.float64))
    assert np.isfinite(empty).all()


def test_embedding_and_l2_normalize() -> None:
    table = RNG.standard_normal((10, 3))
    ids = np.array([[[1, 2], [9, 0]]])
    np.testing.assert_array_equal(OPS.embedding(table, ids), table[ids])
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(OPS.l2_normalize(x), [[0.6, 0.8], [0.0, 0.0]])


def test_the_reference_is_array_api_only() -> None:
    """Every operation runs on array_api_strict (the standard and nothing else) with the numbers of numpy."""
    xps = pytest.importorskip("array_api_strict")
    strict = Ops(xps)
    assert "over array_api_strict" in repr(strict) and strict.name == "reference"

    def s(a: np.ndarray) -> Any:
        return xps.asarray(a)

    x, w, bias = RNG.standard_normal((2, 5, 4)), RNG.standard_normal((6, 4)), RNG.standard_normal(6)
    q = RNG.standard_normal((2, 2, 5, 3))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    cases = {
        "linear": (strict.linear(s(x), s(w), s(bias)), OPS.linear(x, w, bias)),
        "layer_norm": (strict.layer_norm(s(x), s(x[0, 0]), s(x[1, 1]), 1e-12), OPS.layer_norm(x, x[0, 0], x[1, 1], 1e-12)),
        "gelu": (strict.gelu(s(x)), OPS.gelu(x)),
        "gelu_tanh": (strict.gelu(s(x), approximate=True), OPS.gelu(x, approximate=True)),
        "relu": (strict.relu(s(x)), OPS.relu(x)),
        "sigmoid": (strict.sigmoid(s(x)), OPS.sigmoid(x)),
        "tanh": (strict.tanh(s(x)), OPS.tanh(x)),
        "softmax": (strict.softmax(s(x), axis=1), OPS.softmax(x, axis=1)),
        "attention": (strict.attention(s(q), s(q), s(q), bias=strict.attention_bias(s(mask), xps.float64)), OPS.attention(q, q, q, bias=OPS.attention_bias(mask, np.float64))),
        "embedding": (strict.embedding(s(w), s(np.array([[1, 5], [0, 0]]))), OPS.embedding(w, np.array([[1, 5], [0, 0]]))),
        "l2_normalize": (strict.l2_normalize(s(x)), OPS.l2_normalize(x)),
    }
    for name, (got, want) in cases.items():
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-12, err_msg=name)
