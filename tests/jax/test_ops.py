"""``JaxOps``: each operation jax overrides computes what core's reference operation does, on jax
arrays, within float32 rounding — the conformance suite checks whole architectures, this names the
operation that drifted."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from inferox.jax import JaxBackend, JaxOps
from tests.support.op_cases import OP_CASES, check_op


@pytest.fixture(scope="module")
def ops() -> JaxOps:
    ops = JaxBackend().ops()
    assert isinstance(ops, JaxOps) and ops.name == "jax"
    return ops


@pytest.mark.parametrize("case", OP_CASES)
def test_jax_ops_compute_the_reference(ops: JaxOps, case: str) -> None:
    check_op(ops, case, jnp.asarray, np.asarray)


def test_attention_bias_is_always_an_array_under_jit(ops: JaxOps) -> None:
    # jax cannot branch on a mask's values while tracing: the reference bias, never None.
    bias = ops.attention_bias(jnp.ones((2, 4), dtype=jnp.int32), jnp.float32)
    assert bias.shape == (2, 1, 1, 4) and float(bias.max()) == 0.0
