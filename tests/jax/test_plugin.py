"""The jax plugin: lazy registration, no jax import at discovery, contract version, lazy package names."""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys
import textwrap

import pytest

import inferox.jax
from inferox.core import CONTRACT_VERSION, BackendSpec
from inferox.core.plugins import PluginRegistry
from inferox.jax import plugin


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, env={**os.environ, **env}, check=False)


def test_plugin_import_and_discovery_do_not_import_jax() -> None:
    proc = _run(
        """
        import sys
        import inferox.jax
        import inferox.jax.plugin
        assert "jax" not in sys.modules, "importing the plugin imported jax"
        from inferox.core.plugins import get_registry
        reg = get_registry()
        assert "jax" in reg.backend_names(), reg.backend_names()
        info = {i.name: i for i in reg.list_backends()}["jax"]
        assert info.installed and info.versions["jax"] and info.versions["jaxlib"], info
        assert info.plugin == "jax" and info.plugin_version
        assert "jax" not in sys.modules and "jaxlib" not in sys.modules, "discovery imported jax"
        dir(inferox.jax)
        assert "jax" not in sys.modules
        backend = reg.get_backend("jax")
        assert "jax" in sys.modules and backend.name == "jax"
        print("OK")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"


def test_blocked_by_environment_variable() -> None:
    proc = _run(
        """
        from inferox.core.plugins import get_registry
        from inferox.core import BackendUnavailableError
        reg = get_registry()
        assert "jax" not in reg.backend_names() and "jax" in reg.blocked
        try:
            reg.get_backend("jax")
        except BackendUnavailableError as e:
            assert e.code == "BACKEND_UNAVAILABLE" and "INFEROX_BLOCKED_PLUGINS" in e.reason
            print("OK")
        """,
        INFEROX_BLOCKED_PLUGINS="jax",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"


def test_entry_point_names_the_plugin_module() -> None:
    eps = [ep for ep in md.entry_points(group="inferox") if ep.name == "jax"]
    assert len(eps) == 1 and eps[0].value == "inferox.jax.plugin"
    assert eps[0].load() is plugin


def test_hooks() -> None:
    assert plugin.inferox_contract_version() == CONTRACT_VERSION
    specs: list[BackendSpec] = []
    plugin.inferox_register_backends(register=specs.append)
    assert len(specs) == 1
    spec = specs[0]
    assert spec.name == "jax" and spec.loader == "inferox.jax.backend:JaxBackend" and spec.requires == ("jax", "jaxlib")
    assert spec.description
    archs: list[tuple[str, str, str]] = []
    plugin.inferox_register_implementations(register=lambda b, a, f, **_: archs.append((b, a, f)))
    assert archs == [("jax", a, f) for a, f in plugin.ARCHITECTURES]


def test_registered_in_a_private_registry() -> None:
    reg = PluginRegistry()
    reg.register_plugin(plugin, name="jax-under-test", version="0.0")
    assert reg.backend_names() == ["jax"]
    assert reg.backend_spec("jax").plugin == "jax-under-test"
    for arch, _factory in plugin.ARCHITECTURES:
        assert reg.backends_for(arch) == ["jax"]
        assert callable(reg.architecture_factory("jax", arch)), arch  # the lazy "module:factory" resolves


def test_lazy_public_names() -> None:
    from inferox.jax.backend import JaxBackend

    assert inferox.jax.JaxBackend is JaxBackend
    assert set(inferox.jax.__all__) <= set(dir(inferox.jax))
    for name in inferox.jax.__all__:
        assert getattr(inferox.jax, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        inferox.jax.Nope  # noqa: B018
