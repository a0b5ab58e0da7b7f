"""The ``onnx`` entry point: lazy registration, no onnx / onnxruntime import at discovery, the public surface."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys

import pytest

import inferox.onnx
from inferox.core import CONTRACT_VERSION, BackendSpec
from inferox.core.errors import BackendUnavailableError
from inferox.core.plugins import PluginRegistry, get_registry, reset_registry
from inferox.onnx import plugin


def _run(code: str, **env: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter (no onnx imported yet) and return its JSON output."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={**os.environ, **env}, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_import_and_discovery_do_not_import_onnx_or_onnxruntime() -> None:
    out = _run(
        "import json, sys\n"
        "import inferox.onnx, inferox.onnx.plugin\n"
        "after_import = [m for m in ('onnx', 'onnxruntime') if m in sys.modules]\n"
        "from inferox.core.plugins import get_registry\n"
        "reg = get_registry()\n"
        "infos = {i.name: i for i in reg.list_backends()}\n"
        "print(json.dumps({'after_import': after_import, 'after_discovery': [m for m in ('onnx', 'onnxruntime') if m in sys.modules],\n"
        "  'available': infos['onnx'].available, 'versions': infos['onnx'].versions, 'loaded': reg.is_loaded('onnx'),\n"
        "  'archs': sorted(reg.architectures('onnx')), 'dir': sorted(dir(inferox.onnx)),\n"
        "  'defined': sorted(s for s in reg.schema_names() if reg.schema(s).definition is not None)}))\n"
    )
    assert out["after_import"] == [] and out["after_discovery"] == []
    assert out["available"] is True and out["loaded"] is False
    assert out["versions"] == {"onnx": md.version("onnx"), "onnxruntime": md.version("onnxruntime")}
    # Every architecture with a definition runs on onnx (traced), listed before onnx is imported.
    assert out["archs"] == out["defined"]
    assert {"mlp", "bert", "distilbert", "roberta", "xlm-roberta", "mpnet", "electra"} <= set(out["archs"])
    assert out["dir"] == sorted(inferox.onnx.__all__)


def test_first_use_imports_onnxruntime() -> None:
    out = _run(
        "import json, sys\n"
        "from inferox.core.plugins import get_registry\n"
        "b = get_registry().get_backend('onnx')\n"
        "print(json.dumps({'ort': 'onnxruntime' in sys.modules, 'name': type(b).__name__, 'version': b.version}))\n"
    )
    assert out == {"ort": True, "name": "OnnxBackend", "version": md.version("onnxruntime")}


def test_blocked_by_environment_variable() -> None:
    out = _run(
        "import json\n"
        "from inferox.core.plugins import get_registry\n"
        "from inferox.core.errors import BackendUnavailableError\n"
        "try:\n"
        "    get_registry().get_backend('onnx'); r = None\n"
        "except BackendUnavailableError as e:\n"
        "    r = [e.code, e.details.get('reason')]\n"
        "print(json.dumps({'names': get_registry().backend_names(), 'error': r}))\n",
        INFEROX_BLOCKED_PLUGINS="onnx",
    )
    assert "onnx" not in out["names"]
    assert out["error"] == ["BACKEND_UNAVAILABLE", "blocked by INFEROX_BLOCKED_PLUGINS"]


def test_hooks_register_the_backend_and_no_factory() -> None:
    specs: list[BackendSpec] = []
    archs: list[tuple[str, str, str]] = []
    plugin.inferox_register_backends(specs.append)
    plugin.inferox_register_implementations(lambda b, a, f, **_: archs.append((b, a, f)))
    assert [s.name for s in specs] == ["onnx"] and specs[0].requires == ("onnx", "onnxruntime")
    assert specs[0].loader == "inferox.onnx.backend:OnnxBackend"
    assert specs[0].definitions is True  # it runs every architecture's definition ...
    assert archs == [] and plugin.ARCHITECTURES == ()  # ... and registers no architecture code
    assert plugin.inferox_contract_version() == CONTRACT_VERSION
    assert plugin.inferox_plugin_info() == {"description": "The ONNX Runtime backend for Inferox", "version": md.version("inferox-onnx")}
    assert inferox.onnx.__version__ == md.version("inferox-onnx")


def test_runtime_distribution_is_the_one_installed() -> None:
    # The CPU build is what this environment has; a GPU build (onnxruntime-gpu) would be named instead.
    assert plugin._runtime_distribution() == "onnxruntime"


def test_registered_in_a_private_registry() -> None:
    registry = PluginRegistry()
    registry.register_plugin(plugin, name="onnx")
    assert registry.backend_names() == ["onnx"]
    assert type(registry.get_backend("onnx")).__name__ == "OnnxBackend"


def test_unknown_lazy_name() -> None:
    with pytest.raises(AttributeError, match=r"module 'inferox\.onnx' has no attribute 'nope'"):
        inferox.onnx.nope  # noqa: B018


def test_discovered_through_the_entry_point() -> None:
    reset_registry()
    try:
        assert "onnx" in get_registry().backend_names()
        with pytest.raises(BackendUnavailableError):
            get_registry().get_backend("onnx-nope")
    finally:
        reset_registry()
