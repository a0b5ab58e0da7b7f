"""Every backend distribution of this repository follows one template (docs/plugin-guide.md,
"The backend template"): the same module names, the same constants in ``plugin.py``, the version
read from the distribution's metadata and the same lazy ``__init__`` built by core's helper.

A backend that runs architecture definitions (``BackendSpec(definitions=True)``) has an ``ops.py``
(its overrides of core's fused operations) and no ``models/`` folder: it holds no code of any
architecture. Every first-party backend does: inferox-onnx traces the definitions into ONNX graphs
(its private ``_trace.py``, the recording namespace, and ``_graph.py``, the graph cache and int8,
and torch's and jax's ``_threads.py`` are the only modules the template does not have)."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import subprocess
import sys
from pathlib import Path

import pytest

import inferox.core
from inferox.core.plugins import PluginRegistry

ROOT = Path(__file__).resolve().parents[2]
#: (import package, distribution, backend name, prefix of the error helpers)
BACKENDS = [("inferox.torch", "inferox-torch", "torch"), ("inferox.jax", "inferox-jax", "jax"), ("inferox.onnx", "inferox-onnx", "onnx")]
TEMPLATE_MODULES = {"__init__.py", "_errors.py", "backend.py", "model.py", "plugin.py", "py.typed", "tensor.py"}
#: Backends that run every architecture's definition: their op overrides, no per-architecture code.
DEFINITION_BACKENDS = {"torch", "jax", "onnx"}
#: Private modules a backend has beyond the template (what only its framework needs): torch and jax
#: configure their thread pools before the framework is imported (``_threads.py``); onnx sets its
#: per session in ``model.py``.
EXTRA_MODULES = {"torch": {"_threads.py"}, "jax": {"_threads.py"}, "onnx": {"_graph.py", "_trace.py"}}


def _source(package: str) -> Path:
    return ROOT / f"inferox-{package.split('.')[1]}" / "src" / Path(*package.split("."))


@pytest.mark.parametrize(("package", "distribution", "backend"), BACKENDS)
def test_same_module_names(package: str, distribution: str, backend: str) -> None:
    src = _source(package)
    assert backend in DEFINITION_BACKENDS
    assert {p.name for p in src.iterdir() if p.is_file()} == TEMPLATE_MODULES | {"ops.py"} | EXTRA_MODULES.get(backend, set())
    assert not (src / "models").exists()  # no architecture code: the definitions run here
    assert not (src / "_version.py").exists()  # the version comes from the distribution's metadata


@pytest.mark.parametrize(("package", "distribution", "backend"), BACKENDS)
def test_same_constants_and_hooks(package: str, distribution: str, backend: str) -> None:
    plugin = importlib.import_module(f"{package}.plugin")
    assert plugin.DISTRIBUTION == distribution
    assert plugin.BACKEND_NAME == backend
    assert all(isinstance(a, str) and f.startswith(f"{package}.models.{a}:") for a, f in plugin.ARCHITECTURES)
    assert set(plugin.__all__) == {
        "ARCHITECTURES", "BACKEND_NAME", "DISTRIBUTION", "SPEED", "inferox_contract_version", "inferox_plugin_info",
        "inferox_register_backends", "inferox_register_implementations",
    }
    registry = PluginRegistry()
    registry.register_plugin(plugin, name=backend)
    assert registry.backend_names() == [backend]
    assert backend in DEFINITION_BACKENDS
    # No factory registered, and every architecture with a definition runs here.
    assert plugin.ARCHITECTURES == () and registry.backend_spec(backend).definitions
    assert sorted(registry.architectures(backend)) == [s for s in registry.schema_names() if registry.schema(s).definition is not None]
    assert plugin.inferox_plugin_info()["version"] == md.version(distribution)
    # The declared speed ranking (relative to torch) is what the spec carries.
    assert registry.backend_spec(backend).speed == plugin.SPEED


@pytest.mark.parametrize(("package", "distribution", "backend"), BACKENDS)
def test_version_from_metadata_and_lazy_init(package: str, distribution: str, backend: str) -> None:
    module = importlib.import_module(package)
    assert module.__version__ == md.version(distribution)
    assert inferox.core.__version__ == md.version("inferox-core")
    assert dir(module) == sorted(module.__all__)
    # The error helpers have the same names in both: <backend>_errors and wrap_<backend>_error.
    assert {f"{backend}_errors", f"wrap_{backend}_error"} <= set(module.__all__)
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'nope'"):
        module.nope  # noqa: B018
    # Importing the package imports no framework; reading a lazy name does.
    code = f"import sys, {package} as m; before = '{backend}' in sys.modules; m.{backend}_errors; print(before)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
