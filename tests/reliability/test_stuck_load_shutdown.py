"""Ctrl-C ends ``inferox serve`` while a model load hangs (issue 14, item 2).

A FIFO in a package used to hang a load for ever (packages are now read from regular files only);
anything else that never returns — a stalled network file system, a hung driver — must not keep
the server alive. The load is not a request to drain: on SIGINT/SIGTERM it is abandoned at once,
its HTTP caller gets 503 UNAVAILABLE saying why, and the process exits promptly (the load's thread
is a daemon, never joined at exit).

The real ``inferox`` command in a subprocess, serving a real repository of MLP packages on torch.
The hang is the one thing staged: the server's composition step blocks for the package named
``stuck`` (patched inside the subprocess, before the command runs).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.net import free_port, wait_until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

#: ``inferox serve`` whose load of a package named ``stuck`` never returns.
STUCK_SERVE = r"""
import sys, threading
import inferox.engine.server._dataplane as dataplane
compose = dataplane.compose_model
def stuck_compose(path, **kw):
    if path.name == "stuck":
        print("STUCK LOAD ENTERED", file=sys.stderr, flush=True)
        threading.Event().wait()
    return compose(path, **kw)
dataplane.compose_model = stuck_compose
from inferox.engine.cli import main
sys.argv = ["inferox", *sys.argv[1:]]
main()
"""

#: Seconds the server may take to exit after the signal (its graceful timeout is 30 s: a load that
#: held the shutdown would take at least that, and used to hang the exit for ever).
EXIT_WITHIN_S = 10.0


def _serve(repo: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("INFEROX_MMAP_THRESHOLD", "MALLOC_MMAP_THRESHOLD_")}
    return subprocess.Popen(
        [sys.executable, "-c", STUCK_SERVE, "serve", str(repo), "--port", str(port), "--backend", "torch"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _stop(proc: subprocess.Popen[str], sig: int) -> tuple[float, str]:
    """Send ``sig``; the seconds until the process exited, and its stderr."""
    start = time.monotonic()
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"inferox serve did not exit within 60 s of {signal.Signals(sig).name} while a load hung:\n{err[-3000:]}")
    return time.monotonic() - start, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_signal_ends_the_server_while_a_repository_load_hangs(tmp_path: Path, mlp_package: Path, sig: int) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(mlp_package, repo / "good")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(repo, port)
    try:

        def ready() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                return httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        assert wait_until(ready, timeout=120, interval=0.2)
        shutil.copytree(mlp_package, repo / "stuck")
        answer: dict[str, httpx.Response | BaseException] = {}

        def load() -> None:
            try:
                answer["load"] = httpx.post(f"{url}/v2/repository/models/stuck/load", timeout=120)
            except BaseException as exc:  # noqa: BLE001 - asserted below
                answer["load"] = exc

        caller = threading.Thread(target=load)
        caller.start()
        # The load is under way (its model is LOADING) and never finishes; the other model serves.
        def loading() -> bool:
            index = httpx.post(f"{url}/v2/repository/index", timeout=5).json()
            return any(m["name"] == "stuck" and m.get("state") == "LOADING" for m in index)

        assert wait_until(loading, timeout=30)
        time.sleep(0.5)
        assert caller.is_alive()
        assert httpx.get(f"{url}/v2/models/good/ready", timeout=5).status_code == 200
        seconds, err = _stop(proc, sig)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    caller.join(30)
    assert "STUCK LOAD ENTERED" in err
    assert seconds < EXIT_WITHIN_S, (seconds, err[-3000:])
    # A clean stop: exit 0, whichever signal.
    assert proc.returncode == 0, err[-3000:]
    response = answer["load"]
    assert isinstance(response, httpx.Response), response
    assert response.status_code == 503
    assert response.json()["code"] == "UNAVAILABLE" and "shutting down" in response.json()["error"]


def test_a_signal_ends_the_server_while_a_start_up_load_hangs(tmp_path: Path, mlp_package: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(mlp_package, repo / "stuck")
    proc = _serve(repo, free_port())
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # start-up reaches the load that hangs
            if "STUCK LOAD ENTERED" in line:
                break
        else:
            pytest.fail(f"the server exited before loading (rc {proc.wait()})")
        seconds, err = _stop(proc, signal.SIGINT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert seconds < EXIT_WITHIN_S, (seconds, err[-3000:])
    assert "the load was abandoned" in err
