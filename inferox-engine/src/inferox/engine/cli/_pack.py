"""``inferox pack``: build a package from a model.toml, a model folder or a Hub repository."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from inferox.core.errors import PackageNotFoundError
from inferox.engine.cli._group import EPILOG, cli, console


@cli.command(epilog=EPILOG)
@click.argument("source")
@click.option("-o", "--output", "output_dir", type=click.Path(file_okay=False, path_type=Path), help="Folder to write the package into.")
@click.option("--revision", help="Hub revision (branch, tag or commit) when SOURCE is a Hub repository.")
@click.option("--name", help="Package name (default: from the source).")
@click.option("--allow-pickle", is_flag=True, help="Accept pickle weights (converted to safetensors).")
@click.option("--encoder-only", is_flag=True, help="Package the encoder of a checkpoint whose task head Inferox does not support (instead of refusing it).")
@click.option("--endpoint", envvar="HF_ENDPOINT", help="Hub endpoint for hf:// sources (env HF_ENDPOINT).")
@click.option("--token", envvar="HF_TOKEN", help="Hub token for private or gated repositories (env HF_TOKEN).")
def pack(
    source: str, output_dir: Path | None, revision: str | None, name: str | None, allow_pickle: bool, encoder_only: bool, endpoint: str | None, token: str | None
) -> None:
    """Build a package from a model.toml, a local model folder or a Hub repository (hf://org/name).

    A checkpoint whose task head Inferox does not support (config.json's architectures, e.g.
    BertForMaskedLM) is refused, naming the head; --encoder-only packages its encoder alone.
    Downloads and hashing of large files show progress bars on a terminal."""
    from inferox.mlpkg import build_package

    if not source.startswith("hf://") and not Path(source).expanduser().exists():
        raise PackageNotFoundError(f"no such model.toml or model folder: {source} (Hub repositories are written hf://org/name)", path=source)
    out = console(err=True)
    with out.status(f"packing {source} …"):
        path = build_package(
            source, output_dir=output_dir, revision=revision, name=name, allow_pickle=allow_pickle, endpoint=endpoint, token=token, encoder_only=encoder_only,
        )
    out.print(f"[green]✓[/] packed {escape(str(source))}")
    click.echo(str(path))
