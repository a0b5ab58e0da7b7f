"""``TorchOps``: each operation torch overrides computes what core's reference operation does, on
torch tensors, within float32 rounding — the conformance suite checks whole architectures, this names
the operation that drifted."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from inferox.core import Ops
from inferox.core.definition import numpy_namespace
from inferox.torch import TorchBackend, TorchOps

REF = Ops(numpy_namespace())
RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def ops() -> TorchOps:
    ops = TorchBackend().ops()
    assert isinstance(ops, TorchOps) and ops.name == "torch"
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
def test_torch_ops_compute_the_reference(ops: TorchOps, case: str) -> None:
    name, args, kwargs = _cases()[case]
    want = getattr(REF, name)(*args, **kwargs)
    targs = [torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a for a in args]
    tkw = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    got = getattr(ops, name)(*targs, **tkw)
    np.testing.assert_allclose(got.numpy(), want, atol=2e-6, rtol=1e-5)


def test_attention_bias_is_dropped_when_nothing_is_padded(ops: TorchOps) -> None:
    assert ops.attention_bias(torch.ones((2, 4), dtype=torch.int64), torch.float32) is None
    bias = ops.attention_bias(torch.tensor([[1, 1, 0]]), torch.float32)
    assert bias.shape == (1, 1, 1, 3) and float(bias[0, 0, 0, 2]) == torch.finfo(torch.float32).min
