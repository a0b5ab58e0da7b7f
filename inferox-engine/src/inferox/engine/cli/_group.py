"""The ``inferox`` command group: one clear error line per failure, family exit codes, shared helpers.

Every command prints one clear line ``error [CODE]: message`` on failure and exits with the code of
the error's family (see :mod:`inferox.engine.cli._errors`); ``--debug`` adds the traceback.
Frameworks, packages and the server are imported inside the commands that need them, so
``inferox --help`` and ``inferox backends`` stay fast.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from inferox.core.errors import InferoxError, PackageNotFoundError
from inferox.engine.cli._errors import EXIT_INTERNAL, EXIT_INTERRUPTED, exit_code_for

__all__ = ["EPILOG", "cli", "console", "human_bytes", "load_package", "main", "shape_str"]


EPILOG = (
    "Exit codes: 0 ok, 1 other error, 2 usage, 3 invalid input/config, 4 not found, 5 invalid package, "
    "6 unsafe package, 7 backend/device, 8 download, 9 plugin, 10 I/O, 11 timeout/busy, 12 parity mismatch, "
    "70 internal error, 130 interrupted."
)


def console(err: bool = False) -> Console:
    # A fresh console per call: click's test runner swaps sys.stdout / sys.stderr per invocation.
    return Console(file=sys.stderr if err else sys.stdout, soft_wrap=True, highlight=False)


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def shape_str(shape: Sequence[Any]) -> str:
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
            console(err=True).print(f"[bold red]error[/] {escape(f'[{exc.code}]')}: {escape(exc.message)}", markup=True, highlight=False)
            ctx.exit(exit_code_for(exc))
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            console(err=True).print("interrupted")
            ctx.exit(EXIT_INTERRUPTED)
        except Exception as exc:  # noqa: BLE001 - the one place that turns a bug into a clean exit
            if debug:
                traceback.print_exc()
            console(err=True).print(f"error [INTERNAL]: unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", markup=False)
            ctx.exit(EXIT_INTERNAL)


@click.group(cls=InferoxGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="inferox-engine", prog_name="inferox")
def cli(debug: bool) -> None:
    """Inferox: package, inspect, verify, run, serve and benchmark models on any installed backend."""



def load_package(path: str | Path, *, verify: bool = False) -> Any:
    from inferox.mlpkg import load_package as _load

    p = Path(path)
    if not p.exists():
        raise PackageNotFoundError(f"no such package: {p}", path=str(p))
    return _load(p, verify=verify)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``inferox`` console script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="inferox")
