"""``inferox convert``: pickle weights to safetensors."""

from __future__ import annotations

from pathlib import Path

import click

from inferox.core.errors import PackageNotFoundError, UnsafePackageError
from inferox.engine.cli._group import EPILOG, cli


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
    from inferox.mlpkg import convert_pickle_to_safetensors

    out = convert_pickle_to_safetensors(source, dst)
    click.echo(str(out or dst))
