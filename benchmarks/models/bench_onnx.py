"""MiniLM (all-MiniLM-L6-v2) on inferox-onnx, fp32 and int8, against the direct ``transformers``
forward and inferox-torch, in ONE run, every contender on the same intra-op thread count.

    .venv/bin/python benchmarks/models/bench_onnx.py            # measure, write JSON + Markdown
    .venv/bin/python benchmarks/models/bench_onnx.py --render   # re-render the Markdown from the JSON

Contenders (token inputs of exactly ``seq`` tokens, as in ``bench_minilm.py``, whose batch maker and
interleaved timing loop this script reuses):

* ``transformers``: ``BertModel(**inputs)`` under ``torch.inference_mode()`` — the baseline;
* ``inferox-torch``: for reference, the torch backend through ``AnyModel``;
* ``inferox-onnx``: the onnx backend's fused fp32 graph through ``AnyModel`` (validation, numpy in
  and out, pooling and normalisation in the graph);
* ``inferox-onnx-int8``: the same with ``int8=True`` (the default ``"blockwise"`` scheme);
* ``inferox-onnx-int8-dynamic``: ``int8_scheme="dynamic"`` (``quantize_dynamic``), for comparison.

Targets (issue 16), judged on the CPU-time ratio to the baseline measured in this run: inferox-onnx
>= 1.2x the baseline's throughput at batch 32 x 128 (ratio <= 0.833) and <= 0.8x its latency at
batch 1 x 16; the int8 row >= 2x at batch 32 x 128 (ratio <= 0.5) with cosine >= 0.995 to fp32 on
the parity sentences (measured here too). Results: ``benchmarks/results/onnx.json`` and ``onnx.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SIZES = [(1, 16, "latency"), (1, 128, "latency"), (8, 128, "throughput"), (32, 128, "throughput")]
CONTENDERS = ("transformers", "inferox-torch", "inferox-onnx", "inferox-onnx-int8", "inferox-onnx-int8-dynamic")
BASELINE = "transformers"
#: (contender, batch, seq) → the highest CPU-time ratio to the baseline that meets the target.
TARGETS: dict[tuple[str, int, int], float] = {
    ("inferox-onnx", 32, 128): 1 / 1.2,
    ("inferox-onnx", 1, 16): 0.8,
    ("inferox-onnx-int8", 32, 128): 0.5,
}
COSINE_MIN = 0.995
INT8 = {"inferox-onnx-int8": "blockwise", "inferox-onnx-int8-dynamic": "dynamic"}


def _minilm_bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_minilm", HERE / "bench_minilm.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parity_sentences() -> list[str]:
    """The sentences of the MiniLM parity tests (tests/models/test_minilm_parity.py)."""
    text = (ROOT / "tests" / "models" / "test_minilm_parity.py").read_text()
    start = text.index("SENTENCES = [")
    end = text.index("]\n", start)
    namespace: dict[str, Any] = {}
    exec(text[start:end + 1], namespace)  # the list literal only; the test module itself needs pytest
    return list(namespace["SENTENCES"])


def profile_ops(threads: int, *, batch: int = 32, seq: int = 128, runs: int = 3) -> dict[str, Any]:
    """ONNX Runtime's own profiler on the fused fp32 and the int8 graphs at ``batch`` x ``seq``: the
    share of kernel time per operator type (py-spy sees one native call, ``InferenceSession.run``,
    for all of it)."""
    import collections

    import onnxruntime as ort

    from inferox.core import ModelMetadata
    from inferox.core.architectures import read_sentence_transformers_config
    from inferox.core.plugins import get_registry

    bench = _minilm_bench()
    d = bench.model_dir()
    registry = get_registry()
    factory = registry.architecture_factory("onnx", "bert")
    x = bench.token_batch(batch, seq)
    out: dict[str, Any] = {"batch": batch, "seq": seq, "runs": runs, "threads": threads, "ops": {}}
    for name, options in (("inferox-onnx", {}), ("inferox-onnx-int8", {"int8": True})):
        model = factory(backend=registry.get_backend("onnx"), config=json.loads((d / "config.json").read_text()), weights=d / "model.safetensors",
                        metadata=ModelMetadata("m", architecture="bert"), device="cpu", dtype=None,
                        preprocessing=read_sentence_transformers_config(d), threads=threads, **options)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
        session = ort.InferenceSession(str(model.graph_path), opts, providers=["CPUExecutionProvider"])
        feeds = model.feeds(x)
        session.run(None, feeds)
        for _ in range(runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
        totals: collections.Counter[str] = collections.Counter()
        for e in events:
            if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
                totals[e["args"]["op_name"]] += int(e["dur"])
        whole = sum(totals.values()) or 1
        out["ops"][name] = {op: round(us / whole, 4) for op, us in totals.most_common() if us / whole >= 0.001}
    return out


def load_contenders(threads: int) -> tuple[dict[str, Callable[[dict[str, np.ndarray]], Callable[[], Any]]], dict[str, Any]]:
    import torch
    from transformers import AutoModel

    from inferox.core import AnyModel, ModelMetadata
    from inferox.core.architectures import read_sentence_transformers_config
    from inferox.core.plugins import get_registry

    bench = _minilm_bench()
    d = bench.model_dir()
    config = json.loads((d / "config.json").read_text())
    pre = read_sentence_transformers_config(d)
    registry = get_registry()
    facts: dict[str, Any] = {}

    def inferox(backend: str, **options: Any) -> Any:
        factory = registry.architecture_factory(backend, "bert")
        t0 = time.perf_counter()
        model = factory(
            backend=registry.get_backend(backend), config=config, weights=d / "model.safetensors",
            metadata=ModelMetadata("all-MiniLM-L6-v2", architecture="bert"), device="cpu", dtype=None,
            preprocessing=pre, tokenizer_path=d / "tokenizer.json", threads=threads, **options,
        )
        model.warmup()
        facts[f"{backend}{options}"] = {"load_s": round(time.perf_counter() - t0, 2), "fusions": getattr(model, "fusions", None),
                                         "from_cache": getattr(model, "from_cache", None), "weight_bytes": model.memory_requirements()}
        return model

    hf = AutoModel.from_pretrained(str(d)).eval()
    models = {
        "inferox-torch": inferox("torch"),
        "inferox-onnx": inferox("onnx"),
        **{name: inferox("onnx", int8=True, int8_scheme=scheme) for name, scheme in INT8.items()},
    }
    # The int8 accuracy check: cosine of each parity sentence's embedding to the fp32 graph's.
    sentences = parity_sentences()
    fp32 = models["inferox-onnx"].encode_text(sentences)["sentence_embedding"]
    accuracy = {}
    for name in INT8:
        q = models[name].encode_text(sentences)["sentence_embedding"]
        cos = (q * fp32).sum(1) / (np.linalg.norm(q, axis=1) * np.linalg.norm(fp32, axis=1))
        accuracy[name] = {"cosine_min": float(cos.min()), "cosine_per_sentence": [round(float(c), 5) for c in cos]}
    facts["int8_accuracy"] = accuracy
    anys = {k: AnyModel(m) for k, m in models.items()}

    def hf_call(x: dict[str, np.ndarray]) -> Callable[[], Any]:
        xt = {k: torch.from_numpy(v) for k, v in x.items()}

        def call() -> Any:
            with torch.inference_mode():
                return hf(**xt).last_hidden_state.numpy()

        return call

    makers: dict[str, Callable[[dict[str, np.ndarray]], Callable[[], Any]]] = {"transformers": hf_call}
    for name, model in anys.items():
        makers[name] = (lambda m: lambda x: lambda: m(x))(model)
    return makers, facts


def summarize(batch: int, seq: int, kind: str, wall: dict[str, list[float]], cpu: dict[str, list[float]]) -> dict[str, Any]:
    med = {k: statistics.median(v) for k, v in wall.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    out: dict[str, Any] = {"kind": kind, "batch": batch, "seq": seq, "rounds": len(wall[BASELINE]), "results": {}}
    for name in CONTENDERS:
        out["results"][name] = {
            "median_ms": med[name] * 1e3,
            "ratio": med[name] / med[BASELINE],
            "sequences_per_s": batch / med[name],
            "cpu_median_ms": cpu_med[name] * 1e3,
            "cpu_ratio": cpu_med[name] / cpu_med[BASELINE],
        }
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    import onnxruntime
    import torch

    torch.set_num_threads(args.threads)
    bench = _minilm_bench()
    load_before = os.getloadavg()
    t_start = time.time()
    makers, facts = load_contenders(args.threads)
    rng = random.Random(0)
    rows = []
    for batch, seq, kind in SIZES:
        x = bench.token_batch(batch, seq)
        calls = {name: make(x) for name, make in makers.items()}
        wall, cpu = bench.measure(calls, budget_s=args.budget, min_rounds=args.min_rounds, max_rounds=args.max_rounds, rng=rng)
        row = summarize(batch, seq, kind, wall, cpu)
        rows.append(row)
        print(f"batch={batch:>2} seq={seq:>3} rounds={row['rounds']:>3} " + "  ".join(
            f"{n}={r['median_ms']:.1f}ms(cpu {r['cpu_ratio']:.3f})" for n, r in row["results"].items()), flush=True)
    import onnx
    import transformers

    return {
        "benchmark": "all-MiniLM-L6-v2 forward on inferox-onnx (fp32, int8), token inputs, no padding",
        "baseline": BASELINE,
        "targets": {f"{c} at {b}x{s}": f"cpu ratio <= {v:.3f}" for (c, b, s), v in TARGETS.items()},
        "machine": {
            "python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "intra_op_threads": args.threads,
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
        },
        "versions": {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__, "torch": torch.__version__,
                     "transformers": transformers.__version__, "numpy": np.__version__},
        "settings": {"budget_s_per_size": args.budget, "min_rounds": args.min_rounds, "max_rounds": args.max_rounds},
        "facts": facts,
        "wall_time_s": round(time.time() - t_start, 1),
        "rows": rows,
    }


def render(data: dict[str, Any]) -> str:
    """The Markdown report, generated from the JSON only."""
    m = data["machine"]
    lines = [
        "# inferox-onnx benchmark (generated by `benchmarks/models/bench_onnx.py` from `onnx.json`; do not edit)",
        "",
        f"{data['benchmark']}. Median wall time per call (latency) or sequences per second (throughput); in brackets the "
        f"ratio of median **process CPU time** per call to the direct `{data['baseline']}` forward measured in the same run "
        "(lower is better; the targets are judged on it, since the machine is shared), then the wall-time ratio. "
        "Targets: " + "; ".join(f"{k}: {v}" for k, v in data["targets"].items()) + f"; int8 cosine >= {COSINE_MIN} to fp32.",
        "",
        f"Machine: {m['cpu_count']} CPUs, {m['intra_op_threads']} intra-op thread(s) for every contender, load average "
        f"{m['load_average_before'][0]} before / {m['load_average_after'][0]} after; "
        + ", ".join(f"{k} {v}" for k, v in data["versions"].items()) + f"; run took {data['wall_time_s']} s.",
        "",
        "| batch | seq | rounds | " + " | ".join(CONTENDERS) + " |",
        "|" + "---|" * (3 + len(CONTENDERS)),
    ]
    misses: list[str] = []
    for r in data["rows"]:
        cells = []
        for name in CONTENDERS:
            res = r["results"][name]
            value = f"{res['median_ms']:.2f} ms" if r["kind"] == "latency" else f"{res['sequences_per_s']:.1f} seq/s"
            target = TARGETS.get((name, r["batch"], r["seq"]))
            mark = ""
            if target is not None:
                ok = res["cpu_ratio"] <= target
                mark = " ✅" if ok else " ❌"
                if not ok:
                    misses.append(f"{name} at batch {r['batch']} x {r['seq']}: cpu ratio {res['cpu_ratio']:.3f} (target <= {target:.3f})")
            cells.append(f"{value} [cpu {res['cpu_ratio']:.3f}x]{mark} (wall {res['ratio']:.3f}x)")
        lines.append(f"| {r['batch']} | {r['seq']} | {r['rounds']} | " + " | ".join(cells) + " |")
    lines += ["", "## int8 accuracy (cosine to the fp32 graph on the parity sentences)", "", "| row | min cosine | per sentence | check |", "|---|---|---|---|"]
    for name, acc in data["facts"]["int8_accuracy"].items():
        ok = acc["cosine_min"] >= COSINE_MIN
        if not ok:
            misses.append(f"{name} accuracy: min cosine {acc['cosine_min']:.4f} < {COSINE_MIN}")
        lines.append(f"| {name} | {acc['cosine_min']:.4f} | {', '.join(f'{c:.4f}' for c in acc['cosine_per_sentence'])} | {'✅' if ok else '❌'} |")
    lines += ["", "## Loads", "", "| contender | load s | from cache | weight bytes | fused operators |", "|---|---|---|---|---|"]
    for key, fact in data["facts"].items():
        if key == "int8_accuracy":
            continue
        fusions = ", ".join(f"{k} {v}" for k, v in (fact.get("fusions") or {}).items()) or "-"
        lines.append(f"| `{key}` | {fact['load_s']} | {fact['from_cache']} | {fact['weight_bytes']:,} | {fusions} |")
    profile = data.get("profile")
    if profile:
        lines += ["", f"## Where the time goes (ONNX Runtime's profiler, batch {profile['batch']} x {profile['seq']}, "
                      f"{profile['threads']} thread(s), share of kernel time per operator type)", ""]
        for name, ops in profile["ops"].items():
            lines.append(f"- `{name}`: " + ", ".join(f"{op} {share:.1%}" for op, share in ops.items()))
    lines += ["", "## Notes", ""]
    if misses:
        lines += ["Targets missed in this run: " + "; ".join(misses) + ".", ""]
    lines += list(data.get("notes", []))
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of timing per size (default 20)")
    parser.add_argument("--min-rounds", type=int, default=10)
    parser.add_argument("--max-rounds", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for every contender (default 1)")
    parser.add_argument("--out", type=Path, default=RESULTS / "onnx.json")
    parser.add_argument("--notes", type=Path, default=HERE / "onnx_notes.md", help="Markdown appended under Notes")
    parser.add_argument("--render", action="store_true", help="only re-render the Markdown from the JSON")
    parser.add_argument("--profile-only", action="store_true", help="only (re-)run the operator profile into the existing JSON")
    args = parser.parse_args(argv)
    # A private graph cache: the first load of each onnx contender builds (timed in "Loads").
    os.environ.setdefault("INFEROX_CACHE_DIR", tempfile.mkdtemp(prefix="inferox-bench-"))
    if args.render or args.profile_only:
        data = json.loads(args.out.read_text())
    else:
        data = run(args)
    if not args.render:
        data["profile"] = profile_ops(args.threads)
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
