"""The engine imports no backend: the import graph of its source, and what a real process imports.

Backends are plugins: the engine finds them through the registry and talks to them through
``inferox.core``'s interfaces only, so installing or removing one never changes the engine's code,
and an engine that loads nothing never pays for a framework.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import inferox.engine

ENGINE_SRC = Path(inferox.engine.__file__).parent
#: Backend distributions' modules and the frameworks they wrap.
FORBIDDEN = ("inferox.torch", "inferox.jax", "inferox.onnx", "inferox_numpy", "torch", "jax", "jaxlib", "flax", "onnx", "onnxruntime", "tensorflow", "keras")


def _forbidden(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports (at any depth: top level, in functions, under TYPE_CHECKING),
    plus the string arguments of ``importlib.import_module`` / ``__import__`` calls."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


def test_the_engine_source_imports_no_backend() -> None:
    files = sorted(ENGINE_SRC.rglob("*.py"))
    assert len(files) > 20, files  # the whole package is scanned, its CLI and server included
    offenders = [f"{p.relative_to(ENGINE_SRC)}:{line}: {mod}" for p in files for line, mod in _imports(p) if _forbidden(mod)]
    assert offenders == []


def test_the_scan_finds_a_backend_import(tmp_path: Path) -> None:
    # The check above cannot pass by missing the import forms the engine might use.
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import importlib\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from inferox.torch import TorchModel\n"
        "def f():\n    import jax.numpy as jnp\n    return importlib.import_module('onnxruntime')\n"
    )
    assert sorted(mod for _, mod in _imports(probe) if _forbidden(mod)) == ["inferox.torch", "inferox.torch.TorchModel", "jax.numpy", "onnxruntime"]


_RUNTIME = """
import json, sys
import inferox.engine
from inferox.engine import Engine, EngineConfig
import inferox.engine.cli
import inferox.engine.server
from inferox.core.plugins import get_registry
installed = get_registry().backend_names()          # discovery imports plugin modules only
engine = Engine(EngineConfig(backend_preference=tuple(installed)))
engine.list_models()
engine.shutdown()
print(json.dumps({"installed": installed, "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "jax", "jaxlib", "onnx", "onnxruntime", "tensorflow") or m.startswith(("inferox.torch.", "inferox.jax.", "inferox.onnx.")))}))
"""


def test_importing_the_engine_and_loading_nothing_imports_no_framework() -> None:
    out = subprocess.run([sys.executable, "-c", _RUNTIME], capture_output=True, text=True, timeout=300, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["installed"], "no backend installed: the check would hold trivially"
    # Plugin modules (inferox.<backend>.plugin) are allowed: they register lazy specs only.
    assert [m for m in report["modules"] if not m.endswith(".plugin")] == []
