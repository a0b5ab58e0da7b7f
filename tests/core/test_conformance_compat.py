"""Conformance compatibility within a contract major version, on REAL installed plugins.

A plugin that passed the suite of 1.0 keeps passing every 1.x: a check added in a later minor only
*warns* (:class:`ConformanceWarning`) for a plugin declaring an older minor, and fails once the
plugin declares that minor. The plugins here are real distributions (a dist-info folder with an
``inferox`` entry point, read through ``importlib.metadata``) written the way a 1.0 plugin was: the
old hook name, a ``ConfigError`` for a dtype it cannot compute in, a tanh GELU in ``mlp`` (nothing
in 1.0 checked numbers) and a cast through float32 (nothing in 1.0 checked extreme values).
"""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest

from inferox.core import PluginRegistry
from inferox.core.testing import BackendConformance, Capabilities, ConformanceWarning, since
from inferox.core.testing._conformance import _minor
from tests.support.plugins import make_distribution, numpy_mlp_plugin


def installed(site: Path, declared: str) -> tuple[PluginRegistry, str]:
    """A registry that discovered a 1.0-style plugin declaring contract ``declared``."""
    tag = declared.replace(".", "")
    name, module = f"old{tag}", f"inferox_old{tag}_plugin"
    dist_info = site / f"inferox_old{tag}-1.0.0.dist-info"
    dist = md.PathDistribution(dist_info) if dist_info.exists() else make_distribution(
        site, f"inferox-old{tag}", {name: module}, version="1.0.0", modules={module: numpy_mlp_plugin(name, version=declared, hook="inferox_register_architectures", gelu="tanh", refuse_dtype="ConfigError", cast_through_f32=True)}
    )
    registry = PluginRegistry()
    registry.load_entry_points([dist], blocked=())
    assert registry.failures == [] and registry.contract_version(name) == declared
    return registry, name


class OldSuite(BackendConformance):
    capabilities = Capabilities(device_kinds=frozenset({"cpu"}), dtypes=None)

    def make_tiny_model(self, backend: Any, weight: Any, bias: Any) -> Any:
        from inferox.core import ModelMetadata
        from tests.support.linear_model import LinearModel

        return LinearModel(backend=backend, metadata=ModelMetadata("tiny"), weight=weight, bias=bias)


#: The checks the old plugin fails, and the contract version that added each.
FAILING: dict[str, str] = {
    "test_architecture_numbers": "1.1",
    "test_architecture_factories_refuse_a_dtype_they_cannot_compute_in": "1.1",
    "test_casts_keep_extreme_values": "1.2",
}


#: What each failure says about the old plugin.
SAYS: dict[str, str] = {
    "test_architecture_numbers": "architecture 'mlp' on backend '{name}' (plugin '{name}') (dtype f32): output 'output' differs from the reference",
    "test_architecture_factories_refuse_a_dtype_they_cannot_compute_in": "mlp: dtype='i32' gave ConfigError: dtype: only f32 models",
    "test_casts_keep_extreme_values": "i64 [1099511627777, -1099511627777, 9007199254740993, -4611686018427387907]: astype(i64)",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("site")
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))


@pytest.mark.parametrize("declared", ["1.0", "1.1", "1.2"])
def test_a_check_newer_than_the_plugin_warns_and_an_older_one_fails(site: Path, declared: str) -> None:
    registry, name = installed(site, declared)
    backend = registry.get_backend(name)
    suite = OldSuite()
    for check, added in FAILING.items():
        method = getattr(suite, check)
        assert method.since == added
        if _minor(declared) < _minor(added):
            with pytest.warns(ConformanceWarning) as caught:
                method(backend=backend, registry=registry)  # passes: a warning, not a failure
            (warning,) = (w for w in caught if issubclass(w.category, ConformanceWarning))
            text = str(warning.message)
            assert text.startswith(f"{check} (added in contract {added}) fails for backend '{name}', whose plugin '{name}' declares contract {declared}")
            assert f"a warning until the plugin declares {added} or later, then a failure" in text
        else:
            with pytest.raises(pytest.fail.Exception) as ei, warnings.catch_warnings():
                warnings.simplefilter("error", ConformanceWarning)
                method(backend=backend, registry=registry)
            assert SAYS[check].format(name=name) in str(ei.value)  # what the old plugin does wrong, in the failure's words


def test_the_checks_a_1_0_plugin_passed_still_pass(site: Path) -> None:
    registry, name = installed(site, "1.0")
    backend = registry.get_backend(name)
    suite = OldSuite()
    suite.backend_name = name  # type: ignore[misc]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConformanceWarning)
        suite.test_backend_listed_by_discovery(backend=backend, registry=registry)
        suite.test_cast_between_declared_dtypes(backend=backend)  # small values: exact through float32 too
        suite.test_native_inputs(backend=backend, registry=registry)  # 1.2, and passing: no warning at all


def test_since_leaves_skips_and_unknown_plugins_alone(numpy_registry: PluginRegistry) -> None:
    class Probe(BackendConformance):
        @since("1.9")
        def check_that_skips(self, backend: Any, registry: Any) -> None:
            pytest.skip("nothing to check")

        @since("1.9")
        def check_that_fails(self, backend: Any, registry: Any) -> None:
            raise AssertionError("broken")

    backend = numpy_registry.get_backend("numpy")
    with pytest.raises(pytest.skip.Exception):
        Probe().check_that_skips(backend=backend, registry=numpy_registry)
    # A registry that does not know the backend's plugin cannot tell its version: the failure stands.
    with pytest.raises(AssertionError, match="broken"):
        Probe().check_that_fails(backend=backend, registry=PluginRegistry())
    with pytest.warns(ConformanceWarning, match="check_that_fails \\(added in contract 1.9\\)"):
        Probe().check_that_fails(backend=backend, registry=numpy_registry)  # inferox-numpy declares an older minor


RUN = '''
import sys
sys.path.insert(0, {site!r})
from tests.core.test_conformance_compat import OldSuite, installed
import pytest
from pathlib import Path


class TestOld10(OldSuite):
    backend_name = "old10"

    @pytest.fixture(scope="class")
    def registry(self):
        return installed(Path({site!r}), "1.0")[0]
'''


def test_a_1_0_plugin_passes_the_whole_suite_under_pytest(tmp_path: Path) -> None:
    """The whole suite, run by pytest as a plugin's own test module runs it: every test passes (or
    skips for an undeclared capability), and the three newer checks it fails are warnings."""
    site = tmp_path / "site"
    site.mkdir()  # before the inner run puts it on sys.path (a missing folder's importer is cached as absent)
    (tmp_path / "test_old.py").write_text(textwrap.dedent(RUN.format(site=str(site))), encoding="utf-8")
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    env.pop("COV_CORE_SOURCE", None)  # the inner run is not part of this run's coverage
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(tmp_path / "test_old.py"), "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "--rootdir", str(tmp_path), "-o", "addopts="],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert " failed" not in out and " passed" in out
    for check, added in FAILING.items():
        assert f"ConformanceWarning: {check} (added in contract {added}) fails for backend 'old10', whose plugin 'old10' declares contract 1.0" in out, out
