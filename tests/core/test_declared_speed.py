"""Backends declare how fast they run each architecture per device kind; the registry keeps the
declaration (read without importing any framework) and refuses a malformed one at discovery."""

from __future__ import annotations

import types
from typing import Any

import pytest

from inferox.core import get_registry, hookimpl
from inferox.core import plugins as P
from inferox.core.errors import PluginError


def _plugin(name: str, speed: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.inferox_contract_version = hookimpl(lambda: "1.1")  # type: ignore[attr-defined]
    module.inferox_register_architectures = hookimpl(  # type: ignore[attr-defined]
        lambda register: register("numpy", f"arch-{name}", "nowhere:factory", speed=speed)
    )
    return module


def test_a_declared_speed_is_kept_per_device_kind() -> None:
    registry = P.PluginRegistry()
    registry.register_plugin(_plugin("fast", {"CPU": 2, "cuda": 0.5}), name="fast")
    assert registry.declared_speed("numpy", "arch-fast") == 2.0  # device kinds are case-insensitive
    assert registry.declared_speed("numpy", "arch-fast", "cuda") == 0.5
    assert registry.declared_speed("numpy", "arch-fast", "tpu") is None
    assert registry.declared_speed("torch", "arch-fast") is None  # not registered at all
    registry.register_plugin(_plugin("silent", None), name="silent")
    assert registry.declared_speed("numpy", "arch-silent") is None


@pytest.mark.parametrize("speed", [{"cpu": 0}, {"cpu": -1.0}, {"cpu": True}, {"cpu": "fast"}, {3: 1.0}, [("cpu", 1.0)]])
def test_a_malformed_declaration_is_refused_naming_the_plugin(speed: Any) -> None:
    registry = P.PluginRegistry()
    with pytest.raises(PluginError) as info:
        registry.register_plugin(_plugin("bad", speed), name="bad")
    assert info.value.code == "PLUGIN_ERROR" and info.value.details["plugin"] == "bad" and "speed" in info.value.message
    assert registry.architectures().get("arch-bad") is None  # nothing of the plugin was kept


def test_the_installed_backends_declare_every_standard_architecture_on_cpu() -> None:
    reg = get_registry()
    for arch in ("bert", "distilbert", "roberta", "xlm-roberta", "mpnet", "electra", "mlp"):
        for backend in reg.backends_for(arch):
            if backend in ("torch", "jax", "onnx"):
                assert reg.declared_speed(backend, arch) is not None, (backend, arch)
    if "torch" in reg.backend_names():
        assert reg.declared_speed("torch", "bert") == 1.0  # the reference the others are relative to


def _definition_backend(name: str, speed: Any) -> types.ModuleType:
    from inferox.core import BackendSpec

    module = types.ModuleType(name)
    module.inferox_contract_version = hookimpl(lambda: "1.2")  # type: ignore[attr-defined]
    module.inferox_register_backends = hookimpl(  # type: ignore[attr-defined]
        lambda register: register(BackendSpec(name, loader="inferox_numpy.backend:NumpyBackend", definitions=True, speed=speed))
    )
    return module


def test_a_definition_backend_declares_speed_per_architecture_or_family() -> None:
    # A backend that runs definitions registers no factory: its BackendSpec carries the speeds, by
    # architecture name or by schema family (every encoder family without an entry of its own).
    registry = P.PluginRegistry()
    registry.register_plugin(_definition_backend("defs", {"Encoder": {"cpu": 1.5}, "roberta": {"cpu": 0.5}, "mlp": {"cpu": 2}}), name="defs")
    assert registry.declared_speed("defs", "bert") == registry.declared_speed("defs", "electra") == 1.5
    assert registry.declared_speed("defs", "roberta") == 0.5 and registry.declared_speed("defs", "mlp") == 2.0
    assert registry.declared_speed("defs", "bert", "cuda") is None
    spec = registry.implementation("defs", "distilbert")  # the generic implementation, attributed to the backend's plugin
    assert (spec.backend, spec.name, spec.plugin, dict(spec.speed)) == ("defs", "distilbert", "defs", {"cpu": 1.5})
    assert callable(spec.factory) and spec.load() is spec.factory


@pytest.mark.parametrize("speed", [{"mlp": {"cpu": 0}}, {"mlp": [("cpu", 1.0)]}, {3: {"cpu": 1.0}}, [("mlp", {"cpu": 1.0})]])
def test_a_malformed_backend_declaration_is_refused_naming_the_plugin(speed: Any) -> None:
    registry = P.PluginRegistry()
    with pytest.raises(PluginError) as info:
        registry.register_plugin(_definition_backend("baddefs", speed), name="baddefs")
    assert info.value.code == "PLUGIN_ERROR" and info.value.details["plugin"] == "baddefs" and "speed" in info.value.message
    assert "baddefs" not in registry.backend_names()  # nothing of the plugin was kept
