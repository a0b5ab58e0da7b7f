"""Model, ModelMetadata, AnyModel and prepare_inputs: every validation path, on real numpy models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from inferox_numpy.backend import NumpyBackend

from inferox.core import (
    AnyModel,
    BackendError,
    DeviceId,
    DType,
    DTypeError,
    InvalidInputError,
    Model,
    ModelMetadata,
    OutOfMemoryError,
    TensorSpec,
    TypeMismatchError,
)
from inferox.core.model import prepare_inputs
from tests.support.linear_model import LinearModel


class TokensModel(Model):
    """Two required integer inputs, one optional float input; checks ids against a vocabulary."""

    vocab = 100

    @property
    def input_specs(self) -> Sequence[TensorSpec]:
        return [
            TensorSpec("ids", DType.I64, (None, None), pad_value=0),
            TensorSpec("mask", DType.I32, (None, None), pad_value=0),
            TensorSpec("scale", DType.F32, (1,), optional=True),
        ]

    @property
    def output_specs(self) -> Sequence[TensorSpec]:
        return [TensorSpec("masked", DType.F32, (None, None))]

    def check_inputs(self, inputs: Mapping[str, Any]) -> None:
        ids = np.asarray(inputs["ids"])
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab):
            raise InvalidInputError("token id out of vocabulary", name="ids", expected=f"[0, {self.vocab})", actual=f"[{ids.min()}, {ids.max()}]")

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        scale = inputs.get("scale", np.ones(1, np.float32))
        return {"masked": (inputs["ids"] * inputs["mask"]).astype(np.float32) * scale}


class ExplodingModel(LinearModel):
    """Raises what a framework raises under memory pressure, and plain framework errors."""

    error: BaseException = RuntimeError("boom")

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        raise self.error


@pytest.fixture
def tokens(backend: NumpyBackend) -> AnyModel:
    return AnyModel(TokensModel(backend=backend, metadata=ModelMetadata("tokens", architecture="toy", description="d", parameters=0, extra={"k": 1})))


@pytest.fixture
def linear(backend: NumpyBackend) -> AnyModel:
    weight = np.arange(6, dtype=np.float32).reshape(3, 2)
    return AnyModel(LinearModel(backend=backend, metadata=ModelMetadata("lin"), weight=weight, bias=np.array([1.0, -1.0], np.float32)))


def test_model_accessors(tokens: AnyModel, backend: NumpyBackend) -> None:
    model = tokens.model
    assert model.name == tokens.name == "tokens"
    assert model.metadata is tokens.metadata
    assert model.device == tokens.device == DeviceId.cpu()
    assert tokens.backend is backend and tokens.backend_name == "numpy"
    assert [s.name for s in tokens.input_specs] == ["ids", "mask", "scale"]
    assert [s.name for s in tokens.output_specs] == ["masked"]
    assert tokens.memory_requirements() == 0
    assert model.warmup() is None and model.close() is None
    assert repr(model) == "<TokensModel 'tokens' on numpy:cpu>"
    assert repr(tokens) == "AnyModel(<TokensModel 'tokens' on numpy:cpu>)"
    assert tokens.metadata.to_dict() == {"name": "tokens", "architecture": "toy", "version": "1", "description": "d", "parameters": 0, "extra": {"k": 1}}


def test_forward_valid_inputs(tokens: AnyModel) -> None:
    ids = np.array([[1, 2, 3]], np.int64)
    mask = np.array([[1, 1, 0]], np.int32)
    out = tokens.forward_any({"ids": ids, "mask": mask})
    assert out["masked"].tolist() == [[1.0, 2.0, 0.0]]
    # Lists are judged by value; safe casts (i8 → i64, i16 → i32) are applied; optional inputs work.
    out = tokens.forward_any({"ids": [[4, 5]], "mask": np.array([[1, 1]], np.int16), "scale": [2.0]})
    assert out["masked"].tolist() == [[8.0, 10.0]]
    out = tokens.forward_any({"ids": np.array([[7]], np.int8), "mask": [[1]], "scale": None})
    assert out["masked"].tolist() == [[7.0]]


def test_linear_forward_and_native_outputs(linear: AnyModel) -> None:
    x = np.array([[1.0, 0.0, 2.0]], np.float32)
    expected = x @ np.arange(6, dtype=np.float32).reshape(3, 2) + np.array([1.0, -1.0], np.float32)
    assert np.array_equal(linear(x)["y"], expected)
    native = linear.forward_any({"x": x}, return_native=True)
    assert isinstance(native["y"], np.ndarray) and np.array_equal(native["y"], expected)
    assert linear.memory_requirements() == 6 * 4 + 2 * 4
    prepared = linear.prepare({"x": x})
    natives = linear.to_native(prepared)
    assert np.array_equal(linear.outputs_to_numpy(linear.forward_native(natives))["y"], expected)


def test_dlpack_only_inputs_are_read_through_numpy(linear: AnyModel) -> None:
    class Producer:
        """Only the DLPack protocol (no .shape / .dtype), as some array libraries expose."""

        def __init__(self, arr: np.ndarray) -> None:
            self._arr = arr

        def __dlpack__(self, *args: Any, **kwargs: Any) -> Any:
            return self._arr.__dlpack__(*args, **kwargs)

        def __dlpack_device__(self) -> Any:
            return self._arr.__dlpack_device__()

    x = np.ones((2, 3), np.float32)
    assert linear.forward_any({"x": Producer(x)})["y"].shape == (2, 2)
    with pytest.raises(DTypeError) as ei:
        linear.forward_any({"x": Producer(x.astype(np.float64))})
    assert (ei.value.code, ei.value.name, ei.value.expected, ei.value.actual) == ("INVALID_DTYPE", "x", "f32", "f64")


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("inputs", "cls", "code", "name", "expected", "actual"),
    [
        ({"ids": [[1]], "mask": [[1]], "bogus": [1]}, InvalidInputError, "INVALID_INPUT", "bogus", ["ids", "mask", "scale"], ["bogus", "ids", "mask"]),
        ({"ids": [[1]]}, InvalidInputError, "INVALID_INPUT", "mask", ["ids", "mask"], ["ids"]),
        ({"ids": np.zeros((1, 2, 3), np.int64), "mask": [[1]]}, InvalidInputError, "INVALID_INPUT", "ids", "(?, ?)", (1, 2, 3)),
        ({"ids": [[1]], "mask": [[1]], "scale": [1.0, 2.0]}, InvalidInputError, "INVALID_INPUT", "scale", "(1,)", (2,)),
        ({"ids": np.zeros((1, 1), np.float32), "mask": [[1]]}, DTypeError, "INVALID_DTYPE", "ids", "i64", "f32"),
        ({"ids": np.zeros((1, 1), np.uint64), "mask": [[1]]}, DTypeError, "INVALID_DTYPE", "ids", "i64", "u64"),
        ({"ids": [[1, 2], [3]], "mask": [[1]]}, InvalidInputError, "INVALID_INPUT", "ids", "a rectangular array of i64", "ragged or non-numeric data"),
        ({"ids": [[1]], "mask": [[2**31]]}, InvalidInputError, "INVALID_INPUT", "mask", f"i32 in [{-(2**31)}, {2**31 - 1}]", f"[{2**31}, {2**31}]"),
        ({"ids": [[1.5]], "mask": [[1]]}, DTypeError, "INVALID_DTYPE", "ids", "i64", "float values"),
        ({"ids": [["a"]], "mask": [[1]]}, InvalidInputError, "INVALID_INPUT", "ids", "a rectangular array of i64", "array of <U1"),
        ({"ids": np.zeros((1, 1), np.complex64), "mask": [[1]]}, DTypeError, "INVALID_DTYPE", "ids", "i64", "complex64"),
        ({"ids": [[100]], "mask": [[1]]}, InvalidInputError, "INVALID_INPUT", "ids", "[0, 100)", "[100, 100]"),
    ],
    ids=["unknown", "missing", "rank", "fixed-dim", "unsafe-dtype", "u64-to-i64", "ragged", "out-of-range", "non-integral", "strings", "unsupported-dtype", "model-check"],
)
def test_invalid_inputs(tokens: AnyModel, inputs: dict[str, Any], cls: type[InvalidInputError], code: str, name: str, expected: Any, actual: Any) -> None:
    calls: list[int] = []
    original = tokens.model.forward
    tokens.model.forward = lambda x: calls.append(1) or original(x)  # type: ignore[method-assign]
    with pytest.raises(cls) as ei:
        tokens.forward_any(inputs)
    err = ei.value
    assert type(err) is cls
    assert (err.code, err.name, err.expected, err.actual) == (code, name, expected, actual)
    assert calls == [], "validation errors never reach the model"


def test_positional_input_needs_a_single_required_input(tokens: AnyModel) -> None:
    with pytest.raises(InvalidInputError) as ei:
        tokens.forward_any(np.zeros((1, 1), np.int64))
    err = ei.value
    assert (err.code, err.expected, err.actual) == ("INVALID_INPUT", ["ids", "mask", "scale"], "ndarray")
    assert "takes named inputs" in str(err)


def test_prepare_inputs_reports_the_batch_index(tokens: AnyModel) -> None:
    with pytest.raises(InvalidInputError) as ei:
        prepare_inputs(tokens.input_specs, {"ids": [[1]], "mask": [[1, 2]], "scale": [[1.0]]}, model_name="tokens", index=3)
    assert ei.value.index == 3 and ei.value.name == "scale" and str(ei.value).startswith("item 3:")
    with pytest.raises(InvalidInputError) as ei:
        tokens.prepare([[1]], index=5)
    assert ei.value.index == 5


def test_prepare_keeps_typed_arrays_as_they_came(tokens: AnyModel) -> None:
    ids = np.array([[1, 2]], np.int64)
    prepared = tokens.prepare({"ids": ids, "mask": [[1, 0]]})
    assert prepared["ids"] is ids
    assert prepared["mask"].dtype == np.int32


def test_construct_any_model_from_non_model() -> None:
    with pytest.raises(TypeMismatchError) as ei:
        AnyModel(object())  # type: ignore[arg-type]
    assert (ei.value.code, ei.value.expected, ei.value.actual) == ("TYPE_MISMATCH", "Model", "object")


def test_downcast(tokens: AnyModel, linear: AnyModel) -> None:
    assert tokens.downcast(TokensModel) is tokens.model
    assert linear.downcast(LinearModel) is linear.model
    assert linear.downcast(Model) is linear.model
    with pytest.raises(TypeMismatchError) as ei:
        tokens.downcast(LinearModel)
    err = ei.value
    assert (err.code, err.expected, err.actual) == ("TYPE_MISMATCH", "LinearModel", "TokensModel")
    assert "numpy" in str(err) and "tokens" in str(err)
    assert isinstance(err, TypeError)


def test_framework_errors_are_wrapped_with_the_cause(backend: NumpyBackend) -> None:
    model = ExplodingModel(backend=backend, metadata=ModelMetadata("boom"), weight=np.ones((2, 1), np.float32), bias=np.zeros(1, np.float32))
    any_model = AnyModel(model)
    with pytest.raises(BackendError) as ei:
        any_model.forward_any({"x": np.ones((1, 2), np.float32)})
    err = ei.value
    assert (err.code, err.backend, err.model) == ("BACKEND_ERROR", "numpy", "boom")
    assert err.__cause__ is model.error
    assert "RuntimeError" in str(err) and "boom" in str(err)
    model.error = MemoryError("host exhausted")
    with pytest.raises(OutOfMemoryError) as ei2:
        any_model.forward_any({"x": np.ones((1, 2), np.float32)})
    assert (ei2.value.code, ei2.value.backend, ei2.value.model) == ("OUT_OF_MEMORY", "numpy", "boom")
    assert isinstance(ei2.value.__cause__, MemoryError)


def test_real_numpy_failure_inside_forward_is_a_backend_error(linear: AnyModel, backend: NumpyBackend) -> None:
    with pytest.raises(BackendError) as ei:
        linear.forward_native({"x": np.ones((2, 5), np.float32)})  # matmul shape error inside numpy
    assert ei.value.code == "BACKEND_ERROR" and ei.value.model == "lin"
    assert isinstance(ei.value.__cause__, ValueError)
    with pytest.raises(BackendError) as ei:
        linear.forward_native({})  # the model reads a missing key: a KeyError inside "the framework"
    assert isinstance(ei.value.__cause__, KeyError)
