"""``inferox bench``: latency and throughput of a package on each backend."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.table import Table

from inferox.core.errors import ConfigError
from inferox.engine.cli._group import EPILOG, cli, console, load_package


def _synthetic_inputs(specs: Sequence[Any], *, batch_size: int, seq_len: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs matching ``specs``: dynamic batch dims → ``batch_size``, other dynamic dims →
    ``seq_len``; integers drawn small (valid token ids), masks all ones."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.optional:
            continue
        shape = tuple((batch_size if i == 0 else seq_len) if d is None else d for i, d in enumerate(spec.shape))
        dt = spec.dtype.to_numpy()
        if spec.dtype.is_bool or "mask" in spec.name:
            arr = np.ones(shape, dtype=dt)
        elif spec.dtype.is_int:
            arr = (np.zeros(shape) if "type" in spec.name else rng.integers(1, 100, size=shape)).astype(dt)
        else:
            arr = rng.standard_normal(shape).astype(dt)
        out[spec.name] = arr
    return out


@cli.command(epilog=EPILOG)
@click.argument("package", type=click.Path(path_type=Path))
@click.option("--backend", "backends_", multiple=True, help="Backend(s) to benchmark (default: every installed one that implements it).")
@click.option("--device", help="Device.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True, help="Rows per request.")
@click.option("--seq-len", type=click.IntRange(min=1), default=16, show_default=True, help="Length of dynamic non-batch dimensions.")
@click.option("-n", "--iterations", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bench(package: Path, backends_: tuple[str, ...], device: str | None, batch_size: int, seq_len: int, iterations: int, warmup: int, as_json: bool) -> None:
    """Measure inference latency (p50/p99) and throughput of a package on each backend."""
    from inferox.core import get_registry
    from inferox.engine import Engine, EngineConfig
    from inferox.mlpkg import load_model

    pkg = load_package(package)
    arch = pkg.architecture
    registry = get_registry()
    names = list(backends_) or [b for b in registry.backends_for(arch) if registry.backend_info(b).available]
    if not names:
        raise ConfigError(f"no installed backend implements architecture {arch!r}", field="backend")
    rows: list[dict[str, Any]] = []
    for name in names:
        model = load_model(pkg.path, backend=name, device=device)
        inputs = _synthetic_inputs(model.input_specs, batch_size=batch_size, seq_len=seq_len)
        engine = Engine(EngineConfig(batching=False))
        try:
            engine.register(model.name, model, warmup=True)
            for _ in range(warmup):
                engine.infer(model.name, inputs)
            times = []
            for _ in range(iterations):
                t0 = time.perf_counter()
                engine.infer(model.name, inputs)
                times.append(time.perf_counter() - t0)
        finally:
            engine.shutdown()
        arr = np.asarray(times)
        rows.append(
            {
                "backend": name,
                "device": str(model.device),
                "batch_size": batch_size,
                "iterations": iterations,
                "p50_ms": float(np.percentile(arr, 50) * 1e3),
                "p99_ms": float(np.percentile(arr, 99) * 1e3),
                "mean_ms": float(arr.mean() * 1e3),
                "rows_per_s": float(batch_size * iterations / arr.sum()),
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"bench {Path(pkg.path).name} (batch {batch_size}, {iterations} iterations)")
    for col in ("backend", "device", "p50 ms", "p99 ms", "mean ms", "rows/s"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["backend"], r["device"], f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['mean_ms']:.3f}", f"{r['rows_per_s']:.1f}")
    console().print(table)
