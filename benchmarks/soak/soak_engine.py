"""In-process soak: N inference requests (default 1,000,000) on a small MLP package through
``Engine.infer`` with dynamic batching, from several threads at once.

Checks, for every single request, that its answer is the one computed in numpy for *its* input
(each in-flight request has a distinct input row, so an answer delivered to the wrong caller is
caught), counts lost requests (sent minus answered) and errors, and samples the process RSS. The
RSS growth is measured from the end of the warm-up (the first ``--warmup`` fraction of requests) to
the end of the run; issue 7 asks for less than 5 %.

Bounded in time: ``--max-seconds`` stops the run early (the JSON then records the scale actually
run). Results: printed, and written to ``benchmarks/results/soak_engine.json``::

    .venv/bin/python benchmarks/soak/soak_engine.py                       # 1,000,000 requests
    .venv/bin/python benchmarks/soak/soak_engine.py --requests 100000     # a reduced-scale run
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
SIZES = [16, 64, 64, 8]
DISTINCT_ROWS = 1 << 16


def rss_bytes(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def build_mlp(workdir: Path, seed: int = 0) -> tuple[Path, dict[str, np.ndarray]]:
    """An MLP package (16 → 64 → 64 → 8, relu) built with inferox.mlpkg, and its weights."""
    from safetensors.numpy import save_file

    from inferox.mlpkg import build_package

    src = workdir / "mlp-src"
    src.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    for i, (a, b) in enumerate(itertools.pairwise(SIZES)):
        tensors[f"layers.{i}.weight"] = (rng.standard_normal((b, a)) / np.sqrt(a)).astype(np.float32)
        tensors[f"layers.{i}.bias"] = (rng.standard_normal(b) * 0.1).astype(np.float32)
    (src / "config.json").write_text(json.dumps({"model_type": "mlp", "layer_sizes": SIZES, "activation": "relu"}))
    save_file(tensors, str(src / "model.safetensors"))
    return build_package(src, output_dir=workdir / "pkgs", name="mlp"), tensors


def reference(x: np.ndarray, t: dict[str, np.ndarray]) -> np.ndarray:
    h = x.astype(np.float64)
    n = len(SIZES) - 1
    for i in range(n):
        h = h @ t[f"layers.{i}.weight"].T.astype(np.float64) + t[f"layers.{i}.bias"]
        if i < n - 1:
            h = np.maximum(h, 0)
    return h.astype(np.float32)


def run(requests: int, threads: int, max_seconds: float, warmup_fraction: float, backend: str, samples: int) -> dict[str, Any]:
    from inferox.engine import Engine, EngineConfig

    with tempfile.TemporaryDirectory(prefix="inferox-soak-") as tmp:
        pkg, tensors = build_mlp(Path(tmp))
        rng = np.random.default_rng(1)
        rows = rng.standard_normal((DISTINCT_ROWS, SIZES[0])).astype(np.float32)
        expected = reference(rows, tensors)
        engine = Engine(EngineConfig(max_batch_size=64, max_queue_delay_ms=1.0))
        engine.load(pkg, name="mlp", backend=backend)

        counter = itertools.count()
        lock = threading.Lock()
        answered = mismatched = 0
        errors: dict[str, int] = {}
        stop_at = time.monotonic() + max_seconds
        warm_at = int(requests * warmup_fraction)
        sample_every = max(1, requests // samples)
        rss_samples: list[tuple[int, int]] = []
        warm_rss: list[int] = []
        first_mismatch: list[str] = []

        def worker() -> None:
            nonlocal answered, mismatched
            ok = bad = 0
            while True:
                i = next(counter)
                if i >= requests or time.monotonic() > stop_at:
                    break
                r = i % DISTINCT_ROWS
                try:
                    out = engine.infer("mlp", rows[r : r + 1], timeout=60)["output"]
                except Exception as exc:  # noqa: BLE001 - every failure is counted by its code
                    code = getattr(exc, "code", type(exc).__name__)
                    with lock:
                        errors[code] = errors.get(code, 0) + 1
                    continue
                if out.shape == (1, SIZES[-1]) and np.allclose(out[0], expected[r], rtol=1e-4, atol=1e-5):
                    ok += 1
                else:
                    bad += 1
                    if not first_mismatch:
                        first_mismatch.append(f"request {i}: got {out!r}, expected {expected[r]!r}")
                if i == warm_at:
                    warm_rss.append(rss_bytes())
                if i % sample_every == 0:
                    with lock:
                        rss_samples.append((i, rss_bytes()))
                if ok + bad >= 1000:
                    with lock:
                        answered += ok + bad
                        mismatched += bad
                    ok = bad = 0
            with lock:
                answered += ok + bad
                mismatched += bad

        started = time.perf_counter()
        pool = [threading.Thread(target=worker, name=f"soak-{t}") for t in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - started
        sent = min(next(counter), requests)  # ids handed out (one per request started), capped
        # a worker may draw one id past the stop without sending it: count only those it served
        end_rss = rss_bytes()
        stats = engine.stats("mlp")
        engine.shutdown()
    served = answered + sum(errors.values())
    start_rss = warm_rss[0] if warm_rss else (rss_samples[0][1] if rss_samples else end_rss)
    growth = (end_rss - start_rss) / start_rss
    result: dict[str, Any] = {
        "kind": "soak_engine",
        "scale": {"specified": 1_000_000, "requested": requests, "run": served, "threads": threads, "max_seconds": max_seconds, "stopped_early": served < requests},
        "model": f"mlp {'-'.join(map(str, SIZES))} on {backend}",
        "requests_sent": served,
        "requests_answered": answered,
        "lost": sent - served if sent >= served else 0,
        "mismatched": mismatched,
        "errors": errors,
        "first_mismatch": first_mismatch[0] if first_mismatch else None,
        "elapsed_s": round(elapsed, 2),
        "throughput_rps": round(served / elapsed, 1) if elapsed else None,
        "rss_after_warmup_mb": round(start_rss / 2**20, 1),
        "rss_end_mb": round(end_rss / 2**20, 1),
        "rss_max_mb": round(max([end_rss, *[s for _, s in rss_samples]]) / 2**20, 1),
        "rss_growth_pct": round(100 * growth, 2),
        "rss_growth_limit_pct": 5.0,
        "rss_samples_mb": [(i, round(s / 2**20, 1)) for i, s in sorted(rss_samples)],
        "batch_sizes": {str(k): v for k, v in sorted(stats.batch_sizes.items())},
        "engine_requests": stats.requests,
        "engine_errors": stats.errors,
        "passed": answered == requests and mismatched == 0 and not errors and growth < 0.05,
        "platform": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--max-seconds", type=float, default=3600.0, help="stop early after this long (the JSON records the scale run)")
    ap.add_argument("--warmup", type=float, default=0.05, help="fraction of requests before the RSS baseline is taken")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--samples", type=int, default=50, help="RSS samples over the run")
    ap.add_argument("--out", type=Path, default=RESULTS / "soak_engine.json")
    args = ap.parse_args(argv)
    result = run(args.requests, args.threads, args.max_seconds, args.warmup, args.backend, args.samples)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    short = {k: v for k, v in result.items() if k not in ("rss_samples_mb", "batch_sizes", "platform")}
    print(json.dumps(short, indent=2))
    print(f"wrote {args.out}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
