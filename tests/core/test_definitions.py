"""Architecture definitions: the registry's generic factory, the plan every backend loads from, the
eager model array backends get, the reference, and a backend with no architecture code at all —
an ``ArrayBackend`` over ``array_api_strict`` (nothing but the standard) running ``mlp`` and ``bert``."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferox.core import (
    AnyModel,
    ArrayBackend,
    BackendSpec,
    Definition,
    DefinitionModel,
    DType,
    ModelMetadata,
    PluginRegistry,
    hookimpl,
    random_weights,
)
from inferox.core.backend import Backend
from inferox.core.definition import DefinitionPlan, array_leaves, definition_factory, map_arrays, preprocessing_from_options
from inferox.core.errors import (
    ArchitectureNotFoundError,
    BackendError,
    ConfigError,
    DTypeError,
    InvalidInputError,
    PackageFormatError,
    ServiceUnavailableError,
)
from inferox.core.model import prepare_inputs

xps = pytest.importorskip("array_api_strict", reason="array-api-strict checks that definitions use the standard only")


class StrictBackend(ArrayBackend):
    """An array-API library with nothing beyond the standard: the backend is two declarations."""

    name = "strict"
    xp = xps
    dtypes = frozenset({DType.BOOL, DType.I8, DType.I16, DType.I32, DType.I64, DType.U8, DType.U16, DType.U32, DType.U64, DType.F32, DType.F64})


def plugin(name: str, *, definitions: bool = True, loader: str = f"{__name__}:StrictBackend", factories: dict[str, Any] | None = None) -> types.ModuleType:
    module = types.ModuleType(f"plugin_{name}")
    module.inferox_contract_version = hookimpl(lambda: "1.2")  # type: ignore[attr-defined]
    module.inferox_register_backends = hookimpl(lambda register: register(BackendSpec(name, loader=loader, definitions=definitions)))  # type: ignore[attr-defined]
    if factories:
        module.inferox_register_architectures = hookimpl(lambda register: [register(name, a, f) for a, f in factories.items()])  # type: ignore[attr-defined]
    return module


@pytest.fixture
def registry() -> PluginRegistry:
    reg = PluginRegistry()
    reg.register_plugin(plugin("strict"), name="strict")
    return reg


def example(registry: PluginRegistry, arch: str, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    schema = registry.schema(arch)
    config, pre = dict(schema.example_config), dict(schema.example_preprocessing)
    rng = np.random.default_rng(seed)
    return config, pre, random_weights(schema, config, rng, scale=schema.example_weight_scale), schema.golden(config, pre, rng)


# -- the registry's generic factory ---------------------------------------------------------------------------
def test_a_definition_backend_runs_every_architecture_with_a_definition(registry: PluginRegistry) -> None:
    assert registry.architectures("strict") == {a: ["strict"] for a in registry.schema_names()}
    assert registry.backends_for("roberta") == ["strict"]
    factory = registry.architecture_factory("strict", "MLP")
    assert factory.__name__ == "create_mlp"
    # model types count as for every registry lookup
    assert registry.architecture_factory("strict", "xlm-roberta").__name__ == "create_xlm_roberta"


def test_a_registered_factory_wins_and_a_plain_backend_gets_none(registry: PluginRegistry) -> None:
    def mine(**kwargs: Any) -> Any:
        return "mine"

    registry.register_plugin(plugin("owns", factories={"mlp": mine}), name="owns")
    assert registry.architecture_factory("owns", "mlp") is mine
    registry.register_plugin(plugin("plain", definitions=False, factories={"mlp": mine}), name="plain")
    assert registry.architectures("plain") == {"mlp": ["plain"]}
    with pytest.raises(ArchitectureNotFoundError) as ei:
        registry.architecture_factory("plain", "bert")
    err = ei.value
    assert err.code == "ARCHITECTURE_NOT_FOUND" and err.architecture == "bert" and err.backend == "plain"
    assert err.available == ["owns", "strict"]
    nodef = dataclasses.replace(registry.schema("mlp"), name="nodef", model_types=(), definition=None)
    schema_only = types.ModuleType("schema_only")
    schema_only.inferox_contract_version = hookimpl(lambda: "1.2")  # type: ignore[attr-defined]
    schema_only.inferox_register_schemas = hookimpl(lambda register: register(nodef))  # type: ignore[attr-defined]
    registry.register_plugin(schema_only, name="nodef")
    assert "nodef" not in registry.architectures("strict") and registry.backends_for("nodef") == []
    with pytest.raises(ArchitectureNotFoundError):
        registry.architecture_factory("strict", "nodef")


def test_a_backend_without_a_namespace_runs_no_definition(registry: PluginRegistry) -> None:
    class Plain(ArrayBackend):
        name = "plain"
        xp = np

        def array_namespace(self, device: Any = None) -> Any:
            return None

    be = Plain()
    with pytest.raises(BackendError) as ei:
        be.ops()
    assert ei.value.code == "BACKEND_ERROR" and ei.value.backend == "plain" and "no array namespace" in str(ei.value)
    config, _pre, weights, _ = example(registry, "mlp")
    with pytest.raises(ArchitectureNotFoundError) as ei2:
        definition_factory(registry.schema("mlp"))(backend=be, config=config, weights=weights, metadata=ModelMetadata("m"))
    assert ei2.value.architecture == "mlp" and ei2.value.backend == "plain"


# -- an array-API backend with no architecture code ----------------------------------------------------------
@pytest.mark.parametrize("arch", ["mlp", "bert", "distilbert", "roberta", "mpnet", "electra"])
def test_the_strict_backend_runs_the_architectures_with_the_reference_numbers(registry: PluginRegistry, arch: str) -> None:
    config, pre, weights, inputs = example(registry, arch)
    backend = registry.get_backend("strict")
    model = registry.architecture_factory("strict", arch)(backend=backend, config=config, weights=weights, metadata=ModelMetadata(arch), preprocessing=pre)
    assert isinstance(model, DefinitionModel) and type(model.params).__name__ in ("dict", "tuple")
    got = AnyModel(model)({k: xps.asarray(v) for k, v in inputs.items()})  # native array-api-strict inputs
    want = registry.schema(arch).load_reference()(config, weights, inputs, preprocessing=pre)  # type: ignore[misc]
    assert set(got) == set(want)
    for name in want:
        assert got[name].dtype == want[name].dtype
        np.testing.assert_allclose(got[name], want[name], atol=5e-5, rtol=1e-4, err_msg=name)


def test_native_array_api_inputs_are_validated_through_the_backends_dtype_hook(registry: PluginRegistry) -> None:
    """An array-api-strict float32 array has a dtype numpy does not know: before, validation refused it."""
    specs = registry.schema("mlp").specs({"layer_sizes": [3, 2]}, {})[0]
    backend = registry.get_backend("strict")
    x = xps.asarray(np.ones((2, 3), np.float32))
    assert backend.native_dtype(x) is DType.F32
    assert prepare_inputs(specs, {"input": x}, native_dtype=backend.native_dtype)["input"] is x
    with pytest.raises(DTypeError) as ei:
        prepare_inputs(specs, {"input": xps.asarray(np.ones((2, 3), np.float64))}, native_dtype=backend.native_dtype)
    assert ei.value.code == "INVALID_DTYPE" and ei.value.name == "input" and ei.value.actual == "f64"

    class Opaque:
        shape = (2, 3)
        dtype = "quaternion"

    with pytest.raises(DTypeError) as ei2:
        prepare_inputs(specs, {"input": Opaque()}, native_dtype=backend.native_dtype)
    assert ei2.value.name == "input" and ei2.value.actual == "quaternion"


# -- the plan and the eager model ------------------------------------------------------------------------------
def test_plan_weights_are_checked_by_name_shape_and_type(registry: PluginRegistry, tmp_path: Path) -> None:
    schema = registry.schema("bert")
    config, _pre, weights, _ = example(registry, "bert")
    with pytest.raises(PackageFormatError) as ei:
        DefinitionPlan.build(schema, config=config, weights={k: v for k, v in weights.items() if "layer.1.attention.self.key.bias" not in k})
    assert ei.value.field == "encoder.layer.1.attention.self.key.bias"
    with pytest.raises(PackageFormatError) as ei2:
        DefinitionPlan.build(schema, config=config, weights={**weights, "pooler.dense.weight": np.zeros((16, 15), np.float32)})
    assert ei2.value.field == "pooler.dense.weight" and "(16, 15)" in str(ei2.value)
    with pytest.raises(PackageFormatError) as ei3:
        DefinitionPlan.build(schema, config=config, weights={**weights, "pooler.dense.bias": np.zeros(16, np.int32)})
    assert ei3.value.field == "pooler.dense.bias" and "float" in str(ei3.value)
    mixed = DefinitionPlan.build(schema, config=config, weights={**weights, "pooler.dense.bias": np.zeros(16, np.float16)})
    assert {a.dtype for a in array_leaves(mixed.params)} == {np.dtype(np.float32)}  # mixed float types: all f32
    prefixed = DefinitionPlan.build(schema, config=config, weights={f"bert.{k}": v for k, v in weights.items()})
    assert len(array_leaves(prefixed.params)) == len(array_leaves(mixed.params))
    from safetensors.numpy import save_file

    save_file(weights, str(tmp_path / "model.safetensors"))
    assert DefinitionPlan.build(schema, config=config, weights=tmp_path / "model.safetensors").source == str(tmp_path / "model.safetensors")


def test_plan_options(registry: PluginRegistry) -> None:
    schema = registry.schema("mlp")
    config, _, weights, _ = example(registry, "mlp")
    assert preprocessing_from_options({"preprocessing": {"pooling": "mean"}, "pooling": "cls", "normalize": None}) == {"pooling": "cls"}
    with pytest.raises(ConfigError) as ei:
        DefinitionPlan.build(schema, config=config, weights=weights, options={"preprocessing": ["mean"]})
    assert ei.value.field == "preprocessing"
    with pytest.raises(ConfigError) as ei2:
        DefinitionPlan.build(schema, config=config, weights=weights, options={"tokenizer_path": "tokenizer.json"})
    assert ei2.value.field == "tokenizer_path" and "'mlp' does not take text" in str(ei2.value)
    with pytest.raises(ConfigError) as ei3:
        DefinitionPlan.build(schema, config=["not", "a", "mapping"], weights=weights)  # type: ignore[arg-type]
    assert ei3.value.field == "config"
    bare = dataclasses.replace(schema, definition=None)
    with pytest.raises(ConfigError, match="has no definition"):
        DefinitionPlan.build(bare, config=config, weights=weights)
    # A caller's arrays are copied: writing into them later does not change a model.
    plan = DefinitionPlan.build(schema, config=config, weights=weights)
    weights["layers.0.weight"][:] = 0
    assert np.abs(plan.params[0][0]).sum() > 0
    # A model takes the host parameters over: the plan does not keep a second copy alive.
    model = DefinitionModel(plan, backend=_numpy_backend(), metadata=ModelMetadata("m"))
    assert plan.params is None and model.params is not None
    with pytest.raises(ConfigError) as ei4:
        DefinitionModel(plan, backend=_numpy_backend(), metadata=ModelMetadata("again"))
    assert ei4.value.field == "params" and "already taken" in str(ei4.value)


def test_eager_model_dtypes_memory_and_close(registry: PluginRegistry) -> None:
    config, _, weights, inputs = example(registry, "mlp")
    numpy_backend = _numpy_backend()
    factory = definition_factory(registry.schema("mlp"))
    f64 = factory(backend=numpy_backend, config=config, weights=weights, metadata=ModelMetadata("m"), dtype="f64")
    assert {a.dtype for a in array_leaves(f64.params)} == {np.dtype(np.float64)} and f64.memory_requirements() == 2 * sum(w.nbytes for w in weights.values())
    assert AnyModel(f64)(inputs)["output"].dtype == np.float32  # outputs keep their spec's dtype
    with pytest.raises(DTypeError) as ei:
        factory(backend=registry.get_backend("strict"), config=config, weights=weights, metadata=ModelMetadata("m"), dtype="f16")  # strict has no f16
    assert ei.value.name == "dtype" and ei.value.actual == "f16" and "f32, f64" in str(ei.value.expected)
    with pytest.raises(DTypeError) as ei2:
        factory(backend=numpy_backend, config=config, weights=weights, metadata=ModelMetadata("m"), dtype="i32")
    assert ei2.value.code == "INVALID_DTYPE" and ei2.value.name == "dtype" and ei2.value.actual == "i32"
    with pytest.raises(InvalidInputError) as ei3:
        f64.encode_text(["no tokenizer"])  # type: ignore[attr-defined]
    assert ei3.value.name == "text"
    f64.close()
    assert f64.memory_requirements() == 0
    with pytest.raises(ServiceUnavailableError) as ei4:
        AnyModel(f64)(inputs)
    assert ei4.value.code == "UNAVAILABLE"


def test_the_text_model_gets_a_tokenizer_that_fills_only_its_inputs(registry: PluginRegistry, tmp_path: Path) -> None:
    pytest.importorskip("tokenizers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1, **{f"w{i}": i + 2 for i in range(30)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    config, pre, weights, _ = example(registry, "distilbert")  # no token types
    model = definition_factory(registry.schema("distilbert"))(
        backend=_numpy_backend(), config=config, weights=weights, metadata=ModelMetadata("d"), preprocessing={**pre, "max_seq_length": 6}, tokenizer_path=tmp_path / "tokenizer.json",
    )
    assert model.text_encoder.inputs == ("input_ids", "attention_mask") and model.text_encoder.max_length == 6  # type: ignore[attr-defined]
    out = model.encode_text(["w1 w2 w3 w4 w5 w6 w7 w8", "w9"])  # type: ignore[attr-defined]
    assert out["sentence_embedding"].shape == (2, 16)
    from inferox.core.text import TextEncoder

    with pytest.raises(ConfigError) as ei:
        TextEncoder(tok, inputs=("attention_mask",))
    assert ei.value.field == "inputs"


def test_map_arrays_keeps_the_tree() -> None:
    tree = {"a": [np.ones(1), (np.zeros(2), np.ones(3))], "b": np.ones(4)}
    doubled = map_arrays(tree, lambda a: a * 2)
    assert isinstance(doubled["a"], list) and isinstance(doubled["a"][1], tuple)
    assert [int(a.size) for a in array_leaves(doubled)] == [1, 2, 3, 4]


def test_a_definitions_reference_runs_in_float64(registry: PluginRegistry) -> None:
    seen: list[Any] = []

    def forward(xp: Any, ops: Any, params: Any, inputs: Any, config: Any) -> dict[str, Any]:
        seen.append((params["w"].dtype, inputs["x"].dtype))
        return {"y": inputs["x"] * params["w"]}

    schema = dataclasses.replace(
        registry.schema("mlp"), name="scale", model_types=(), reference=None,
        weight_shapes=lambda config: {"w": (2,)}, specs=lambda config, pre: (registry.schema("mlp").specs({"layer_sizes": [2, 2]}, {})[0], registry.schema("mlp").specs({"layer_sizes": [2, 2]}, {})[1]),
        definition=Definition(forward=lambda xp, ops, p, i, c: {"output": forward(xp, ops, p, {"x": i["input"]}, c)["y"]}),
    )
    reference = schema.load_reference()
    assert reference is not None and reference.__name__ == "scale_reference"
    out = reference({}, {"w": np.array([1 / 3, 3.0], np.float32)}, {"input": np.array([[3.0, 1 / 3]], np.float32)})
    assert seen == [(np.dtype(np.float64), np.dtype(np.float64))] and out["output"].dtype == np.float32


def test_a_definition_named_by_a_string_is_imported_and_checked(registry: PluginRegistry) -> None:
    schema = registry.schema("mlp")
    lazy = dataclasses.replace(schema, definition="inferox.core.architectures.mlp:MLP_DEFINITION")
    assert lazy.load_definition() is schema.definition
    from inferox.core.errors import PluginError

    with pytest.raises(PluginError, match=r"is not an inferox\.core\.Definition"):
        dataclasses.replace(schema, definition="inferox.core.constants:PROJECT_NAME").load_definition()
    with pytest.raises(PluginError, match="failed to load"):
        dataclasses.replace(schema, definition="no_such_module_here:D", reference=None).load_reference()


def _numpy_backend() -> Backend:
    from inferox_numpy.backend import NumpyBackend

    return NumpyBackend()


def test_plan_example_inputs_fill_what_the_definition_fills(registry: PluginRegistry) -> None:
    """Every required input at batch x length, host arrays in the specs' dtypes: an attention mask of
    ones (the definition's fill), zeros for token ids; optional inputs left out. Backends' models
    (torch, onnx) convert exactly these for their warm-up."""
    config, _, weights, _ = example(registry, "bert")
    plan = DefinitionPlan.build(registry.schema("bert"), config=config, weights=weights)
    got = plan.example_inputs(batch=3, length=5)
    required = {s.name for s in plan.input_specs if not s.optional}
    assert set(got) == required and "input_ids" in got and "token_type_ids" not in got
    for spec in plan.input_specs:
        if spec.name in got:
            assert got[spec.name].shape == (3, 5) and got[spec.name].dtype == spec.dtype.to_numpy()
    assert (got["attention_mask"] == 1).all() and (got["input_ids"] == 0).all()
