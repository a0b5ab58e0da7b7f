"""Fixtures for the inferox-onnx tests: the backend through discovery, and a tiny linear ONNX model."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from inferox.core import DType, ModelMetadata, TensorSpec
from inferox.core.plugins import get_registry, reset_registry
from inferox.onnx import GraphBuilder, OnnxBackend, OnnxModel


@pytest.fixture
def backend() -> Iterator[OnnxBackend]:
    """The onnx backend as discovery builds it (through the ``inferox`` entry point)."""
    reset_registry()
    b = get_registry().get_backend("onnx")
    assert isinstance(b, OnnxBackend)
    yield b
    reset_registry()


@pytest.fixture
def cpu_builder(backend: OnnxBackend):  # type: ignore[no-untyped-def]
    return backend.tensor_builder("cpu")


class LinearModel(OnnxModel):
    """``y = x @ weight + bias`` as one MatMul and one Add: the tiny model of these tests."""


def linear_graph(weight: np.ndarray, bias: np.ndarray):  # type: ignore[no-untyped-def]
    g = GraphBuilder("linear")
    x = g.input("x", DType.F32, ["batch", weight.shape[0]])
    y = g.op("Add", [g.op("MatMul", [x, g.const("weight", weight.astype(np.float32))]), g.const("bias", bias.astype(np.float32))])
    g.rename_output(y, "y")
    g.output("y", DType.F32, ["batch", weight.shape[1]])
    return g.build()


def make_linear(backend: OnnxBackend, weight: np.ndarray, bias: np.ndarray, *, name: str = "tiny", **options: object) -> LinearModel:
    n_in, n_out = weight.shape
    return LinearModel(
        linear_graph(weight, bias),
        backend=backend,
        metadata=ModelMetadata(name=name, architecture="linear"),
        input_specs=[TensorSpec("x", DType.F32, (None, n_in))],
        output_specs=[TensorSpec("y", DType.F32, (None, n_out))],
        **options,  # type: ignore[arg-type]
    )
