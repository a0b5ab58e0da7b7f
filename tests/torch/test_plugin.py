"""The ``torch`` entry point: lazy registration, no torch import at discovery, the public surface."""

from __future__ import annotations

import importlib.metadata as md
import json
import subprocess
import sys

import pytest

import inferox.torch
from inferox.core import CONTRACT_VERSION, BackendSpec
from inferox.core.plugins import PluginRegistry, get_registry, reset_registry
from inferox.torch import plugin


def _run(code: str, **env: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter (torch not yet imported) and return its JSON output."""
    import os

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={**os.environ, **env}, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_import_and_discovery_do_not_import_torch() -> None:
    out = _run(
        "import json, sys\n"
        "import inferox.torch, inferox.torch.plugin\n"
        "after_import = 'torch' in sys.modules\n"
        "from inferox.core.plugins import get_registry\n"
        "infos = {i.name: i for i in get_registry().list_backends()}\n"
        "reg = get_registry()\n"
        "archs = reg.architectures('torch')\n"
        "print(json.dumps({'after_import': after_import, 'after_discovery': 'torch' in sys.modules,\n"
        "  'listed': 'torch' in infos, 'version': infos['torch'].versions.get('torch'),\n"
        "  'available': infos['torch'].available, 'loaded': reg.is_loaded('torch'),\n"
        "  'dir': sorted(dir(inferox.torch))}))\n"
    )
    assert out["after_import"] is False
    assert out["after_discovery"] is False
    assert out["listed"] is True and out["available"] is True and out["loaded"] is False
    assert out["version"] == md.version("torch")
    assert out["dir"] == sorted(inferox.torch.__all__)


def test_first_use_imports_torch() -> None:
    out = _run(
        "import json, sys\n"
        "from inferox.core.plugins import get_registry\n"
        "b = get_registry().get_backend('torch')\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'name': type(b).__name__}))\n"
    )
    assert out == {"torch": True, "name": "TorchBackend"}


def test_blocked_by_environment_variable() -> None:
    out = _run(
        "import json\n"
        "from inferox.core.plugins import get_registry\n"
        "from inferox.core.errors import BackendUnavailableError\n"
        "reg = get_registry()\n"
        "try:\n"
        "    reg.get_backend('torch'); reason = None\n"
        "except BackendUnavailableError as e:\n"
        "    reason = [e.code, e.reason]\n"
        "print(json.dumps({'names': reg.backend_names(), 'blocked': reg.blocked, 'reason': reason}))\n",
        INFEROX_BLOCKED_PLUGINS="torch",
    )
    assert "torch" not in out["names"] and out["blocked"] == ["torch"]
    assert out["reason"] == ["BACKEND_UNAVAILABLE", "blocked by INFEROX_BLOCKED_PLUGINS"]


def test_hookimpls_register_a_lazy_spec() -> None:
    assert plugin.inferox_contract_version() == CONTRACT_VERSION
    specs: list[BackendSpec] = []
    plugin.inferox_register_backends(register=specs.append)
    assert specs == [BackendSpec("torch", loader="inferox.torch.backend:TorchBackend", requires=("torch",), description=specs[0].description, definitions=True)]
    assert specs[0].description
    archs: list[tuple[str, str, str]] = []
    plugin.inferox_register_implementations(register=lambda b, a, f, **_: archs.append((b, a, f)))
    assert archs == []  # torch runs every architecture's definition: it registers no factory
    assert plugin.inferox_plugin_info()["version"] == inferox.torch.__version__


def test_registered_through_the_entry_point() -> None:
    eps = [ep for ep in md.entry_points(group="inferox") if ep.name == "torch"]
    assert len(eps) == 1 and eps[0].value == "inferox.torch.plugin"
    reset_registry()
    try:
        reg = get_registry()
        assert "torch" in reg.backend_names()
        assert not [f for f in reg.failures if f.name == "torch"]
        for arch in reg.architectures("torch"):
            assert callable(reg.architecture_factory("torch", arch))
    finally:
        reset_registry()


def test_registering_twice_names_both_plugins() -> None:
    reg = PluginRegistry()
    reg.register_plugin(plugin, name="torch")
    import types

    clone = types.ModuleType("clone")
    clone.inferox_contract_version = plugin.inferox_contract_version  # type: ignore[attr-defined]
    clone.inferox_register_backends = plugin.inferox_register_backends  # type: ignore[attr-defined]
    from inferox.core.errors import PluginError

    with pytest.raises(PluginError) as ei:
        reg.register_plugin(clone, name="torch-clone")
    assert ei.value.code == "PLUGIN_ERROR" and ei.value.plugin == "torch-clone"
    assert "'torch'" in str(ei.value) and "'torch-clone'" in str(ei.value)


def test_lazy_attributes() -> None:
    from inferox.torch.backend import TorchBackend

    assert inferox.torch.TorchBackend is TorchBackend
    with pytest.raises(AttributeError) as ei:
        _ = inferox.torch.NoSuchThing  # type: ignore[attr-defined]
    assert "NoSuchThing" in str(ei.value)
    assert dir(inferox.torch) == sorted(inferox.torch.__all__)
    for name in inferox.torch.__all__:
        assert getattr(inferox.torch, name) is not None
