"""``inferox verify``: mlpkg's :func:`~inferox.mlpkg.verify_package`, rendered.

The checks (every file's size and sha256, then the golden inputs on each backend against the
golden outputs, within the package's tolerance) are mlpkg's, the same a program gets from
``inferox.mlpkg.verify_package``; this command only prints them and picks the exit code.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from inferox.core.errors import ConfigError
from inferox.engine.cli._errors import ParityError
from inferox.engine.cli._group import EPILOG, cli, console

#: Where mlpkg's golden mismatches point (a problem elsewhere is an integrity or format error).
_GOLDEN = "golden/outputs.safetensors"


@cli.command(epilog=EPILOG)
@click.argument("package", type=click.Path(path_type=Path))
@click.option("--backend", "backends_", multiple=True, help="Backends to check (default: every installed one that implements the architecture).")
@click.option("--no-parity", is_flag=True, help="Only check file hashes.")
@click.option("--atol", type=float, help="Absolute tolerance (default: the package's golden tolerance, else 1e-4).")
@click.option("--rtol", type=float, help="Relative tolerance (default: the package's golden tolerance, else 1e-3).")
def verify(package: Path, backends_: tuple[str, ...], no_parity: bool, atol: float | None, rtol: float | None) -> None:
    """Check every file's hash, then run the golden inputs on each backend and compare with the golden outputs."""
    from inferox.core.errors import PackageNotFoundError
    from inferox.mlpkg import verify_package

    if not package.exists():
        raise PackageNotFoundError(f"no such package: {package}", path=str(package))
    out = console()
    report = verify_package(package, backends=list(backends_) or None, run_golden=not no_parity, atol=atol, rtol=rtol)
    parity = [e for e in report.errors if getattr(e, "path", None) == _GOLDEN and getattr(e, "field", None) not in (None, "sha256")]
    others = [e for e in report.errors if e not in parity]
    if others:
        raise others[0]
    out.print(f"[green]✓[/] hashes of {escape(str(report.path))} ({report.files_checked} files) match metadata.json")
    if no_parity:
        return
    if "golden" in report.skipped:
        out.print("no golden inputs in this package; parity not checked")
        return
    if not report.golden and not parity:
        raise ConfigError("no installed backend implements this package's architecture", field="backend")
    table = Table(title="parity on golden inputs")
    for col in ("backend", "vs", "max |diff|", "ok"):
        table.add_column(col)
    for name, worst in report.golden.items():
        bad = [str(getattr(e, "field", "")) for e in parity if f"backend {name!r}" in str(e)]
        table.add_row(escape(name), "golden", f"{worst:.3g}", "[green]yes[/]" if not bad else f"[red]no[/] ({escape(', '.join(bad))})")
    for name, why in report.skipped.items():
        table.add_row(escape(name), "golden", "-", escape(f"skipped: {why}"))
    out.print(table)
    if parity:
        raise ParityError("outputs differ beyond tolerance: " + "; ".join(f"{e.message.split(':')[0]} vs golden: {getattr(e, 'field', '')}" for e in parity))
