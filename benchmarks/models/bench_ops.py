"""Each fused operation's reference (``inferox.core.Ops``, array-API terms) against a backend's override,
per backend, at all-MiniLM-L6-v2's sizes — the measurement that decides which overrides a backend keeps.

    .venv/bin/python benchmarks/models/bench_ops.py                          # measure, write JSON + Markdown
    .venv/bin/python benchmarks/models/bench_ops.py --sizes 1x16 --budget 0.3 --out /tmp/ops.json   # a quick check
    .venv/bin/python benchmarks/models/bench_ops.py --render                 # re-render the Markdown from the JSON

For every operation an architecture definition uses (``linear``, ``layer_norm``, ``gelu``,
``softmax``, ``attention`` with and without a padding bias, ``attention_bias``, ``embedding``,
``l2_normalize``) and each batch x sequence size, the same inputs go through:

* ``torch``: core's reference ``Ops`` over ``array_api_compat.torch`` vs ``TorchOps``, eagerly under
  ``torch.inference_mode()`` — what ``TorchDefinitionModel`` runs;
* ``jax``: core's reference ``Ops`` over ``jax.numpy`` vs ``JaxOps``, each jit-compiled on its own
  (compiled before timing) — what ``JaxDefinitionModel`` runs, fused by XLA inside a whole model.

Calls interleave reference and override in a shuffled order per round; medians of process CPU time
(load-independent) and wall time per call. ``ratio`` is override / reference: below 1.0 the override
is faster and is kept. Results: ``benchmarks/results/ops.json`` and ``ops.md`` (generated, not edited).
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
#: all-MiniLM-L6-v2: hidden 384, 12 heads of 32, intermediate 1536, vocabulary 30522.
HIDDEN, HEADS, INTER, VOCAB = 384, 12, 1536, 30522
DEFAULT_SIZES = ((1, 16), (32, 128))
#: What the overrides are measured against; the same names as inferox.core.Ops' methods (two cases of attention).
OPS = (
    "linear", "layer_norm", "gelu", "softmax", "attention", "attention (padded)", "attention_bias",
    "masked attention (nothing padded)", "embedding", "l2_normalize",
)


def _inputs(batch: int, seq: int, rng: np.random.Generator) -> dict[str, tuple[tuple[Any, ...], dict[str, Any]]]:
    """Host inputs per operation: ``(args, kwargs)`` as numpy arrays (converted per backend)."""
    f = np.float32
    x = rng.standard_normal((batch, seq, HIDDEN)).astype(f)
    inner = rng.standard_normal((batch, seq, INTER)).astype(f)
    q, k, v = (rng.standard_normal((batch, HEADS, seq, HIDDEN // HEADS)).astype(f) for _ in range(3))
    mask = np.ones((batch, seq), np.int64)
    mask[:, seq // 2 :] = 0 if batch > 1 else 1
    padded_mask = np.ones((batch, seq), np.int64)
    padded_mask[0, seq // 2 :] = 0
    bias = ((1.0 - padded_mask.astype(f)) * np.finfo(f).min)[:, None, None, :]
    return {
        "linear": ((x, (rng.standard_normal((INTER, HIDDEN)) * 0.05).astype(f), rng.standard_normal(INTER).astype(f)), {}),
        "layer_norm": ((x, rng.standard_normal(HIDDEN).astype(f), rng.standard_normal(HIDDEN).astype(f), 1e-12), {}),
        "gelu": ((inner,), {}),
        "softmax": ((rng.standard_normal((batch, HEADS, seq, seq)).astype(f),), {"axis": -1}),
        "attention": ((q, k, v), {}),
        "attention (padded)": ((q, k, v), {"bias": bias}),
        "attention_bias": ((padded_mask, "float32"), {}),
        # What a definition does with a mask: the bias, then attention with it. torch's attention_bias
        # drops the bias (and SDPA's mask) when nothing is padded: this pair runs the backend's own
        # attention both times, with the reference bias ("reference") and with its own ("override").
        "masked attention (nothing padded)": ((q, k, v, np.ones((batch, seq), np.int64), "float32"), {}),
        "embedding": (((rng.standard_normal((VOCAB, HIDDEN)) * 0.05).astype(f), rng.integers(0, VOCAB, size=(batch, seq))), {}),
        "l2_normalize": ((x[:, 0, :],), {"axis": -1}),
    }


def _method(op: str) -> str:
    return op.split(" ")[0]


def _call_op(impls: dict[str, Any], which: str, op: str) -> Callable[..., Any]:
    """The operation ``op`` names on ``impls[which]``; the masked-attention pair as one function of the
    override's attention, with the reference bias (``which == "reference"``) or the override's."""
    from inferox.core import Ops

    if op.startswith("masked attention"):
        over = impls["override"]
        bias = (lambda mask, dtype: Ops.attention_bias(over, mask, dtype)) if which == "reference" else over.attention_bias
        return lambda q, k, v, mask, dtype: over.attention(q, k, v, bias=bias(mask, dtype))
    fn: Callable[..., Any] = getattr(impls[which], _method(op))
    return fn


def torch_calls(batch: int, seq: int, rng: np.random.Generator) -> dict[str, dict[str, Callable[[], Any]]]:
    import array_api_compat.torch as xp
    import torch

    from inferox.core import Ops
    from inferox.torch import TorchOps

    impls = {"reference": Ops(xp), "override": TorchOps(xp)}
    calls: dict[str, dict[str, Callable[[], Any]]] = {}
    for op, (args, kwargs) in _inputs(batch, seq, rng).items():
        targs = [torch.from_numpy(a) if isinstance(a, np.ndarray) else (torch.float32 if a == "float32" else a) for a in args]
        tkw = {k: torch.from_numpy(a) if isinstance(a, np.ndarray) else a for k, a in kwargs.items()}

        def call(which: str, targs: list[Any] = targs, tkw: dict[str, Any] = tkw, op: str = op) -> Callable[[], Any]:
            fn = _call_op(impls, which, op)

            def run() -> Any:
                with torch.inference_mode():
                    return fn(*targs, **tkw)

            return run

        calls[op] = {name: call(name) for name in impls}
    return calls


def jax_calls(batch: int, seq: int, rng: np.random.Generator) -> dict[str, dict[str, Callable[[], Any]]]:
    import jax
    import jax.numpy as jnp

    from inferox.core import Ops
    from inferox.jax import JaxOps

    impls = {"reference": Ops(jnp), "override": JaxOps(jnp)}
    calls: dict[str, dict[str, Callable[[], Any]]] = {}
    for op, (args, kwargs) in _inputs(batch, seq, rng).items():
        arrays = [jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
        kw_arrays = {k: jnp.asarray(a) for k, a in kwargs.items() if isinstance(a, np.ndarray)}
        static = {k: a for k, a in kwargs.items() if not isinstance(a, np.ndarray)}
        dynamic = [i for i, a in enumerate(arrays) if not isinstance(a, (str, float, int))]
        consts = {i: (jnp.float32 if a == "float32" else a) for i, a in enumerate(arrays) if i not in dynamic}

        def call(which: str, op: str = op, arrays: list[Any] = arrays, kw_arrays: dict[str, Any] = kw_arrays, static: dict[str, Any] = static,
                 dynamic: list[int] = dynamic, consts: dict[int, Any] = consts) -> Callable[[], Any]:
            fn = _call_op(impls, which, op)

            def pure(dyn: list[Any], kw: dict[str, Any]) -> Any:
                full = [consts[i] if i in consts else dyn[dynamic.index(i)] for i in range(len(arrays))]
                return fn(*full, **kw, **static)

            compiled = jax.jit(pure).lower([arrays[i] for i in dynamic], kw_arrays).compile()
            dyn = [arrays[i] for i in dynamic]
            return lambda: compiled(dyn, kw_arrays).block_until_ready()

        calls[op] = {name: call(name) for name in impls}
    return calls


def measure(calls: dict[str, Callable[[], Any]], *, budget_s: float, min_rounds: int, max_rounds: int, rng: random.Random) -> dict[str, dict[str, float]]:
    for fn in calls.values():  # warm caches and allocators
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
            c0, t0 = time.process_time(), time.perf_counter()
            calls[name]()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
        rounds += 1
    return {k: {"cpu_ms": statistics.median(cpu[k]) * 1e3, "wall_ms": statistics.median(wall[k]) * 1e3, "rounds": len(cpu[k])} for k in calls}


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads == 1 and "jax" not in sys.modules:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
    rng = random.Random(0)
    rows: list[dict[str, Any]] = []
    makers = {"torch": torch_calls, "jax": jax_calls}
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    for backend in args.backends:
        for batch, seq in args.sizes:
            per_op = makers[backend](batch, seq, np.random.default_rng(batch * 1000 + seq))
            for op, calls in per_op.items():
                times = measure(calls, budget_s=args.budget, min_rounds=args.min_rounds, max_rounds=args.max_rounds, rng=rng)
                ref, over = times["reference"], times["override"]
                row = {"backend": backend, "op": op, "batch": batch, "seq": seq, "reference": ref, "override": over,
                       "ratio_cpu": over["cpu_ms"] / max(ref["cpu_ms"], 1e-9), "ratio_wall": over["wall_ms"] / max(ref["wall_ms"], 1e-9)}
                rows.append(row)
                print(f"{backend:5} {op:20} {batch:>2}x{seq:<3} reference {ref['cpu_ms']:8.3f} ms  override {over['cpu_ms']:8.3f} ms  ratio {row['ratio_cpu']:.2f}", flush=True)
    versions: dict[str, str] = {"numpy": np.__version__}
    for name in ("torch", "jax", "array_api_compat"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    return {
        "benchmark": "fused operations: core's array-API reference vs each backend's override, at all-MiniLM-L6-v2's sizes",
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(), "threads": args.threads,
                    "xla_flags": os.environ.get("XLA_FLAGS", ""), "load_average": [round(v, 2) for v in os.getloadavg()]},
        "versions": versions,
        "settings": {"sizes": [f"{b}x{s}" for b, s in args.sizes], "budget_s": args.budget, "min_rounds": args.min_rounds, "max_rounds": args.max_rounds},
        "rows": rows,
    }


#: The ``Ops`` method each measured row exercises (the attention rows: ``attention``; the masked row
#: measures the bias an override feeds to it).
_METHOD = {"attention (padded)": "attention", "masked attention (nothing padded)": "attention_bias"}


def _overrides(backend: str) -> set[str] | None:
    """The ``Ops`` methods ``backend``'s ops class defines itself (``None``: the backend is not installed)."""
    try:
        if backend == "torch":
            from inferox.torch.ops import TorchOps as cls
        else:
            from inferox.jax.ops import JaxOps as cls
    except ImportError:
        return None
    return {name for klass in cls.__mro__ if klass.__module__.startswith(f"inferox.{backend}") for name in vars(klass)}


def verdicts(data: dict[str, Any]) -> dict[tuple[str, str], str]:
    """``(backend, op)`` → ``keep`` (the override is faster at every size measured), ``drop`` (slower at
    every size) or ``mixed``; what the notes and the backends' ``ops.py`` follow. An operation the
    backend does not override is ``no override``: both sides run the reference, and its ratio is the
    run's noise."""
    by: dict[tuple[str, str], list[float]] = {}
    for row in data["rows"]:
        by.setdefault((row["backend"], row["op"]), []).append(row["ratio_cpu"])
    out: dict[tuple[str, str], str] = {}
    for (backend, op), r in by.items():
        own = _overrides(backend)
        if own is not None and _METHOD.get(op, op) not in own:
            out[(backend, op)] = "no override"
        else:
            out[(backend, op)] = "keep" if max(r) < 1.0 else "drop" if min(r) >= 1.0 else "mixed"
    return out


def render(data: dict[str, Any]) -> str:
    """The Markdown report, generated from the JSON only."""
    sizes = data["settings"]["sizes"]
    m = data["machine"]
    lines = [
        "# Fused operations: reference vs override (generated by `benchmarks/models/bench_ops.py` from its JSON; do not edit)",
        "",
        f"{data['benchmark']}. Median process CPU time per call, reference → override, and the ratio "
        "override / reference (below 1.00x the override is faster).",
        "",
        f"Machine: {m['cpu_count']} CPUs, threads {m['threads'] or 'default'}, XLA flags `{m['xla_flags'] or '(none)'}`, load average {m['load_average']}; "
        + ", ".join(f"{k} {v}" for k, v in data["versions"].items()) + f"; settings {data['settings']}.",
        "",
    ]
    for backend in sorted({r["backend"] for r in data["rows"]}):
        lines += [f"## {backend}", "", "| op | " + " | ".join(sizes) + " | verdict |", "|---|" + "---|" * (len(sizes) + 1)]
        verdict = verdicts(data)
        for op in OPS:
            cells = []
            for size in sizes:
                row = next((r for r in data["rows"] if r["backend"] == backend and r["op"] == op and f"{r['batch']}x{r['seq']}" == size), None)
                cells.append("—" if row is None else f"{row['reference']['cpu_ms']:.3f} → {row['override']['cpu_ms']:.3f} ms ({row['ratio_cpu']:.2f}x)")
            lines.append(f"| {op} | " + " | ".join(cells) + f" | {verdict.get((backend, op), '—')} |")
        lines.append("")
    lines += ["## Notes", "", *data.get("notes", [])]
    return "\n".join(lines).rstrip() + "\n"


def _size(text: str) -> tuple[int, int]:
    b, _, s = text.partition("x")
    return int(b), int(s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", default=["torch", "jax"], choices=["torch", "jax"])
    parser.add_argument("--sizes", nargs="+", type=_size, default=list(DEFAULT_SIZES), help="batch x sequence, e.g. 1x16 32x128")
    parser.add_argument("--budget", type=float, default=5.0, help="seconds of timing per operation and size (default 5)")
    parser.add_argument("--min-rounds", type=int, default=10)
    parser.add_argument("--max-rounds", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for torch and XLA (0: the frameworks' defaults)")
    parser.add_argument("--out", type=Path, default=RESULTS / "ops.json")
    parser.add_argument("--notes", type=Path, default=Path(__file__).with_name("ops_notes.md"), help="Markdown appended under Notes")
    parser.add_argument("--render", action="store_true", help="only re-render the Markdown from the JSON")
    args = parser.parse_args(argv)
    data = json.loads(args.out.read_text()) if args.render else run(args)
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
