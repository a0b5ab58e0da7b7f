"""``inferox verify``: mlpkg's :func:`~inferox.mlpkg.verify_package`, rendered.

The checks (every file's size and sha256, then the stored golden outputs and each backend on the
golden inputs against the architecture's reference, within the package's tolerance) are mlpkg's,
the same a program gets from ``inferox.mlpkg.verify_package``; this command only prints them and
picks the exit code. The parity table has a row per comparison whatever happens in the others: a
backend that crashes shows its error in its own row.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from inferox.core.errors import ConfigError, InferoxError, NumericMismatchError
from inferox.engine.cli._errors import ParityError
from inferox.engine.cli._group import EPILOG, cli, console


@cli.command(epilog=EPILOG)
@click.argument("package", type=click.Path(path_type=Path))
@click.option("--backend", "backends_", multiple=True, help="Backends to check (default: every installed one that implements the architecture).")
@click.option("--no-parity", is_flag=True, help="Only check file hashes.")
@click.option("--no-reference", is_flag=True, help="Compare the backends with the stored golden outputs instead of the architecture's reference.")
@click.option("--atol", type=float, help="Absolute tolerance (default: the package's golden tolerance, else 1e-5).")
@click.option("--rtol", type=float, help="Relative tolerance (default: the package's golden tolerance, else 1e-5).")
def verify(package: Path, backends_: tuple[str, ...], no_parity: bool, no_reference: bool, atol: float | None, rtol: float | None) -> None:
    """Check every file's hash, then the golden outputs and each backend against the architecture's reference."""
    from inferox.core.errors import PackageNotFoundError
    from inferox.mlpkg import verify_package

    if not package.exists():
        raise PackageNotFoundError(f"no such package: {package}", path=str(package))
    out = console()
    report = verify_package(package, backends=list(backends_) or None, run_golden=not no_parity, atol=atol, rtol=rtol, reference=not no_reference)
    in_rows = {id(r.error) for r in report.rows if r.error is not None}
    others = [e for e in report.errors if id(e) not in in_rows]
    if others:  # hashes, unlisted files, unreadable golden files: the package itself is wrong
        raise others[0]
    out.print(f"[green]✓[/] hashes of {escape(str(report.path))} ({report.files_checked} files) match metadata.json")
    if no_parity:
        return
    if "golden" in report.skipped:
        out.print(f"parity not checked: {escape(report.skipped['golden'])}")
        return
    if not any(r.subject != "golden" for r in report.rows):
        raise ConfigError("no installed backend implements this package's architecture", field="backend")
    table = Table(title=f"parity on the golden inputs, against the {report.against} (atol={report.atol:g}, rtol={report.rtol:g})")
    for col in ("", "vs", "max |diff|", "at", "ok"):
        table.add_column(col)
    for row in report.rows:
        where = f"{row.output}{list(row.index)}" if row.output is not None and row.index is not None else "-"
        diff = f"{row.max_difference:.3g}" if row.max_difference is not None else "-"
        if row.skipped is not None:
            ok = f"skipped: {escape(row.skipped)}"
        elif row.error is None:
            ok = "[green]yes[/]"
        elif isinstance(row.error, NumericMismatchError):
            ok = "[red]no[/]: beyond tolerance"
        else:
            ok = f"[red]failed[/]: {escape(row.error.code)}"
        table.add_row(escape(row.subject), escape(row.against), diff, escape(where), ok)
    out.print(table)
    for note in report.notes:
        out.print(escape(note))
    failed = [r.error for r in report.rows if r.error is not None]
    for err in failed:  # each failing row in full: which backend, which output, how far and where
        out.print(f"[red]✗[/] {escape(err.message)}")
    crashed = [e for e in failed if not isinstance(e, NumericMismatchError)]
    if crashed:  # a backend that could not run: its own error (and exit code), after the whole table
        raise crashed[0]
    if failed:
        raise ParityError("outputs differ beyond tolerance: " + "; ".join(_summary(e) for e in failed if isinstance(e, InferoxError)), first=failed[0])


def _summary(err: InferoxError) -> str:
    if isinstance(err, NumericMismatchError) and err.max_difference is not None:
        return f"{err.subject} vs {err.against}: {err.output}{list(err.index or ())} by {err.max_difference:.3g}"
    return err.message
