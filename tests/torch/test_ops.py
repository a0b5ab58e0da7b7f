"""``TorchOps``: each operation torch overrides computes what core's reference operation does, on
torch tensors, within float32 rounding — the conformance suite checks whole architectures, this names
the operation that drifted."""

from __future__ import annotations

import pytest
import torch

from inferox.torch import TorchBackend, TorchOps
from tests.support.op_cases import OP_CASES, check_op


@pytest.fixture(scope="module")
def ops() -> TorchOps:
    ops = TorchBackend().ops()
    assert isinstance(ops, TorchOps) and ops.name == "torch"
    return ops


@pytest.mark.parametrize("case", OP_CASES)
def test_torch_ops_compute_the_reference(ops: TorchOps, case: str) -> None:
    check_op(ops, case, torch.from_numpy, lambda t: t.numpy())


def test_attention_bias_is_dropped_when_nothing_is_padded(ops: TorchOps) -> None:
    assert ops.attention_bias(torch.ones((2, 4), dtype=torch.int64), torch.float32) is None
    bias = ops.attention_bias(torch.tensor([[1, 1, 0]]), torch.float32)
    assert bias.shape == (1, 1, 1, 3) and float(bias[0, 0, 0, 2]) == torch.finfo(torch.float32).min
