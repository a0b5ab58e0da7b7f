"""``inferox run``: one inference on a package (needs no server extra)."""

from __future__ import annotations

import json
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.markup import escape

from inferox.core.errors import InvalidInputError, PackageNotFoundError
from inferox.engine.cli._group import EPILOG, cli, console


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
    out = console()
    for name, arr in outputs.items():
        arr = np.asarray(arr)
        out.print(f"[bold]{escape(str(name))}[/] {arr.dtype} {escape(str(list(arr.shape)))}")
        with np.printoptions(threshold=sys.maxsize if full else 200, precision=6, suppress=True):
            out.print(str(arr), markup=False)


def _output_names(given: tuple[str, ...], all_outputs: bool, defaults: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The outputs to print or save: ``--outputs`` (comma-separated or repeated), every one with
    ``--all-outputs``, else the package's default outputs (``None``: every output)."""
    names = tuple(n.strip() for g in given for n in g.split(",") if n.strip())
    if names and all_outputs:
        raise click.UsageError("give --outputs or --all-outputs, not both")
    if names:
        return names
    return None if all_outputs else defaults


@cli.command(epilog=EPILOG)
@click.argument("package")
@click.argument("more_texts", nargs=-1, metavar="[TEXT]...")
@click.option("-i", "--input", "input_json", help='Inputs as JSON: {"x": [[...]]}, {"text": [...]} or a V2 request body.')
@click.option("-f", "--input-file", type=click.Path(dir_okay=False, path_type=Path), help="Inputs from a .json, .npy, .npz or .txt (one text per line) file.")
@click.option(
    "-t", "--text", "texts", multiple=True,
    help="Text to encode, for models with a tokenizer: -t 'one' 'two' (every argument after PACKAGE is a text) or -t 'one' -t 'two'.",
)
@click.option("--input-name", help="Input name for a .npy file (default: the model's only input).")
@click.option("--outputs", "output_names", multiple=True, help="Output(s) to print or save (repeat, or comma-separated; default: the package's default outputs).")
@click.option("--all-outputs", is_flag=True, help="Print or save every output, not only the package's default ones.")
@click.option("--backend", help="Backend to run on (default: the fastest installed one for the architecture; the choice is printed on stderr).")
@click.option("--device", help="Device (cpu, cuda:0, mps, tpu:0).")
@click.option("--dtype", help="Load the weights as f32, f16 or bf16 (backends that support it).")
@click.option("--int8", is_flag=True, help="Load an int8-quantised model (an option of the onnx backend).")
@click.option("--threads", type=click.IntRange(min=1), help="Intra-op threads (default: the CPUs this process may use).")
@click.option("--revision", help="Hub revision (branch, tag or commit) when PACKAGE is hf://org/name.")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path), help="Save outputs to .npz or .json instead of printing them.")
@click.option("--full", is_flag=True, help="Print whole arrays.")
@click.option("--allow-pickle", is_flag=True, help="Accept pickle weights in the package (or convert them when packing a model folder).")
@click.option("--trust-code", is_flag=True, help="Run code shipped inside the package.")
@click.option("--verify", is_flag=True, help="Check every package file's sha256, and that every file is listed, before loading. Without it only the listed files' presence and sizes are checked.")
def run(
    package: str,
    more_texts: tuple[str, ...],
    input_json: str | None,
    input_file: Path | None,
    texts: tuple[str, ...],
    input_name: str | None,
    output_names: tuple[str, ...],
    all_outputs: bool,
    backend: str | None,
    device: str | None,
    dtype: str | None,
    int8: bool,
    threads: int | None,
    revision: str | None,
    output: Path | None,
    full: bool,
    allow_pickle: bool,
    trust_code: bool,
    verify: bool,
) -> None:
    """Run one inference on PACKAGE, from JSON, a .npy/.npz file or text.

    PACKAGE is a package, a Hugging Face / sentence-transformers model folder, a model.toml or a
    Hub repository (hf://org/name[@revision]); a folder or Hub repository is packed into the
    package cache first (as `inferox pack` would; the next run reuses it). Loading checks that
    the package's listed files are there with their recorded sizes; --verify also checks their
    sha256 and that no file is unlisted. Prints the package's default outputs (a
    sentence-transformers model's sentence_embedding), or those --outputs names. The backend that
    served, and why it was chosen, are printed on stderr."""
    if more_texts and not texts:
        raise click.UsageError(f"unexpected argument {more_texts[0]!r}: texts come after -t (inferox run PACKAGE -t 'one' 'two')")
    texts = (*texts, *more_texts)
    inputs, text_list = _gather_inputs(input_json, input_file, texts, input_name)
    if output is not None and output.suffix.lower() not in (".npz", ".json"):
        raise InvalidInputError("output file must end in .npz or .json", name="output", expected=".npz or .json", actual=output.suffix)
    from inferox import mlpkg
    from inferox.engine import Engine, EngineConfig, compose_model

    resolved = mlpkg.resolve_source(package, revision=revision, allow_pickle=allow_pickle)
    if resolved.is_repository:
        raise InvalidInputError(
            f"{package} is a model repository: run one of its packages (inferox run {package}/NAME ...)", name="package", expected="one model", actual=package
        )
    # The same composition (backend choice, instances, text encoder and its truncation) as Engine.load and the server.
    composed = compose_model(
        resolved.path, backends=(backend,), device=device, dtype=dtype, threads=threads, int8=int8, trust_code=trust_code, allow_pickle=allow_pickle, verify=verify
    )
    model = composed.instances[0]
    try:
        wanted = _output_names(output_names, all_outputs, composed.default_outputs)
    except click.UsageError:
        composed.close()
        raise
    if text_list is not None:
        encoder = composed.text_encoder
        if encoder is None:
            composed.close()
            raise InvalidInputError(f"model {model.name!r} takes no text input", name="text", expected=[s.name for s in model.input_specs])
        encoded = encoder.encode(text_list)
        names = {s.name for s in model.input_specs}
        inputs = {**{k: v for k, v in encoded.items() if k in names}, **(inputs if isinstance(inputs, dict) else {})}
    engine = Engine(EngineConfig(batching=False))
    try:
        engine.register(model.name, model, warmup=False, text_encoder=composed.text_encoder)
        result = engine.infer(model.name, inputs, outputs=wanted)
        outputs = {k: np.asarray(v) for k, v in result.items()}
    finally:
        engine.shutdown()
    err = console(err=True)
    if resolved.packed:
        err.print(f"packed {escape(package)} into {escape(str(resolved.path))}", highlight=False)
    choice = composed.choices[0]
    why = "" if choice.how == "asked" else f" ({escape(choice.reason)})"
    err.print(f"served by backend {escape(result.backend)} on {escape(str(result.device))}{why}", highlight=False)
    if output is None:
        _print_outputs(outputs, full=full)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".npz":
        np.savez(output, **outputs)  # type: ignore[arg-type]
    else:
        output.write_text(json.dumps({k: {"dtype": str(v.dtype), "shape": list(v.shape), "data": v.tolist()} for k, v in outputs.items()}), encoding="utf-8")
    click.echo(str(output))
