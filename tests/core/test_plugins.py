"""Plugin discovery from REAL installed distributions (``importlib.metadata.PathDistribution`` over a
dist-info folder on ``sys.path``): lazy backend specs, blocking, broken plugins, contract versions,
duplicate registrations, failing loaders and architecture lookup."""

from __future__ import annotations

import importlib.metadata as md
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from inferox_numpy.backend import NumpyBackend

from inferox.core import BackendSpec, ModelMetadata, PluginVersionError, get_backend, get_registry, hookimpl
from inferox.core import plugins as P
from inferox.core.constants import CONTRACT_VERSION
from inferox.core.errors import ArchitectureNotFoundError, BackendUnavailableError, PluginError

MakeDist = Callable[..., md.PathDistribution]


def plugin_source(
    *,
    version: str | None = "1.0",
    backends: list[tuple[str, ...]] = (),  # type: ignore[assignment]
    archs: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
    prelude: str = "",
    hook: str = "inferox_register_architectures",
) -> str:
    """The source of a plugin module implementing the hooks with the given registrations (``hook``:
    the implementations hook's name, the 1.0 one by default as an old plugin would write it)."""
    lines = ["from inferox.core import BackendSpec, hookimpl", prelude, ""]
    if version is not None:
        lines += ["@hookimpl", "def inferox_contract_version():", f"    return {version!r}", ""]
    lines += ["@hookimpl", "def inferox_register_backends(register):"]
    lines += [f"    register(BackendSpec({b[0]!r}, loader={b[1]!r}, requires={tuple(b[2:])!r}))" for b in backends] or ["    pass"]
    lines += ["", "@hookimpl", f"def {hook}(register):"]
    lines += [f"    register({a[0]!r}, {a[1]!r}, {a[2]!r})" for a in archs] or ["    pass"]
    return "\n".join(lines) + "\n"


def backend_source(name: str) -> str:
    return f"from inferox_numpy.backend import NumpyBackend\n\nclass Backend(NumpyBackend):\n    name = {name!r}\n"


FACTORY_SOURCE = "def create(**kwargs):\n    return ('model', kwargs)\n"


def registry_for(*dists: md.Distribution, blocked: tuple[str, ...] = ()) -> P.PluginRegistry:
    registry = P.PluginRegistry()
    registry.load_entry_points(list(dists), blocked=blocked)
    return registry


@pytest.fixture
def fake(make_dist: MakeDist, unique: str) -> dict[str, Any]:
    """One well-formed third-party plugin: backend ``fake_<u>`` (lazy loader) and architecture ``toy``."""
    name = f"fake_{unique}"
    plugin_mod, backend_mod, arch_mod = f"fakeplugin_{unique}", f"fakebackend_{unique}", f"fakearch_{unique}"
    dist = make_dist(
        f"inferox-fake-{unique}",
        {name: plugin_mod},
        version="1.2.3",
        modules={
            plugin_mod: plugin_source(backends=[(name, f"{backend_mod}:Backend", "numpy")], archs=[(name, "toy", f"{arch_mod}:create")]),
            backend_mod: backend_source(name),
            arch_mod: FACTORY_SOURCE,
        },
    )
    return {"name": name, "dist": dist, "plugin_mod": plugin_mod, "backend_mod": backend_mod, "arch_mod": arch_mod}


# ----------------------------------------------------------------------------------------- discovery
def test_discovery_lists_backends_lazily(fake: dict[str, Any]) -> None:
    registry = registry_for(fake["dist"])
    name = fake["name"]
    assert registry.failures == [] and registry.blocked == []
    assert registry.backend_names() == [name]
    assert fake["plugin_mod"] in sys.modules  # the plugin module is imported to read its hooks …
    (info,) = registry.list_backends()
    assert fake["backend_mod"] not in sys.modules, "listing backends must not import the backend's loader"
    assert fake["arch_mod"] not in sys.modules, "listing must not import architecture factories"
    assert (info.name, info.plugin, info.plugin_version) == (name, name, "1.2.3")
    assert info.versions == {"numpy": np.__version__}
    assert info.installed and info.available and info.reason is None
    assert registry.backend_spec(name.upper()).loader == f"{fake['backend_mod']}:Backend"
    assert not registry.is_loaded(name)
    backend = registry.get_backend(name)  # … and the backend module only on first use
    assert fake["backend_mod"] in sys.modules
    assert isinstance(backend, NumpyBackend) and backend.name == name
    assert registry.is_loaded(name)
    assert registry.get_backend(name.upper()) is backend
    assert registry.available_backends() == [name]


def test_architectures(fake: dict[str, Any]) -> None:
    registry = registry_for(fake["dist"])
    name = fake["name"]
    assert registry.architectures() == {"toy": [name]}
    assert registry.architectures(backend=name.upper()) == {"toy": [name]}
    assert registry.architectures(backend="other") == {}
    assert registry.backends_for("TOY") == [name]
    factory = registry.architecture_factory(name, "Toy")
    assert fake["arch_mod"] in sys.modules
    assert factory(config={}) == ("model", {"config": {}})


def test_architecture_not_found_lists_backends_that_have_it(fake: dict[str, Any]) -> None:
    registry = registry_for(fake["dist"])
    with pytest.raises(ArchitectureNotFoundError) as ei:
        registry.architecture_factory("other-backend", "toy")
    err = ei.value
    assert (err.code, err.architecture, err.backend, err.available) == ("ARCHITECTURE_NOT_FOUND", "toy", "other-backend", [fake["name"]])
    assert fake["name"] in str(err)
    with pytest.raises(ArchitectureNotFoundError) as ei:
        registry.architecture_factory(fake["name"], "gpt")
    assert ei.value.available == [] and "(none)" in str(ei.value)


def test_architecture_factory_that_fails_to_import(make_dist: MakeDist, unique: str) -> None:
    mod = f"plug_{unique}"
    dist = make_dist(f"d-{unique}", {f"p{unique}": mod}, modules={mod: plugin_source(archs=[("numpy", "broken", f"missing_mod_{unique}:create")])})
    registry = registry_for(dist)
    with pytest.raises(BackendUnavailableError) as ei:
        registry.architecture_factory("numpy", "broken")
    err = ei.value
    assert (err.code, err.backend) == ("BACKEND_UNAVAILABLE", "numpy")
    assert "architecture 'broken' failed to load: ModuleNotFoundError" in err.reason
    # … naming the plugin that registered the failing factory, and the distribution it came from.
    assert f"(factory 'missing_mod_{unique}:create', registered by plugin 'p{unique}' (d-{unique} 1.0.0))" in err.reason
    assert isinstance(err.__cause__, ModuleNotFoundError)


def test_callable_factories_and_in_process_plugins() -> None:
    """A plugin registered in-process (no distribution) may hand over a callable factory."""

    def create(**kwargs: Any) -> str:
        return "made"

    module = types.ModuleType("inproc")
    module.inferox_contract_version = hookimpl(lambda: "1.0")  # type: ignore[attr-defined]
    module.inferox_register_architectures = hookimpl(lambda register: register("numpy", "inline", create))  # type: ignore[attr-defined]
    registry = P.PluginRegistry()
    registry.register_plugin(module, name="inproc")
    assert registry.architecture_factory("numpy", "inline") is create
    # Listed once the backend it is for is registered (by another plugin here): not before.
    assert registry.architectures() == {} and registry.backends_for("inline") == []
    backend = types.ModuleType("npbackend")
    backend.inferox_contract_version = hookimpl(lambda: CONTRACT_VERSION)  # type: ignore[attr-defined]
    backend.inferox_register_backends = hookimpl(lambda register: register(BackendSpec("numpy", loader="inferox_numpy.backend:NumpyBackend")))  # type: ignore[attr-defined]
    registry.register_plugin(backend, name="npbackend")
    assert registry.architectures() == {"inline": ["numpy"]} and registry.backends_for("inline") == ["numpy"]


def test_unknown_backend(fake: dict[str, Any]) -> None:
    registry = registry_for(fake["dist"])
    with pytest.raises(BackendUnavailableError) as ei:
        registry.get_backend("tensorflow")
    err = ei.value
    assert (err.code, err.backend, err.reason, err.available) == ("BACKEND_UNAVAILABLE", "tensorflow", "not installed", [fake["name"]])


def test_missing_framework_distribution(make_dist: MakeDist, unique: str) -> None:
    mod = f"plug_{unique}"
    dist = make_dist(f"d-{unique}", {f"p{unique}": mod}, modules={mod: plugin_source(backends=[("needsit", "nowhere:Backend", f"no-such-dist-{unique}", "numpy")])})
    (info,) = registry_for(dist).list_backends()
    assert not info.installed and not info.available
    assert info.versions == {f"no-such-dist-{unique}": None, "numpy": np.__version__}
    assert info.reason == f"missing distribution(s): no-such-dist-{unique}"


def test_entry_points_of_other_groups_and_repeated_names_are_ignored(make_dist: MakeDist, unique: str, fake: dict[str, Any]) -> None:
    other = make_dist(f"other-{unique}", {"x": "does_not_exist_anywhere"}, group="console_scripts")
    shadow = make_dist(f"shadow-{unique}", {fake["name"]: f"does_not_exist_{unique}"})
    registry = registry_for(fake["dist"], other, shadow)
    assert registry.failures == []
    assert registry.backend_names() == [fake["name"]]


# ------------------------------------------------------------------ the implementations hook, and its alias
@pytest.mark.parametrize("hook", ["inferox_register_implementations", "inferox_register_architectures"])
def test_implementations_hook_and_its_old_name_both_work(make_dist: MakeDist, unique: str, hook: str) -> None:
    name, mod = f"impl{unique}", f"implplug_{unique}"
    version = "1.2" if hook == "inferox_register_implementations" else "1.0"
    dist = make_dist(f"d-{unique}", {name: mod}, version="2.0.0",
                     modules={mod: plugin_source(version=version, backends=[(name, "inferox_numpy.backend:NumpyBackend")], archs=[(name, "mlp", "x:create")], hook=hook)})
    registry = registry_for(dist)
    assert registry.failures == []
    assert registry.architectures(name) == {"mlp": [name]}
    spec = registry.implementation(name, "mlp")
    assert (spec.factory, spec.plugin) == ("x:create", name)
    assert registry.contract_version(name) == version and registry.contract_version("inferox-core") == CONTRACT_VERSION
    assert registry.describe_plugin(name) == f"plugin '{name}' (d-{unique} 2.0.0)"
    assert registry.contract_version("nobody") is None and registry.describe_plugin("nobody") == "plugin 'nobody'"


def test_core_plugins_use_the_new_hook_name() -> None:
    import inferox.core.hookspecs as specs

    for name in ("inferox_register_implementations", "inferox_register_architectures"):
        assert getattr(specs, name).__doc__, f"{name} is documented"
    assert "alias" in (specs.inferox_register_architectures.__doc__ or "")
    for module in ("inferox.torch.plugin", "inferox.jax.plugin", "inferox.onnx.plugin"):
        plugin = pytest.importorskip(module)
        assert hasattr(plugin, "inferox_register_implementations") and not hasattr(plugin, "inferox_register_architectures"), module


def test_implementing_one_pair_through_both_hooks_is_refused(make_dist: MakeDist, unique: str) -> None:
    name, mod = f"both{unique}", f"bothplug_{unique}"
    source = plugin_source(version="1.2", archs=[("numpy", "mlp", "x:create")], hook="inferox_register_implementations")
    source += "\n@hookimpl\ndef inferox_register_architectures(register):\n    register('numpy', 'mlp', 'x:create')\n"
    (failure,) = registry_for(make_dist(f"d-{unique}", {name: mod}, modules={mod: source})).failures
    err = failure.exception
    assert isinstance(err, PluginError) and (err.code, err.plugin) == ("PLUGIN_ERROR", name)
    assert f"plugin '{name}' registers architecture 'mlp' for backend 'numpy' twice" in str(err)


# ------------------------------------------------------------------------ errors name plugins and installs
def test_a_backend_without_the_architecture_names_both_plugins_and_what_to_install(fake: dict[str, Any]) -> None:
    registry = registry_for(fake["dist"])
    name = fake["name"]
    with pytest.raises(ArchitectureNotFoundError) as ei:
        registry.architecture_factory(name, "bert")  # bert: core's standard architecture; no torch here
    err = ei.value
    assert (err.code, err.architecture, err.backend, err.plugin, err.defined_by, err.available) == ("ARCHITECTURE_NOT_FOUND", "bert", name, name, "inferox-core", [])
    assert str(err).startswith(f"backend '{name}' (plugin '{name}') does not implement architecture 'bert' (defined by plugin 'inferox-core'); backends that do: (none); ")
    assert err.install == "install a backend that implements it, e.g. inferox-torch, inferox-jax or inferox-onnx" and err.install in str(err)
    with pytest.raises(ArchitectureNotFoundError) as ei:
        registry.architecture_factory(name, "gpt")  # no plugin defines it at all
    assert ei.value.defined_by is None and ei.value.install == "install the plugin that defines it"
    with pytest.raises(ArchitectureNotFoundError) as ei:
        registry.schema("gpt")
    assert "no installed plugin defines architecture 'gpt'; known architectures: bert, distilbert, electra, mlp, mpnet, roberta, xlm-roberta; install the plugin that defines it" == str(ei.value)


def test_an_architecture_only_a_blocked_backend_implements_says_so(make_dist: MakeDist, unique: str, fake: dict[str, Any]) -> None:
    # A second plugin implements the third-party 'toy' for a backend of its own; blocking that
    # plugin hides the backend, its implementation and anything listing it.
    other, mod = f"other{unique}", f"otherplug_{unique}"
    dist = make_dist(f"o-{unique}", {other: mod}, modules={mod: plugin_source(backends=[(other, "inferox_numpy.backend:NumpyBackend")], archs=[(other, "toy", "x:f"), (fake["name"], "extra", "x:g")])})
    registry = registry_for(fake["dist"], dist, blocked=(fake["name"],))
    # The implementation 'other' registered for the blocked backend is not listed anywhere.
    assert registry.architectures() == {"toy": [other]} and registry.backends_for("extra") == []
    with pytest.raises(ArchitectureNotFoundError) as ei:
        registry.architecture_factory(other, "extra")
    assert ei.value.install == f"backend(s) {fake['name']} implement it but are blocked by INFEROX_BLOCKED_PLUGINS"


# -------------------------------------------------------------------------------------------- blocking
def test_blocked_by_environment_variable(fake: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end: get_registry() reads every distribution on sys.path and INFEROX_BLOCKED_PLUGINS."""
    name = fake["name"]
    monkeypatch.setenv("INFEROX_BLOCKED_PLUGINS", f" something-else , {name.upper()} ")
    P.reset_registry()
    try:
        registry = get_registry()
        assert registry is get_registry()
        assert name in registry.blocked
        assert name not in registry.backend_names()
        assert fake["plugin_mod"] not in sys.modules, "a blocked plugin is not even imported"
        with pytest.raises(BackendUnavailableError) as ei:
            get_backend(name)
        assert (ei.value.code, ei.value.reason) == ("BACKEND_UNAVAILABLE", "blocked by INFEROX_BLOCKED_PLUGINS")
        monkeypatch.delenv("INFEROX_BLOCKED_PLUGINS")
        P.reset_registry()
        assert get_backend(name).name == name
        assert name in get_registry().backend_names()
    finally:
        P.reset_registry()


def test_blocked_argument(fake: dict[str, Any]) -> None:
    registry = registry_for(fake["dist"], blocked=(fake["name"],))
    assert registry.blocked == [fake["name"]] and registry.backend_names() == []


# ------------------------------------------------------------------------------------- broken plugins
def test_plugin_whose_import_fails_is_reported_by_name(make_dist: MakeDist, unique: str, fake: dict[str, Any]) -> None:
    broken_mod = f"broken_{unique}"
    broken = make_dist(f"broken-{unique}", {f"broken{unique}": broken_mod}, modules={broken_mod: "raise ImportError('libfoo.so: cannot open shared object file')\n"})
    registry = registry_for(broken, fake["dist"])
    (failure,) = registry.failures
    assert failure.name == f"broken{unique}"
    assert f"import of '{broken_mod}' failed: ImportError: libfoo.so" in failure.error
    assert isinstance(failure.exception, ImportError)
    assert registry.backend_names() == [fake["name"]], "one broken plugin does not stop the others"


@pytest.mark.parametrize(
    ("declared", "shown"),
    [("2.0", "'2.0'"), ("0.9", "'0.9'"), ("1.3", "'1.3'"), (None, None), ("abc", "'abc'"), ("1.x", "'1.x'"), ("", "''")],
    ids=["major-newer", "major-older", "minor-newer", "missing", "unreadable", "unreadable-minor", "empty"],
)
def test_contract_version_mismatch_is_refused(make_dist: MakeDist, unique: str, declared: str | None, shown: str | None) -> None:
    mod = f"plug_{unique}"
    pname = f"vers{unique}"
    dist = make_dist(f"d-{unique}", {pname: mod}, modules={mod: plugin_source(version=declared, backends=[(pname, "x:Y")])})
    registry = registry_for(dist)
    (failure,) = registry.failures
    err = failure.exception
    assert isinstance(err, PluginVersionError)
    assert err.code == "PLUGIN_VERSION_MISMATCH"
    assert err.plugin == pname
    assert CONTRACT_VERSION in failure.error
    if shown is not None:
        assert (declared or "") in failure.error
        assert (f"contract {declared}" in failure.error) or (shown in failure.error)
    else:
        assert "does not declare inferox_contract_version()" in failure.error
    assert registry.backend_names() == []
    assert registry.pm.get_plugin(pname) is None


@pytest.mark.parametrize("declared", ["1.2", "1.1", "1.0", "1", 1])
def test_compatible_contract_versions(declared: Any) -> None:
    P.check_contract_version("p", declared)


def test_older_minor_is_accepted_by_a_newer_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P, "CONTRACT_VERSION", "1.3")
    P.check_contract_version("p", "1.1")
    with pytest.raises(PluginVersionError) as ei:
        P.check_contract_version("p", "1.4")
    assert "1.4" in str(ei.value) and "1.3" in str(ei.value)


def test_duplicate_backend_names_both_plugins(make_dist: MakeDist, unique: str) -> None:
    first, second = f"first{unique}", f"second{unique}"
    d1 = make_dist(f"a-{unique}", {first: f"m1_{unique}"}, modules={f"m1_{unique}": plugin_source(backends=[("dup", "x:A")])})
    d2 = make_dist(f"b-{unique}", {second: f"m2_{unique}"}, modules={f"m2_{unique}": plugin_source(backends=[("DUP", "x:B")], archs=[("dup", "mlp", "x:f")])})
    registry = registry_for(d1, d2)
    (failure,) = registry.failures
    assert failure.name == second
    err = failure.exception
    assert isinstance(err, PluginError) and err.code == "PLUGIN_ERROR" and err.plugin == second
    assert f"backend 'dup' registered by both '{first}' and '{second}'" in str(err)
    assert registry.backend_spec("dup").loader == "x:A"
    assert registry.architectures() == {}, "nothing of the refused plugin stays registered"
    assert registry.pm.get_plugin(second) is None


def test_duplicate_architecture_names_both_plugins(make_dist: MakeDist, unique: str) -> None:
    first, second = f"first{unique}", f"second{unique}"
    d1 = make_dist(f"a-{unique}", {first: f"m1_{unique}"}, modules={f"m1_{unique}": plugin_source(archs=[("torch", "bert", "x:one")])})
    d2 = make_dist(f"b-{unique}", {second: f"m2_{unique}"}, modules={f"m2_{unique}": plugin_source(archs=[("torch", "BERT", "x:two")])})
    registry = registry_for(d1, d2)
    (failure,) = registry.failures
    assert failure.name == second and isinstance(failure.exception, PluginError)
    assert failure.exception.code == "PLUGIN_ERROR"
    assert f"architecture 'bert' for backend 'torch' registered by both '{first}' and '{second}'" in failure.error


def test_registering_something_that_is_not_a_backend_spec(make_dist: MakeDist, unique: str) -> None:
    mod = f"plug_{unique}"
    source = plugin_source().replace("def inferox_register_backends(register):\n    pass", "def inferox_register_backends(register):\n    register(('numpy', 'x:Y'))")
    dist = make_dist(f"d-{unique}", {f"p{unique}": mod}, modules={mod: source})
    (failure,) = registry_for(dist).failures
    assert isinstance(failure.exception, PluginError) and failure.exception.plugin == f"p{unique}"
    assert "not a BackendSpec" in failure.error


# ----------------------------------------------------------------------------------- failing loaders
def test_backend_whose_loader_raises(make_dist: MakeDist, unique: str) -> None:
    plug, loader = f"plug_{unique}", f"loader_{unique}"
    dist = make_dist(
        f"d-{unique}",
        {f"p{unique}": plug},
        modules={
            plug: plugin_source(backends=[("brokenfw", f"{loader}:Backend")]),
            loader: "raise OSError('libcudart.so.12: cannot open shared object file')\n",
        },
    )
    registry = registry_for(dist)
    with pytest.raises(BackendUnavailableError) as ei:
        registry.get_backend("brokenfw")
    err = ei.value
    assert (err.code, err.backend) == ("BACKEND_UNAVAILABLE", "brokenfw")
    assert err.reason == "OSError: libcudart.so.12: cannot open shared object file"
    assert isinstance(err.__cause__, OSError)
    (info,) = registry.list_backends()
    assert info.installed and not info.available and info.reason == err.reason
    assert registry.available_backends() == []


def test_backend_class_whose_constructor_raises(make_dist: MakeDist, unique: str) -> None:
    plug, loader = f"plug_{unique}", f"loader_{unique}"
    src = "class Backend:\n    def __init__(self):\n        raise RuntimeError('no device driver')\n"
    dist = make_dist(f"d-{unique}", {f"p{unique}": plug}, modules={plug: plugin_source(backends=[("ctor", f"{loader}:Backend")]), loader: src})
    with pytest.raises(BackendUnavailableError) as ei:
        registry_for(dist).get_backend("ctor")
    assert ei.value.reason == "RuntimeError: no device driver"


def test_loader_that_is_not_a_backend(make_dist: MakeDist, unique: str) -> None:
    plug, loader = f"plug_{unique}", f"loader_{unique}"
    dist = make_dist(f"d-{unique}", {f"p{unique}": plug}, modules={plug: plugin_source(backends=[("notone", f"{loader}:Backend")]), loader: "class Backend:\n    pass\n"})
    with pytest.raises(PluginError) as ei:
        registry_for(dist).get_backend("notone")
    assert ei.value.code == "PLUGIN_ERROR" and ei.value.plugin == f"p{unique}"
    assert f"{loader}:Backend" in str(ei.value)


@pytest.mark.parametrize("path", ["no_colon", ":attr", "module:"])
def test_load_object_rejects_malformed_paths(path: str) -> None:
    with pytest.raises(PluginError) as ei:
        P.load_object(path)
    assert ei.value.code == "PLUGIN_ERROR" and repr(path) in str(ei.value)


def test_load_object_follows_dotted_attributes() -> None:
    assert P.load_object("inferox.core.plugins:PluginRegistry.get_backend") is P.PluginRegistry.get_backend


def test_concurrent_first_use_creates_one_instance(fake: dict[str, Any]) -> None:
    registry = registry_for(fake["dist"])
    results: list[Any] = []
    barrier = threading.Barrier(8)

    def use() -> None:
        barrier.wait()
        results.append(registry.get_backend(fake["name"]))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and all(r is results[0] for r in results)


def test_backend_spec_and_failure_records() -> None:
    spec = BackendSpec("x", loader="m:C")
    assert spec.requires == () and spec.plugin == "" and spec.description == ""
    failure = P.PluginFailure("p", "why", ValueError("v"))
    assert failure == P.PluginFailure("p", "why")  # the exception does not take part in equality


def test_installed_numpy_plugin_entry_point(numpy_registry: P.PluginRegistry) -> None:
    """The real third-party plugin, discovered through a real distribution's entry point."""
    (info,) = numpy_registry.list_backends()
    assert (info.name, info.plugin, info.plugin_version) == ("numpy", "numpy", "0.1.0")
    # The plugin registers no factory: an ArrayBackend runs every architecture's definition.
    assert numpy_registry.architectures() == {a: ["numpy"] for a in numpy_registry.schema_names()}
    assert "linear" in numpy_registry.schema_names() and "bert" in numpy_registry.schema_names()
    factory = numpy_registry.architecture_factory("numpy", "linear")
    backend = numpy_registry.get_backend("numpy")
    model = factory(backend=backend, config={"in_features": 2, "out_features": 2}, weights={"weight": np.eye(2, dtype=np.float32), "bias": np.zeros(2, np.float32)}, metadata=ModelMetadata("m"), device=None, dtype=None)
    assert model.forward({"x": np.ones((1, 2), np.float32)})["y"].tolist() == [[1.0, 1.0]]


def test_sys_path_site_is_a_real_distribution(make_dist: MakeDist, unique: str, site: Path) -> None:
    dist = make_dist(f"real-{unique}", {"n": "m"}, version="9.9")
    assert isinstance(dist, md.Distribution)
    assert md.version(f"real-{unique}") == "9.9"  # importlib.metadata itself finds it on sys.path
    assert [ep.value for ep in dist.entry_points if ep.group == "inferox"] == ["m"]
