"""The fused operations a backend overrides, checked against core's reference with the same inputs:
``check_ops(ops, to_native, to_numpy)`` runs every case (``OP_CASES``) on a backend's ``Ops`` and
compares with the reference on NumPy. Numpy only at import time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["OP_CASES", "check_op"]


def _cases() -> dict[str, tuple[str, tuple[Any, ...], dict[str, Any]]]:
    from inferox.core import Ops
    from inferox.core.definition import numpy_namespace

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    w, b = rng.standard_normal((6, 8)).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    q = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int64)
    bias = Ops(numpy_namespace()).attention_bias(mask, np.float32)
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
        "attention": ("attention", (q, q * 0.5, q * 2), {"bias": bias}),
        "attention_scale": ("attention", (q, q, q), {"scale": 0.3}),
        "embedding": ("embedding", (w, np.array([[1, 5], [0, 3]])), {}),
        "l2_normalize": ("l2_normalize", (x,), {"axis": -1}),
    }


#: The case names (one per operation and option), for ``pytest.mark.parametrize``.
OP_CASES = tuple(_cases())


def check_op(ops: Any, case: str, to_native: Callable[[np.ndarray], Any], to_numpy: Callable[[Any], np.ndarray]) -> None:
    """``ops``'s operation of ``case`` on native arrays equals the reference's on NumPy within float32 rounding."""
    from inferox.core import Ops
    from inferox.core.definition import numpy_namespace

    name, args, kwargs = _cases()[case]
    want = getattr(Ops(numpy_namespace()), name)(*args, **kwargs)
    native_args = [to_native(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a for a in args]
    native_kwargs = {k: to_native(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    np.testing.assert_allclose(to_numpy(getattr(ops, name)(*native_args, **native_kwargs)), want, atol=2e-6, rtol=1e-5)
