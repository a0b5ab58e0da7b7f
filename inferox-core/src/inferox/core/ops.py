"""The fused operations an architecture definition may use beyond the array API: :class:`Ops`.

An architecture is written once (:mod:`inferox.core.definition`) against an array namespace ``xp``
(the Python array API standard: ``numpy``, ``array_api_compat.torch``, ``jax.numpy``,
``array_api_strict`` …) plus the small set of operations below, which the standard does not have or
which frameworks ship fused kernels for. Each has a *reference* implementation here, written in
array-API terms only, so every namespace runs every architecture as it is. A backend subclasses
:class:`Ops` and overrides an operation with its native kernel (``torch.nn.functional``,
``jax.nn``; ONNX Runtime contrib operators), and keeps an override only where
``benchmarks/models/bench_ops.py`` measures it faster — the same split Keras 3 makes between
``keras.ops`` and ``keras/src/backend/<name>/nn.py``, and scikit-learn's array-API helpers make
between their generic code and per-namespace fast paths.

The operations, each documented on its method:

==================  =========================================================================
``linear``          ``x @ weight.T + bias`` with ``weight`` ``(out, in)`` (PyTorch / Hugging Face layout)
``layer_norm``      normalisation over the last axis, scale and shift
``gelu``            exact (erf) or tanh-approximated GELU
``activation``      an activation by its Hugging Face / Keras name (``relu``, ``gelu``, ``gelu_new`` …)
``softmax``         numerically stable softmax along an axis
``attention``       scaled dot-product attention with an optional additive bias
``attention_bias``  the additive bias that hides padded keys, from an attention mask
``embedding``       rows of a table gathered by integer ids of any shape
``l2_normalize``    ``x / max(‖x‖₂, eps)`` along an axis
``erf``             the error function (not in the array API standard)
==================  =========================================================================

Arrays carry their own dtype: the reference keeps it (float32 in, float32 out; float64 for the
NumPy reference every backend is checked against).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

__all__ = ["ACTIVATION_NAMES", "Ops"]

#: Activation names :meth:`Ops.activation` knows (Hugging Face ``hidden_act`` spellings included).
ACTIVATION_NAMES = ("relu", "gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "tanh", "sigmoid", "identity", "linear")

_SQRT_HALF = math.sqrt(0.5)
_TANH_GELU_SCALE = math.sqrt(2.0 / math.pi)

# Rational approximations of erf / erfc (W. J. Cody's, as in Cephes' ndtr.c): relative error near
# float64's epsilon, from elementary operations only.
_ERF_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3, 7.00332514112805075473e3, 5.55923013010394962768e4)
_ERF_U = (3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3, 2.26290000613890934246e4, 4.92673942608635921086e4)
_ERFC_P = (
    2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0, 4.86371970985681366614e1,
    1.96520832956077098242e2, 5.26445194995477358631e2, 9.34528527171957607540e2, 1.02755188689515710272e3,
    5.57535335369399327526e2,
)
_ERFC_Q = (
    1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2, 9.75708501743205489753e2,
    1.82390916687909736289e3, 2.24633760818710981792e3, 1.65666309194161350182e3, 5.57535340817727675546e2,
)
_ERFC_R = (5.64189583547755073984e-1, 1.27536670759978104416e0, 5.01905042251180477414e0, 6.16021097993053585195e0, 7.40974269950448939160e0, 2.97886665372100240670e0)
_ERFC_S = (2.26052863220117276590e0, 9.39603524938001434673e0, 1.20489539808096656605e1, 1.70814450747565897222e1, 9.60896809063285878198e0, 3.36907645100081516050e0)


def _polevl(x: Any, coefficients: tuple[float, ...]) -> Any:
    """``c0 x^n + … + cn`` (Horner)."""
    out = x * 0.0 + coefficients[0]
    for c in coefficients[1:]:
        out = out * x + c
    return out


def _p1evl(x: Any, coefficients: tuple[float, ...]) -> Any:
    """``x^n + c0 x^(n-1) + … + c(n-1)``: a polynomial with a leading 1."""
    out = x + coefficients[0]
    for c in coefficients[1:]:
        out = out * x + c
    return out


class Ops:
    """Reference implementations of the fused operations, over the array namespace ``xp``.

    A backend overrides a method with its framework's kernel; the signature and the numbers (within
    the dtype's tolerance) must stay the same — the conformance suite and the parity tests compare
    every backend with this class run on NumPy in float64.
    """

    #: Shown in benchmarks and ``repr``: which implementation a backend's ops are.
    name: ClassVar[str] = "reference"

    def __init__(self, xp: Any) -> None:
        self.xp = xp

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} over {getattr(self.xp, '__name__', type(self.xp).__name__)}>"

    # -- dense ------------------------------------------------------------------------------------
    def linear(self, x: Any, weight: Any, bias: Any = None) -> Any:
        """``x @ weight.T + bias``; ``weight`` is ``(out, in)``, ``bias`` ``(out,)`` or ``None``."""
        y = self.xp.matmul(x, self.xp.matrix_transpose(weight))
        return y if bias is None else y + bias

    def layer_norm(self, x: Any, weight: Any, bias: Any, eps: float) -> Any:
        """``(x - mean) / sqrt(var + eps) * weight + bias`` over the last axis (biased variance)."""
        xp = self.xp
        mean = xp.mean(x, axis=-1, keepdims=True)
        centered = x - mean
        var = xp.mean(centered * centered, axis=-1, keepdims=True)
        return centered / xp.sqrt(var + eps) * weight + bias

    # -- activations ------------------------------------------------------------------------------
    def erf(self, x: Any) -> Any:
        """The error function, elementwise (the array API standard has none)."""
        xp = self.xp
        a = xp.abs(x)
        # Each branch sees only inputs in its own range (the others' values are discarded by where,
        # but would overflow on the way there).
        near = xp.where(a < 1.0, x, xp.zeros_like(x))
        z = near * near
        small = near * _polevl(z, _ERF_T) / _p1evl(z, _ERF_U)
        # erfc(|x|) for |x| >= 1, clamped so that exp(-x²) underflows quietly to 0 far out.
        big = xp.where(a < 1.0, xp.ones_like(a), xp.where(a > 30.0, xp.full_like(a, 30.0), a))
        e = xp.exp(-(big * big))
        erfc = xp.where(big < 8.0, e * _polevl(big, _ERFC_P) / _p1evl(big, _ERFC_Q), e * _polevl(big, _ERFC_R) / _p1evl(big, _ERFC_S))
        large = 1.0 - erfc
        return xp.where(a < 1.0, small, xp.where(x < 0, -large, large))

    def gelu(self, x: Any, *, approximate: bool = False) -> Any:
        """GELU: ``x·Φ(x)`` through erf (``approximate=False``, PyTorch's default and Hugging Face's
        ``"gelu"``) or the tanh approximation (``"gelu_new"``, ``"gelu_pytorch_tanh"``)."""
        if approximate:
            return 0.5 * x * (1.0 + self.xp.tanh(_TANH_GELU_SCALE * (x + 0.044715 * (x * x * x))))
        return 0.5 * x * (1.0 + self.erf(x * _SQRT_HALF))

    def relu(self, x: Any) -> Any:
        return self.xp.where(x > 0, x, self.xp.zeros_like(x))

    def sigmoid(self, x: Any) -> Any:
        return 1.0 / (1.0 + self.xp.exp(-x))

    def tanh(self, x: Any) -> Any:
        return self.xp.tanh(x)

    def activation(self, name: str) -> Callable[[Any], Any]:
        """The activation called ``name`` (one of :data:`ACTIVATION_NAMES`) as a function of one array.

        ``gelu`` is the exact form; ``gelu_new``, ``gelu_pytorch_tanh`` and ``gelu_fast`` the tanh
        approximation; ``identity`` and ``linear`` return their input.
        """
        if name == "gelu":
            return self.gelu
        if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
            return lambda x: self.gelu(x, approximate=True)
        if name in ("identity", "linear"):
            return lambda x: x
        if name in ("relu", "tanh", "sigmoid"):
            fn: Callable[[Any], Any] = getattr(self, name)
            return fn
        raise KeyError(f"unknown activation {name!r}; known: {', '.join(ACTIVATION_NAMES)}")

    def softmax(self, x: Any, *, axis: int = -1) -> Any:
        xp = self.xp
        e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
        return e / xp.sum(e, axis=axis, keepdims=True)

    # -- attention --------------------------------------------------------------------------------
    def attention_bias(self, mask: Any, dtype: Any) -> Any:
        """An additive bias ``(batch, 1, 1, keys)`` from a ``(batch, keys)`` 0/1 mask: 0 where the
        mask is 1, the dtype's most negative finite value where it is 0 (a row that is all padding
        then gets uniform attention, never NaN). A backend may return ``None`` when nothing is
        masked (no bias is then added); the reference always returns the array."""
        xp = self.xp
        keep = xp.astype(mask, dtype)
        bias = (1.0 - keep) * float(xp.finfo(dtype).min)
        return xp.reshape(bias, (bias.shape[0], 1, 1, bias.shape[1]))

    def attention(self, q: Any, k: Any, v: Any, *, bias: Any = None, scale: float | None = None) -> Any:
        """``softmax(q @ kᵀ · scale + bias) @ v`` over ``(batch, heads, seq, head_dim)`` arrays.

        ``scale`` defaults to ``1/sqrt(head_dim)``; ``bias`` (``None``, or an array broadcasting to
        ``(batch, heads, queries, keys)``) is added to the scaled scores.
        """
        xp = self.xp
        s = (1.0 / math.sqrt(q.shape[-1])) if scale is None else scale
        scores = xp.matmul(q, xp.matrix_transpose(k)) * s
        if bias is not None:
            scores = scores + bias
        return xp.matmul(self.softmax(scores, axis=-1), v)

    # -- gathers and norms ------------------------------------------------------------------------
    def embedding(self, table: Any, ids: Any) -> Any:
        """``table[ids]``: rows of a ``(rows, width)`` table for integer ids of any shape."""
        xp = self.xp
        flat = xp.take(table, xp.reshape(ids, (-1,)), axis=0)
        return xp.reshape(flat, (*ids.shape, table.shape[-1]))

    def l2_normalize(self, x: Any, *, axis: int = -1, eps: float = 1e-12) -> Any:
        """``x / max(‖x‖₂, eps)`` along ``axis`` (``torch.nn.functional.normalize``)."""
        xp = self.xp
        norm = xp.sqrt(xp.sum(x * x, axis=axis, keepdims=True))
        return x / xp.where(norm > eps, norm, xp.full_like(norm, eps))
