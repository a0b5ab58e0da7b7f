"""``verify_package``'s numbers: the golden outputs and every backend against the architecture's
reference, with a tolerance that catches a tanh GELU, a row per backend whatever the others do, and a
numeric mismatch that is a ``NumericMismatchError`` (not a ``PackageIntegrityError``).

The backends under test are REAL installed plugins (a dist-info folder with an ``inferox`` entry
point, read through ``importlib.metadata``), each an ``ArrayBackend`` over NumPy with its own ``mlp``
and one defect (``tests.support.plugins.numpy_mlp_plugin``), next to the correct ``numpy`` backend of
the inferox-numpy distribution.
"""

from __future__ import annotations

import dataclasses
import json
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from inferox.core import CONTRACT_VERSION, hookimpl
from inferox.core import plugins as P
from inferox.core.errors import BackendError, NumericMismatchError, PackageIntegrityError
from inferox.mlpkg import build_package, load_package, verify_package
from tests.support.plugins import make_distribution, numpy_mlp_plugin

SIZES = [4, 8, 3]


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[P.PluginRegistry]:
    """The process registry: inferox-numpy's correct ``numpy`` backend, plus three installed plugins
    whose mlp computes a tanh GELU (``tanhnp``), crashes (``crashnp``) or is right (``goodnp``)."""
    import inferox_numpy.plugin

    site = tmp_path / "site"
    dists = [
        make_distribution(site, f"inferox-{name}", {name: f"{name}_plugin"}, modules={f"{name}_plugin": numpy_mlp_plugin(name, **defect)})
        for name, defect in (("tanhnp", {"gelu": "tanh"}), ("crashnp", {"crash": True}), ("goodnp", {}))
    ]
    monkeypatch.syspath_prepend(str(site))
    reg = P.PluginRegistry()
    reg.register_plugin(inferox_numpy.plugin, name="numpy", distribution="inferox-numpy")
    reg.load_entry_points(dists, blocked=())
    assert reg.failures == []
    P._registry = reg
    yield reg
    P.reset_registry()


def gelu_mlp_folder(folder: Path) -> Path:
    """The plugin guide's tiny MLP: exact GELU, standard-normal weights (seed 0)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "mlp", "layer_sizes": SIZES, "activation": "gelu"}))
    rng = np.random.default_rng(0)
    save_file({n: rng.standard_normal(s).astype(np.float32) for n, s in P.PluginRegistry().schema("mlp").weight_shapes({"layer_sizes": SIZES}).items()},
              str(folder / "model.safetensors"))
    return folder


def linear_variant_package(registry: P.PluginRegistry, tmp_path: Path, name: str, *, reference: Any) -> Path:
    """A package of ``name``, inferox-numpy's ``linear`` under another name with another ``reference``
    and no definition, defined and implemented (on ``numpy``, by a hand-written factory) by an
    in-process plugin; golden outputs from numpy where that reference cannot give them."""
    from inferox_numpy.linear import LINEAR

    schema = dataclasses.replace(LINEAR, name=name, model_types=(name,), reference=reference, definition=None)
    plugin = types.ModuleType(f"{name}_plugin")
    plugin.inferox_contract_version = hookimpl(lambda: CONTRACT_VERSION)  # type: ignore[attr-defined]
    plugin.inferox_register_schemas = hookimpl(lambda register: register(schema))  # type: ignore[attr-defined]
    plugin.inferox_register_implementations = hookimpl(lambda register: register("numpy", name, "tests.support.linear_model:create_linear"))  # type: ignore[attr-defined]
    registry.register_plugin(plugin, name=name)
    src = tmp_path / f"{name}-src"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"model_type": name, "in_features": 5, "out_features": 3}))
    rng = np.random.default_rng(1)
    save_file({"weight": rng.standard_normal((5, 3)).astype(np.float32), "bias": rng.standard_normal(3).astype(np.float32)}, str(src / "model.safetensors"))
    return build_package(src, output_dir=tmp_path / "out", backends=["numpy"])


def resign(pkg: Path, rel: str) -> None:
    """Record ``rel``'s new size and sha256 in metadata.json, as an attacker (or a careless hand) would."""
    import hashlib

    meta = json.loads((pkg / "metadata.json").read_text())
    for f in meta["files"]:
        if f["path"] == rel:
            data = (pkg / rel).read_bytes()
            f["size"], f["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (pkg / "metadata.json").write_text(json.dumps(meta))


def golden_outputs_from(pkg: Path, backend: str) -> None:
    """The package as builds before golden outputs came from the reference left it: its golden
    outputs computed by ``backend`` (and recorded as such)."""
    from inferox.mlpkg import load_model

    loaded = load_model(pkg, backend=backend)
    try:
        out = loaded.forward_any(load_package(pkg).golden_inputs() or {})
    finally:
        loaded.model.close()
    save_file({k: np.ascontiguousarray(v) for k, v in out.items()}, str(pkg / "golden" / "outputs.safetensors"))
    meta = json.loads((pkg / "metadata.json").read_text())
    meta["golden"]["backend"] = backend
    (pkg / "metadata.json").write_text(json.dumps(meta))
    resign(pkg, "golden/outputs.safetensors")


def drop_golden_outputs(pkg: Path) -> dict[str, Any]:
    """The package as a build with no backend leaves it: golden inputs, no outputs. Returns metadata.json."""
    (pkg / "golden" / "outputs.safetensors").unlink()
    meta: dict[str, Any] = json.loads((pkg / "metadata.json").read_text())
    meta["golden"]["outputs"] = None
    meta["files"] = [f for f in meta["files"] if f["path"] != "golden/outputs.safetensors"]
    (pkg / "metadata.json").write_text(json.dumps(meta))
    return meta


def rows(report: Any) -> dict[str, tuple[str, bool]]:
    return {r.subject: (r.against, r.ok) for r in report.rows}


def test_a_tanh_gelu_backend_fails_naming_itself_the_output_and_the_largest_difference(registry: P.PluginRegistry, tmp_path: Path) -> None:
    pkg = build_package(gelu_mlp_folder(tmp_path / "src"), output_dir=tmp_path / "out", backends=["numpy"])
    assert load_package(pkg).golden_tolerance == (1e-5, 1e-5)
    report = verify_package(pkg)
    assert report.against == "reference" and not report.ok
    assert rows(report) == {"golden": ("reference", True), "numpy": ("reference", True), "goodnp": ("reference", True),
                            "tanhnp": ("reference", False), "crashnp": ("reference", False)}
    (err,) = [r.error for r in report.rows if r.subject == "tanhnp"]
    assert isinstance(err, NumericMismatchError) and isinstance(err, AssertionError) and not isinstance(err, PackageIntegrityError)
    assert (err.code, err.subject, err.against, err.output, err.atol, err.rtol) == ("NUMERIC_MISMATCH", "tanhnp", "reference", "output", 1e-5, 1e-5)
    assert err.max_difference is not None and 1e-3 < err.max_difference < 2e-3 and err.index is not None and len(err.index) == 2
    assert str(err).startswith(f"backend 'tanhnp' (plugin 'tanhnp'): output 'output' differs from the reference by up to {err.max_difference:.3g} at index {err.index} (got ")
    assert report.golden["numpy"] < 1e-6 and report.golden["goodnp"] < 1e-6  # real float32 backends: far inside 1e-5
    # The tolerance verify used before (atol 1e-4, rtol 1e-3) let exactly this mutant through:
    old = verify_package(pkg, backends=["tanhnp"], atol=1e-4, rtol=1e-3)
    assert old.ok and old.golden["tanhnp"] == pytest.approx(err.max_difference)


def test_golden_outputs_from_a_wrong_backend_are_caught_against_the_reference(registry: P.PluginRegistry, tmp_path: Path) -> None:
    # Builds take golden outputs from the reference now; an older package's came from whichever
    # backend sorted first, here the tanh-GELU one, and the reference is what tells.
    pkg = build_package(gelu_mlp_folder(tmp_path / "src"), output_dir=tmp_path / "out", backends=["tanhnp"])
    assert load_package(pkg).metadata["golden"]["backend"] == "reference"
    golden_outputs_from(pkg, "tanhnp")
    report = verify_package(pkg, backends=["numpy", "goodnp"])
    assert rows(report) == {"golden": ("reference", False), "numpy": ("reference", True), "goodnp": ("reference", True)}
    (err,) = report.errors
    assert isinstance(err, NumericMismatchError) and (err.subject, err.output) == ("golden", "output")
    assert str(err).startswith("the package's golden outputs (computed by backend 'tanhnp' at build): output 'output' differs from the reference by up to ")


def test_one_backend_crashing_does_not_hide_the_others(registry: P.PluginRegistry, tmp_path: Path) -> None:
    pkg = build_package(gelu_mlp_folder(tmp_path / "src"), output_dir=tmp_path / "out", backends=["numpy"])
    report = verify_package(pkg, backends=["crashnp", "numpy", "goodnp"])
    assert [r.subject for r in report.rows] == ["golden", "crashnp", "numpy", "goodnp"]
    crashed = report.rows[1]
    assert isinstance(crashed.error, BackendError) and crashed.error.code == "BACKEND_ERROR" and crashed.max_difference is None
    assert "kernel exploded" in str(crashed.error) and isinstance(crashed.error.__cause__, RuntimeError)
    assert report.rows[2].ok and report.rows[3].ok and set(report.golden) == {"numpy", "goodnp"}
    assert report.errors == [crashed.error]


def test_without_golden_outputs_the_backends_are_still_checked_against_the_reference(registry: P.PluginRegistry, tmp_path: Path) -> None:
    pkg = build_package(gelu_mlp_folder(tmp_path / "src"), output_dir=tmp_path / "out", backends=["numpy"])
    meta = drop_golden_outputs(pkg)
    report = verify_package(pkg, backends=["numpy", "tanhnp"])
    assert rows(report) == {"golden": ("reference", False), "numpy": ("reference", True), "tanhnp": ("reference", False)}
    assert report.rows[0].skipped == "no golden outputs stored (no backend ran at build time)"
    assert [type(e) for e in report.errors] == [NumericMismatchError]
    # Without golden inputs there is nothing to run: said as such (not "no golden inputs" when there are some).
    (pkg / "golden" / "inputs.safetensors").unlink()
    meta["golden"] = None
    meta["files"] = [f for f in meta["files"] if not f["path"].startswith("golden/")]
    (pkg / "metadata.json").write_text(json.dumps(meta))
    assert verify_package(pkg).skipped == {"golden": "the package has no golden inputs"}


def test_an_architecture_without_reference_holds_backends_to_the_golden_outputs(registry: P.PluginRegistry, tmp_path: Path) -> None:
    pkg = linear_variant_package(registry, tmp_path, "noreflinear", reference=None)
    report = verify_package(pkg, backends=["numpy"])
    assert report.ok and report.against == "golden" and rows(report) == {"numpy": ("golden", True)}
    assert report.notes == ["compared with the stored golden outputs: architecture 'noreflinear' has no reference implementation"]


def test_the_tolerance_builds_recorded_before_it_was_measured_is_read_as_the_measured_one(registry: P.PluginRegistry, tmp_path: Path) -> None:
    pkg = build_package(gelu_mlp_folder(tmp_path / "src"), output_dir=tmp_path / "out", backends=["numpy"])
    meta = json.loads((pkg / "metadata.json").read_text())
    assert (meta["golden"]["atol"], meta["golden"]["rtol"]) == (1e-5, 1e-5)  # what a build records now
    meta["golden"].update(atol=1e-4, rtol=1e-3)  # what every earlier build recorded
    (pkg / "metadata.json").write_text(json.dumps(meta))
    assert load_package(pkg).golden_tolerance == (1e-5, 1e-5)
    assert not verify_package(pkg, backends=["tanhnp"]).ok  # an old package catches the tanh GELU too
    meta["golden"].update(atol=2e-3, rtol=0.0)  # a tolerance someone chose is kept
    (pkg / "metadata.json").write_text(json.dumps(meta))
    assert load_package(pkg).golden_tolerance == (2e-3, 0.0)
    assert verify_package(pkg, backends=["tanhnp"]).ok


def test_golden_files_of_the_wrong_dtype_are_package_errors_not_numbers(registry: P.PluginRegistry, tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    from inferox.core.errors import DTypeError, PackageFormatError

    pkg = build_package(gelu_mlp_folder(tmp_path / "src"), output_dir=tmp_path / "out", backends=["numpy"])

    def rewrite(rel: str, change: Any) -> None:
        save_file({k: change(v) for k, v in load_file(str(pkg / rel)).items()}, str(pkg / rel))
        resign(pkg, rel)  # re-signed: the hashes pass, the contents reach verify

    rewrite("golden/outputs.safetensors", lambda v: v.view(np.int32))
    report = verify_package(pkg, backends=["numpy"])
    assert rows(report) == {"golden": ("reference", False), "numpy": ("reference", True)}  # the backend is still checked
    err = report.rows[0].error
    assert isinstance(err, PackageFormatError) and (err.code, err.path, err.field) == ("PACKAGE_FORMAT_ERROR", "golden/outputs.safetensors", "output")
    assert "output 'output' has dtype int32, the package's outputs declare f32" in str(err)
    rewrite("golden/inputs.safetensors", lambda v: v.view(np.int32))
    report = verify_package(pkg, backends=["numpy"])
    (err,) = report.errors
    assert isinstance(err, DTypeError) and (err.code, err.name, err.actual, err.expected) == ("INVALID_DTYPE", "input", "i32", "f32") and report.rows == []


# -- the comparison itself, and the ways a row cannot be computed ----------------------------------------------
def test_compare_names_what_differs_and_how(registry: P.PluginRegistry) -> None:
    from inferox.core.errors import PackageFormatError
    from inferox.mlpkg._verify import compare

    want = {"y": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)}
    ok = compare("numpy", "reference", {"y": want["y"] + 1e-6}, want, atol=1e-5, rtol=1e-5)
    assert ok.ok and ok.output == "y" and ok.max_difference == pytest.approx(1e-6, rel=0.1)
    assert compare("numpy", "reference", {"y": np.zeros((0, 2), np.float32)}, {"y": np.zeros((0, 2), np.float32)}, atol=1e-5, rtol=1e-5).max_difference == 0.0
    nan = compare("numpy", "reference", {"y": np.array([[1.0, np.nan], [3.0, 4.0]], np.float32)}, want, atol=1e-5, rtol=1e-5)
    assert isinstance(nan.error, NumericMismatchError) and nan.error.index == (0, 1) and nan.max_difference == np.inf  # a NaN is never within tolerance
    missing = compare("numpy", "reference", {}, want, atol=1e-5, rtol=1e-5)
    assert isinstance(missing.error, NumericMismatchError) and missing.error.output == "y" and "backend 'numpy' (plugin 'numpy') gave no output 'y'" in str(missing.error)
    assert isinstance(compare("golden", "reference", {}, want, atol=1e-5, rtol=1e-5).error, PackageFormatError)
    shaped = compare("numpy", "reference", {"y": want["y"].reshape(4)}, want, atol=1e-5, rtol=1e-5)
    assert isinstance(shaped.error, NumericMismatchError) and "output 'y' has shape [4], the reference [2, 2]" in str(shaped.error)
    lying = compare("golden", "reference", {"y": want["y"].reshape(4)}, want, atol=1e-5, rtol=1e-5)
    assert isinstance(lying.error, PackageIntegrityError) and lying.error.field == "y"  # a golden file's header that lies
    odd = compare("numpy", "reference", {"y": np.array([["a", "b"], ["c", "d"]])}, want, atol=1e-5, rtol=1e-5)
    assert isinstance(odd.error, PackageFormatError) and "output 'y' of backend 'numpy' (plugin 'numpy') cannot be compared" in str(odd.error)
    assert odd.to_dict()["error"]["code"] == "PACKAGE_FORMAT_ERROR" and ok.to_dict()["ok"] is True


@pytest.mark.parametrize(("reference", "why"), [
    ("tests.mlpkg.test_verify:exploding_reference", "the reference failed: RuntimeError: the reference exploded"),
    ("no_such_module_anywhere:reference", "the reference failed: the reference of architecture 'odd' (no_such_module_anywhere:reference) failed to load: ModuleNotFoundError"),
])
def test_a_reference_that_fails_falls_back_to_the_golden_outputs(registry: P.PluginRegistry, tmp_path: Path, reference: str, why: str) -> None:
    pkg = linear_variant_package(registry, tmp_path, "odd", reference=reference)
    report = verify_package(pkg, backends=["numpy", "nosuch", "goodnp"])
    assert report.against == "golden" and report.notes[0].startswith(f"compared with the stored golden outputs: {why}")
    assert rows(report) == {"numpy": ("golden", True), "nosuch": ("golden", False), "goodnp": ("golden", False)}
    assert report.skipped["nosuch"].startswith("backend 'nosuch' unavailable: not installed")  # a backend not there: skipped, said why
    (err,) = report.errors  # goodnp does not implement 'odd': its row holds the error naming it
    assert err.code == "ARCHITECTURE_NOT_FOUND" and "backend 'goodnp' (plugin 'goodnp') does not implement architecture 'odd' (defined by plugin 'odd')" in str(err)
    # no golden outputs, and no reference to compare with: said as such
    drop_golden_outputs(pkg)
    skipped = verify_package(pkg).skipped["golden"]
    assert skipped.startswith("the package has golden inputs but no golden outputs, and the reference failed") and skipped.endswith(": parity not checked")


def exploding_reference(*args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
    raise RuntimeError("the reference exploded")


def test_what_keeps_the_reference_out(registry: P.PluginRegistry, tmp_path: Path) -> None:
    from inferox.mlpkg._verify import reference_outputs

    pkg_path = build_package(gelu_mlp_folder(tmp_path / "src"), output_dir=tmp_path / "out", backends=["numpy"])
    pkg = load_package(pkg_path)
    inputs = pkg.golden_inputs() or {}
    assert reference_outputs(pkg, inputs)[0] is not None
    pickled = dataclasses.replace(pkg, metadata={**pkg.metadata, "weights": "weights.pt"})
    assert reference_outputs(pickled, inputs) == (None, "the package's weights are pickled (the reference reads safetensors only)")
    unknown = dataclasses.replace(pkg, model_info={**pkg.model_info, "architecture": "wavenet"})
    out, why = reference_outputs(unknown, inputs)
    assert out is None and why.startswith("architecture 'wavenet' is unknown here (no installed plugin defines architecture 'wavenet'")
    # a golden input the package's inputs require, missing: reported, nothing run
    from safetensors.numpy import save_file as save

    save({"other": np.zeros((1, 4), np.float32)}, str(pkg_path / "golden" / "inputs.safetensors"))
    resign(pkg_path, "golden/inputs.safetensors")
    report = verify_package(pkg_path)
    (err,) = report.errors
    assert (err.code, err.field) == ("PACKAGE_FORMAT_ERROR", "input") and "golden/inputs.safetensors has no input 'input'" in str(err)  # type: ignore[attr-defined]
