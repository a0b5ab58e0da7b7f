"""``JaxOps``: the fused operations of :class:`inferox.core.Ops` on ``jax.nn`` / ``jax.lax``.

Architecture definitions run on ``jax.numpy`` with these operations, traced under ``jax.jit``: XLA
fuses elementwise chains whichever way they are written, so an override is kept only where
``benchmarks/models/bench_ops.py`` measured the compiled operation faster than core's reference at
MiniLM sizes (``benchmarks/results/ops.md``), or where it avoids work the reference cannot:

* ``erf`` / ``gelu`` — ``jax.lax.erf`` and ``jax.nn.gelu`` (one XLA op against core's rational
  approximation of erf, ~30 elementwise operations): 0.86-0.92x of the reference's time;
* ``embedding`` — ``jnp.take`` on ids of any shape (no reshapes around the gather): 0.96-0.98x.

Everything else (``linear``, ``layer_norm``, ``softmax``, ``attention`` …) is core's reference,
compiled: XLA fuses it as well as any hand-written form (an ``rsqrt`` layer norm measured 1.02x, no
faster), and on XLA:CPU plain batched matmuls over a heads-major layout are the fastest attention
measured (``benchmarks/results/jax_ops.md``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from inferox.core.ops import Ops

__all__ = ["JaxOps"]


class JaxOps(Ops):
    """:class:`~inferox.core.Ops` with ``jax.nn`` / ``jax.lax`` kernels (see the module docstring)."""

    name: ClassVar[str] = "jax"

    def erf(self, x: Any) -> Any:
        return jax.lax.erf(x)

    def gelu(self, x: Any, *, approximate: bool = False) -> Any:
        return jax.nn.gelu(x, approximate=approximate)

    def embedding(self, table: Any, ids: Any) -> Any:
        return jnp.take(table, ids, axis=0)
