"""The ``inferox`` command line: every command's success and failure paths, on real packages."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from inferox.core.plugins import reset_registry
from inferox.engine.cli import cli, exit_code_for
from inferox.engine.cli._errors import ParityError
from tests.support.model_files import mlp_reference
from tests.support.net import free_port
from tests.support.plugins import make_distribution

INFEROX = str(Path(sys.executable).parent / "inferox")
COMMANDS = ["backends", "pack", "inspect", "verify", "convert", "run", "serve", "bench"]


def invoke(*args: Any, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


def assert_error(result: Result, code: str, exit_code: int) -> None:
    assert result.exit_code == exit_code, result.output
    assert f"error [{code}]:" in result.output, result.output
    assert "Traceback" not in result.output


@pytest.fixture()
def fresh_registry() -> Iterator[None]:
    reset_registry()
    yield
    reset_registry()


def _mlp_ref(pkg: Path, x: np.ndarray) -> np.ndarray:
    """The MLP schema's NumPy definition on the package's own config and weights."""
    from safetensors.numpy import load_file

    return mlp_reference(json.loads((pkg / "config.json").read_text()), load_file(str(pkg / "model.safetensors")), x)


# ------------------------------------------------------------------------------------------------- help
def test_help_in_a_real_subprocess() -> None:
    proc = subprocess.run([INFEROX, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for command in COMMANDS:
        assert command in proc.stdout
    assert "Exit codes" in proc.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0 and "Usage: " in result.output and "Exit codes" in result.output


def test_version_and_unknown_command() -> None:
    assert invoke("--version").exit_code == 0
    result = invoke("frobnicate")
    assert result.exit_code == 2 and "No such command" in result.output


# --------------------------------------------------------------------------------------------- backends
def test_backends_table_and_json(fresh_registry: None) -> None:
    result = invoke("backends")
    assert result.exit_code == 0 and "torch" in result.output and "jax" in result.output
    data = json.loads(invoke("backends", "--json").output)
    by_name = {b["name"]: b for b in data["backends"]}
    assert by_name["torch"]["available"] and by_name["torch"]["versions"]["torch"].startswith("2.")
    assert "cpu" in [d["id"] for d in by_name["torch"]["devices"]]
    assert "bert" in by_name["jax"]["architectures"] and "mlp" in by_name["torch"]["architectures"]
    quick = json.loads(invoke("backends", "--json", "--no-devices").output)
    assert all(b["devices"] == [] for b in quick["backends"])


def test_backends_reports_blocked_plugins(fresh_registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFEROX_BLOCKED_PLUGINS", "jax")
    reset_registry()
    data = json.loads(invoke("backends", "--json").output)
    assert "jax" not in {b["name"] for b in data["backends"]} and data["blocked"] == ["jax"]
    assert "blocked by INFEROX_BLOCKED_PLUGINS: jax" in invoke("backends").output


def test_backends_hides_what_blocked_plugins_contribute(fresh_registry: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A really installed extra plugin implements the numpy plugin's 'linear' on jax (beside the
    definition every definition backend runs): with jax blocked, no architecture is listed as running
    on jax; with numpy (which defines 'linear') blocked, 'linear' itself is gone."""
    site = tmp_path / "site"
    make_distribution(site, "inferox-jax-linear", {"jaxlinear": "jaxlinear_plugin"}, modules={"jaxlinear_plugin": (
        "from inferox.core import hookimpl\n\n"
        "@hookimpl\ndef inferox_contract_version():\n    return '1.2'\n\n"
        "@hookimpl\ndef inferox_register_implementations(register):\n    register('jax', 'linear', 'jaxlinear_plugin:create')\n"
    )})
    monkeypatch.syspath_prepend(str(site))
    reset_registry()
    listed = {a["name"]: a for a in json.loads(invoke("backends", "--json", "--no-devices").output)["architectures"]}
    assert listed["linear"]["backends"] == ["jax", "numpy", "onnx", "torch"]  # installed and unblocked: its definition runs everywhere
    monkeypatch.setenv("INFEROX_BLOCKED_PLUGINS", "jax")
    reset_registry()
    data = json.loads(invoke("backends", "--json", "--no-devices").output)
    assert all("jax" not in a["backends"] for a in data["architectures"]), data["architectures"]
    assert {a["name"]: a["backends"] for a in data["architectures"]}["linear"] == ["numpy", "onnx", "torch"]
    assert "architecture linear (plugin numpy): numpy, onnx, torch\n" in invoke("backends", "--no-devices").output
    monkeypatch.setenv("INFEROX_BLOCKED_PLUGINS", "numpy")
    reset_registry()
    data = json.loads(invoke("backends", "--json", "--no-devices").output)
    assert "linear" not in {a["name"] for a in data["architectures"]} and data["blocked"] == ["numpy"]
    assert all("linear" not in b["architectures"] for b in data["backends"]), "an architecture no unblocked plugin defines is not listed"


# ------------------------------------------------------------------------------------------------- pack
def test_pack_a_folder_and_failures(tmp_path: Path, mlp_package: Path) -> None:
    src = mlp_package.parent.parent / "mlp-src"
    result = invoke("pack", src, "-o", tmp_path, "--name", "packed")
    assert result.exit_code == 0, result.output
    out = Path(result.output.strip().splitlines()[-1])
    assert out == tmp_path / "packed" and (out / "metadata.json").is_file()
    assert_error(invoke("pack", tmp_path / "missing"), "PACKAGE_NOT_FOUND", 4)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("pack", empty, "-o", tmp_path / "o")
    assert result.exit_code in (4, 5) and "error [" in result.output


def test_pack_refuses_a_weight_of_the_wrong_shape(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    from tests.support.model_files import mlp_tensors, write_mlp_folder

    src = write_mlp_folder(tmp_path / "src")  # config 4 → 8 → 3
    save_file({**mlp_tensors(), "layers.1.weight": np.zeros((3, 9), np.float32)}, str(src / "model.safetensors"))
    result = invoke("pack", src, "-o", tmp_path / "out")
    assert_error(result, "WEIGHT_SHAPE_MISMATCH", 5)
    assert "model.safetensors: weight 'layers.1.weight' has shape [3, 9], but architecture 'mlp' expects [3, 8] for this config" in result.output
    assert "packed" not in result.output and not (tmp_path / "out" / "src").exists()


def test_pack_records_golden_outputs_from_the_reference_with_every_backend_blocked(tmp_path: Path, fresh_registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Golden outputs come from the architecture's reference (its definition on NumPy), so packing
    needs no backend: with every backend plugin blocked the package still records them."""
    from safetensors.numpy import load_file

    from tests.support.model_files import write_mlp_folder

    monkeypatch.setenv("INFEROX_BLOCKED_PLUGINS", "torch,jax,onnx,numpy")
    reset_registry()
    result = CliRunner().invoke(cli, ["pack", str(write_mlp_folder(tmp_path / "src")), "-o", str(tmp_path / "out")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "no golden outputs recorded" not in result.output
    meta = json.loads((tmp_path / "out" / "src" / "metadata.json").read_text())
    assert meta["golden"]["backend"] == "reference" and meta["golden"]["outputs"] == "golden/outputs.safetensors"
    outputs = load_file(str(tmp_path / "out" / "src" / "golden" / "outputs.safetensors"))
    inputs = load_file(str(tmp_path / "out" / "src" / "golden" / "inputs.safetensors"))
    np.testing.assert_allclose(outputs["output"], _mlp_ref(tmp_path / "out" / "src", inputs["input"]), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- inspect
def test_inspect_text_and_json(mlp_package: Path) -> None:
    result = invoke("inspect", mlp_package)
    assert result.exit_code == 0
    for text in ("architecture mlp", "input", "output", "model.safetensors", "torch"):
        assert text in result.output
    data = json.loads(invoke("inspect", mlp_package, "--json").output)
    first = data["inputs"][0]
    assert data["architecture"] == "mlp" and (first["name"], first["dtype"], first["shape"]) == ("input", "f32", [-1, 4])
    assert set(data["backends"]) >= {"torch", "jax"}
    sizes = {f["path"]: f["bytes"] for f in data["files"]}
    assert sizes["model.safetensors"] == (mlp_package / "model.safetensors").stat().st_size
    assert data["total_bytes"] == sum(sizes.values())


def test_inspect_failures(tmp_path: Path, mlp_package: Path) -> None:
    assert_error(invoke("inspect", tmp_path / "nope"), "PACKAGE_NOT_FOUND", 4)
    broken = tmp_path / "broken"
    shutil.copytree(mlp_package, broken)
    (broken / "metadata.json").write_text("{oops")
    result = invoke("inspect", broken)
    assert result.exit_code == 5 and "error [PACKAGE_FORMAT_ERROR]" in result.output


# ----------------------------------------------------------------------------------------------- verify
def test_verify_hashes_and_parity(mlp_package: Path) -> None:
    result = invoke("verify", mlp_package)
    assert result.exit_code == 0, result.output
    assert "hashes" in result.output and "golden" in result.output and "jax" in result.output and "torch" in result.output
    assert invoke("verify", mlp_package, "--no-parity").exit_code == 0
    assert invoke("verify", mlp_package, "--backend", "torch").exit_code == 0


@pytest.fixture()
def defective_plugins(fresh_registry: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two really installed third-party backends next to torch, jax, onnx and numpy: ``tanhnp`` (its
    mlp computes a tanh GELU) and ``crashnp`` (its mlp's forward raises)."""
    from tests.support.plugins import numpy_mlp_plugin

    site = tmp_path / "site"
    for name, defect in (("tanhnp", {"gelu": "tanh"}), ("crashnp", {"crash": True})):
        make_distribution(site, f"inferox-{name}", {name: f"{name}_plugin"}, modules={f"{name}_plugin": numpy_mlp_plugin(name, **defect)})
    monkeypatch.syspath_prepend(str(site))
    reset_registry()


def gelu_mlp_package(root: Path) -> Path:
    """The plugin guide's tiny MLP with the exact GELU, packed with golden outputs from torch."""
    from safetensors.numpy import save_file

    from inferox.mlpkg import build_package

    src = root / "tiny-mlp"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"model_type": "mlp", "layer_sizes": [4, 8, 3], "activation": "gelu"}))
    rng = np.random.default_rng(0)
    save_file({n: rng.standard_normal(s).astype(np.float32) for n, s in (("layers.0.weight", (8, 4)), ("layers.0.bias", (8,)), ("layers.1.weight", (3, 8)), ("layers.1.bias", (3,)))},
              str(src / "model.safetensors"))
    return build_package(src, output_dir=root / "packages", backends=["torch"])


def test_verify_catches_a_tanh_gelu_backend_by_name_and_largest_difference(defective_plugins: None, tmp_path: Path) -> None:
    pkg = gelu_mlp_package(tmp_path)
    result = invoke("verify", pkg, "--backend", "torch", "--backend", "tanhnp", "--backend", "numpy", env={"COLUMNS": "200"})
    assert_error(result, "PARITY_MISMATCH", 12)
    assert "against the reference (atol=1e-05, rtol=1e-05)" in result.output
    table = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.startswith("│")}
    assert set(table) == {"golden", "torch", "tanhnp", "numpy"}
    assert all("yes" in table[k] for k in ("golden", "torch", "numpy")) and "no: beyond tolerance" in table["tanhnp"]
    assert "✗ backend 'tanhnp' (plugin 'tanhnp'): output 'output' differs from the reference by up to 0.00148 at index (" in result.output
    assert "outputs differ beyond tolerance: tanhnp vs reference: output[" in result.output
    # the tolerance verify used before let it through
    assert invoke("verify", pkg, "--backend", "tanhnp", "--atol", "1e-4", "--rtol", "1e-3").exit_code == 0


def test_verify_shows_every_backend_when_one_crashes(defective_plugins: None, tmp_path: Path) -> None:
    pkg = gelu_mlp_package(tmp_path)
    result = invoke("verify", pkg, env={"COLUMNS": "200"})
    assert_error(result, "BACKEND_ERROR", 7)
    table = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.startswith("│")}
    assert {"golden", "torch", "jax", "onnx", "numpy", "crashnp", "tanhnp"} <= set(table)
    assert "failed: BACKEND_ERROR" in table["crashnp"] and "no: beyond tolerance" in table["tanhnp"]
    assert all("yes" in table[k] for k in ("golden", "torch", "jax", "onnx", "numpy"))
    assert "kernel exploded" in result.output and "(the crashnp:mlp factory" not in result.output  # the forward crashed, not the factory


def test_verify_detects_tampering(tmp_path: Path, mlp_package: Path) -> None:
    bad = tmp_path / "tampered"
    shutil.copytree(mlp_package, bad)
    data = bytearray((bad / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (bad / "model.safetensors").write_bytes(bytes(data))
    assert_error(invoke("verify", bad), "INTEGRITY_ERROR", 5)


def test_verify_detects_parity_mismatch(tmp_path: Path, mlp_package: Path) -> None:
    """Golden outputs rewritten (with consistent hashes) so that no backend reproduces them."""
    import hashlib

    from safetensors.numpy import load_file, save_file

    bad = tmp_path / "drifted"
    shutil.copytree(mlp_package, bad)
    golden = bad / "golden" / "outputs.safetensors"
    tensors = {k: v + 1.0 for k, v in load_file(str(golden)).items()}
    save_file(tensors, str(golden))
    meta = json.loads((bad / "metadata.json").read_text())
    for f in meta["files"]:
        if f["path"] == "golden/outputs.safetensors":
            f["size"] = golden.stat().st_size
            f["sha256"] = hashlib.sha256(golden.read_bytes()).hexdigest()
    (bad / "metadata.json").write_text(json.dumps(meta))
    result = invoke("verify", bad, env={"COLUMNS": "200"})
    assert_error(result, "PARITY_MISMATCH", 12)
    # the stored outputs are what differs from the reference; every backend agrees with it
    assert "✗ the package's golden outputs (computed by the reference" in result.output and "golden vs reference: output[" in result.output
    table = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.startswith("│")}
    assert "no: beyond tolerance" in table["golden"] and all("yes" in table[b] for b in ("torch", "jax"))


def test_verify_with_golden_inputs_but_no_outputs_checks_the_backends_against_the_reference(tmp_path: Path, mlp_package: Path) -> None:
    # What a build leaves when no backend could run: inputs, no outputs. verify said "no golden inputs".
    pkg = tmp_path / "inputs-only"
    shutil.copytree(mlp_package, pkg)
    (pkg / "golden" / "outputs.safetensors").unlink()
    meta = json.loads((pkg / "metadata.json").read_text())
    meta["golden"]["outputs"] = None
    meta["files"] = [f for f in meta["files"] if f["path"] != "golden/outputs.safetensors"]
    (pkg / "metadata.json").write_text(json.dumps(meta))
    result = invoke("verify", pkg, "--backend", "torch", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "no golden inputs" not in result.output and "against the reference" in result.output
    table = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.startswith("│")}
    assert "skipped: no golden outputs stored (no backend ran at build time)" in table["golden"] and "yes" in table["torch"]


def test_verify_without_the_reference_or_without_any_backend(tmp_path: Path, mlp_package: Path, fresh_registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke("verify", mlp_package, "--backend", "torch", "--no-reference", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "against the golden" in result.output and "compared with the stored golden outputs: the reference was not asked for" in result.output
    monkeypatch.setenv("INFEROX_BLOCKED_PLUGINS", "torch,jax,onnx,numpy")
    reset_registry()
    assert_error(invoke("verify", mlp_package), "INVALID_CONFIG", 3)  # golden outputs to reproduce, and nothing to run them


def test_verify_without_golden_inputs(tmp_path: Path, mlp_package: Path) -> None:
    from inferox.core.errors import InferoxError

    pkg = tmp_path / "nogolden"
    shutil.copytree(mlp_package, pkg)
    shutil.rmtree(pkg / "golden")
    meta = json.loads((pkg / "metadata.json").read_text())
    meta["files"] = [f for f in meta["files"] if not f["path"].startswith("golden/")]
    meta.pop("golden", None)
    (pkg / "metadata.json").write_text(json.dumps(meta))
    result = invoke("verify", pkg)
    if result.exit_code == 0:
        assert "parity not checked: the package has no golden inputs" in result.output
    else:  # the package format may require golden files: then it is a clean package error
        assert "error [" in result.output and result.exit_code in (4, 5)
    assert issubclass(ParityError, InferoxError) and exit_code_for(ParityError("x")) == 12


# ---------------------------------------------------------------------------------------------- convert
def test_convert_pickle_to_safetensors(tmp_path: Path) -> None:
    import torch
    from safetensors.numpy import load_file

    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(3)}
    src = tmp_path / "weights.pt"
    torch.save(state, src)
    assert_error(invoke("convert", src), "UNSAFE_PACKAGE", 6)
    result = invoke("convert", src, "--allow-pickle")
    assert result.exit_code == 0, result.output
    out = tmp_path / "weights.safetensors"
    assert Path(result.output.strip()) == out
    loaded = load_file(str(out))
    np.testing.assert_array_equal(loaded["w"], state["w"].numpy())
    np.testing.assert_array_equal(loaded["b"], state["b"].numpy())
    custom = tmp_path / "sub" / "other.safetensors"
    custom.parent.mkdir()
    assert invoke("convert", src, custom, "--allow-pickle").exit_code == 0 and custom.is_file()
    assert_error(invoke("convert", tmp_path / "missing.pt", "--allow-pickle"), "PACKAGE_NOT_FOUND", 4)


# --------------------------------------------------------------------------------------------------- run
def test_run_from_json_npy_npz_and_v2_body(tmp_path: Path, mlp_package: Path) -> None:
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    ref = _mlp_ref(mlp_package, x)
    result = invoke("run", mlp_package, "-i", json.dumps({"input": x.tolist()}), "--backend", "torch")
    assert result.exit_code == 0, result.output
    assert "output float32 [2, 3]" in result.output
    out = tmp_path / "out.npz"
    assert invoke("run", mlp_package, "-i", json.dumps({"input": x.tolist()}), "-o", out).exit_code == 0
    np.testing.assert_allclose(np.load(out)["output"], ref, rtol=1e-5, atol=1e-6)
    np.save(tmp_path / "x.npy", x)
    out_json = tmp_path / "out.json"
    assert invoke("run", mlp_package, "-f", tmp_path / "x.npy", "--backend", "jax", "-o", out_json).exit_code == 0
    data = json.loads(out_json.read_text())["output"]
    assert data["shape"] == [2, 3] and data["dtype"] == "float32"
    np.testing.assert_allclose(np.asarray(data["data"]), ref, rtol=1e-4, atol=1e-5)
    np.savez(tmp_path / "x.npz", input=x)
    assert invoke("run", mlp_package, "-f", tmp_path / "x.npz", "--full").exit_code == 0
    v2 = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4], "data": x.ravel().tolist()}]}
    (tmp_path / "req.json").write_text(json.dumps(v2))
    out2 = tmp_path / "out2.npz"
    assert invoke("run", mlp_package, "-f", tmp_path / "req.json", "-o", out2).exit_code == 0
    np.testing.assert_allclose(np.load(out2)["output"], ref, rtol=1e-5, atol=1e-6)


def test_run_text_on_minilm(tmp_path: Path, minilm_package: Path) -> None:
    result = invoke("run", minilm_package, "-t", "hello world", "-t", "another sentence", "-o", tmp_path / "emb.npz")
    assert result.exit_code == 0, result.output
    outputs = np.load(tmp_path / "emb.npz")
    # The package's default outputs only: a sentence-transformers package's pooled embedding.
    assert outputs.files == ["sentence_embedding"] and outputs["sentence_embedding"].shape == (2, 384)
    (tmp_path / "texts.txt").write_text("one\n\ntwo\nthree\n")
    result = invoke("run", minilm_package, "-f", tmp_path / "texts.txt", "-o", tmp_path / "emb3.npz", "--all-outputs")
    assert result.exit_code == 0 and np.load(tmp_path / "emb3.npz")["last_hidden_state"].shape[0] == 3
    result = invoke("run", minilm_package, "-i", json.dumps({"text": ["from json"]}), "--backend", "jax", "-o", tmp_path / "emb4.npz")
    assert result.exit_code == 0, result.output
    v2 = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["from a V2 body"]}]}
    (tmp_path / "req.json").write_text(json.dumps(v2))
    assert invoke("run", minilm_package, "-f", tmp_path / "req.json", "-o", tmp_path / "emb5.npz").exit_code == 0


def test_run_failures(tmp_path: Path, mlp_package: Path) -> None:
    assert_error(invoke("run", mlp_package, "-i", "{not json"), "INVALID_INPUT", 3)
    assert_error(invoke("run", mlp_package, "-i", "[1, 2]"), "INVALID_INPUT", 3)
    result = invoke("run", mlp_package, "-i", json.dumps({"input": [[1, 2, 3]]}))
    assert_error(result, "INVALID_INPUT", 3)
    assert "'input'" in result.output and "shape" in result.output
    assert_error(invoke("run", mlp_package, "-t", "text for an mlp"), "INVALID_INPUT", 3)
    assert_error(invoke("run", mlp_package, "-i", '{"input": [[1,2,3,4]]}', "--backend", "nosuch"), "BACKEND_UNAVAILABLE", 7)
    assert_error(invoke("run", mlp_package, "-i", '{"input": [[1,2,3,4]]}', "-o", tmp_path / "x.csv"), "INVALID_INPUT", 3)
    assert_error(invoke("run", tmp_path / "nope", "-i", '{"input": [[1,2,3,4]]}'), "PACKAGE_NOT_FOUND", 4)
    assert_error(invoke("run", mlp_package, "-f", tmp_path / "none.npy"), "PACKAGE_NOT_FOUND", 4)
    (tmp_path / "x.csv").write_text("1,2")
    assert_error(invoke("run", mlp_package, "-f", tmp_path / "x.csv"), "INVALID_INPUT", 3)
    (tmp_path / "bad.json").write_text("{")
    assert_error(invoke("run", mlp_package, "-f", tmp_path / "bad.json"), "INVALID_INPUT", 3)
    result = invoke("run", mlp_package)
    assert result.exit_code == 2 and "exactly one of" in result.output


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--debug", "inspect", str(tmp_path / "nope")])
    assert result.exit_code == 4 and "Traceback" in result.output and "error [PACKAGE_NOT_FOUND]" in result.output


# ------------------------------------------------------------------------------------------------- bench
def test_bench_json_and_table(mlp_package: Path) -> None:
    result = invoke("bench", mlp_package, "-n", "3", "--warmup", "1", "--batch-size", "2", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {r["backend"] for r in rows} >= {"torch", "jax"}
    for r in rows:
        assert r["iterations"] == 3 and r["batch_size"] == 2 and 0 < r["p50_ms"] <= r["p99_ms"] and r["rows_per_s"] > 0
    table = invoke("bench", mlp_package, "-n", "2", "--backend", "torch")
    assert table.exit_code == 0 and "p50 ms" in table.output
    assert_error(invoke("bench", mlp_package.parent / "nope"), "PACKAGE_NOT_FOUND", 4)


# ------------------------------------------------------------------------------------------------- serve
def test_serve_failures(tmp_path: Path) -> None:
    assert_error(invoke("serve", tmp_path / "nothing"), "PACKAGE_NOT_FOUND", 4)
    # A file, or a folder holding nothing servable, is refused naming it and what was looked for
    # (it used to start, serve nothing and report ready).
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    for path in (tmp_path / "file.txt", tmp_path / "empty"):
        result = invoke("serve", path)
        assert_error(result, "PACKAGE_NOT_FOUND", 4)
        assert f"nothing servable at {path}" in result.output and "config.json" in result.output and "metadata.json" in result.output
        # a folder could become a repository: the error says how to start it empty on purpose
        assert ("--allow-empty" in result.output) == path.is_dir()


def test_serve_on_a_taken_port_is_an_io_error(mlp_package: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke("serve", mlp_package, "--port", port, "--host", "127.0.0.1")
    assert_error(result, "IO_ERROR", 10)
    assert f"127.0.0.1:{port}" in result.output


def test_serve_warns_when_exposed_without_a_token(mlp_package: Path) -> None:
    with socket.socket() as taken:  # the bind then fails, so nothing is served
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        result = invoke("serve", mlp_package, "--port", taken.getsockname()[1], "--host", "0.0.0.0")
    assert "without --token" in result.output and result.exit_code == 10


def test_server_for_a_package_and_a_repository(tmp_path: Path, mlp_package: Path) -> None:
    from inferox.engine.server import InferoxServer
    from inferox.engine.server._settings import resolve

    config = resolve(environ={}, flags={"engine.max_batch_size": 4, "engine.max_batch_tokens": 512, "models.backends": ("torch",), "server.token": "t"}).config
    single = InferoxServer.for_path(mlp_package, config=config)
    assert single.packages == {"mlp": mlp_package} and single.repository is None
    assert single.config.engine_config.max_batch_size == 4 and single.config.engine_config.max_batch_tokens == 512 and single.config.defaults.backends == ("torch",)
    assert single.config.token == "t" and single.config.host == "127.0.0.1"
    named = InferoxServer.for_path(mlp_package, name="other")
    assert list(named.packages) == ["other"]
    repo = tmp_path / "repo"
    shutil.copytree(mlp_package, repo / "m")
    assert InferoxServer.for_path(repo).repository.root == repo.resolve()


def test_serve_in_a_real_subprocess(mlp_package: Path) -> None:
    import httpx
    import tritonclient.http as httpclient

    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if k not in ("INFEROX_MMAP_THRESHOLD", "MALLOC_MMAP_THRESHOLD_")}, "INFEROX_SERVER_TOKEN": "tok"}
    proc = subprocess.Popen(
        [INFEROX, "serve", str(mlp_package), "--port", str(port), "--backend", "torch", "--max-batch-size", "8", "--log-level", "info"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
        x = np.ones((2, 4), np.float32)
        inp = httpclient.InferInput("input", [2, 4], "FP32")
        inp.set_data_from_numpy(x)
        out = client.infer("mlp", [inp], request_id="from-subprocess").as_numpy("output")
        np.testing.assert_allclose(out, _mlp_ref(mlp_package, x), rtol=1e-5, atol=1e-6)
        assert httpx.post(f"{url}/v2/repository/index").status_code == 401
        assert httpx.post(f"{url}/v2/repository/index", headers={"authorization": "Bearer tok"}).status_code == 200
        client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err
    access = [json.loads(line) for line in err.splitlines() if line.startswith("{") and '"request_id"' in line]
    assert any(rec["request_id"] == "from-subprocess" and rec["status"] == 200 for rec in access), err
    # The serving process fixed glibc's mmap threshold before serving (inferox.engine._memory).
    messages = [json.loads(line).get("message") for line in err.splitlines() if line.startswith("{")]
    assert "malloc mmap threshold: 262144 bytes (fixed)" in messages, err


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("InvalidInputError('x')", 3),
        ("DTypeError('x')", 3),
        ("ConfigError('x')", 3),
        ("ModelNotFoundError('m')", 4),
        ("PackageNotFoundError('x')", 4),
        ("ArchitectureNotFoundError('bert')", 4),
        ("RepositoryNotFoundError('x')", 4),
        ("PackageFormatError('x')", 5),
        ("PackageIntegrityError('x')", 5),
        ("UnsafePackageError('x')", 6),
        ("BackendError('x')", 7),
        ("BackendUnavailableError('b', reason='r')", 7),
        ("DeviceUnavailableError('x')", 7),
        ("OutOfMemoryError('x')", 7),
        ("DownloadError('x')", 8),
        ("HubAuthError('x')", 8),
        ("PluginError('x')", 9),
        ("InferoxIOError('x')", 10),
        ("InferoxTimeoutError('x')", 11),
        ("QueueFullError('m', max_queue_size=1)", 11),
        ("ServiceUnavailableError('x')", 11),
        ("TypeMismatchError('x')", 1),
    ],
)
def test_exit_codes_by_error_family(error: str, code: int) -> None:
    from inferox.core import errors

    exc = eval(error, vars(errors))  # a fixed table of constructor calls
    assert exit_code_for(exc) == code


def test_run_refuses_corrupt_and_pickled_arrays(tmp_path: Path, mlp_package: Path) -> None:
    (tmp_path / "junk.npy").write_bytes(b"not an npy file at all")
    result = invoke("run", mlp_package, "-f", tmp_path / "junk.npy")
    assert_error(result, "INVALID_INPUT", 3)
    assert "junk.npy" in result.output
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert_error(invoke("run", mlp_package, "-f", tmp_path / "objects.npy"), "INVALID_INPUT", 3)
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04broken")
    assert_error(invoke("run", mlp_package, "-f", tmp_path / "junk.npz"), "INVALID_INPUT", 3)
    x = np.ones((1, 4), np.float32)
    np.save(tmp_path / "named.npy", x)
    assert invoke("run", mlp_package, "-f", tmp_path / "named.npy", "--input-name", "input").exit_code == 0
