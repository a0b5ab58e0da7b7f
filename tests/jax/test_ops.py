"""``JaxOps``: each operation jax overrides computes what core's reference operation does, on
jax arrays, within float32 rounding — the conformance suite checks whole architectures, this names
the operation that drifted."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest

from inferox.core import Ops
from inferox.core.definition import numpy_namespace
from inferox.jax import JaxBackend, JaxOps

REF = Ops(numpy_namespace())
RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def ops() -> JaxOps:
    ops = JaxBackend().ops()
    assert isinstance(ops, JaxOps) and ops.name == "jax"
    return ops


def _cases() -> dict[str, tuple[Any, ...]]:
    x = RNG.standard_normal((2, 5, 8)).astype(np.float32)
    w, b = RNG.standard_normal((6, 8)).astype(np.float32), RNG.standard_normal(6).astype(np.float32)
    q = RNG.standard_normal((2, 3, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int64)
    return {
        "linear": ("linear", (x, w, b), {}),
        "layer_norm": ("layer_norm", (x, x[0, 0], x[1, 1], 1e-12), {}),
        "erf": ("erf", (x,), {}),
        "gelu": ("gelu", (x,), {}),
        "gelu_tanh": ("gelu", (x,), {"approximate": True}),
        "relu": ("relu", (x,), {}),
        "sigmoid": ("sigmoid", (x,), {}),
        "tanh": ("tanh", (x,), {}),
        "softmax": ("softmax", (x,), {"axis": 1}),
        "attention": ("attention", (q, q * 0.5, q * 2), {"bias": REF.attention_bias(mask, np.float32)}),
        "attention_scale": ("attention", (q, q, q), {"scale": 0.3}),
        "embedding": ("embedding", (w, np.array([[1, 5], [0, 3]])), {}),
        "l2_normalize": ("l2_normalize", (x,), {"axis": -1}),
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_torch_ops_compute_the_reference(ops: JaxOps, case: str) -> None:
    name, args, kwargs = _cases()[case]
    want = getattr(REF, name)(*args, **kwargs)
    targs = [jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    tkw = {k: jnp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    got = getattr(ops, name)(*targs, **tkw)
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-6, rtol=1e-5)


def test_attention_bias_is_always_an_array_under_jit(ops: JaxOps) -> None:
    # jax cannot branch on a mask's values while tracing: the reference bias, never None.
    bias = ops.attention_bias(jnp.ones((2, 4), dtype=jnp.int32), jnp.float32)
    assert bias.shape == (2, 1, 1, 4) and float(bias.max()) == 0.0
