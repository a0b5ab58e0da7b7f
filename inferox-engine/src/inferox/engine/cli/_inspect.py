"""``inferox inspect``: a package's architecture, inputs, outputs, backends, files and sizes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from inferox.engine.cli._group import EPILOG, cli, console, human_bytes, load_package, shape_str


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
    summary = _package_summary(load_package(package))
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    out = console()
    out.print(f"[bold]{escape(str(summary['name']))}[/] (version {escape(str(summary['version']))}) — architecture [bold]{escape(str(summary['architecture']))}[/]")
    if summary["parameters"]:
        out.print(f"parameters: {summary['parameters']:,}")
    out.print(f"backends: {escape(', '.join(summary['backends'])) or '(none installed implement it)'}")
    for title, specs in (("inputs", summary["inputs"]), ("outputs", summary["outputs"])):
        table = Table(title=title)
        for col in ("name", "dtype", "shape"):
            table.add_column(col)
        for s in specs:
            table.add_row(escape(str(s["name"])), escape(str(s["dtype"])), escape(shape_str(s["shape"])))
        out.print(table)
    table = Table(title=f"files ({human_bytes(summary['total_bytes'])})")
    table.add_column("path")
    table.add_column("size", justify="right")
    for f in summary["files"]:
        table.add_row(escape(str(f["path"])), human_bytes(f["bytes"]))
    out.print(table)
