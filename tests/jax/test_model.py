"""JaxModel: AnyModel round trip, shape buckets and compile counting, params, errors, close."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import monitoring
from safetensors.numpy import save_file

from inferox.core import (
    AnyModel,
    BackendError,
    DeviceUnavailableError,
    DType,
    DTypeError,
    InvalidInputError,
    Model,
    ModelMetadata,
    OutOfMemoryError,
    TensorSpec,
    TypeMismatchError,
)
from inferox.core.errors import PackageFormatError, PackageNotFoundError, ServiceUnavailableError
from inferox.core.testing import NotTheModel
from inferox.jax import BucketPolicy, JaxBackend, JaxModel, load_params
from inferox.jax.model import cast_params

from .conftest import LinearModel, MaskedMeanModel, make_linear, make_masked

NO_X64 = pytest.mark.skipif(jax.config.jax_enable_x64, reason="checks the default (no 64-bit mode) rule")

# Every executable XLA builds in this process (the model's, and any eager op's), from JAX's own
# monitoring events: a listener cannot be removed, so it only appends to this list.
_XLA_COMPILES: list[str] = []
monitoring.register_event_duration_secs_listener(
    lambda name, _secs, **_kw: _XLA_COMPILES.append(name) if name == "/jax/core/compile/backend_compile_duration" else None
)


@pytest.fixture
def weights() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal(2).astype(np.float32)


# -- the AnyModel face ---------------------------------------------------------------------------------------
def test_any_model_round_trip_and_downcast(backend: JaxBackend, weights) -> None:
    w, b = weights
    model = make_linear(backend, w, b, name="lin")
    any_model = AnyModel(model)
    assert any_model.backend_name == "jax" and any_model.name == "lin" and str(any_model.device) == "cpu"
    x = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    out = any_model.forward_any({"x": x})
    assert out["y"].dtype == np.float32 and out["y"].shape == (5, 2)
    np.testing.assert_allclose(out["y"], x @ w + b, rtol=1e-5, atol=1e-6)
    native = any_model.forward_any(x, return_native=True)
    assert isinstance(native["y"], jax.Array) and native["y"].shape == (5, 2)
    assert any_model.downcast(LinearModel) is model
    assert any_model.downcast(JaxModel) is model and any_model.downcast(Model) is model
    with pytest.raises(TypeMismatchError) as ei:
        any_model.downcast(MaskedMeanModel)
    assert ei.value.code == "TYPE_MISMATCH" and ei.value.expected == "MaskedMeanModel" and ei.value.actual == "LinearModel"
    with pytest.raises(TypeMismatchError) as ei:
        any_model.downcast(NotTheModel)
    assert ei.value.actual == "LinearModel"
    assert model.text_encoder is None
    assert repr(model) == "<LinearModel 'lin' on jax:cpu>"


def test_forward_accepts_host_arrays(backend: JaxBackend, weights) -> None:
    w, b = weights
    model = make_linear(backend, w, b)
    out = model.forward({"x": np.ones((2, 3), np.float32)})
    np.testing.assert_allclose(np.asarray(out["y"]), np.ones((2, 3)) @ w + b, rtol=1e-5)


# -- buckets --------------------------------------------------------------------------------------------------
def test_calls_within_one_batch_bucket_compile_once(backend: JaxBackend, weights) -> None:
    w, b = weights
    model = make_linear(backend, w, b, buckets=BucketPolicy(batch=(1, 8, 16)))
    any_model = AnyModel(model)
    rng = np.random.default_rng(5)
    for n in (2, 5, 7, 8, 3):
        x = rng.standard_normal((n, 3)).astype(np.float32)
        out = any_model.forward_any({"x": x})
        assert out["y"].shape == (n, 2)
        np.testing.assert_allclose(out["y"], x @ w + b, rtol=1e-5, atol=1e-6)
    assert model.traces == 1 and model.compile_count == 1
    assert model.compiled_shapes == [(("x", (8, 3), "float32"),)]
    any_model.forward_any({"x": np.zeros((9, 3), np.float32)})  # next bucket: 16
    any_model.forward_any({"x": np.zeros((1, 3), np.float32)})  # bucket 1
    assert model.traces == 3 and model.compile_count == 3
    any_model.forward_any({"x": np.zeros((33, 3), np.float32)})  # past the last bucket: a multiple of 16 (48)
    assert (("x", (48, 3), "float32"),) in model.compiled_shapes


def test_no_xla_compile_at_all_inside_a_warm_bucket(backend: JaxBackend, weights) -> None:
    """Padding and un-padding must not compile per shape either (eager jnp.pad / slicing would, ~0.1 s each)."""
    w, b = weights
    linear = AnyModel(make_linear(backend, w, b, buckets=BucketPolicy(batch=(8,))))
    masked = AnyModel(make_masked(backend))
    linear.forward_any({"x": np.ones((1, 3), np.float32)})
    masked.forward_any({"input_ids": np.ones((1, 3), np.int64), "attention_mask": np.ones((1, 3), np.int64)})
    before = len(_XLA_COMPILES)
    rng = np.random.default_rng(3)
    for n, seq in [(2, 4), (5, 7), (8, 2), (3, 8), (1, 5)]:
        x = rng.standard_normal((n, 3)).astype(np.float32)
        np.testing.assert_allclose(linear.forward_any({"x": x})["y"], x @ w + b, rtol=1e-5, atol=1e-6)
        ids = rng.integers(0, 10, size=(min(n, 2), seq))
        out = masked.forward_any({"input_ids": ids, "attention_mask": np.ones_like(ids)}, return_native=True)
        assert out["tokens"].shape == ids.shape and out["pooled"].shape == (ids.shape[0], 2)
    assert len(_XLA_COMPILES) == before, f"{len(_XLA_COMPILES) - before} XLA compilations inside warm buckets"


def test_empty_batch(backend: JaxBackend, weights) -> None:
    w, b = weights
    out = AnyModel(make_linear(backend, w, b)).forward_any({"x": np.zeros((0, 3), np.float32)})
    assert out["y"].shape == (0, 2)


def test_without_bucketing_each_shape_compiles(backend: JaxBackend, weights) -> None:
    class Exact(LinearModel):
        default_bucketing = False

    w, b = weights
    model = Exact(n_in=3, n_out=2, backend=backend, metadata=ModelMetadata("exact"), params={"w": w, "b": b})
    for n in (2, 3, 3, 4):
        assert model.forward({"x": jnp.ones((n, 3), jnp.float32)})["y"].shape == (n, 2)
    assert model.traces == 3 and model.compile_count == 3


def test_sequence_padding_is_neutral_and_compiles_once(backend: JaxBackend) -> None:
    model = make_masked(backend)
    any_model = AnyModel(model)
    table = np.arange(20, dtype=np.float32).reshape(10, 2)
    rng = np.random.default_rng(9)
    for batch, seq in [(1, 3), (2, 5), (2, 8), (1, 7)]:  # all inside buckets batch 2, seq 8
        ids = rng.integers(1, 10, size=(batch, seq), dtype=np.int64)
        mask = np.ones((batch, seq), np.int64)
        mask[:, -1] = 0  # a real padding position inside the request
        out = any_model.forward_any({"input_ids": ids, "attention_mask": mask})
        emb = table[ids]
        expected = (emb * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        assert out["pooled"].shape == (batch, 2) and out["tokens"].shape == (batch, seq)
        np.testing.assert_allclose(out["pooled"], expected, rtol=1e-6)
        np.testing.assert_allclose(out["tokens"], emb[..., 0] * mask, rtol=1e-6)
    assert model.traces == 1 and model.compile_count == 1
    ids_dtype = "int64" if jax.config.jax_enable_x64 else "int32"  # i64 token ids are narrowed without x64
    assert model.compiled_shapes[0] == (("attention_mask", (2, 8), ids_dtype), ("input_ids", (2, 8), ids_dtype))
    any_model.forward_any({"input_ids": np.ones((3, 9), np.int64), "attention_mask": np.ones((3, 9), np.int64)})
    assert model.compile_count == 2 and (("attention_mask", (4, 16), ids_dtype), ("input_ids", (4, 16), ids_dtype)) in model.compiled_shapes


@NO_X64
def test_token_ids_out_of_int32_range_are_refused(backend: JaxBackend) -> None:
    any_model = AnyModel(make_masked(backend))
    with pytest.raises(DTypeError) as ei:
        any_model.forward_any({"input_ids": np.array([[2**31]], np.int64), "attention_mask": np.ones((1, 1), np.int64)})
    assert ei.value.code == "INVALID_DTYPE" and "2147483648" in ei.value.actual


def test_batched_inputs_must_agree(backend: JaxBackend) -> None:
    model = make_masked(backend)
    with pytest.raises(InvalidInputError) as ei:
        model.forward({"input_ids": jnp.ones((2, 4), jnp.int32), "attention_mask": jnp.ones((3, 4), jnp.int32)})
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == "attention_mask"
    assert ei.value.expected == 2 and ei.value.actual == 3


def test_warmup_compiles_the_common_buckets(backend: JaxBackend, weights) -> None:
    w, b = weights
    model = make_linear(backend, w, b, buckets=BucketPolicy(batch=(1, 4, 8), warmup_batch=(1, 3, 8)))
    model.warmup()
    assert model.compile_count == 3 and model.traces == 3
    for n in (1, 2, 4, 6, 8):
        model.forward({"x": jnp.ones((n, 3), jnp.float32)})
    assert model.compile_count == 3 and model.traces == 3, "a warmed-up bucket compiled again"

    masked = make_masked(backend, buckets=BucketPolicy(batch=(2, 4), sequence=(8, 16), warmup_batch=(1, 4), warmup_sequence=(8, 16)))
    masked.warmup()
    assert masked.compile_count == 4
    ids = backend.as_native(np.ones((3, 10), np.int64), dtype="i64")
    masked.forward({"input_ids": ids, "attention_mask": ids})
    assert masked.compile_count == 4


def test_warmup_skips_unguessable_dynamic_dims(backend: JaxBackend) -> None:
    class Ragged(JaxModel):
        @property
        def input_specs(self) -> Sequence[TensorSpec]:
            return [TensorSpec("x", DType.F32, (None, None))]  # non-batch dim with no pad value

        @property
        def output_specs(self) -> Sequence[TensorSpec]:
            return [TensorSpec("y", DType.F32, (None,))]

        def apply(self, params: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
            return {"y": inputs["x"].sum(axis=1) * params["s"]}

    model = Ragged(backend=backend, metadata=ModelMetadata("ragged"), params={"s": np.float32(2.0)})
    assert list(model.warmup_inputs()) == []
    model.warmup()
    assert model.compile_count == 0
    out = model.forward({"x": jnp.ones((3, 5), jnp.float32)})["y"]
    assert out.shape == (3,) and np.asarray(out).tolist() == [10.0, 10.0, 10.0]


def test_concurrent_calls_compile_once(backend: JaxBackend, weights) -> None:
    w, b = weights
    model = make_linear(backend, w, b, buckets=BucketPolicy(batch=(16,)))
    errors: list[BaseException] = []

    def call(n: int) -> None:
        try:
            model.forward({"x": jnp.ones((n, 3), jnp.float32)})
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(n,)) for n in (3, 5, 9, 12, 16, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and model.compile_count == 1 and model.traces == 1


@pytest.mark.parametrize(
    "n,expected",
    [(0, 0), (1, 1), (3, 4), (4, 4), (5, 8), (8, 8), (9, 16), (17, 24), (40, 40), (41, 48)],
)
def test_bucket_rounding(n: int, expected: int) -> None:
    """Up to the next bucket; past the last one, up to a multiple of it."""
    assert BucketPolicy(batch=(1, 2, 4, 8)).batch_bucket(n) == expected


def test_sequence_bucket_respects_max_sequence() -> None:
    policy = BucketPolicy(sequence=(16, 32, 512), max_sequence=300)
    assert policy.sequence_bucket(10) == 16 and policy.sequence_bucket(33) == 300 and policy.sequence_bucket(300) == 300
    assert policy.sequence_bucket(301) == 512  # already over the limit: the model's own check reports it
    assert BucketPolicy(batch=(), sequence=()).batch_bucket(5) == 5


@pytest.mark.parametrize("bad", [(4, 2), (0, 1), (1, 1), (1.5,), (True,)])
def test_bucket_policy_validation(bad: tuple) -> None:
    with pytest.raises(InvalidInputError) as ei:
        BucketPolicy(batch=bad)
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == "batch" and ei.value.actual == bad


# -- parameters -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,itemsize", [(None, 4), ("f32", 4), ("f16", 2), (DType.BF16, 2)])
def test_dtype_at_load_and_memory(backend: JaxBackend, weights, dtype, itemsize: int) -> None:
    w, b = weights
    model = make_linear(backend, w, b, dtype=dtype)
    assert model.memory_requirements() == (w.size + b.size) * itemsize
    assert all(leaf.dtype.itemsize == itemsize for leaf in jax.tree_util.tree_leaves(model.params))
    assert all(backend.device_of(leaf) == model.device for leaf in jax.tree_util.tree_leaves(model.params))
    y = model.forward({"x": jnp.ones((2, 3), dtype=model.params["w"].dtype)})["y"]
    np.testing.assert_allclose(np.asarray(y, np.float32), np.ones((2, 3)) @ w + b, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("dtype", ["i32", "u8", "bool"])
def test_non_float_param_dtype_is_refused(backend: JaxBackend, weights, dtype: str) -> None:
    w, b = weights
    with pytest.raises(DTypeError) as ei:
        make_linear(backend, w, b, dtype=dtype)
    assert ei.value.code == "INVALID_DTYPE" and ei.value.name == "dtype" and ei.value.actual == dtype
    assert ei.value.expected.startswith("f32, f16, bf16")


@NO_X64
def test_f64_params_without_x64(backend: JaxBackend, weights) -> None:
    w, b = weights
    with pytest.raises(DTypeError) as ei:
        make_linear(backend, w, b, dtype="f64")
    assert ei.value.code == "INVALID_DTYPE" and ei.value.actual == "f64"
    # f64 weights with no dtype asked for load as f32 (documented default), never silently by JAX.
    model = make_linear(backend, w.astype(np.float64), b.astype(np.float64))
    assert model.params["w"].dtype == jnp.float32


def test_unavailable_device_at_load(backend: JaxBackend, weights) -> None:
    if backend.is_device_available("tpu:0"):
        pytest.skip("this machine has a TPU")
    with pytest.raises(DeviceUnavailableError) as ei:
        make_linear(backend, *weights, device="tpu:0")
    assert ei.value.code == "DEVICE_UNAVAILABLE" and ei.value.device == "tpu:0"


def test_load_params_from_safetensors(tmp_path, backend: JaxBackend) -> None:
    path = tmp_path / "w.safetensors"
    save_file({"w": np.arange(6, dtype=np.float32).reshape(2, 3), "ids": np.arange(3, dtype=np.int64), "h": np.ones(2, np.float16)}, str(path))
    params = load_params(path, dtype="bf16", device=backend.jax_device("cpu"))
    assert params["w"].dtype == jnp.bfloat16 and params["h"].dtype == jnp.bfloat16
    assert np.asarray(params["w"], np.float32).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert params["ids"].dtype == (jnp.int64 if jax.config.jax_enable_x64 else jnp.int32) and params["ids"].tolist() == [0, 1, 2]
    as_stored = load_params(str(path))
    assert as_stored["h"].dtype == jnp.float16 and as_stored["w"].dtype == jnp.float32


@NO_X64
def test_load_params_int64_out_of_range(backend: JaxBackend) -> None:
    with pytest.raises(DTypeError) as ei:
        load_params({"ids": np.array([2**40], np.int64)})
    assert ei.value.code == "INVALID_DTYPE" and "1099511627776" in ei.value.actual


def test_load_params_errors(tmp_path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(PackageNotFoundError) as ei:
        load_params(missing)
    assert ei.value.code == "PACKAGE_NOT_FOUND" and ei.value.path == str(missing)
    corrupt = tmp_path / "bad.safetensors"
    corrupt.write_bytes(b"\xff" * 20)
    with pytest.raises(PackageFormatError) as ei:
        load_params(corrupt)
    assert ei.value.code == "PACKAGE_FORMAT_ERROR" and ei.value.path == str(corrupt) and ei.value.field == "weights"
    with pytest.raises(InvalidInputError) as ei:
        load_params(42)  # type: ignore[arg-type]
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == "weights" and ei.value.actual == "int"
    with pytest.raises(DTypeError) as ei:
        load_params({}, dtype="i8")
    assert ei.value.code == "INVALID_DTYPE" and ei.value.actual == "i8"


def test_cast_params_only_touches_floats() -> None:
    tree = {"w": jnp.ones(2, jnp.float32), "n": [jnp.arange(2, dtype=jnp.int32)]}
    out = cast_params(tree, "f16")
    assert out["w"].dtype == jnp.float16 and out["n"][0].dtype == jnp.int32


# -- errors and lifecycle ------------------------------------------------------------------------------------------
def test_shape_mismatched_matmul_is_a_backend_error(backend: JaxBackend) -> None:
    """The spec says 4 features but the weight has 3 rows: JAX's own TypeError, wrapped with its cause."""
    w = np.ones((3, 2), np.float32)
    model = LinearModel(n_in=4, n_out=2, backend=backend, metadata=ModelMetadata("broken"), params={"w": w, "b": np.zeros(2, np.float32)})
    for call in (lambda: AnyModel(model).forward_any({"x": np.ones((2, 4), np.float32)}), lambda: model.forward({"x": jnp.ones((2, 4), jnp.float32)})):
        with pytest.raises(BackendError) as ei:
            call()
        err = ei.value
        assert type(err) is BackendError and err.code == "BACKEND_ERROR"
        assert err.backend == "jax" and err.model == "broken"
        assert isinstance(err.__cause__, TypeError) and "dot_general" in str(err.__cause__)


def test_out_of_memory_inside_a_model(backend: JaxBackend) -> None:
    class Greedy(LinearModel):
        def apply(self, params: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
            y = inputs["x"] @ params["w"]
            # A 128 TiB output XLA must really allocate (an intermediate could be folded away).
            return {"y": y, "huge": jnp.zeros((1 << 45,), jnp.float32) + y.sum()}

    model = Greedy(n_in=3, n_out=2, backend=backend, metadata=ModelMetadata("greedy"), params={"w": np.ones((3, 2), np.float32)})
    with pytest.raises(OutOfMemoryError) as ei:
        jax.block_until_ready(AnyModel(model).forward_any({"x": np.ones((1, 3), np.float32)}, return_native=True))
    assert ei.value.code == "OUT_OF_MEMORY" and ei.value.backend == "jax" and ei.value.model == "greedy"
    assert ei.value.__cause__ is not None


def test_apply_must_return_a_dict(backend: JaxBackend) -> None:
    class NotDict(LinearModel):
        def apply(self, params: Any, inputs: Mapping[str, Any]) -> Any:
            return inputs["x"] @ params["w"]

    model = NotDict(n_in=3, n_out=2, backend=backend, metadata=ModelMetadata("nd"), params={"w": np.ones((3, 2), np.float32)})
    with pytest.raises(BackendError) as ei:
        model.forward({"x": jnp.ones((1, 3), jnp.float32)})
    assert ei.value.code == "BACKEND_ERROR" and ei.value.model == "nd" and "dict" in str(ei.value)


def test_close(backend: JaxBackend, weights) -> None:
    model = make_linear(backend, *weights)
    model.forward({"x": jnp.ones((1, 3), jnp.float32)})
    assert model.compile_count == 1 and not model.closed
    model.close()
    assert model.closed and model.params is None and model.compiled_shapes == [] and model.memory_requirements() == 0
    for call in (lambda: model.forward({"x": jnp.ones((1, 3), jnp.float32)}), model.warmup):
        with pytest.raises(ServiceUnavailableError) as ei:
            call()
        assert ei.value.code == "UNAVAILABLE" and "closed" in str(ei.value)
