"""Architectures as plugins: schemas registered through inferox_register_schemas (core's built-in
mlp and bert among them), looked up by name or model_type, clashes named, entry points that name
a class, and the base for NumPy-speaking backends."""

from __future__ import annotations

import dataclasses
import importlib.metadata as md
import subprocess
import sys
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from inferox.core import (
    CONTRACT_VERSION,
    ArrayBackend,
    ConfigError,
    PluginRegistry,
    hookimpl,
    random_weights,
)
from inferox.core.errors import ArchitectureNotFoundError, PluginError

MakeDist = Callable[..., md.PathDistribution]


def schema_plugin(*schemas: Any) -> types.ModuleType:
    module = types.ModuleType("schema_plugin")
    module.inferox_contract_version = hookimpl(lambda: CONTRACT_VERSION)  # type: ignore[attr-defined]

    def register_schemas(register: Callable[[Any], None]) -> None:
        for s in schemas:
            register(s)

    module.inferox_register_schemas = hookimpl(register_schemas)  # type: ignore[attr-defined]
    return module


BUILTIN = ["bert", "distilbert", "electra", "mlp", "mpnet", "roberta", "xlm-roberta"]


def test_builtin_plugin_defines_mlp_and_the_encoder_families() -> None:
    registry = PluginRegistry()
    assert registry.schema_names() == BUILTIN
    assert registry.schema("MLP").plugin == "inferox-core" and registry.schema("bert").family == "encoder"
    assert registry.pm.get_plugin("inferox-core") is not None
    assert registry.backend_names() == [] and registry.architectures() == {}  # schemas only, no backend
    assert PluginRegistry(builtin=False).schema_names() == []


def test_schema_lookup_by_model_type_and_unknown_names() -> None:
    registry = PluginRegistry()
    custom = dataclasses.replace(registry.schema("mlp"), name="Wide-MLP", model_types=("WideMLP", "wmlp"))
    registry.register_plugin(schema_plugin(custom), name="wide")
    schema = registry.schema("widemlp")
    assert schema.name == "wide-mlp" and schema.model_types == ("widemlp", "wmlp") and schema.plugin == "wide"
    assert registry.schema_for_model_type("WMLP") is schema and registry.schema_for_model_type("gpt2") is None
    with pytest.raises(ArchitectureNotFoundError) as ei:
        registry.schema("gpt2")
    err = ei.value
    assert err.code == "ARCHITECTURE_NOT_FOUND" and err.architecture == "gpt2" and err.known == sorted([*BUILTIN, "wide-mlp"])
    assert f"no installed plugin defines architecture 'gpt2'; known architectures: {', '.join(sorted([*BUILTIN, 'wide-mlp']))}" in str(err)


def test_a_name_or_model_type_defined_twice_names_both_plugins() -> None:
    registry = PluginRegistry()
    mlp = registry.schema("mlp")
    with pytest.raises(PluginError) as ei:
        registry.register_plugin(schema_plugin(dataclasses.replace(mlp, plugin="")), name="copycat")
    assert ei.value.code == "PLUGIN_ERROR" and ei.value.plugin == "copycat"
    assert "architecture 'mlp' defined by both 'inferox-core' and 'copycat'" in str(ei.value)
    claims_bert = dataclasses.replace(mlp, name="bertish", model_types=("bert",))
    with pytest.raises(PluginError, match=r"model_type 'bert' claimed by architecture 'bert' \('inferox-core'\) and 'bertish' \('claimer'\)"):
        registry.register_plugin(schema_plugin(claims_bert), name="claimer")
    twice = dataclasses.replace(mlp, name="twice")
    with pytest.raises(PluginError, match="architecture 'twice' defined by both 'self' and 'self'"):
        registry.register_plugin(schema_plugin(twice, twice), name="self")
    with pytest.raises(PluginError, match="registered 'mlp', not an ArchitectureSchema"):
        registry.register_plugin(schema_plugin("mlp"), name="strings")
    assert registry.schema_names() == BUILTIN  # nothing of the refused plugins was kept


def test_parse_config_and_default_outputs() -> None:
    registry = PluginRegistry()
    with pytest.raises(ConfigError) as ei:
        registry.parse_config("mlp", {"layer_sizes": [4]})
    assert ei.value.code == "INVALID_CONFIG" and ei.value.field == "layer_sizes"
    with pytest.raises(ConfigError, match="a mlp config must be an object"):
        registry.parse_config("mlp", [4, 3])
    bert = registry.schema("bert")
    cfg = dict(bert.example_config)
    assert bert.outputs_by_default(cfg) == ["last_hidden_state", "pooler_output"]
    assert bert.outputs_by_default(cfg, {"pooling": "mean", "normalize": True}) == ["sentence_embedding"]
    mlp = registry.schema("mlp")
    assert mlp.outputs_by_default(mlp.example_config) == ["output"]  # default: every output
    assert mlp.describe(mlp.example_config) == {"num_layers": 3, "hidden_size": 8, "activation": "gelu"}


def test_random_weights_and_references() -> None:
    registry = PluginRegistry()
    mlp = registry.schema("mlp")
    w = random_weights(mlp, mlp.example_config, np.random.default_rng(0), scale=0.5)
    assert {k: v.shape for k, v in w.items()} == dict(mlp.weight_shapes(mlp.example_config))
    assert all(v.dtype == np.float32 for v in w.values()) and 0.3 < float(np.std(w["layers.0.weight"])) < 0.7
    empty = dataclasses.replace(mlp, name="empty", weight_shapes=lambda config: {})
    with pytest.raises(ConfigError, match="declares no weights"):
        random_weights(empty, {}, np.random.default_rng(0))
    ref = mlp.load_reference()  # the definition, run on NumPy in float64
    assert callable(ref) and ref.__name__ == "mlp_reference" and mlp.has_reference
    assert dataclasses.replace(mlp, definition=None).load_reference() is None and not dataclasses.replace(mlp, definition=None).has_reference
    registered = dataclasses.replace(mlp, reference=lambda config, weights, inputs, **options: {"output": np.zeros(1)})
    assert registered.load_reference() is registered.reference  # a registered reference wins over the definition
    with pytest.raises(PluginError, match=r"the reference of architecture 'mlp' .* failed to load: ModuleNotFoundError"):
        dataclasses.replace(mlp, reference="no_such_module_here:ref").load_reference()
    with pytest.raises(PluginError, match="is not callable"):
        dataclasses.replace(mlp, reference="inferox.core.constants:PROJECT_NAME").load_reference()


def test_an_entry_point_naming_a_class_must_name_a_module(make_dist: MakeDist, unique: str) -> None:
    mod = f"classplugin_{unique}"
    dist = make_dist(f"cls-{unique}", {f"cls{unique}": f"{mod}:Plugin"}, modules={mod: "class Plugin:\n    pass\n"})
    registry = PluginRegistry()
    registry.load_entry_points([dist], blocked=())
    (failure,) = registry.failures
    assert failure.name == f"cls{unique}"
    assert isinstance(failure.exception, PluginError) and failure.exception.code == "PLUGIN_ERROR"
    assert f"names a type, not a module: an inferox entry point must name the plugin module that holds the hooks (e.g. '{mod}')" in failure.error


def test_array_backend_needs_its_declarations() -> None:
    class Nameless(ArrayBackend):
        xp = np

    with pytest.raises(PluginError, match="Nameless must declare `name` and `xp`"):
        Nameless()

    class Host(ArrayBackend):
        name = "host"
        xp = np

    backend = Host()
    t = backend.tensor_builder().from_numpy(np.arange(6, dtype=np.int64).reshape(2, 3))
    assert t.backend_name == "host" and backend.to_device(t, t.device) is t
    assert backend.memory_info("cpu") is not None and backend.version == np.__version__
    assert backend.to_device(backend.wrap([1.0, 2.0]), t.device).numpy().tolist() == [1.0, 2.0]


def test_importing_the_testing_package_without_pytest_names_the_extra() -> None:
    # A real interpreter in which pytest cannot be imported (a None entry in sys.modules blocks it).
    code = (
        "import sys, importlib.util as u\n"
        "real = u.find_spec\n"
        "u.find_spec = lambda name, *a: None if name == 'pytest' else real(name, *a)\n"
        "try:\n"
        "    import inferox.core.testing\n"
        "except ImportError as e:\n"
        "    print(type(e).__name__, getattr(e, 'code', None), e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("PluginError PLUGIN_ERROR inferox.core.testing needs pytest")
    assert "pip install 'inferox-core[testing]'" in out.stdout
