"""Fixtures for the inferox-torch tests: the backend through discovery, and a tiny linear model."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from inferox.core import DType, ModelMetadata, TensorSpec
from inferox.core.plugins import get_registry, reset_registry
from inferox.torch import TorchBackend, TorchModel


@pytest.fixture
def backend() -> Iterator[TorchBackend]:
    """The torch backend as discovery builds it (through the ``inferox`` entry point)."""
    reset_registry()
    b = get_registry().get_backend("torch")
    assert isinstance(b, TorchBackend)
    yield b
    reset_registry()


@pytest.fixture
def cpu_builder(backend: TorchBackend):  # type: ignore[no-untyped-def]
    return backend.tensor_builder("cpu")


class LinearModel(TorchModel):
    """``y = x @ weight + bias`` through an ``nn.Linear``: the tiny model of these tests."""


def make_linear(backend: TorchBackend, weight: np.ndarray, bias: np.ndarray, *, name: str = "tiny", **options: object) -> LinearModel:
    n_in, n_out = weight.shape
    module = torch.nn.Linear(n_in, n_out)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight.T)))
        module.bias.copy_(torch.from_numpy(bias))

    class _Wrap(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x)

    return LinearModel(
        _Wrap(),
        backend=backend,
        metadata=ModelMetadata(name=name, architecture="linear"),
        input_specs=[TensorSpec("x", DType.F32, (None, n_in))],
        output_specs=[TensorSpec("y", DType.F32, (None, n_out))],
        **options,  # type: ignore[arg-type]
    )
