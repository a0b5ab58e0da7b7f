"""A third-party distribution's NEW architecture, end to end: inferox-numpy (tests/plugins/, its own
pyproject and entry point, installed as a separate distribution) contributes the ``linear``
architecture — a schema and its definition, which the ``numpy`` backend, torch and jax all run with
no factory written for any of them. Nothing in Inferox names either:
``inferox pack`` recognises the folder by its ``model_type``, ``inferox verify`` checks it,
``inferox serve`` serves it and a V2 request gets the right numbers — all through the real
``inferox`` command and entry-point discovery."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("inferox_numpy", reason="the inferox-numpy distribution is not installed in this environment")

INFEROX = str(Path(sys.executable).parent / "inferox")


def _inferox(*args: object, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INFEROX, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def linear_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    from safetensors.numpy import save_file

    folder = tmp_path_factory.mktemp("linear-src")
    rng = np.random.default_rng(7)
    weight, bias = rng.standard_normal((5, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    (folder / "config.json").write_text(json.dumps({"model_type": "linear", "in_features": 5, "out_features": 3}))
    save_file({"weight": weight, "bias": bias}, str(folder / "model.safetensors"))
    return folder, weight, bias


def test_backends_lists_the_plugins_architectures() -> None:
    proc = _inferox("backends", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in json.loads(proc.stdout)["backends"]}
    assert {"linear", "mlp"} <= set(rows["numpy"]["architectures"])
    assert rows["numpy"]["plugin"] == "numpy" and rows["numpy"]["available"]
    # Versions are the distributions the spec requires; the framework's own string is apart, not
    # labelled with the backend's name as if it were a distribution.
    assert set(rows["numpy"]["versions"]) == {"numpy"} and rows["numpy"]["backend_version"] == np.__version__
    assert set(rows["jax"]["versions"]) == {"jax", "jaxlib"} and "jaxlib" in rows["jax"]["backend_version"]
    archs = {a["name"]: a for a in json.loads(proc.stdout)["architectures"]}
    # One definition, every definition backend: numpy, torch and jax run it (inferox-onnx does not yet).
    assert {k: v for k, v in archs["linear"].items() if k != "backends"} == {"name": "linear", "plugin": "numpy", "model_types": ["linear"]}
    assert {"numpy", "torch", "jax", "onnx"} <= set(archs["linear"]["backends"])  # onnx traces the one definition too
    assert archs["mlp"]["plugin"] == "inferox-core" and {"torch", "jax", "numpy"} <= set(archs["mlp"]["backends"])
    table = _inferox("backends", "--no-devices")
    assert table.returncode == 0 and "architecture linear (plugin numpy): jax, numpy, onnx, torch" in table.stdout


def test_pack_verify_serve_and_a_v2_request(linear_folder: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    import httpx
    import tritonclient.http as httpclient

    folder, weight, bias = linear_folder
    packed = _inferox("pack", folder, "-o", tmp_path, "--name", "lin")
    assert packed.returncode == 0, packed.stderr + packed.stdout
    pkg = tmp_path / "lin"
    info = json.loads((pkg / "model_info.json").read_text())
    assert info["architecture"] == "linear" and info["model_type"] == "linear" and info["family"] == "feedforward"
    assert [i["name"] for i in info["inputs"]] == ["x"] and [o["name"] for o in info["outputs"]] == ["y"]
    assert json.loads((pkg / "metadata.json").read_text())["golden"]["backend"] == "reference"  # linear's definition on NumPy

    verified = _inferox("verify", pkg)
    assert verified.returncode == 0, verified.stderr + verified.stdout
    assert "numpy" in verified.stdout

    port = _free_port()
    proc = subprocess.Popen([INFEROX, "serve", str(pkg), "--port", str(port), "--host", "127.0.0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
        x = np.random.default_rng(8).standard_normal((4, 5)).astype(np.float32)
        inp = httpclient.InferInput("x", [4, 5], "FP32")
        inp.set_data_from_numpy(x)
        result = client.infer("lin", [inp])
        np.testing.assert_allclose(result.as_numpy("y"), x @ weight + bias, rtol=1e-5, atol=1e-6)
        assert client.get_model_metadata("lin")["platform"]  # served like any package
        client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0


def test_an_unknown_model_type_names_the_known_architectures(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "config.json").write_text(json.dumps({"model_type": "quadratic"}))
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(2, np.float32)}, str(tmp_path / "src" / "model.safetensors"))
    proc = _inferox("pack", tmp_path / "src", "-o", tmp_path / "out")
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "PACKAGE_FORMAT_ERROR" in text and "'quadratic'" in text and "linear" in text and "mlp" in text and "bert" in text
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []  # nothing half-built is left
