"""Original plan Phase 5 items about torch tensors themselves: operations, indexing, slicing,
broadcasting and autograd on tensors built by the backend, and ``torch.export`` (TorchScript's
successor) models run through ``TorchModel``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inferox.core import AnyModel, DType, ModelMetadata, TensorSpec
from inferox.torch import TorchBackend, TorchModel, TorchTensorBuilder

A = np.arange(12, dtype=np.float32).reshape(3, 4)
B = np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(4, 3)


def test_operations_add_mul_matmul(cpu_builder: TorchTensorBuilder, backend: TorchBackend) -> None:
    a = cpu_builder.from_numpy(A.copy())
    b = cpu_builder.from_numpy(B.copy())
    added = backend.wrap(a.native + a.native)
    assert np.array_equal(added.numpy(), A + A)
    multiplied = backend.wrap(a.native * 3)
    assert np.array_equal(multiplied.numpy(), A * 3)
    product = backend.wrap(a.native @ b.native)
    assert product.shape == (3, 3)
    np.testing.assert_allclose(product.numpy(), A @ B, rtol=1e-6)


def test_indexing_and_slicing_share_memory(cpu_builder: TorchTensorBuilder, backend: TorchBackend) -> None:
    source = A.copy()
    t = cpu_builder.from_numpy(source)
    assert t.native[1, 2].item() == source[1, 2]
    row = backend.wrap(t.native[2])
    assert row.shape == (4,) and np.array_equal(row.numpy(), source[2])
    column = backend.wrap(t.native[:, 1])
    assert np.array_equal(column.numpy(), source[:, 1])
    window = backend.wrap(t.native[1:, ::2])
    assert window.shape == (2, 2) and np.array_equal(window.numpy(), source[1:, ::2])
    # A slice is a view: writing through it changes the numpy array the tensor was built from.
    window.native.fill_(-1)
    assert np.array_equal(source[1:, ::2], np.full((2, 2), -1, np.float32))
    picked = backend.wrap(t.native[torch.tensor([0, 2])])
    assert np.array_equal(picked.numpy(), source[[0, 2]])
    mask = backend.wrap(t.native[t.native > 5])
    assert np.array_equal(mask.numpy(), source[source > 5])


def test_broadcasting(cpu_builder: TorchTensorBuilder, backend: TorchBackend) -> None:
    a = cpu_builder.from_numpy(A.copy())
    row = cpu_builder.from_list([1.0, 2.0, 3.0, 4.0], dtype="f32")
    col = cpu_builder.from_list([[10.0], [20.0], [30.0]], dtype="f32")
    assert np.array_equal(backend.wrap(a.native + row.native).numpy(), A + np.array([1, 2, 3, 4], np.float32))
    assert np.array_equal(backend.wrap(a.native * col.native).numpy(), A * np.array([[10], [20], [30]], np.float32))
    with pytest.raises(RuntimeError):
        _ = a.native + cpu_builder.zeros((3,)).native  # (3, 4) + (3,) does not broadcast


def test_gradient_tracking(cpu_builder: TorchTensorBuilder, backend: TorchBackend) -> None:
    # Built tensors never track gradients: inference inputs must not grow autograd graphs.
    t = cpu_builder.from_numpy(A.copy())
    assert not t.native.requires_grad
    x = t.native.clone().requires_grad_(True)
    (x * x).sum().backward()
    assert x.grad is not None and np.array_equal(x.grad.numpy(), 2 * A)
    # A tensor that requires grad still exports to numpy (detached, same memory).
    exported = backend.to_numpy(x)
    assert exported.__array_interface__["data"][0] == x.data_ptr()


class _Scaled(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 2)
        with torch.no_grad():
            self.lin.weight.copy_(torch.arange(8, dtype=torch.float32).reshape(2, 4) / 10)
            self.lin.bias.fill_(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.lin(x)) * 2


class _ExportedModel(TorchModel):
    """Exported programs take positional arguments, so ``run`` passes ``x`` by position."""

    def run(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.module(inputs["x"])  # type: ignore[no-any-return]


def test_torch_export_program_runs_as_torch_model(backend: TorchBackend) -> None:
    """TorchScript is deprecated; ``torch.export`` is its replacement. An exported program's module
    runs behind TorchModel/AnyModel like any nn.Module, with a dynamic batch dimension."""
    eager = _Scaled().eval()
    batch = torch.export.Dim("batch")
    program = torch.export.export(eager, (torch.ones(2, 4),), dynamic_shapes={"x": {0: batch}})
    model = _ExportedModel(
        program.module(),
        backend=backend,
        metadata=ModelMetadata("exported", architecture="export"),
        input_specs=[TensorSpec("x", DType.F32, (None, 4))],
        output_specs=[TensorSpec("y", DType.F32, (None, 2))],
    )

    x = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    with torch.no_grad():
        expected = eager(torch.from_numpy(x)).numpy()
    out = AnyModel(model).forward_any({"x": x})
    np.testing.assert_allclose(out["y"], expected, rtol=1e-6)
    assert out["y"].shape == (5, 2)
