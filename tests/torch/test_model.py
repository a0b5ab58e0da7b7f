"""TorchModel: forward under inference mode, error wrapping, AnyModel, dtype/threads options,
weights loading, memory and close."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from inferox.core import (
    AnyModel,
    BackendError,
    ConfigError,
    DeviceId,
    DeviceUnavailableError,
    DType,
    DTypeError,
    InvalidInputError,
    Model,
    ModelMetadata,
    ServiceUnavailableError,
    TensorSpec,
    TypeMismatchError,
)
from inferox.core.errors import PackageFormatError, PackageNotFoundError
from inferox.torch import TorchBackend, TorchModel, load_state_dict, resolve_load_dtype, set_threads

from .conftest import LinearModel, make_linear

RNG = np.random.default_rng(42)
W = RNG.standard_normal((4, 3)).astype(np.float32)
B = RNG.standard_normal(3).astype(np.float32)


@pytest.fixture
def model(backend: TorchBackend) -> Iterator[LinearModel]:
    m = make_linear(backend, W, B)
    yield m
    m.close()


@pytest.fixture
def restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_forward_computes_x_w_plus_b(model: LinearModel) -> None:
    x = RNG.standard_normal((5, 4)).astype(np.float32)
    out = model.forward({"x": torch.from_numpy(x)})
    assert set(out) == {"y"}
    np.testing.assert_allclose(out["y"].numpy(), x @ W + B, rtol=1e-5, atol=1e-5)
    assert out["y"].is_inference()  # ran under torch.inference_mode(): no autograd graph
    assert not out["y"].requires_grad


def test_accessors(model: LinearModel, backend: TorchBackend) -> None:
    assert model.name == "tiny" and model.metadata.architecture == "linear"
    assert model.backend is backend and model.device == DeviceId.cpu()
    assert [s.name for s in model.input_specs] == ["x"] and [s.name for s in model.output_specs] == ["y"]
    assert isinstance(model.module, torch.nn.Module) and not model.module.training
    assert all(not p.requires_grad for p in model.module.parameters())
    assert model.torch_device == torch.device("cpu")
    assert repr(model) == "<LinearModel 'tiny' on torch:cpu>"


def test_bad_matmul_inside_forward_is_backend_error(model: LinearModel) -> None:
    with pytest.raises(BackendError) as ei:
        model.forward({"x": torch.ones(2, 7)})
    err = ei.value
    assert type(err) is BackendError and err.code == "BACKEND_ERROR"
    assert err.backend == "torch" and err.model == "tiny"
    assert type(err.__cause__) is RuntimeError and "cannot be multiplied" in str(err.__cause__)


def test_any_model_round_trip_and_downcast(model: LinearModel) -> None:
    any_model = AnyModel(model)
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    out = any_model.forward_any({"x": x})
    assert isinstance(out["y"], np.ndarray) and out["y"].dtype == np.float32
    np.testing.assert_allclose(out["y"], x @ W + B, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(any_model(x.tolist())["y"], x @ W + B, rtol=1e-5, atol=1e-5)
    native = any_model.forward_any({"x": torch.from_numpy(x)}, return_native=True)
    assert isinstance(native["y"], torch.Tensor)
    assert any_model.downcast(LinearModel) is model
    assert any_model.downcast(TorchModel) is model
    assert any_model.memory_requirements() == (4 * 3 + 3) * 4

    class OtherTorchModel(TorchModel):
        pass

    with pytest.raises(TypeMismatchError) as ei:
        any_model.downcast(OtherTorchModel)
    assert ei.value.code == "TYPE_MISMATCH"
    assert ei.value.expected.endswith("OtherTorchModel") and ei.value.actual == "LinearModel"


def test_invalid_input_never_reaches_torch(model: LinearModel) -> None:
    any_model = AnyModel(model)
    with pytest.raises(InvalidInputError) as ei:
        any_model.forward_any({"x": np.zeros((2, 5), np.float32)})
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == "x"
    assert ei.value.expected == "(?, 4)" and ei.value.actual == (2, 5)
    with pytest.raises(DTypeError) as ei:
        any_model.forward_any({"x": torch.zeros(2, 4, dtype=torch.float64)})
    assert ei.value.code == "INVALID_DTYPE" and ei.value.name == "x" and ei.value.actual == "f64"


def test_safe_integer_input_is_cast_to_spec_dtype(model: LinearModel) -> None:
    out = AnyModel(model).forward_any({"x": np.ones((1, 4), np.int16)})
    np.testing.assert_allclose(out["y"], np.ones((1, 4), np.float32) @ W + B, rtol=1e-5)


@pytest.mark.parametrize(("dtype", "torch_dtype"), [("f16", torch.float16), ("bf16", torch.bfloat16), (DType.F32, torch.float32)])
def test_load_dtype(backend: TorchBackend, dtype: str, torch_dtype: torch.dtype) -> None:
    model = make_linear(backend, W, B, dtype=dtype)
    assert all(p.dtype == torch_dtype for p in model.module.parameters())
    assert model.load_dtype is DType.parse(dtype)
    x = torch.ones(2, 4, dtype=torch_dtype)
    y = model.forward({"x": x})["y"]
    assert y.dtype == torch_dtype
    tol = 1e-5 if torch_dtype == torch.float32 else 5e-2
    np.testing.assert_allclose(y.float().numpy(), np.ones((2, 4)) @ W + B, rtol=tol, atol=tol)
    assert model.memory_requirements() == 15 * torch_dtype.itemsize


def test_load_dtype_keeps_integer_buffers(backend: TorchBackend) -> None:
    class WithIds(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)
            self.register_buffer("position_ids", torch.arange(8))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x) + self.position_ids[:2].to(x.dtype)

    model = TorchModel(
        WithIds(),
        backend=backend,
        metadata=ModelMetadata("ids"),
        input_specs=[TensorSpec("x", "f16", (None, 2))],
        output_specs=[TensorSpec("y", "f16", (None, 2))],
        dtype="f16",
    )
    assert model.module.position_ids.dtype == torch.int64
    assert model.module.lin.weight.dtype == torch.float16
    assert model.memory_requirements() == 6 * 2 + 8 * 8


@pytest.mark.parametrize("bad", ["i32", "f64", "u8"])
def test_load_dtype_refuses_non_float16_32(backend: TorchBackend, bad: str) -> None:
    with pytest.raises(DTypeError) as ei:
        make_linear(backend, W, B, dtype=bad)
    assert ei.value.code == "INVALID_DTYPE"
    assert ei.value.name == "dtype" and ei.value.actual == bad and ei.value.expected == "f32, f16, bf16"
    assert resolve_load_dtype(None) is None


def test_threads_option_is_process_wide(backend: TorchBackend, restore_threads: None) -> None:
    make_linear(backend, W, B, threads=1)
    assert torch.get_num_threads() == 1
    set_threads(None)
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("bad", [0, -2, 1.5, "4", True])
def test_threads_option_must_be_positive_int(backend: TorchBackend, bad: object, restore_threads: None) -> None:
    with pytest.raises(ConfigError) as ei:
        make_linear(backend, W, B, threads=bad)
    assert ei.value.code == "INVALID_CONFIG"
    assert ei.value.field == "threads" and ei.value.value == bad


def test_unavailable_device_at_load(backend: TorchBackend) -> None:
    absent = f"cuda:{torch.cuda.device_count() + 1}"
    with pytest.raises(DeviceUnavailableError) as ei:
        make_linear(backend, W, B, device=absent)
    assert ei.value.code == "DEVICE_UNAVAILABLE" and ei.value.device == absent


class _Double(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


def test_constructor_checks_module_and_backend(backend: TorchBackend) -> None:
    specs = {"input_specs": [TensorSpec("x", "f32", (None, 1))], "output_specs": [TensorSpec("y", "f32", (None, 1))]}
    with pytest.raises(ConfigError) as ei:
        TorchModel(lambda x: x, backend=backend, metadata=ModelMetadata("m"), **specs)  # type: ignore[arg-type]
    assert ei.value.code == "INVALID_CONFIG" and ei.value.field == "module" and ei.value.value == "function"

    class FakeBackend(TorchBackend):
        name = "jaxish"

    with pytest.raises(ConfigError) as ei:
        TorchModel(torch.nn.Identity(), backend=FakeBackend(), metadata=ModelMetadata("m"), **specs)
    assert ei.value.field == "backend" and ei.value.value == "jaxish"
    # No backend given: a TorchBackend is made.
    default = TorchModel(_Double(), metadata=ModelMetadata("m"), **specs)
    assert isinstance(default.backend, TorchBackend)
    assert default.forward({"x": torch.ones(1, 1)})["y"].tolist() == [[2.0]]


class _Pair(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x + 1, x * 2


def _pair_model(backend: TorchBackend, outputs: list[str]) -> TorchModel:
    return TorchModel(
        _Pair(),
        backend=backend,
        metadata=ModelMetadata("pair"),
        input_specs=[TensorSpec("x", "f32", (None,))],
        output_specs=[TensorSpec(n, "f32", (None,)) for n in outputs],
    )


def test_outputs_named_from_tuple_and_dict(backend: TorchBackend) -> None:
    out = _pair_model(backend, ["plus", "times"]).forward({"x": torch.tensor([1.0, 2.0])})
    assert out["plus"].tolist() == [2.0, 3.0] and out["times"].tolist() == [2.0, 4.0]

    class DictModel(TorchModel):
        def run(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {"y": inputs["x"] - 1}

    dm = DictModel(
        torch.nn.Identity(), backend=backend, metadata=ModelMetadata("d"),
        input_specs=[TensorSpec("x", "f32", (None,))], output_specs=[TensorSpec("y", "f32", (None,))],
    )
    assert dm.forward({"x": torch.tensor([5.0])})["y"].tolist() == [4.0]


def test_output_count_mismatch_is_backend_error(backend: TorchBackend) -> None:
    with pytest.raises(BackendError) as ei:
        _pair_model(backend, ["only"]).forward({"x": torch.tensor([1.0])})
    assert ei.value.code == "BACKEND_ERROR" and ei.value.model == "pair" and ei.value.backend == "torch"
    assert "2 value(s)" in str(ei.value) and "only" in str(ei.value)


def test_forward_puts_a_training_module_back_in_eval(model: LinearModel) -> None:
    model.module.train()
    model.forward({"x": torch.zeros(1, 4)})
    assert not model.module.training


def test_example_inputs_and_warmup(model: LinearModel) -> None:
    example = model.example_inputs(batch=3)
    assert example["x"].shape == (3, 4) and example["x"].dtype == torch.float32
    model.warmup()


def test_example_inputs_skip_optional(backend: TorchBackend) -> None:
    m = TorchModel(
        torch.nn.Identity(),
        backend=backend,
        metadata=ModelMetadata("opt"),
        input_specs=[TensorSpec("x", "i64", (None, None)), TensorSpec("mask", "i64", (None, None), optional=True)],
        output_specs=[TensorSpec("y", "i64", (None, None))],
    )
    assert set(m.example_inputs()) == {"x"} and m.example_inputs()["x"].shape == (1, 1)


def test_close_frees_and_is_idempotent(backend: TorchBackend) -> None:
    model = make_linear(backend, W, B)
    assert model.memory_requirements() == 60
    model.close()
    assert model.closed
    model.close()
    with pytest.raises(ServiceUnavailableError) as ei:
        model.forward({"x": torch.zeros(1, 4)})
    assert ei.value.code == "UNAVAILABLE" and "tiny" in str(ei.value)


# -- weights ---------------------------------------------------------------------------------------
def _weights(w: np.ndarray = W, b: np.ndarray = B) -> dict[str, np.ndarray]:
    return {"linear.weight": np.ascontiguousarray(w.T), "linear.bias": b}


def test_load_weights_from_safetensors_file(backend: TorchBackend, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = make_linear(backend, np.zeros_like(W), np.zeros_like(B))
    path = tmp_path / "model.safetensors"
    save_file(_weights(), str(path))
    model.load_weights(path)
    x = np.ones((1, 4), np.float32)
    np.testing.assert_allclose(model.forward({"x": torch.from_numpy(x)})["y"].numpy(), x @ W + B, rtol=1e-5)


def test_load_weights_from_mapping_with_prefix(backend: TorchBackend) -> None:
    model = make_linear(backend, np.zeros_like(W), np.zeros_like(B))
    model.load_weights({f"model.{k}": v for k, v in _weights().items()}, prefix="model.")
    assert np.allclose(model.module.linear.bias.numpy(), B)
    model.load_weights({"linear.bias": torch.zeros(3)}, strict=False)
    assert model.module.linear.bias.tolist() == [0.0, 0.0, 0.0]


def test_load_weights_missing_unexpected_and_shape(backend: TorchBackend, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = make_linear(backend, W, B)
    with pytest.raises(PackageFormatError) as ei:
        model.load_weights({"linear.weight": W.T})
    assert ei.value.code == "PACKAGE_FORMAT_ERROR" and ei.value.field == "linear.bias"
    with pytest.raises(PackageFormatError) as ei:
        model.load_weights({**_weights(), "extra": np.zeros(1, np.float32)})
    assert ei.value.field == "extra"
    path = tmp_path / "bad.safetensors"
    save_file(_weights(w=np.zeros((5, 3), np.float32)), str(path))
    with pytest.raises(PackageFormatError) as ei:
        model.load_weights(path)
    assert ei.value.field == "linear.weight" and ei.value.path == str(path)
    assert "(3, 5)" in str(ei.value) and "(3, 4)" in str(ei.value)


def test_load_state_dict_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(PackageNotFoundError) as ei:
        load_state_dict(missing)
    assert ei.value.code == "PACKAGE_NOT_FOUND" and ei.value.path == str(missing)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(PackageFormatError) as ei:
        load_state_dict(corrupt)
    assert ei.value.code == "PACKAGE_FORMAT_ERROR" and ei.value.path == str(corrupt)


def test_model_is_an_inferox_model(model: LinearModel) -> None:
    assert isinstance(model, Model)
