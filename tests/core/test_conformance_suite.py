"""The conformance suite itself: mandatory tests FAIL (never skip) when a backend falls short, and
capability tests skip only for undeclared capabilities or absent devices, saying which.

Each scenario is a real backend with one defect, run through the suite in a separate pytest process;
the outcomes are read from its JUnit XML report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from inferox_numpy.backend import NumpyBackend

from inferox.core import ArrayTensor as NumpyTensor
from inferox.core import DType
from inferox.core import plugins as P
from inferox.core.testing import BackendConformance, Capabilities, sample_array, to_python_list

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN_SRC = REPO_ROOT / "tests" / "plugins" / "inferox-numpy" / "src"

SCENARIOS = '''
from typing import Any

import numpy as np
from inferox_numpy.backend import NumpyBackend

from inferox.core import ArrayTensorBuilder as NumpyTensorBuilder
from tests.support.linear_model import LinearModel

from inferox.core import DType, ModelMetadata


class NoBF16(NumpyBackend):
    name = "nobf16"

    def supported_dtypes(self, device: Any = None) -> frozenset[DType]:
        return frozenset(DType) - {DType.BF16}


class LossyBuilder(NumpyTensorBuilder):
    def _from_numpy(self, array: np.ndarray) -> np.ndarray:
        return array.astype(np.float32)  # loses every dtype but f32


class Lossy(NumpyBackend):
    name = "lossy"

    def tensor_builder(self, device: Any = None) -> LossyBuilder:
        return LossyBuilder(self, self.check_device(device))


class HasCuda(NumpyBackend):
    name = "hascuda"
    device_kinds = frozenset({"cpu", "cuda"})


class Forgiving(LinearModel):
    """Swallows a wrong inner shape instead of letting the framework raise."""

    def forward(self, inputs: Any) -> dict[str, Any]:
        x = inputs["x"][:, : self.weight.shape[0]]
        return {"y": x @ self.weight + self.bias}
'''

TESTS = '''
import types

import numpy as np
import pytest
from tests.support.linear_model import LinearModel
from scenario_backends import Forgiving

from inferox.core import BackendSpec, DType, ModelMetadata, hookimpl
from inferox.core.plugins import PluginRegistry
from inferox.core.testing import BackendConformance, Capabilities


def in_process_registry(name: str, loader: str) -> PluginRegistry:
    plugin = types.ModuleType(f"plugin_{name}")
    plugin.inferox_contract_version = hookimpl(lambda: "1.0")
    plugin.inferox_register_backends = hookimpl(lambda register: register(BackendSpec(name, loader=loader, requires=("numpy",))))
    registry = PluginRegistry()
    registry.register_plugin(plugin, name=name)
    return registry


class Base(BackendConformance):
    loader = "inferox_numpy.backend:NumpyBackend"

    @pytest.fixture
    def registry(self) -> PluginRegistry:
        return in_process_registry(self.backend_name, self.loader)

    def make_tiny_model(self, backend, weight, bias):
        return LinearModel(backend=backend, metadata=ModelMetadata("tiny"), weight=weight, bias=bias)


class TestNoDlpackDeclared(Base):
    backend_name = "numpy"
    capabilities = Capabilities(device_kinds=frozenset({"cpu"}), dtypes=frozenset({DType.F32, DType.I64}), dlpack=False)


class TestDeclaresBf16ItLacks(Base):
    backend_name = "nobf16"
    loader = "scenario_backends:NoBF16"
    capabilities = Capabilities(device_kinds=frozenset({"cpu"}), dtypes=frozenset({DType.F32, DType.BF16}))


class TestLossyBuilder(Base):
    backend_name = "lossy"
    loader = "scenario_backends:Lossy"
    capabilities = Capabilities(device_kinds=frozenset({"cpu"}), dtypes=frozenset({DType.F32, DType.I32}))


class TestCudaDeclaredButAbsent(Base):
    backend_name = "hascuda"
    loader = "scenario_backends:HasCuda"
    capabilities = Capabilities(device_kinds=frozenset({"cpu", "cuda"}), dtypes=frozenset({DType.F32}), dlpack=True, zero_copy_numpy=True)


class TestNoTinyModel(Base):
    backend_name = "numpy"
    capabilities = Capabilities(device_kinds=frozenset({"cpu"}), dtypes=frozenset({DType.F32}))

    def make_tiny_model(self, backend, weight, bias):
        return super(Base, self).make_tiny_model(backend, weight, bias)


class TestModelSwallowsErrors(Base):
    backend_name = "numpy"
    capabilities = Capabilities(device_kinds=frozenset({"cpu"}), dtypes=frozenset({DType.F32}))

    def make_tiny_model(self, backend, weight, bias):
        return Forgiving(backend=backend, metadata=ModelMetadata("tiny"), weight=weight, bias=bias)


class TestCpuNotDeclared(Base):
    backend_name = "numpy"
    capabilities = Capabilities(device_kinds=frozenset({"cuda"}), dtypes=frozenset({DType.F32}))
'''

MANDATORY = {
    "test_declared_dtypes_are_supported",
    "test_tensor_round_trip_every_dtype",
    "test_cast_between_declared_dtypes",
    "test_zeros_ones_full_empty",
    "test_randn_matches_numpy_generator",
    "test_zero_size_shapes",
    "test_shape_errors",
    "test_unsupported_dtype",
    "test_device_listing_and_default_device",
    "test_check_device_errors",
    "test_any_model_round_trip",
    "test_validation_errors_never_reach_the_framework",
    "test_framework_errors_are_wrapped",
    "test_backend_listed_by_discovery",
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], tuple[str, str]]:
    """``{(class, test): (outcome, message)}`` of the scenario run."""
    folder = tmp_path_factory.mktemp("scenarios")
    (folder / "scenario_backends.py").write_text(textwrap.dedent(SCENARIOS), encoding="utf-8")
    (folder / "test_scenarios.py").write_text(textwrap.dedent(TESTS), encoding="utf-8")
    report = folder / "report.xml"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(folder), str(PLUGIN_SRC), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("COV_CORE_SOURCE", None)  # the inner run is not part of this run's coverage
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(folder / "test_scenarios.py"), "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "--rootdir", str(folder), "-o", "addopts=", "--junitxml", str(report)],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert report.exists(), proc.stdout + proc.stderr
    results: dict[tuple[str, str], tuple[str, str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        cls = case.get("classname", "").rsplit(".", 1)[-1]
        name = case.get("name", "")
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                text = "" if child.tag == "skipped" else "\n" + (child.text or "")
                outcome, message = child.tag, child.get("message", "") + text
        results[(cls, name)] = (outcome, message)
    assert results, proc.stdout + proc.stderr
    return results


def _of(outcomes: dict[tuple[str, str], tuple[str, str]], cls: str) -> dict[str, tuple[str, str]]:
    return {name: result for (c, name), result in outcomes.items() if c == cls}


def test_mandatory_tests_never_skip(outcomes: dict[tuple[str, str], tuple[str, str]]) -> None:
    for (cls, name), (outcome, message) in outcomes.items():
        if name.split("[")[0] in MANDATORY:
            assert outcome != "skipped", f"{cls}.{name} skipped: {message}"
        if outcome == "skipped":
            assert message.startswith(("capability ", "no ")), f"{cls}.{name}: {message}"


def test_undeclared_capabilities_skip_naming_the_capability(outcomes: dict[tuple[str, str], tuple[str, str]]) -> None:
    results = _of(outcomes, "TestNoDlpackDeclared")
    assert results["test_dlpack_round_trip"] == ("skipped", "capability 'dlpack' not declared by backend 'numpy'")
    assert results["test_dlpack_shares_memory_with_numpy"][1] == "capability 'zero_copy_numpy' not declared by backend 'numpy'"
    for kind in ("cuda", "mps", "tpu"):
        assert results[f"test_transfer_to_accelerator[{kind}]"] == ("skipped", f"capability {kind!r} not declared by backend 'numpy'")
        assert results[f"test_dtypes_on_accelerator[{kind}]"][0] == "skipped"
    assert all(outcome == "passed" for name, (outcome, _) in results.items() if name.split("[")[0] in MANDATORY)


def test_declared_but_absent_device_skips_saying_so(outcomes: dict[tuple[str, str], tuple[str, str]]) -> None:
    results = _of(outcomes, "TestCudaDeclaredButAbsent")
    assert results["test_transfer_to_accelerator[cuda]"] == ("skipped", "no cuda device on this machine")
    assert results["test_dtypes_on_accelerator[cuda]"] == ("skipped", "no cuda device on this machine")
    assert results["test_dlpack_shares_memory_with_numpy"][0] == "passed"
    assert results["test_check_device_errors"][0] == "passed"


def test_declaring_a_dtype_the_backend_lacks_fails(outcomes: dict[tuple[str, str], tuple[str, str]]) -> None:
    results = _of(outcomes, "TestDeclaresBf16ItLacks")
    assert results["test_declared_dtypes_are_supported"][0] == "failure"
    assert "['bf16']" in results["test_declared_dtypes_are_supported"][1]
    assert results["test_tensor_round_trip_every_dtype"][0] == "failure"
    assert "bf16" in results["test_tensor_round_trip_every_dtype"][1]


def test_a_lossy_round_trip_fails_for_each_dtype(outcomes: dict[tuple[str, str], tuple[str, str]]) -> None:
    outcome, message = _of(outcomes, "TestLossyBuilder")["test_tensor_round_trip_every_dtype"]
    assert outcome == "failure"
    assert "i32:" in message and "f32:" not in message


def test_a_missing_tiny_model_fails_the_model_tests(outcomes: dict[tuple[str, str], tuple[str, str]]) -> None:
    results = _of(outcomes, "TestNoTinyModel")
    for name in ("test_any_model_round_trip", "test_validation_errors_never_reach_the_framework", "test_framework_errors_are_wrapped"):
        assert results[name][0] == "failure", name
        assert "must implement make_tiny_model" in results[name][1]


def test_a_model_that_swallows_framework_errors_fails(outcomes: dict[tuple[str, str], tuple[str, str]]) -> None:
    results = _of(outcomes, "TestModelSwallowsErrors")
    assert results["test_framework_errors_are_wrapped"][0] == "failure"
    assert results["test_any_model_round_trip"][0] == "passed"


def test_cpu_must_be_declared(outcomes: dict[tuple[str, str], tuple[str, str]]) -> None:
    outcome, message = _of(outcomes, "TestCpuNotDeclared")["test_device_listing_and_default_device"]
    assert outcome == "failure" and "must include 'cpu'" in message


def test_capabilities_normalise() -> None:
    caps = Capabilities(device_kinds=frozenset({"CPU", "Cuda"}), dtypes=frozenset({"f32", DType.I64}))  # type: ignore[arg-type]
    assert caps.device_kinds == {"cpu", "cuda"} and caps.dtypes == {DType.F32, DType.I64}
    assert caps.declares("cuda") and not caps.declares("tpu") and caps.declares("dlpack") and not caps.declares("zero_copy_numpy")
    assert not Capabilities(dlpack=False, zero_copy_numpy=True).declares("zero_copy_numpy")


# -------------------------------------------------------------------------- in-process, method by method
class _Exploding:
    """Stands in for a backend's builder whose every constructor raises a framework error."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"framework cannot {name}")


class _LossyNumpy(NumpyBackend):
    name = "lossy-inproc"

    def wrap(self, native: Any) -> NumpyTensor:
        return NumpyTensor(np.asarray(native).astype(np.float64) + 1, self)  # wrong dtype and values


class _Raising(NumpyBackend):
    name = "raising-inproc"

    def wrap(self, native: Any) -> NumpyTensor:
        raise RuntimeError("framework error while wrapping")


class _Suite(BackendConformance):
    backend_name = "numpy"
    capabilities = Capabilities(device_kinds=frozenset({"cpu", "cuda"}), dtypes=frozenset({DType.F32, DType.I32, DType.I64}), dlpack=True)


@pytest.mark.parametrize("backend_cls", [_LossyNumpy, _Raising], ids=["assertion", "exception"])
@pytest.mark.parametrize(
    "method",
    ["test_tensor_round_trip_every_dtype", "test_cast_between_declared_dtypes", "test_zeros_ones_full_empty", "test_randn_matches_numpy_generator", "test_dlpack_round_trip"],
)
def test_failures_are_collected_per_dtype(backend_cls: type[NumpyBackend], method: str) -> None:
    """Every dtype is tried and every failure reported in one message, whatever the failure is."""
    suite = _Suite()
    if method == "test_cast_between_declared_dtypes" and backend_cls is _Raising:
        with pytest.raises(RuntimeError, match="framework error while wrapping"):  # its source tensor already fails
            getattr(suite, method)(backend_cls())
        return
    with pytest.raises(pytest.fail.Exception) as ei:
        getattr(suite, method)(backend_cls())
    message = str(ei.value)
    checked = ["f32"] if method == "test_randn_matches_numpy_generator" else ["f32", "i32", "i64"]
    for dtype in checked:
        assert f"{dtype}: " in message, (dtype, message)
    if backend_cls is _Raising:
        assert "RuntimeError: framework error while wrapping" in message


def test_require_skips_for_an_absent_device_in_process(backend: NumpyBackend) -> None:
    suite = _Suite()
    with pytest.raises(pytest.skip.Exception) as ei:
        suite.test_transfer_to_accelerator(backend, "cuda")
    assert str(ei.value) == "no cuda device on this machine"
    with pytest.raises(pytest.skip.Exception) as ei:
        suite.require("tpu")
    assert str(ei.value) == "capability 'tpu' not declared by backend 'numpy'"
    suite.require("cpu", backend)  # declared and present: no skip
    suite.require("dlpack")


def test_generate_tests_adds_the_backends_own_kinds() -> None:
    class Custom(BackendConformance):
        capabilities = Capabilities(device_kinds=frozenset({"cpu", "npu"}))

    class Meta:
        def __init__(self) -> None:
            self.fixturenames = ["backend", "accelerator"]
            self.calls: list[tuple[str, list[str]]] = []

        def parametrize(self, name: str, values: list[str]) -> None:
            self.calls.append((name, values))

    meta = Meta()
    Custom().pytest_generate_tests(meta)  # type: ignore[arg-type]
    assert meta.calls == [("accelerator", ["cuda", "mps", "npu", "tpu"])]
    meta.fixturenames = ["backend"]
    Custom().pytest_generate_tests(meta)  # type: ignore[arg-type]
    assert len(meta.calls) == 1


def test_backend_fixture_needs_a_name() -> None:
    class Nameless(BackendConformance):
        pass

    with pytest.raises(AssertionError, match="backend_name is not set"):
        Nameless.backend.__wrapped__(Nameless(), P.PluginRegistry())  # type: ignore[attr-defined]


def test_sample_values_are_exact_extremes() -> None:
    assert sample_array(DType.U8).tolist() == [[0, 255, 0], [1, 85, 7]]
    assert sample_array(DType.BOOL).tolist() == [[False, True, False], [True, False, True]]
    assert sample_array(DType.F16).tolist() == [[-1.5, 0.0, 2.25], [65504.0, -65504.0, 0.125]]
    assert sample_array(DType.I8, shape=(1, 8)).tolist() == [[-128, 127, 0, 1, 42, 7, 0, 0]]
    assert to_python_list(np.array([1.5], np.float16)) == [1.5]
    assert to_python_list(np.array([[True]])) == [[True]]
