"""``TorchOps``: the fused operations of :class:`inferox.core.Ops` on PyTorch's native kernels.

Architecture definitions run on ``array_api_compat.torch`` with these operations. Each override
below is kept because ``benchmarks/models/bench_ops.py`` measured it faster than the reference
(array-API) implementation at MiniLM sizes on the CPU (``benchmarks/results/ops.md``); an operation
that is not overridden here runs core's reference on torch tensors. The numbers agree with the
reference within float32 rounding (``tests/torch/test_ops.py``).

* ``linear`` — ``F.linear`` (one GEMM with the bias fused, no transposed copy of the weight): 0.89-0.90x;
* ``layer_norm`` — ``F.layer_norm`` (one fused kernel instead of five passes): 0.28-0.38x;
* ``gelu`` — ``F.gelu`` (exact and tanh; core's erf is a rational approximation in ~30 operations): 0.01-0.06x;
* ``softmax`` — ``torch.softmax``: 0.44x;
* ``attention`` — ``F.scaled_dot_product_attention`` (a fused kernel where torch has one): 0.35-0.57x;
* ``attention_bias`` — ``None`` when nothing is padded, so attention runs without a mask (which
  lets SDPA pick its fastest kernel); the check is one reduction. Alone it costs more (1.3-1.5x of
  building the bias); with the attention it saves, 0.70x at batch 1 x 16 and even at 32 x 128;
* ``embedding`` — ``F.embedding`` (a gather for ids of any shape, no reshapes): 0.51-0.94x;
* ``l2_normalize`` — ``F.normalize``: 0.72x; ``erf``, ``tanh``, ``sigmoid``, ``relu`` — torch's own.

(Ratios: override / reference CPU time, from a short run on a loaded 2-CPU machine; the table the
project keeps is ``benchmarks/results/ops.md``.)
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from inferox.core.ops import Ops

__all__ = ["TorchOps"]


class TorchOps(Ops):
    """:class:`~inferox.core.Ops` with PyTorch kernels (see the module docstring for why each is here)."""

    name: ClassVar[str] = "torch"

    def linear(self, x: Any, weight: Any, bias: Any = None) -> Any:
        return F.linear(x, weight, bias)

    def layer_norm(self, x: Any, weight: Any, bias: Any, eps: float) -> Any:
        return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)

    def erf(self, x: Any) -> Any:
        return torch.erf(x)

    def gelu(self, x: Any, *, approximate: bool = False) -> Any:
        return F.gelu(x, approximate="tanh" if approximate else "none")

    def relu(self, x: Any) -> Any:
        return torch.relu(x)

    def sigmoid(self, x: Any) -> Any:
        return torch.sigmoid(x)

    def tanh(self, x: Any) -> Any:
        return torch.tanh(x)

    def softmax(self, x: Any, *, axis: int = -1) -> Any:
        return torch.softmax(x, dim=axis)

    def attention_bias(self, mask: Any, dtype: Any) -> Any:
        if bool(mask.all()):
            return None
        return super().attention_bias(mask, dtype)

    def attention(self, q: Any, k: Any, v: Any, *, bias: Any = None, scale: float | None = None) -> Any:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)

    def embedding(self, table: Any, ids: Any) -> Any:
        return F.embedding(ids, table)

    def l2_normalize(self, x: Any, *, axis: int = -1, eps: float = 1e-12) -> Any:
        return F.normalize(x, p=2.0, dim=axis, eps=eps)
