"""``inferox serve``: a package or a model repository over the V2 protocol (or on Ray Serve).

Settings are layered (see :mod:`inferox.engine.server._settings`): defaults < ``--config`` file
< ``INFEROX_*`` environment < the flags given here; a flag left out never overrides anything.
``--print-config`` shows each effective value and where it came from.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from rich.markup import escape
from rich.table import Table

from inferox.core.errors import ConfigError
from inferox.engine.cli._group import EPILOG, cli, console

#: Flag (click parameter name) → the setting it sets, and how its value converts.
_FLAG_KEYS: dict[str, tuple[str, Any]] = {
    "host": ("server.host", None),
    "port": ("server.port", None),
    "grpc_port": ("server.grpc_port", None),
    "truncate_text": ("server.truncate_text", None),
    "token": ("server.token", None),
    "protect_all": ("server.protect_all", None),
    "timeout_s": ("server.request_timeout_s", None),
    "max_body_mb": ("server.max_body_bytes", lambda mb: int(mb * 2**20)),
    "keep_alive_s": ("server.keep_alive_s", float),
    "read_timeout_s": ("server.read_timeout_s", float),
    "max_connections": ("server.max_connections", None),
    "allow_pickle": ("server.allow_pickle", None),
    "trust_code": ("server.trust_code", None),
    "verify": ("server.verify", None),
    "exit_on_error": ("server.exit_on_error", None),
    "strict_readiness": ("server.strict_readiness", None),
    "allow_empty": ("server.allow_empty", None),
    "max_batch_size": ("engine.max_batch_size", None),
    "max_batch_tokens": ("engine.max_batch_tokens", None),
    "batch_delay_ms": ("engine.max_queue_delay_ms", None),
    "max_queue_size": ("engine.max_queue_size", None),
    "no_batching": ("engine.batching", lambda off: not off),
    "backends_": ("models.backends", tuple),
    "device": ("models.device", None),
    "threads": ("models.threads", None),
    "dtype": ("models.dtype", None),
    "int8": ("models.int8", None),
}


def _given_flags(ctx: click.Context) -> dict[str, Any]:
    """The settings of the flags the user typed (defaults and environment values excluded)."""
    out: dict[str, Any] = {}
    for param, (key, convert) in _FLAG_KEYS.items():
        if ctx.get_parameter_source(param) != ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param]
        out[key] = convert(value) if convert is not None else value
    return out


@cli.command(epilog=EPILOG)
@click.argument("path", required=False)
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), help="TOML file of [server], [engine] and [models] settings (see docs/serving.md).")
@click.option("--print-config", is_flag=True, help="Print each effective setting and its source (default, file, environment, flag), then exit.")
@click.option("--host", help="Interface to bind (default 127.0.0.1; 0.0.0.0 exposes the server to the network).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default 8000).")
@click.option("--grpc-port", type=click.IntRange(0, 65535), help="Also serve V2 over gRPC (tritonclient.grpc, KServe) on this port (default: off); needs inferox-engine[grpc].")
@click.option("--truncate-text/--no-truncate-text", default=True, help="Cut text longer than a model's max_seq_length (default), or refuse it naming the limit; on every protocol.")
@click.option("--name", help="Model name when PATH is a single package (default: the package's name).")
@click.option("--backend", "backends_", multiple=True, help="Backend(s) to load models on (repeat for several).")
@click.option("--device", help="Device for every model (cpu, cuda:0 …).")
@click.option("--threads", type=click.IntRange(min=1), help="Intra-op threads of every model's backend (default: the CPUs this process may use, by affinity and cgroup quota; on torch it is process-wide).")
@click.option("--dtype", help="Load every model's weights as f32, f16 or bf16 (backends that support it; a model's serving.toml may say otherwise).")
@click.option("--int8", is_flag=True, help="Serve int8-quantised models (an option of the onnx backend; another backend refuses it).")
@click.option("--revision", help="Hub revision (branch, tag or commit) when PATH is hf://org/name.")
@click.option("--token", help="Bearer token required by the load/unload endpoints (env INFEROX_SERVER_TOKEN).")
@click.option("--protect-all", is_flag=True, help="Require the token on every endpoint.")
@click.option("--max-batch-size", type=click.IntRange(min=1), help="Dynamic batching: most rows per forward pass.")
@click.option("--max-batch-tokens", type=click.IntRange(min=0),
              help="Length-aware batching: most tokens (rows * padded length) per forward pass [default: 1024 on CPU for a text model; 0: FIFO by rows].")
@click.option("--batch-delay-ms", type=click.FloatRange(min=0), help="Dynamic batching: how long to wait for a batch to fill.")
@click.option("--max-queue-size", type=click.IntRange(min=1), help="Requests waiting per model beyond which the server answers 429.")
@click.option("--no-batching", is_flag=True, help="Run each request on its own.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), help="Per-request timeout, seconds (default 60; a model's serving.toml overrides it).")
@click.option("--max-body-mb", type=click.FloatRange(min=0, min_open=True), help="Request body size limit (default 64).")
@click.option("--keep-alive-s", type=click.IntRange(min=1), help="Idle keep-alive connections close after this long (default 75); keep it above your clients' and load balancer's idle timeout.")
@click.option("--read-timeout-s", type=click.FloatRange(min=0, min_open=True, max=3600), help="A request's headers and body must arrive within this long, else 408 and the connection closes (default 30).")
@click.option("--max-connections", type=click.IntRange(min=1), help="Open connections beyond this get 503 at once (default 1024).")
@click.option("--verify", is_flag=True, help="Check every package file's sha256, and that every file is listed, before loading. Without it a load checks only that the listed files are there with their recorded sizes.")
@click.option("--exit-on-error/--no-exit-on-error", default=True, help="Exit non-zero when a model fails to load at start-up (default), or keep serving the others.")
@click.option("--strict-readiness/--no-strict-readiness", default=True, help="Ready only while every model is ready (default), or once start-up is over.")
@click.option("--allow-empty", is_flag=True, help="Start even with nothing to serve (a repository with no model yet): models are then loaded through the repository API. Without it, nothing to serve is an error.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True)
@click.option("--allow-pickle", is_flag=True, help="Accept pickle weights in packages.")
@click.option("--trust-code", is_flag=True, help="Run code shipped inside packages.")
@click.option("--ray", "use_ray", is_flag=True, help="Deploy the repository on Ray Serve (extra inferox-engine[ray]); see docs/deployment-ray.md.")
@click.option("--address", help="--ray: Ray cluster address (e.g. ray://head:10001 or auto); default: start a local cluster.")
@click.option("--replicas", type=click.IntRange(min=1), help="--ray: model replicas (default 1).")
@click.option("--autoscaling", help='--ray: Ray Serve autoscaling_config as JSON, e.g. \'{"min_replicas": 1, "max_replicas": 4}\'.')
@click.option("--num-cpus", type=click.FloatRange(min=0), help="--ray: CPUs per replica (default 1).")
@click.option("--num-gpus", type=click.FloatRange(min=0), help="--ray: GPUs per replica (default 0).")
@click.option("--max-models-per-replica", type=click.IntRange(min=1), help="--ray: models a replica keeps, least recently used evicted (default 3).")
@click.pass_context
def serve(
    ctx: click.Context,
    /,
    path: str | None,
    config_file: Path | None,
    print_config: bool,
    name: str | None,
    revision: str | None,
    log_level: str,
    use_ray: bool,
    address: str | None,
    replicas: int | None,
    autoscaling: str | None,
    num_cpus: float | None,
    num_gpus: float | None,
    max_models_per_replica: int | None,
    **_flags: Any,
) -> None:
    """Serve a model over three protocols: the Open Inference
    Protocol (KServe V2) over HTTP on --port, V2 over gRPC on --grpc-port (when given), and
    OpenAI-compatible embeddings (POST /v1/embeddings, GET /v1/models) on --port.

    PATH is a package, a model repository folder, a Hugging Face / sentence-transformers model
    folder, a model.toml or a Hub repository (hf://org/name[@revision]); a model folder or Hub
    repository is packed into the package cache first, as `inferox pack` would (the next start
    reuses it). With no --backend a model is served on the fastest installed backend for its
    architecture (logged, and in the model's metadata). A repository holds packages as NAME/ or NAME/VERSION/, each with an optional NAME/serving.toml
    (backends, device, threads, max_batch_size, max_batch_tokens, batch_delay_ms, max_queue_size, timeout_s,
    warmup, versions) overriding the server-wide settings for that model. Binds 127.0.0.1 unless --host
    says otherwise; --token protects the load/unload endpoints (--protect-all: every endpoint).
    Loading checks that each package's listed files are there with their recorded sizes; --verify
    also checks every file's sha256 and that no file is unlisted (slower start)."""
    from inferox.engine.server._settings import resolve

    resolved = resolve(file=config_file, flags=_given_flags(ctx))
    if print_config:
        table = Table(title="inferox serve: effective configuration")
        for col in ("setting", "value", "source"):
            table.add_column(col)
        for row in resolved.describe():
            table.add_row(*(escape(str(cell)) for cell in row))
        console().print(table)
        return
    if path is None:
        raise click.UsageError("PATH is required (a package, a model repository, a model folder or hf://org/name)")
    from inferox.engine.server.app import InferoxServer

    if use_ray and resolved.config.grpc_port is not None:
        # The Ray ingress is an HTTP deployment: V2 over gRPC is this process's transport.
        raise ConfigError("--ray serves V2 over HTTP only; drop --grpc-port (server.grpc_port)", field="server.grpc_port", value=resolved.config.grpc_port)
    source = _resolve_source(path, revision=revision, allow_pickle=resolved.config.allow_pickle, allow_empty=resolved.config.allow_empty)
    server = InferoxServer.for_path(source, config=resolved.config, name=name)
    config = server.config
    if use_ray:
        _serve_on_ray(
            server,
            source,
            address=address,
            replicas=replicas,
            autoscaling=autoscaling,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            max_models_per_replica=max_models_per_replica,
        )
        return
    from inferox.engine.server import run as run_server

    err = console(err=True)
    if config.host not in ("127.0.0.1", "localhost", "::1") and not config.token:
        err.print(f"[yellow]warning:[/] listening on {escape(str(config.host))} without --token: anyone who can reach this port can load and unload models")
    grpc = f" and gRPC on {escape(str(config.host))}:{config.grpc_port}" if config.grpc_port is not None else ""
    err.print(f"starting inferox for {escape(str(path))} on http://{escape(str(config.host))}:{config.port}{grpc} (Ctrl-C to stop)")
    try:
        # Returns after a graceful stop (SIGTERM, SIGINT / Ctrl-C): in-flight requests drained, exit 0.
        run_server(server, log_level=log_level)
    except KeyboardInterrupt:  # a second Ctrl-C before the handlers are in
        pass
    err.print("inferox server stopped")


def _resolve_source(path: str, *, revision: str | None, allow_pickle: bool, allow_empty: bool = False) -> Path:
    """The folder to serve PATH from: a package or repository as it is; a model folder,
    model.toml or Hub repository packed into the package cache first (``inferox.mlpkg.resolve_source``)."""
    from inferox import mlpkg
    from inferox.core.errors import PackageNotFoundError

    try:
        kind = mlpkg.source_kind(path)
    except PackageNotFoundError as exc:
        if not Path(path).expanduser().is_dir():
            raise
        if not allow_empty:
            raise PackageNotFoundError(
                f"{exc.message}; to start with no model and load models through the repository API, pass --allow-empty", path=exc.path, field=exc.field
            ) from None
        # Started empty on purpose: a model repository whose models arrive later.
        kind = "repository"
    if kind in ("package", "repository"):
        if revision is not None:
            raise ConfigError(f"--revision applies to Hub sources (hf://org/name), not to {path}", field="revision", value=revision)
        return Path(path).expanduser()
    err = console(err=True)
    with err.status(f"packing {escape(path)} into the package cache …"):
        source = mlpkg.resolve_source(path, revision=revision, allow_pickle=allow_pickle)
    err.print(f"[green]✓[/] packed {escape(path)} into {escape(str(source.path))}")
    return source.path


def _serve_on_ray(
    server: Any,
    path: Path,
    *,
    address: str | None,
    replicas: int | None,
    autoscaling: str | None,
    num_cpus: float | None,
    num_gpus: float | None,
    max_models_per_replica: int | None,
) -> None:
    """``inferox serve --ray``: the repository as a Ray Serve application (the same HTTP API). Options
    left out take ``build_app``'s defaults (declared there only)."""
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
    given: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_models_per_replica": max_models_per_replica}
    app = build_app(
        server.repository.root,
        config=server.config,
        replicas=replicas,
        autoscaling_config=scaling,
        **{k: v for k, v in given.items() if v is not None},
    )
    err = console(err=True)
    if server.config.host not in ("127.0.0.1", "localhost", "::1") and not server.config.token:
        err.print(f"[yellow]warning:[/] Ray Serve listening on {escape(str(server.config.host))} without --token: anyone who can reach this port can call the models")
    where = address or "a local Ray cluster"
    err.print(f"deploying {escape(str(path))} on {escape(str(where))}; V2 API on http://{escape(str(server.config.host))}:{server.config.port} (Ctrl-C to stop)")
    with contextlib.suppress(KeyboardInterrupt):  # a Ctrl-C during deployment, before the handlers are in
        serve_on_ray(app, address=address, host=server.config.host, port=server.config.port, keep_alive_s=server.config.keep_alive_s)
    err.print("inferox Ray Serve application deleted")
