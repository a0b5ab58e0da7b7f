"""MiniLM (all-MiniLM-L6-v2) on inferox-onnx, fp32 and int8, against the direct ``transformers``
forward and inferox-torch, in ONE run, every contender on the same intra-op thread count.

    .venv/bin/python benchmarks/models/bench_onnx.py                   # measure, write JSON + Markdown
    .venv/bin/python benchmarks/models/bench_onnx.py --against f2cafe6  # + the graph the code at f2cafe6 built
    .venv/bin/python benchmarks/models/bench_onnx.py --render          # re-render the Markdown from the JSON
    nice .venv/bin/python benchmarks/models/bench_onnx.py --against f2cafe6 --contenders inferox-onnx \
        --sizes 1x16,32x128 --budget 2 --max-rounds 20 --no-profile --out /tmp/onnx-small.json   # a quick check

Contenders (token inputs of exactly ``seq`` tokens, as in ``bench_minilm.py``, whose batch maker and
interleaved timing loop this script reuses):

* ``transformers``: ``BertModel(**inputs)`` under ``torch.inference_mode()`` — the baseline;
* ``inferox-torch``: for reference, the torch backend through ``AnyModel``;
* ``inferox-onnx``: the onnx backend's fused fp32 graph through ``AnyModel`` (validation, numpy in
  and out, pooling and normalisation in the graph);
* ``inferox-onnx-int8``: the same with ``int8=True`` (the default ``"blockwise"`` scheme);
* ``inferox-onnx-int8-dynamic``: ``int8_scheme="dynamic"`` (``quantize_dynamic``), for comparison;
* ``inferox-onnx-before`` (with ``--against REV``): the fp32 graph the code at git revision ``REV``
  built (a revision that still had the hand-written ``inferox/onnx/models/bert.py``, e.g. f2cafe6),
  built in a subprocess from that revision's sources and run through the same ``AnyModel`` path.
  The traced graph's CPU time is reported against it too (target: within 3 %).

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
from collections.abc import Callable, Mapping
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
BEFORE = "inferox-onnx-before"
#: The highest CPU-time ratio of the traced fp32 graph to the graph of ``--against`` (issue 21, item 8).
BEFORE_TARGET = 1.03


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
        model: Any = factory(backend=registry.get_backend("onnx"), config=json.loads((d / "config.json").read_text()), weights=d / "model.safetensors",
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


_BEFORE_SCRIPT = """
import json, sys
from pathlib import Path
import onnx
from inferox.core.architectures import BertConfig, Preprocessing, bert_weight_shapes, select_weights
from inferox.onnx.models._common import check_float, read_weights
from inferox.onnx.models.bert import build_bert_graph, optimize_bert_graph
d, out = Path(sys.argv[1]), sys.argv[2]
cfg = BertConfig.from_dict(json.loads((d / "config.json").read_text()))
pre = Preprocessing.from_options(json.loads(sys.argv[3]), limit=cfg.max_position_embeddings)
tensors, source = read_weights(d / "model.safetensors")
weights = check_float(select_weights(tensors, bert_weight_shapes(cfg), prefixes=("", "bert."), source=source), source)
graph, fusions = optimize_bert_graph(build_bert_graph(cfg, pre, weights), cfg)
onnx.save_model(graph, out)
print(json.dumps(fusions))
"""


def graph_at_revision(rev: str, model: Path, preprocessing: dict[str, Any], out: Path) -> dict[str, int]:
    """Build MiniLM's fp32 graph with the hand-written builder of git revision ``rev`` (its
    inferox-core and inferox-onnx sources, extracted with ``git archive``, ahead of the installed ones
    on ``PYTHONPATH`` in a subprocess); returns ONNX Runtime's fusion counts for it."""
    import io
    import subprocess
    import tarfile

    tree = Path(tempfile.mkdtemp(prefix="inferox-before-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "inferox-core/src", "inferox-onnx/src"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree / "inferox-onnx" / "src"), str(tree / "inferox-core" / "src")])}
    done = subprocess.run([sys.executable, "-c", _BEFORE_SCRIPT, str(model), str(out), json.dumps({"preprocessing": preprocessing})],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"building the graph of {rev} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def before_model(rev: str, like: Any, threads: int, facts: dict[str, Any]) -> Any:
    """The graph of ``rev`` behind the interface of ``like`` (the traced model: same specs), fed as
    the hand-written BertModel fed it (token types and positions filled when left out)."""
    from inferox.core import ModelMetadata
    from inferox.core.architectures import read_sentence_transformers_config
    from inferox.onnx import OnnxModel

    bench = _minilm_bench()
    d = bench.model_dir()
    path = Path(tempfile.mkdtemp(prefix="inferox-before-graph-")) / "model.onnx"
    t0 = time.perf_counter()
    fusions = graph_at_revision(rev, d, dict(read_sentence_transformers_config(d)), path)
    build_s = time.perf_counter() - t0

    class Before(OnnxModel):
        text_encoder = like.text_encoder

        def feeds(self, inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
            ids = np.asarray(inputs["input_ids"], np.int64)
            b, n = ids.shape
            return {"input_ids": ids, "attention_mask": np.asarray(inputs.get("attention_mask", np.ones_like(ids)), np.int64),
                    "token_type_ids": np.asarray(inputs["token_type_ids"], np.int64) if inputs.get("token_type_ids") is not None else np.zeros_like(ids),
                    "position_ids": np.asarray(inputs["position_ids"], np.int64) if inputs.get("position_ids") is not None
                    else np.ascontiguousarray(np.broadcast_to(np.arange(n, dtype=np.int64), (b, n)))}

        def check_inputs(self, inputs: Any) -> None:
            like.check_inputs(inputs)

    model = Before(path, metadata=ModelMetadata("all-MiniLM-L6-v2", architecture="bert"), input_specs=like.input_specs,
                   output_specs=like.output_specs, backend=like.backend, device="cpu", threads=threads, weight_bytes=like.memory_requirements())
    model.warmup()
    facts[f"{BEFORE} ({rev})"] = {"load_s": round(build_s, 2), "from_cache": False, "weight_bytes": model.memory_requirements(), "fusions": fusions}
    return model


def load_contenders(threads: int, *, wanted: set[str] | None = None, against: str | None = None) -> tuple[
    dict[str, Callable[[dict[str, np.ndarray]], Callable[[], Any]]], dict[str, Any]
]:
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
    chosen = set(CONTENDERS) if wanted is None else wanted
    models: dict[str, Any] = {}
    if "inferox-torch" in chosen:
        models["inferox-torch"] = inferox("torch")
    models["inferox-onnx"] = inferox("onnx")  # the fp32 graph: the int8 rows' accuracy reference too
    models.update({name: inferox("onnx", int8=True, int8_scheme=scheme) for name, scheme in INT8.items() if name in chosen})
    if against is not None:
        models[BEFORE] = before_model(against, models["inferox-onnx"], threads, facts)
    # The int8 accuracy check: cosine of each parity sentence's embedding to the fp32 graph's.
    sentences = parity_sentences()
    fp32 = models["inferox-onnx"].encode_text(sentences)["sentence_embedding"]
    accuracy = {}
    for name in INT8:
        if name not in models:
            continue
        q = models[name].encode_text(sentences)["sentence_embedding"]
        cos = (q * fp32).sum(1) / (np.linalg.norm(q, axis=1) * np.linalg.norm(fp32, axis=1))
        accuracy[name] = {"cosine_min": float(cos.min()), "cosine_per_sentence": [round(float(c), 5) for c in cos]}
    facts["int8_accuracy"] = accuracy
    if against is not None:
        # The two fp32 graphs compute the same embeddings (the traced one from the definition).
        batch = models["inferox-onnx"].text_encoder.encode(sentences)
        a, b = AnyModel(models["inferox-onnx"])(batch), AnyModel(models[BEFORE])(batch)
        facts["before_max_difference"] = {k: float(np.abs(a[k] - b[k]).max()) for k in a}
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
    for name in [*CONTENDERS, BEFORE]:
        if name not in wall:
            continue
        out["results"][name] = {
            "median_ms": med[name] * 1e3,
            "ratio": med[name] / med[BASELINE],
            "sequences_per_s": batch / med[name],
            "cpu_median_ms": cpu_med[name] * 1e3,
            "cpu_ratio": cpu_med[name] / cpu_med[BASELINE],
        }
        if BEFORE in cpu_med:
            out["results"][name]["cpu_vs_before"] = cpu_med[name] / cpu_med[BEFORE]
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    import onnxruntime
    import torch

    torch.set_num_threads(args.threads)
    bench = _minilm_bench()
    load_before = os.getloadavg()
    t_start = time.time()
    wanted = None if args.contenders is None else {c.strip() for c in args.contenders.split(",")} | {"inferox-onnx"}
    makers, facts = load_contenders(args.threads, wanted=wanted, against=args.against)
    rng = random.Random(0)
    rows = []
    sizes = SIZES if args.sizes is None else [s for s in SIZES if f"{s[0]}x{s[1]}" in {v.strip() for v in args.sizes.split(",")}]
    for batch, seq, kind in sizes:
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
        "settings": {"budget_s_per_size": args.budget, "min_rounds": args.min_rounds, "max_rounds": args.max_rounds, "against": args.against},
        "facts": facts,
        "wall_time_s": round(time.time() - t_start, 1),
        "rows": rows,
    }


def render(data: dict[str, Any]) -> str:
    """The Markdown report, generated from the JSON only."""
    m = data["machine"]
    present = [c for c in [*CONTENDERS, BEFORE] if data["rows"] and c in data["rows"][0]["results"]]
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
        "| batch | seq | rounds | " + " | ".join(present) + " |",
        "|" + "---|" * (3 + len(present)),
    ]
    misses: list[str] = []
    for r in data["rows"]:
        cells = []
        for name in present:
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
    if BEFORE in present:
        against = data["settings"].get("against")
        lines += ["", f"## The traced graph against the hand-written graph of `{against}`", "",
                  f"Ratio of median process CPU time per call, `inferox-onnx` (the graph traced from the definition) to `{BEFORE}` "
                  f"(the graph the code at `{against}` built by hand), measured in the same run; target <= {BEFORE_TARGET}. "
                  "Largest difference between their outputs on the parity sentences: "
                  + ", ".join(f"{k} {v:.2g}" for k, v in data["facts"].get("before_max_difference", {}).items()) + ".", "",
                  "| batch | seq | cpu ratio traced / hand-written | check |", "|---|---|---|---|"]
        for r in data["rows"]:
            ratio = r["results"]["inferox-onnx"]["cpu_vs_before"]
            ok = ratio <= BEFORE_TARGET
            if not ok and (r["batch"], r["seq"]) in ((1, 16), (32, 128)):
                misses.append(f"inferox-onnx against {against} at batch {r['batch']} x {r['seq']}: cpu ratio {ratio:.3f} (target <= {BEFORE_TARGET})")
            lines.append(f"| {r['batch']} | {r['seq']} | {ratio:.3f} | {'✅' if ok else '❌'} |")
    if data["facts"]["int8_accuracy"]:
        lines += ["", "## int8 accuracy (cosine to the fp32 graph on the parity sentences)", "", "| row | min cosine | per sentence | check |", "|---|---|---|---|"]
    for name, acc in data["facts"]["int8_accuracy"].items():
        ok = acc["cosine_min"] >= COSINE_MIN
        if not ok:
            misses.append(f"{name} accuracy: min cosine {acc['cosine_min']:.4f} < {COSINE_MIN}")
        lines.append(f"| {name} | {acc['cosine_min']:.4f} | {', '.join(f'{c:.4f}' for c in acc['cosine_per_sentence'])} | {'✅' if ok else '❌'} |")
    lines += ["", "## Loads", "", "| contender | load s | from cache | weight bytes | fused operators |", "|---|---|---|---|---|"]
    for key, fact in data["facts"].items():
        if key in ("int8_accuracy", "before_max_difference"):
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
    parser.add_argument("--no-profile", action="store_true", help="skip the operator profile")
    parser.add_argument("--against", metavar="REV", help="also time the hand-written graph git revision REV built (e.g. f2cafe6)")
    parser.add_argument("--contenders", help=f"comma-separated subset of {', '.join(CONTENDERS[1:])} (default: all; inferox-onnx always)")
    parser.add_argument("--sizes", help="comma-separated subset of " + ", ".join(f"{b}x{s}" for b, s, _ in SIZES) + " (default: all)")
    args = parser.parse_args(argv)
    # A private graph cache: the first load of each onnx contender builds (timed in "Loads").
    os.environ.setdefault("INFEROX_CACHE_DIR", tempfile.mkdtemp(prefix="inferox-bench-"))
    if args.render or args.profile_only:
        data = json.loads(args.out.read_text())
    else:
        data = run(args)
    if not args.render and not args.no_profile:
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
