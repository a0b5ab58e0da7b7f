"""The ``inferox`` command line (click + rich).

Every command prints one clear line ``error [CODE]: message`` on failure and exits with the code of
the error's family (see :mod:`inferox.engine.cli._errors`); ``--debug`` adds the traceback.
Frameworks, packages and the server are imported inside the commands that need them, so
``inferox --help`` and ``inferox backends`` stay fast.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import sys
import time
import traceback
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from inferox.core.errors import (
    ConfigError,
    InferoxError,
    InvalidInputError,
    PackageNotFoundError,
    UnsafePackageError,
)
from inferox.engine.cli._errors import EXIT_INTERNAL, EXIT_INTERRUPTED, ParityError, exit_code_for

__all__ = ["cli", "main"]

F = TypeVar("F", bound=Callable[..., Any])

EPILOG = (
    "Exit codes: 0 ok, 1 other error, 2 usage, 3 invalid input/config, 4 not found, 5 invalid package, "
    "6 unsafe package, 7 backend/device, 8 download, 9 plugin, 10 I/O, 11 timeout/busy, 12 parity mismatch, "
    "70 internal error, 130 interrupted."
)


def _console(err: bool = False) -> Console:
    # A fresh console per call: click's test runner swaps sys.stdout / sys.stderr per invocation.
    return Console(file=sys.stderr if err else sys.stdout, soft_wrap=True, highlight=False)


def _call_compat(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` with only the keyword arguments it accepts (other helpers' APIs are still settling)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
        return fn(*args, **kwargs)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return fn(*args, **kwargs)
    return fn(*args, **{k: v for k, v in kwargs.items() if k in params and v is not None})


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _shape_str(shape: Sequence[Any]) -> str:
    return "[" + ", ".join("?" if d is None or d == -1 else str(d) for d in shape) + "]"


class InferoxGroup(click.Group):
    """Turns Inferox errors into one clear line and a family exit code; tracebacks only with ``--debug``."""

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.params.get("debug")) or os.environ.get("INFEROX_DEBUG") == "1"
        try:
            return super().invoke(ctx)
        except InferoxError as exc:
            if debug:
                traceback.print_exc()
            _console(err=True).print(f"[bold red]error[/] [{exc.code}]: {exc.message}", markup=True, highlight=False)
            ctx.exit(exit_code_for(exc))
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            _console(err=True).print("interrupted")
            ctx.exit(EXIT_INTERRUPTED)
        except Exception as exc:  # noqa: BLE001 - the one place that turns a bug into a clean exit
            if debug:
                traceback.print_exc()
            _console(err=True).print(f"error [INTERNAL]: unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", markup=False)
            ctx.exit(EXIT_INTERNAL)


@click.group(cls=InferoxGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="inferox-engine", prog_name="inferox")
def cli(debug: bool) -> None:
    """Inferox: package, inspect, verify, run, serve and benchmark models on any installed backend."""


# --------------------------------------------------------------------------------------------- backends
@cli.command(epilog=EPILOG)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--no-devices", is_flag=True, help="Do not import frameworks to list devices.")
def backends(as_json: bool, no_devices: bool) -> None:
    """List installed backend plugins: versions, availability (and why not), devices, architectures."""
    from inferox.core import get_registry

    registry = get_registry()
    rows: list[dict[str, Any]] = []
    for info in registry.list_backends():
        row: dict[str, Any] = {
            "name": info.name,
            "plugin": info.plugin,
            "plugin_version": info.plugin_version,
            "versions": info.versions,
            "available": info.available,
            "reason": info.reason,
            "devices": [],
            "architectures": sorted(registry.architectures(info.name)),
        }
        if info.available and not no_devices:
            try:
                backend = registry.get_backend(info.name)
                row["devices"] = [
                    {"id": str(d.id), "name": d.name, "available": d.available, "memory_total": getattr(d.memory, "total", None) if d.memory else None}
                    for d in backend.devices()
                ]
                row["versions"] = {**info.versions, info.name: backend.version}
            except InferoxError as exc:
                row["available"], row["reason"] = False, exc.message
        rows.append(row)
    failures = [{"plugin": f.name, "error": f.error} for f in registry.failures]
    if as_json:
        click.echo(json.dumps({"backends": rows, "plugin_failures": failures, "blocked": sorted(registry.blocked)}, indent=2))
        return
    console = _console()
    table = Table(title="Inferox backends")
    for col in ("backend", "plugin", "versions", "available", "devices", "architectures"):
        table.add_column(col)
    for row in rows:
        versions = ", ".join(f"{k} {v or 'missing'}" for k, v in row["versions"].items())
        avail = "[green]yes[/]" if row["available"] else f"[red]no[/]: {row['reason']}"
        devices = ", ".join(d["id"] + ("" if d["available"] else " (unavailable)") for d in row["devices"]) or "-"
        table.add_row(row["name"], f"{row['plugin']} {row['plugin_version'] or ''}".strip(), versions, avail, devices, ", ".join(row["architectures"]) or "-")
    console.print(table)
    if not rows:
        console.print("no backend plugins installed (pip install inferox-torch or inferox-jax)")
    for f in failures:
        console.print(f"[yellow]plugin {f['plugin']} failed to load:[/] {f['error']}")
    if registry.blocked:
        console.print(f"blocked by INFEROX_BLOCKED_PLUGINS: {', '.join(sorted(registry.blocked))}")


# ------------------------------------------------------------------------------------------------- pack
@cli.command(epilog=EPILOG)
@click.argument("source")
@click.option("-o", "--output", "output_dir", type=click.Path(file_okay=False, path_type=Path), help="Folder to write the package into.")
@click.option("--revision", help="Hub revision (branch, tag or commit) when SOURCE is a Hub repository.")
@click.option("--name", help="Package name (default: from the source).")
@click.option("--allow-pickle", is_flag=True, help="Accept pickle weights (converted to safetensors).")
@click.option("--endpoint", envvar="HF_ENDPOINT", help="Hub endpoint for hf:// sources (env HF_ENDPOINT).")
@click.option("--token", envvar="HF_TOKEN", help="Hub token for private or gated repositories (env HF_TOKEN).")
def pack(source: str, output_dir: Path | None, revision: str | None, name: str | None, allow_pickle: bool, endpoint: str | None, token: str | None) -> None:
    """Build a package from a model.toml, a local model folder or a Hub repository (hf://org/name).

    Downloads and hashing of large files show progress bars on a terminal."""
    from inferox.mlpkg import build_package

    if not source.startswith("hf://") and not Path(source).expanduser().exists():
        raise PackageNotFoundError(f"no such model.toml or model folder: {source} (Hub repositories are written hf://org/name)", path=source)
    console = _console(err=True)
    with console.status(f"packing {source} …"):
        path = _call_compat(
            build_package, source, output_dir=output_dir, revision=revision, name=name, allow_pickle=allow_pickle or None, endpoint=endpoint, token=token
        )
    console.print(f"[green]✓[/] packed {source}")
    click.echo(str(path))


# ---------------------------------------------------------------------------------------------- inspect
def _load_package(path: str | Path, *, verify: bool = False) -> Any:
    from inferox.mlpkg import load_package

    p = Path(path)
    if not p.exists():
        raise PackageNotFoundError(f"no such package: {p}", path=str(p))
    return load_package(p, verify=verify)


def _package_files(root: Path) -> list[tuple[str, int]]:
    out = []
    for f in sorted(root.rglob("*")):
        if f.is_file():
            out.append((f.relative_to(root).as_posix(), f.stat().st_size))
    return out


def _package_summary(pkg: Any) -> dict[str, Any]:
    from inferox.core import get_registry

    root = Path(pkg.path)
    files = _package_files(root)
    return {
        "path": str(root),
        "name": pkg.name,
        "version": pkg.version,
        "architecture": pkg.architecture,
        "parameters": pkg.parameters,
        "inputs": [s.to_dict() for s in pkg.input_specs],
        "outputs": [s.to_dict() for s in pkg.output_specs],
        "backends": get_registry().backends_for(pkg.architecture) if pkg.architecture else [],
        "files": [{"path": p, "bytes": n} for p, n in files],
        "total_bytes": sum(n for _, n in files),
    }


@cli.command("inspect", epilog=EPILOG)
@click.argument("package", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def inspect_cmd(package: Path, as_json: bool) -> None:
    """Summarise a package: architecture, inputs and outputs, backends that can run it, files and sizes."""
    summary = _package_summary(_load_package(package))
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    console = _console()
    console.print(f"[bold]{summary['name']}[/] (version {summary['version']}) — architecture [bold]{summary['architecture']}[/]")
    if summary["parameters"]:
        console.print(f"parameters: {summary['parameters']:,}")
    console.print(f"backends: {', '.join(summary['backends']) or '(none installed implement it)'}")
    for title, specs in (("inputs", summary["inputs"]), ("outputs", summary["outputs"])):
        table = Table(title=title)
        for col in ("name", "dtype", "shape"):
            table.add_column(col)
        for s in specs:
            table.add_row(s["name"], s["dtype"], _shape_str(s["shape"]))
        console.print(table)
    table = Table(title=f"files ({_human_bytes(summary['total_bytes'])})")
    table.add_column("path")
    table.add_column("size", justify="right")
    for f in summary["files"]:
        table.add_row(f["path"], _human_bytes(f["bytes"]))
    console.print(table)


# ----------------------------------------------------------------------------------------------- verify
def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return dict(load_file(str(path)))


def _compare(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], *, atol: float, rtol: float) -> tuple[float, list[str]]:
    """Largest absolute difference over shared outputs, and the names that are out of tolerance."""
    worst = 0.0
    bad: list[str] = []
    for key in sorted(set(a) & set(b)):
        x, y = np.asarray(a[key], dtype=np.float64), np.asarray(b[key], dtype=np.float64)
        if x.shape != y.shape:
            bad.append(key)
            worst = math.inf
            continue
        diff = float(np.max(np.abs(x - y))) if x.size else 0.0
        worst = max(worst, diff)
        if not np.allclose(x, y, atol=atol, rtol=rtol):
            bad.append(key)
    return worst, bad


@cli.command(epilog=EPILOG)
@click.argument("package", type=click.Path(path_type=Path))
@click.option("--backend", "backends_", multiple=True, help="Backends to compare (default: every installed one that implements the architecture).")
@click.option("--no-parity", is_flag=True, help="Only check file hashes.")
@click.option("--atol", type=float, default=1e-4, show_default=True, help="Absolute tolerance.")
@click.option("--rtol", type=float, default=1e-3, show_default=True, help="Relative tolerance.")
def verify(package: Path, backends_: tuple[str, ...], no_parity: bool, atol: float, rtol: float) -> None:
    """Check every file's hash, then run the golden inputs on each backend and compare the outputs."""
    from inferox.core import get_registry

    console = _console()
    pkg = _load_package(package, verify=True)
    console.print(f"[green]✓[/] hashes of {pkg.path} match metadata.json")
    if no_parity:
        return
    root = Path(pkg.path)
    golden_in = root / "golden" / "inputs.safetensors"
    if not golden_in.is_file():
        console.print("no golden inputs in this package; parity not checked")
        return
    inputs = _read_safetensors(golden_in)
    golden_out_path = root / "golden" / "outputs.safetensors"
    expected = _read_safetensors(golden_out_path) if golden_out_path.is_file() else None
    arch = pkg.architecture
    registry = get_registry()
    names = list(backends_) or [b for b in registry.backends_for(arch) if registry.backend_info(b).available]
    if not names:
        raise ConfigError(f"no installed backend implements architecture {arch!r}", field="backend")
    from inferox.mlpkg import load_model

    results: dict[str, dict[str, np.ndarray]] = {}
    table = Table(title="parity on golden inputs")
    for col in ("backend", "vs", "max |diff|", "ok"):
        table.add_column(col)
    failures: list[str] = []
    for name in names:
        model = load_model(pkg.path, backend=name)
        try:
            results[name] = model.forward_any(dict(inputs))
        finally:
            model.model.close()
        if expected is not None:
            worst, bad = _compare(results[name], expected, atol=atol, rtol=rtol)
            table.add_row(name, "golden", f"{worst:.3g}", "[green]yes[/]" if not bad else f"[red]no[/] ({', '.join(bad)})")
            failures += [f"{name} vs golden: {', '.join(bad)}"] if bad else []
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            worst, bad = _compare(results[first], results[second], atol=atol, rtol=rtol)
            table.add_row(first, second, f"{worst:.3g}", "[green]yes[/]" if not bad else f"[red]no[/] ({', '.join(bad)})")
            failures += [f"{first} vs {second}: {', '.join(bad)}"] if bad else []
    console.print(table)
    if failures:
        raise ParityError("outputs differ beyond tolerance: " + "; ".join(failures))


# ---------------------------------------------------------------------------------------------- convert
@cli.command(epilog=EPILOG)
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("destination", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--allow-pickle", is_flag=True, help="Confirm that SOURCE is trusted: unpickling can run arbitrary code.")
def convert(source: Path, destination: Path | None, allow_pickle: bool) -> None:
    """Convert pickle weights (.bin, .pt, .pth, .ckpt) to safetensors (default: SOURCE with .safetensors)."""
    if not source.is_file():
        raise PackageNotFoundError(f"no such file: {source}", path=str(source))
    if not allow_pickle:
        raise UnsafePackageError(f"refusing to unpickle {source}: pass --allow-pickle if you trust it", path=str(source))
    dst = destination or source.with_suffix(".safetensors")
    try:
        from inferox.mlpkg import convert_pickle_to_safetensors
    except ImportError:  # pragma: no cover - older mlpkg without the public alias
        from inferox.mlpkg import convert_pickle_to_safetensors
    out = convert_pickle_to_safetensors(source, dst)
    click.echo(str(out or dst))


# --------------------------------------------------------------------------------------------------- run
def _parse_json_inputs(data: Any, where: str) -> tuple[dict[str, Any], list[str] | None]:
    """``{"name": nested list, ...}``, ``{"text": [...]}`` or a V2 request body ``{"inputs": [...]}``."""
    if isinstance(data, dict) and isinstance(data.get("inputs"), list):
        from inferox.engine.server._protocol import parse_infer_request

        req = parse_infer_request(json.dumps(data).encode())
        texts: list[str] | None = None
        out: dict[str, Any] = {}
        for t in req.inputs:
            if t.datatype == "BYTES":
                texts = t.texts()
            else:
                out[t.name] = t.data
        return out, texts
    if not isinstance(data, dict):
        raise InvalidInputError(f"{where} must hold a JSON object of inputs", name="input", expected="object", actual=type(data).__name__)
    texts = None
    if "text" in data and all(isinstance(x, str) for x in (data["text"] if isinstance(data["text"], list) else [data["text"]])):
        raw = data.pop("text")
        texts = raw if isinstance(raw, list) else [raw]
    return dict(data), texts


def _gather_inputs(input_json: str | None, input_file: Path | None, texts: tuple[str, ...], input_name: str | None) -> tuple[Any, list[str] | None]:
    given = sum(1 for x in (input_json, input_file, texts or None) if x)
    if given != 1:
        raise click.UsageError("give exactly one of --input, --input-file or --text")
    if texts:
        return {}, list(texts)
    if input_json is not None:
        try:
            return _parse_json_inputs(json.loads(input_json), "--input")
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"--input is not valid JSON: {exc}", name="input") from exc
    assert input_file is not None
    if not input_file.is_file():
        raise PackageNotFoundError(f"no such input file: {input_file}", path=str(input_file))
    suffix = input_file.suffix.lower()
    if suffix in (".npy", ".npz"):
        try:
            if suffix == ".npy":
                arr = np.load(input_file, allow_pickle=False)
                return ({input_name: arr} if input_name else arr), None
            with np.load(input_file, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}, None
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            # allow_pickle=False also refuses object arrays: numpy says so in the message.
            raise InvalidInputError(f"cannot read {input_file}: {exc}", name="input-file", actual=str(input_file)) from exc
    if suffix == ".json":
        try:
            return _parse_json_inputs(json.loads(input_file.read_text(encoding="utf-8")), str(input_file))
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{input_file} is not valid JSON: {exc}", name="input") from exc
    if suffix == ".txt":
        return {}, [line for line in input_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    raise InvalidInputError(f"unsupported input file type {suffix!r}", name="input-file", expected=".json, .npy, .npz or .txt", actual=suffix)


def _print_outputs(outputs: Mapping[str, np.ndarray], *, full: bool) -> None:
    console = _console()
    for name, arr in outputs.items():
        arr = np.asarray(arr)
        console.print(f"[bold]{name}[/] {arr.dtype} {list(arr.shape)}")
        with np.printoptions(threshold=sys.maxsize if full else 200, precision=6, suppress=True):
            console.print(str(arr), markup=False)


@cli.command(epilog=EPILOG)
@click.argument("package", type=click.Path(path_type=Path))
@click.option("-i", "--input", "input_json", help='Inputs as JSON: {"x": [[...]]}, {"text": [...]} or a V2 request body.')
@click.option("-f", "--input-file", type=click.Path(dir_okay=False, path_type=Path), help="Inputs from a .json, .npy, .npz or .txt (one text per line) file.")
@click.option("-t", "--text", "texts", multiple=True, help="A text to encode (repeat for a batch); for models with a tokenizer.")
@click.option("--input-name", help="Input name for a .npy file (default: the model's only input).")
@click.option("--backend", help="Backend to run on (default: the first installed that implements the architecture).")
@click.option("--device", help="Device (cpu, cuda:0, mps, tpu:0).")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path), help="Save outputs to .npz or .json instead of printing them.")
@click.option("--full", is_flag=True, help="Print whole arrays.")
@click.option("--allow-pickle", is_flag=True, help="Accept pickle weights in the package.")
@click.option("--trust-code", is_flag=True, help="Run code shipped inside the package.")
def run(
    package: Path,
    input_json: str | None,
    input_file: Path | None,
    texts: tuple[str, ...],
    input_name: str | None,
    backend: str | None,
    device: str | None,
    output: Path | None,
    full: bool,
    allow_pickle: bool,
    trust_code: bool,
) -> None:
    """Run one inference on a package, from JSON, a .npy/.npz file or text."""
    inputs, text_list = _gather_inputs(input_json, input_file, texts, input_name)
    if output is not None and output.suffix.lower() not in (".npz", ".json"):
        raise InvalidInputError("output file must end in .npz or .json", name="output", expected=".npz or .json", actual=output.suffix)
    from inferox.engine import Engine, EngineConfig
    from inferox.mlpkg import load_model

    if not Path(package).exists():
        raise PackageNotFoundError(f"no such package: {package}", path=str(package))
    model = load_model(package, backend=backend, device=device, trust_code=trust_code, allow_pickle=allow_pickle)
    if text_list is not None:
        from inferox.engine.server.app import text_encoder_for

        encoder = text_encoder_for(model, Path(package))
        if encoder is None:
            raise InvalidInputError(f"model {model.name!r} takes no text input", name="text", expected=[s.name for s in model.input_specs])
        encoded = encoder.encode(text_list)
        names = {s.name for s in model.input_specs}
        inputs = {**{k: v for k, v in encoded.items() if k in names}, **(inputs if isinstance(inputs, dict) else {})}
    engine = Engine(EngineConfig(batching=False))
    try:
        engine.register(model.name, model, warmup=False)
        result = engine.infer(model.name, inputs)
        outputs = {k: np.asarray(v) for k, v in result.items()}
    finally:
        engine.shutdown()
    if output is None:
        _print_outputs(outputs, full=full)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".npz":
        np.savez(output, **outputs)  # type: ignore[arg-type]
    else:
        output.write_text(json.dumps({k: {"dtype": str(v.dtype), "shape": list(v.shape), "data": v.tolist()} for k, v in outputs.items()}), encoding="utf-8")
    click.echo(str(output))


# ------------------------------------------------------------------------------------------------- serve
@cli.command(epilog=EPILOG)
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (0.0.0.0 exposes the server to the network).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--name", help="Model name when PATH is a single package (default: the package's name).")
@click.option("--backend", "backends_", multiple=True, help="Backend(s) to load models on (repeat for several).")
@click.option("--device", help="Device for every model (cpu, cuda:0 …).")
@click.option("--token", envvar="INFEROX_SERVER_TOKEN", help="Bearer token required by the load/unload endpoints (env INFEROX_SERVER_TOKEN).")
@click.option("--protect-all", is_flag=True, help="Require the token on every endpoint.")
@click.option("--max-batch-size", type=click.IntRange(min=1), help="Dynamic batching: most rows per forward pass.")
@click.option("--batch-delay-ms", type=click.FloatRange(min=0), help="Dynamic batching: how long to wait for a batch to fill.")
@click.option("--max-queue-size", type=click.IntRange(min=1), help="Requests waiting per model beyond which the server answers 429.")
@click.option("--no-batching", is_flag=True, help="Run each request on its own.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True, help="Per-request timeout, seconds.")
@click.option("--max-body-mb", type=click.FloatRange(min=0, min_open=True), default=64.0, show_default=True, help="Request body size limit.")
@click.option("--keep-alive-s", type=click.IntRange(min=1), default=75, show_default=True, help="Idle keep-alive connections close after this long; keep it above your clients' and load balancer's idle timeout.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True)
@click.option("--allow-pickle", is_flag=True, help="Accept pickle weights in packages.")
@click.option("--trust-code", is_flag=True, help="Run code shipped inside packages.")
@click.option("--ray", "use_ray", is_flag=True, help="Deploy the repository on Ray Serve (extra inferox-engine[ray]); see docs/deployment-ray.md.")
@click.option("--address", help="--ray: Ray cluster address (e.g. ray://head:10001 or auto); default: start a local cluster.")
@click.option("--replicas", type=click.IntRange(min=1), help="--ray: model replicas (default 1).")
@click.option("--autoscaling", help='--ray: Ray Serve autoscaling_config as JSON, e.g. \'{"min_replicas": 1, "max_replicas": 4}\'.')
@click.option("--num-cpus", type=click.FloatRange(min=0), default=1.0, show_default=True, help="--ray: CPUs per replica.")
@click.option("--num-gpus", type=click.FloatRange(min=0), default=0.0, show_default=True, help="--ray: GPUs per replica.")
@click.option("--max-models-per-replica", type=click.IntRange(min=1), default=3, show_default=True, help="--ray: models a replica keeps (LRU eviction).")
@click.option("--ray-batching", type=click.Choice(["engine", "serve"]), default="engine", show_default=True, help="--ray: the engine's dynamic batcher or @serve.batch.")
def serve(
    path: Path,
    host: str,
    port: int,
    name: str | None,
    backends_: tuple[str, ...],
    device: str | None,
    token: str | None,
    protect_all: bool,
    max_batch_size: int | None,
    batch_delay_ms: float | None,
    max_queue_size: int | None,
    no_batching: bool,
    timeout_s: float,
    max_body_mb: float,
    keep_alive_s: int,
    log_level: str,
    allow_pickle: bool,
    trust_code: bool,
    use_ray: bool = False,
    address: str | None = None,
    replicas: int | None = None,
    autoscaling: str | None = None,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    max_models_per_replica: int = 3,
    ray_batching: str = "engine",
) -> None:
    """Serve a package, or a model repository folder, over the Open Inference Protocol (KServe V2).

    A repository holds packages as NAME/ or NAME/VERSION/ (the highest version is served), each
    with an optional NAME/serving.toml (backends, device, max_batch_size, batch_delay_ms,
    max_queue_size, timeout_s, warmup) overriding these options. Binds 127.0.0.1 unless --host says
    otherwise; --token protects the load/unload endpoints (--protect-all: every endpoint)."""
    server = build_server(
        path,
        host=host,
        port=port,
        name=name,
        backends=backends_,
        device=device,
        token=token,
        protect_all=protect_all,
        max_batch_size=max_batch_size,
        batch_delay_ms=batch_delay_ms,
        max_queue_size=max_queue_size,
        batching=not no_batching,
        timeout_s=timeout_s,
        max_body_bytes=int(max_body_mb * 2**20),
        keep_alive_s=keep_alive_s,
        allow_pickle=allow_pickle,
        trust_code=trust_code,
    )
    if use_ray:
        _serve_on_ray(
            server,
            path,
            address=address,
            replicas=replicas,
            autoscaling=autoscaling,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            max_models_per_replica=max_models_per_replica,
            batching=ray_batching,
        )
        return
    from inferox.engine.server import run as run_server

    console = _console(err=True)
    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        console.print(f"[yellow]warning:[/] listening on {host} without --token: anyone who can reach this port can load and unload models")
    console.print(f"starting inferox for {path} on http://{host}:{port} (Ctrl-C to stop)")
    try:
        run_server(server, log_level=log_level)
    except KeyboardInterrupt:
        # uvicorn re-raises the Ctrl-C it handled *after* finishing in-flight requests: a clean stop.
        console.print("inferox server stopped")


def _serve_on_ray(
    server: Any,
    path: Path,
    *,
    address: str | None,
    replicas: int | None,
    autoscaling: str | None,
    num_cpus: float,
    num_gpus: float,
    max_models_per_replica: int,
    batching: str,
) -> None:
    """``inferox serve --ray``: the repository as a Ray Serve application (same V2 API)."""
    if server.repository is None:
        raise ConfigError("--ray serves a model repository folder (NAME/ package folders), not a single package", field="path", value=str(path))
    scaling: dict[str, Any] | None = None
    if autoscaling is not None:
        try:
            scaling = json.loads(autoscaling)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--autoscaling is not JSON: {exc}", field="autoscaling", value=autoscaling) from exc
        if not isinstance(scaling, dict):
            raise ConfigError("--autoscaling must be a JSON object", field="autoscaling", value=autoscaling)
    try:
        from inferox.engine.ray import build_app, serve_on_ray
    except ImportError as exc:
        raise ConfigError(f"{exc}", field="ray") from exc
    app = build_app(
        server.repository.root,
        config=server.config,
        replicas=replicas,
        autoscaling_config=scaling,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        max_models_per_replica=max_models_per_replica,
        batching=batching,
    )
    console = _console(err=True)
    if server.config.host not in ("127.0.0.1", "localhost", "::1") and not server.config.token:
        console.print(f"[yellow]warning:[/] Ray Serve listening on {server.config.host} without --token: anyone who can reach this port can call the models")
    where = address or "a local Ray cluster"
    console.print(f"deploying {path} on {where}; V2 API on http://{server.config.host}:{server.config.port} (Ctrl-C to stop)")
    with contextlib.suppress(KeyboardInterrupt):  # a Ctrl-C during deployment, before the handlers are in
        serve_on_ray(app, address=address, host=server.config.host, port=server.config.port, keep_alive_s=server.config.keep_alive_s)
    console.print("inferox Ray Serve application deleted")


def build_server(
    path: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    name: str | None = None,
    backends: Sequence[str] = (),
    device: str | None = None,
    token: str | None = None,
    protect_all: bool = False,
    max_batch_size: int | None = None,
    batch_delay_ms: float | None = None,
    max_queue_size: int | None = None,
    batching: bool = True,
    timeout_s: float | None = 60.0,
    max_body_bytes: int = 64 * 2**20,
    keep_alive_s: float = 75.0,
    allow_pickle: bool = False,
    trust_code: bool = False,
) -> Any:
    """The :class:`~inferox.engine.server.InferoxServer` that ``inferox serve`` runs (no I/O yet)."""
    from inferox.engine import EngineConfig
    from inferox.engine.server import InferoxServer, ServerConfig, ServingSettings
    from inferox.engine.server._repository import is_package
    from inferox.engine.server.app import package_name

    if not path.exists():
        raise PackageNotFoundError(f"no such package or model repository: {path}", path=str(path))
    if not path.is_dir():
        raise ConfigError("PATH must be a package folder or a model repository folder", field="path", value=str(path))
    defaults = ServingSettings(
        backends=tuple(backends), device=device, max_batch_size=max_batch_size, batch_delay_ms=batch_delay_ms, max_queue_size=max_queue_size, timeout_s=timeout_s
    )
    config = ServerConfig(
        host=host,
        port=port,
        token=token,
        protect_all=protect_all,
        max_body_bytes=max_body_bytes,
        keep_alive_s=keep_alive_s,
        request_timeout_s=timeout_s,
        defaults=defaults,
        engine_config=EngineConfig(batching=batching),
        allow_pickle=allow_pickle,
        trust_code=trust_code,
    )
    if is_package(path):
        return InferoxServer(packages={name or package_name(path): path}, config=config)
    return InferoxServer(repository=path, config=config)


# ------------------------------------------------------------------------------------------------- bench
def synthetic_inputs(specs: Sequence[Any], *, batch_size: int, seq_len: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
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

    pkg = _load_package(package)
    arch = pkg.architecture
    registry = get_registry()
    names = list(backends_) or [b for b in registry.backends_for(arch) if registry.backend_info(b).available]
    if not names:
        raise ConfigError(f"no installed backend implements architecture {arch!r}", field="backend")
    rows: list[dict[str, Any]] = []
    for name in names:
        model = load_model(pkg.path, backend=name, device=device)
        inputs = synthetic_inputs(model.input_specs, batch_size=batch_size, seq_len=seq_len)
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
    _console().print(table)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``inferox`` console script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="inferox")
