"""``inferox serve`` as an operator runs it: settings refused in one line (exit 3), nothing to serve
refused (unless ``--allow-empty``), an old protobuf runtime named with its fix, and SIGTERM /
SIGINT ending the server gracefully — in-flight requests drained, a log line, exit 0.

The real command: in-process through click for the settings (they fail before anything
listens), in a subprocess for everything that serves.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from inferox.engine.cli import cli
from tests.support.net import free_port, wait_until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _invoke(*args: Any, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args], env=env)
    return result.exit_code, result.output


# -------------------------------------------------------------------------------------------- settings
BAD_SETTINGS = [
    # (file contents, extra args, env, the setting named)
    ('[server]\nhost = ""\n', [], {}, "server.host"),  # used to bind 0.0.0.0
    ("[server]\nhost = 5\n", [], {}, "server.host"),
    ("[server]\ntoken = 123\n", [], {}, "server.token: must be a string"),  # used to say "the token is empty"
    ("[server]\nmax_body_bytes = true\n", [], {}, "server.max_body_bytes"),  # a bool is no size
    ('[server]\nmax_body_bytes = "3GiB"\ngrpc_port = 0\n', [], {}, "server.max_body_bytes"),  # crashed gRPC start-up
    ("[engine]\nmax_batch_size = 1000000000000\n", [], {}, "engine.max_batch_size"),
    ("", [], {"INFEROX_MAX_BATCH_SIZE": "1e12"}, "engine.max_batch_size"),  # used to say "expected a number"
    ("[engine]\nnum_workers = 100000\n", [], {}, "engine.num_workers"),
    ("[models]\nthreads = 1000000000000\n", [], {}, "models.threads"),
    ("[models]\nthreads = 1e12\n", [], {}, "threads"),
    ("", ["--max-body-mb", "4096", "--grpc-port", "0"], {}, "server.max_body_bytes"),
]


@pytest.mark.parametrize(("text", "args", "env", "setting"), BAD_SETTINGS, ids=[f"{b[3]}-{i}" for i, b in enumerate(BAD_SETTINGS)])
def test_bad_settings_are_one_line_errors_with_exit_3(tmp_path: Path, text: str, args: list[str], env: dict[str, str], setting: str) -> None:
    conf = tmp_path / "serve.toml"
    conf.write_text(text)
    code, out = _invoke("serve", tmp_path, "--config", conf, "--print-config", *args, env=env)
    assert code == 3, out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error [INVALID_CONFIG]:") and setting in lines[0], out


def test_good_limits_are_settings_with_their_sources(tmp_path: Path) -> None:
    conf = tmp_path / "serve.toml"
    conf.write_text('[server]\nmax_request_rows = 64\nmax_request_text_bytes = "1MiB"\n')
    code, out = _invoke("serve", tmp_path, "--config", conf, "--print-config", env={"INFEROX_SERVER_MAX_REQUEST_TOKENS": "4096"})
    assert code == 0, out
    assert "server.max_request_rows" in out and "64" in out and str(2**20) in out and "4096" in out


# ---------------------------------------------------------------------------------- nothing to serve
def _serve(*args: Any, env: dict[str, str] | None = None, script: str | None = None) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    base.update(env or {})
    cmd = [sys.executable, "-c", script, "serve"] if script else [sys.executable, "-m", "inferox.engine.cli", "serve"]
    return subprocess.Popen([*cmd, *(str(a) for a in args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=base)


def _finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"inferox serve still running after {timeout} s:\n{err[-3000:]}")
    return proc.returncode, out, err


def test_a_folder_with_nothing_to_serve_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "models"
    (empty / "notes").mkdir(parents=True)  # a folder, but no package in it
    code, _, err = _finish(_serve(empty, "--port", free_port()))
    lines = [ln for ln in err.splitlines() if ln.startswith("error")]
    assert code == 4, err[-2000:]
    assert lines and lines[0].startswith(f"error [PACKAGE_NOT_FOUND]: nothing servable at {empty}: looked for a package") and "--allow-empty" in lines[0]


def test_allow_empty_starts_for_repository_control(tmp_path: Path, mlp_package: Path) -> None:
    import shutil

    repo = tmp_path / "models"
    repo.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(repo, "--port", port, "--allow-empty")
    try:
        assert wait_until(lambda: _ready(url, proc), timeout=60, interval=0.1)
        assert httpx.post(f"{url}/v2/repository/index").json() == []
        shutil.copytree(mlp_package, repo / "mlp")  # a model arrives; loading it serves it
        assert httpx.post(f"{url}/v2/repository/models/mlp/load", timeout=60).status_code == 200
        assert httpx.get(f"{url}/v2/models/mlp/ready").status_code == 200
        proc.send_signal(signal.SIGTERM)
        code, _, err = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert code == 0, err[-2000:]


def _ready(url: str, proc: subprocess.Popen[str]) -> bool:
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


# ------------------------------------------------------------------------------------------- protobuf
#: ``inferox serve`` in a process whose protobuf runtime reports itself older than the generated code.
OLD_PROTOBUF = r"""
import sys
from google.protobuf import runtime_version
runtime_version.MAJOR, runtime_version.MINOR = 5, 26
from inferox.engine.cli import main
sys.argv = ["inferox", *sys.argv[1:]]
main()
"""


def test_an_old_protobuf_runtime_is_one_line_naming_the_fix(mlp_package: Path) -> None:
    code, _, err = _finish(_serve(mlp_package, "--port", free_port(), "--grpc-port", free_port(), script=OLD_PROTOBUF))
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 7, err[-3000:]
    assert "Traceback" not in err and len(lines) == 1, err[-3000:]
    assert lines[0].startswith("error [BACKEND_UNAVAILABLE]:") and "protobuf" in lines[0] and "pip install 'protobuf>=6.33.5'" in lines[0]


# -------------------------------------------------------------------------------------------- signals
#: ``inferox serve`` whose inference requests take a second more in the engine (the one thing staged).
SLOW_SERVE = r"""
import asyncio, sys
from inferox.engine import _engine
ainfer = _engine.Engine.ainfer
async def slow_ainfer(self, *args, **kwargs):
    await asyncio.sleep(1.0)
    return await ainfer(self, *args, **kwargs)
_engine.Engine.ainfer = slow_ainfer
from inferox.engine.cli import main
sys.argv = ["inferox", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_signal_drains_in_flight_requests_and_exits_0(mlp_package: Path, sig: int) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(mlp_package, "--port", port, "--name", "mlp", script=SLOW_SERVE)
    answer: dict[str, Any] = {}
    body = {"id": "slow", "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    try:
        assert wait_until(lambda: _ready(url, proc), timeout=120, interval=0.1)
        caller = threading.Thread(target=lambda: answer.update(r=httpx.post(f"{url}/v2/models/mlp/infer", json=body, timeout=30)))
        caller.start()
        assert wait_until(lambda: "inferox_requests_in_flight 1" in httpx.get(f"{url}/metrics").text, timeout=10)
        started = time.monotonic()
        proc.send_signal(sig)
        code, _, err = _finish(proc)
        caller.join(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    name = signal.Signals(sig).name
    assert code == 0, err[-3000:]  # SIGTERM used to exit 143: uvicorn re-raised the signal
    assert answer["r"].status_code == 200  # the request in flight was answered, not cut
    assert time.monotonic() - started < 20
    records = [json.loads(ln) for ln in err.splitlines() if ln.startswith("{")]
    messages = [r.get("message", "") for r in records if r.get("logger") == "inferox.server"]
    assert any(f"shutting down ({name}): draining 1 in-flight request(s)" in m for m in messages), messages
    assert any(m.startswith(f"inferox stopped ({name}): 1 request(s) drained") for m in messages), messages
