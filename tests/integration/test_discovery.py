"""Discovery on the real installed distributions: torch and jax found through their entry points with
versions, devices and availability; INFEROX_BLOCKED_PLUGINS hides one; a broken plugin next to them
is reported by name. Each case runs in a fresh interpreter, as a user's process would."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = r"""
import json, sys
from inferox.core import get_registry, BackendUnavailableError
reg = get_registry()
listed = {i.name: {"versions": i.versions, "available": i.available, "plugin": i.plugin} for i in reg.list_backends()}
framework_imported = sorted(m for m in ("torch", "jax") if m in sys.modules)
devices, blocked = {}, {}
for name in ("torch", "jax"):
    try:
        b = reg.get_backend(name)
        devices[name] = {"devices": [str(d.id) for d in b.devices()], "default": str(b.default_device()), "version": b.version}
    except BackendUnavailableError as e:
        blocked[name] = {"code": e.code, "reason": e.reason}
print(json.dumps({"listed": listed, "imported_while_listing": framework_imported, "devices": devices,
                  "blocked": blocked, "failures": {f.name: f.error for f in reg.failures}}))
"""


def _probe(tmp_path: Path, **env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, env={**os.environ, **env}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_torch_and_jax_are_discovered_with_versions_and_devices(tmp_path: Path) -> None:
    result = _probe(tmp_path)
    for name, dists in (("torch", ["torch"]), ("jax", ["jax", "jaxlib"])):
        assert result["listed"][name]["available"] is True
        assert result["listed"][name]["versions"] == {d: md.version(d) for d in dists}
        assert "cpu" in result["devices"][name]["devices"]
        assert result["devices"][name]["default"] in result["devices"][name]["devices"]
    assert result["devices"]["torch"]["version"] == md.version("torch")
    assert result["imported_while_listing"] == [], "listing backends must not import a framework"
    assert result["failures"] == {}


def test_blocking_by_environment_variable_hides_a_backend(tmp_path: Path) -> None:
    result = _probe(tmp_path, INFEROX_BLOCKED_PLUGINS="jax")
    assert "jax" not in result["listed"] and "torch" in result["listed"]
    assert result["blocked"]["jax"] == {"code": "BACKEND_UNAVAILABLE", "reason": "blocked by INFEROX_BLOCKED_PLUGINS"}
    assert "torch" in result["devices"]


def test_a_broken_plugin_is_reported_by_name_and_the_others_still_work(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist_info = site / "inferox_broken-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: inferox-broken\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[inferox]\nbroken = inferox_broken_plugin\n")
    (site / "inferox_broken_plugin.py").write_text("raise RuntimeError('this plugin is broken on purpose')\n")
    result = _probe(tmp_path, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    assert "broken" in result["failures"]
    assert "RuntimeError: this plugin is broken on purpose" in result["failures"]["broken"]
    assert result["listed"]["torch"]["available"] and result["listed"]["jax"]["available"]


@pytest.mark.parametrize("module", ["inferox.torch.plugin", "inferox.jax.plugin"])
def test_plugin_modules_import_no_framework(module: str, tmp_path: Path) -> None:
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'jax') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
