"""The conformance suite checks numbers: a backend whose mlp or bert is subtly wrong fails, with a
message naming the output and the largest difference.

The backend here is a real NumPy backend built on core's ArrayBackend, registered in-process; its
models compute with core's NumPy references, correct or deliberately broken (a wrong activation, a
transposed weight, an ignored attention mask)."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from inferox.core import (
    CONTRACT_VERSION,
    ArrayBackend,
    Backend,
    BackendSpec,
    ConfigError,
    DeviceId,
    DType,
    DTypeError,
    Model,
    ModelMetadata,
    PluginRegistry,
    TensorSpec,
    hookimpl,
)
from inferox.core.testing import (
    TANH_GELU,
    TOLERANCES,
    ArchitectureMismatch,
    BackendConformance,
    bert_reference,
    check_architecture,
    checked_architectures,
    gelu_exact,
    gelu_sensitivity,
    gelu_tanh,
    mlp_reference,
    native_input_outputs,
    refused_dtype_error,
)

Reference = Callable[..., dict[str, np.ndarray]]


class RefBackend(ArrayBackend):
    name = "refnp"
    xp = np


class SchemaModel(Model):
    """A model that computes with a (possibly broken) NumPy function, with the schema's specs."""

    def __init__(self, *, backend: Backend, metadata: ModelMetadata, specs: tuple[list[TensorSpec], list[TensorSpec]], run: Callable[[Mapping[str, Any]], dict[str, np.ndarray]]) -> None:
        super().__init__(backend=backend, metadata=metadata, device=DeviceId.cpu())
        self._specs, self._run = specs, run

    @property
    def input_specs(self) -> Sequence[TensorSpec]:
        return self._specs[0]

    @property
    def output_specs(self) -> Sequence[TensorSpec]:
        return self._specs[1]

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        return self._run(inputs)


def registry_with(
    architecture: str,
    compute: Callable[[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any], dict[str, Any]], dict[str, np.ndarray]],
    *,
    dtype_check: bool = True,
) -> PluginRegistry:
    """A registry where backend ``refnp`` implements ``architecture`` with ``compute(config, weights, inputs, options)``."""
    registry = PluginRegistry()

    def factory(*, backend: Backend, config: Mapping[str, Any], weights: Mapping[str, Any], metadata: ModelMetadata, device: Any = None, dtype: Any = None, **options: Any) -> Model:
        if dtype_check and dtype is not None and DType.parse(dtype) is not DType.F32:
            raise DTypeError("refnp models compute in f32 only", name="dtype", expected="f32", actual=str(dtype))
        schema = registry.schema(architecture)
        specs = schema.specs(config, options.get("preprocessing", {}))
        return SchemaModel(backend=backend, metadata=metadata, specs=specs, run=lambda inputs: compute(config, weights, inputs, options))

    plugin = types.ModuleType("refnp_plugin")
    plugin.inferox_contract_version = hookimpl(lambda: CONTRACT_VERSION)  # type: ignore[attr-defined]
    plugin.inferox_register_backends = hookimpl(lambda register: register(BackendSpec("refnp", loader=f"{__name__}:RefBackend")))  # type: ignore[attr-defined]
    plugin.inferox_register_architectures = hookimpl(lambda register: register("refnp", architecture, factory))  # type: ignore[attr-defined]
    registry.register_plugin(plugin, name="refnp")
    return registry


def correct(reference: Reference) -> Callable[..., dict[str, np.ndarray]]:
    return lambda config, weights, inputs, options: reference(config, weights, inputs, **options)


@pytest.mark.parametrize(("architecture", "reference"), [("mlp", mlp_reference), ("bert", bert_reference)])
def test_a_correct_backend_passes(architecture: str, reference: Reference) -> None:
    registry = registry_with(architecture, correct(reference))
    backend = registry.get_backend("refnp")
    assert checked_architectures("refnp", registry) == [architecture]
    report = check_architecture(backend, architecture, registry=registry)
    assert report.architecture == architecture and report.dtype is DType.F32
    expected_outputs = {"mlp": {"output"}, "bert": {"last_hidden_state", "pooler_output", "sentence_embedding"}}[architecture]
    assert set(report.max_differences) == expected_outputs
    assert all(d <= TOLERANCES[DType.F32][0] for d in report.max_differences.values())


def test_wrong_activation_fails_naming_the_output() -> None:
    # The example mlp uses the exact GELU; this backend uses the tanh approximation instead.
    def tanh_gelu(config: Mapping[str, Any], weights: Mapping[str, Any], inputs: Mapping[str, Any], options: dict[str, Any]) -> dict[str, np.ndarray]:
        x = np.asarray(inputs["input"], np.float64)
        n = len(config["layer_sizes"]) - 1
        for i in range(n):
            x = x @ np.asarray(weights[f"layers.{i}.weight"], np.float64).T + np.asarray(weights[f"layers.{i}.bias"], np.float64)
            if i < n - 1:
                x = gelu_tanh(x)
        return {"output": x.astype(np.float32)}

    registry = registry_with("mlp", tanh_gelu)
    with pytest.raises(ArchitectureMismatch) as ei:
        check_architecture(registry.get_backend("refnp"), "mlp", registry=registry)
    err = ei.value
    assert isinstance(err, AssertionError)
    assert err.architecture == "mlp" and err.output == "output"
    assert TOLERANCES[DType.F32][0] < err.max_difference < 0.1  # small, but far beyond f32's tolerance
    assert "output 'output' differs from the reference by up to" in str(err) and "architecture 'mlp' on backend 'refnp'" in str(err)
    assert f"{err.max_difference:.3g}" in str(err)


def test_transposed_weight_fails_naming_the_output() -> None:
    def transposed(config: Mapping[str, Any], weights: Mapping[str, Any], inputs: Mapping[str, Any], options: dict[str, Any]) -> dict[str, np.ndarray]:
        w = dict(weights)
        w["layers.0.weight"] = np.ascontiguousarray(np.asarray(w["layers.0.weight"]).T)  # square: no shape error, wrong numbers
        return mlp_reference(config, w, inputs)

    registry = registry_with("mlp", transposed)
    with pytest.raises(ArchitectureMismatch) as ei:
        check_architecture(registry.get_backend("refnp"), "mlp", registry=registry)
    assert ei.value.output == "output" and ei.value.max_difference > 1e-2
    assert f"differs from the reference by up to {ei.value.max_difference:.3g}" in str(ei.value)


def test_missing_attention_mask_fails_naming_the_output() -> None:
    def unmasked(config: Mapping[str, Any], weights: Mapping[str, Any], inputs: Mapping[str, Any], options: dict[str, Any]) -> dict[str, np.ndarray]:
        return bert_reference(config, weights, {k: v for k, v in inputs.items() if k != "attention_mask"}, **options)

    registry = registry_with("bert", unmasked)
    with pytest.raises(ArchitectureMismatch) as ei:
        check_architecture(registry.get_backend("refnp"), "bert", registry=registry)
    err = ei.value
    # Padding leaks into every token of the padded row and, through mean pooling, into its embedding:
    # the message names whichever output differs most, with that difference.
    assert err.architecture == "bert" and err.output in {"last_hidden_state", "pooler_output", "sentence_embedding"}
    assert err.max_difference > 1e-3
    assert f"output {err.output!r} differs from the reference by up to {err.max_difference:.3g} at index (1, " in str(err)


def test_a_missing_output_or_wrong_dtype_fails() -> None:
    registry = registry_with("mlp", lambda c, w, i, o: {})
    with pytest.raises(ArchitectureMismatch, match="output 'output' is missing"):
        check_architecture(registry.get_backend("refnp"), "mlp", registry=registry)
    registry = registry_with("mlp", lambda c, w, i, o: {k: v.astype(np.float64) for k, v in mlp_reference(c, w, i).items()})
    with pytest.raises(ArchitectureMismatch, match="output 'output' has dtype float64, its spec declares f32"):
        check_architecture(registry.get_backend("refnp"), "mlp", registry=registry)


def test_gelu_reference_is_the_exact_erf_form() -> None:
    x = np.array([-3.0, -1.0, 0.0, 0.5, 2.0])
    # Φ(x) from erf, checked against known values of x·Φ(x).
    np.testing.assert_allclose(gelu_exact(x), [-0.0040496, -0.1586553, 0.0, 0.3457312, 1.9544997], atol=1e-6)
    assert np.max(np.abs(gelu_exact(x) - gelu_tanh(x))) > 1e-4  # the two forms differ measurably


def test_a_wrong_shape_fails_and_an_architecture_without_reference_is_refused() -> None:
    registry = registry_with("mlp", lambda c, w, i, o: {k: v[:, :2] for k, v in mlp_reference(c, w, i).items()})
    backend = registry.get_backend("refnp")
    with pytest.raises(ArchitectureMismatch, match=r"output 'output' has shape \(3, 2\), the reference \(3, 3\)"):
        check_architecture(backend, "mlp", registry=registry)
    # Neither a reference nor a definition to run as one: numbers cannot be checked.
    registry.register_plugin(_schema_plugin(dataclasses.replace(registry.schema("mlp"), name="noref", model_types=(), reference=None, definition=None)), name="noref")
    with pytest.raises(ConfigError) as ei:
        check_architecture(backend, "noref", registry=registry)
    assert ei.value.code == "INVALID_CONFIG" and ei.value.field == "reference" and "'noref' has no reference implementation" in str(ei.value)
    assert checked_architectures("refnp", registry) == ["mlp"]


def test_the_dtype_check_sees_a_factory_that_ignores_dtype() -> None:
    registry = registry_with("mlp", correct(mlp_reference))
    backend = registry.get_backend("refnp")
    err = refused_dtype_error(backend, "mlp", registry=registry)
    assert isinstance(err, DTypeError) and err.name == "dtype"
    registry = registry_with("mlp", correct(mlp_reference), dtype_check=False)
    assert refused_dtype_error(registry.get_backend("refnp"), "mlp", registry=registry) is None  # accepted i32: the suite reports it


def _schema_plugin(schema: Any) -> types.ModuleType:
    plugin = types.ModuleType("schema_only")
    plugin.inferox_contract_version = hookimpl(lambda: CONTRACT_VERSION)  # type: ignore[attr-defined]
    plugin.inferox_register_schemas = hookimpl(lambda register: register(schema))  # type: ignore[attr-defined]
    return plugin


# -- the sensitivity probe: can the numbers check catch a tanh GELU at all? ---------------------------------
@pytest.mark.parametrize("architecture", ["mlp", "bert"])
def test_the_standard_examples_separate_exact_from_tanh_gelu(architecture: str) -> None:
    schema = PluginRegistry().schema(architecture)
    found = gelu_sensitivity(schema)
    assert found is not None and found.fields == (("activation",) if architecture == "mlp" else ("hidden_act",))
    atol = TOLERANCES[DType.F32][0]
    assert found.separates, f"a tanh-GELU {architecture} would pass the numbers check: {found.max_differences}"
    assert max(found.max_differences.values()) > 3 * atol  # with margin, not by a hair


def suite_registry(schema: Any) -> PluginRegistry:
    """A registry where backend 'refnp' (a plugin of the current contract) implements ``schema`` correctly."""
    registry = PluginRegistry()
    reference = schema.load_reference()

    def factory(*, backend: Backend, config: Mapping[str, Any], weights: Mapping[str, Any], metadata: ModelMetadata, device: Any = None, dtype: Any = None, **options: Any) -> Model:
        specs = schema.specs(config, options.get("preprocessing", {}))
        return SchemaModel(backend=backend, metadata=metadata, specs=specs, run=lambda inputs: reference(config, weights, inputs, **options))

    plugin = _schema_plugin(schema)
    plugin.inferox_register_backends = hookimpl(lambda register: register(BackendSpec("refnp", loader=f"{__name__}:RefBackend")))  # type: ignore[attr-defined]
    plugin.inferox_register_implementations = hookimpl(lambda register: register("refnp", schema.name, factory))  # type: ignore[attr-defined]
    registry.register_plugin(plugin, name="refnp")
    return registry


class Suite(BackendConformance):
    backend_name = "refnp"


def test_an_example_too_weak_to_show_a_tanh_gelu_fails_the_probe() -> None:
    # bert's example at the old weight scale, 0.2: a tanh-GELU bert stayed within f32's tolerance.
    weak = dataclasses.replace(PluginRegistry().schema("bert"), name="weakbert", model_types=(), example_weight_scale=0.2)
    found = gelu_sensitivity(weak)
    assert found is not None and not found.separates and found.separating == ()
    registry = suite_registry(weak)
    backend = registry.get_backend("refnp")
    Suite().test_architecture_numbers(backend=backend, registry=registry)  # passes: the numbers check cannot see it …
    with pytest.raises(pytest.fail.Exception) as ei:
        Suite().test_example_weights_separate_exact_from_tanh_gelu(backend=backend, registry=registry)  # … the probe says so
    text = str(ei.value)
    assert text.startswith("architecture 'weakbert' (plugin 'refnp'): on the conformance example the tanh GELU moves the reference by at most ")
    assert "within the f32 tolerance atol=5e-05, rtol=0.0001: a backend using it would pass; raise the schema's example_weight_scale (0.2)" in text
    strong = suite_registry(dataclasses.replace(weak, name="strongbert", example_weight_scale=0.5))
    Suite().test_example_weights_separate_exact_from_tanh_gelu(backend=strong.get_backend("refnp"), registry=strong)


def test_the_probe_needs_a_tanh_spelling_and_skips_architectures_without_gelu() -> None:
    mlp = PluginRegistry().schema("mlp")

    def exact_only(config: Mapping[str, Any]) -> Any:
        if config.get("activation") != "gelu":
            raise ConfigError("only the exact GELU", field="activation", value=config.get("activation"))
        return mlp.parse(config)

    no_tanh = dataclasses.replace(mlp, name="exactmlp", model_types=(), parse=exact_only)
    with pytest.raises(ConfigError) as ei:
        gelu_sensitivity(no_tanh)
    assert (ei.value.code, ei.value.field, ei.value.value) == ("INVALID_CONFIG", "activation", TANH_GELU)
    registry = suite_registry(no_tanh)
    with pytest.raises(pytest.fail.Exception, match="architecture 'exactmlp': the tanh GELU cannot be swapped in to probe the example: activation: only the exact GELU"):
        Suite().test_example_weights_separate_exact_from_tanh_gelu(backend=registry.get_backend("refnp"), registry=registry)
    relu = dataclasses.replace(mlp, name="relumlp", model_types=(), example_config={**mlp.example_config, "activation": "relu"})
    assert gelu_sensitivity(relu) is None  # nothing to probe
    registry = suite_registry(relu)
    Suite().test_example_weights_separate_exact_from_tanh_gelu(backend=registry.get_backend("refnp"), registry=registry)


# -- native inputs --------------------------------------------------------------------------------------------
class BoxedDType:
    """A dtype object of an array library that core cannot read by name (it prints as ``boxed.float32``)."""

    def __init__(self, dtype: np.dtype[Any]) -> None:
        self.numpy = dtype

    def __repr__(self) -> str:
        return f"boxed.{self.numpy}"


class Boxed:
    """The native array of a minimal array library: numpy inside, its own dtype objects outside."""

    def __init__(self, value: Any) -> None:
        self.array = np.asarray(value)

    shape = property(lambda self: self.array.shape)
    dtype = property(lambda self: BoxedDType(self.array.dtype))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.array if dtype is None else self.array.astype(dtype)

    def __matmul__(self, other: Any) -> np.ndarray:
        return self.array @ other


class BoxedBackend(ArrayBackend):
    name = "boxed"
    xp = types.SimpleNamespace(asarray=Boxed, from_dlpack=lambda obj: Boxed(np.from_dlpack(obj)), __version__="0")


def test_native_inputs_a_backend_cannot_take_fail_the_suite() -> None:
    from tests.support.linear_model import LinearModel

    class BoxedSuite(BackendConformance):
        backend_name = "boxed"

        def make_tiny_model(self, backend: Backend, weight: np.ndarray, bias: np.ndarray) -> Model:
            return LinearModel(backend=backend, metadata=ModelMetadata("tiny"), weight=weight, bias=bias)

    registry = PluginRegistry()
    plugin = types.ModuleType("boxed_plugin")
    plugin.inferox_contract_version = hookimpl(lambda: CONTRACT_VERSION)  # type: ignore[attr-defined]
    plugin.inferox_register_backends = hookimpl(lambda register: register(BackendSpec("boxed", loader=f"{__name__}:BoxedBackend")))  # type: ignore[attr-defined]
    registry.register_plugin(plugin, name="boxed")
    backend = registry.get_backend("boxed")
    any_model, weight, bias = BoxedSuite().tiny_any_model(backend)
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(any_model.forward_any({"x": x})["y"], x @ weight + bias, rtol=1e-6)  # numpy inputs work …
    with pytest.raises(pytest.fail.Exception) as ei:
        BoxedSuite().test_native_inputs(backend=backend, registry=registry)  # … the backend's own arrays do not
    assert str(ei.value).startswith("tiny model with a native input: DTypeError: ") and "boxed.float32" in str(ei.value)


def test_native_inputs_give_the_numbers_of_numpy_inputs() -> None:
    registry = registry_with("bert", correct(bert_reference))
    from_numpy, from_native = native_input_outputs(registry.get_backend("refnp"), "bert", registry=registry)
    assert set(from_numpy) == {"last_hidden_state", "pooler_output", "sentence_embedding"}
    for name, want in from_numpy.items():
        np.testing.assert_array_equal(from_native[name], want)
