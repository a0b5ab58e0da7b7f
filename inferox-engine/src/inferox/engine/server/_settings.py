"""The server's effective settings, layered: defaults < configuration file < environment < flags.

Every setting has a dotted key — ``server.*`` (:class:`ServerConfig`), ``engine.*``
(:class:`~inferox.engine.EngineConfig`: the server-wide batching, queue, timeout and memory
settings that a model's ``serving.toml`` overrides for that model) and ``models.*`` (defaults for
every model: ``backends``, ``device``, ``dtype``, ``warmup``, ``threads``, ``int8``). A file holds them as TOML tables::

    [server]
    port = 9000
    request_timeout_s = 30

    [engine]
    max_batch_size = 16
    memory_budget_bytes = "4GiB"

    [models]
    backends = ["torch"]

The environment's ``INFEROX_*`` variables (``EngineConfig.from_env``'s, plus :data:`SERVER_ENV`)
override the file, and flags the user actually gave override both (a flag's default never
overrides anything). :func:`resolve` returns the config and, per key, the value and its source,
which ``inferox serve --print-config`` prints.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferox.core.constants import ENV_ENGINE_VARS
from inferox.core.errors import ConfigError
from inferox.engine._config import EngineConfig, _parse_env, parse_env_bool, parse_size
from inferox.engine.server._config import ServerConfig
from inferox.engine.server._repository import ServingSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["SERVER_ENV", "Resolved", "resolve"]

#: Environment variables of server settings (engine settings use ``ENV_ENGINE_VARS``).
SERVER_ENV: dict[str, str] = {
    "host": "INFEROX_SERVER_HOST",
    "port": "INFEROX_SERVER_PORT",
    "token": "INFEROX_SERVER_TOKEN",
    "protect_all": "INFEROX_SERVER_PROTECT_ALL",
    "max_body_bytes": "INFEROX_SERVER_MAX_BODY_BYTES",
    "request_timeout_s": "INFEROX_SERVER_TIMEOUT_S",
    "keep_alive_s": "INFEROX_SERVER_KEEP_ALIVE_S",
    "read_timeout_s": "INFEROX_SERVER_READ_TIMEOUT_S",
    "max_connections": "INFEROX_SERVER_MAX_CONNECTIONS",
    "graceful_timeout_s": "INFEROX_SERVER_GRACEFUL_TIMEOUT_S",
    "access_log": "INFEROX_SERVER_ACCESS_LOG",
    "exit_on_error": "INFEROX_SERVER_EXIT_ON_ERROR",
    "strict_readiness": "INFEROX_SERVER_STRICT_READINESS",
    "grpc_port": "INFEROX_SERVER_GRPC_PORT",
    "truncate_text": "INFEROX_SERVER_TRUNCATE_TEXT",
    "verify": "INFEROX_SERVER_VERIFY",
    "max_request_rows": "INFEROX_SERVER_MAX_REQUEST_ROWS",
    "max_request_tokens": "INFEROX_SERVER_MAX_REQUEST_TOKENS",
    "max_request_text_bytes": "INFEROX_SERVER_MAX_REQUEST_TEXT_BYTES",
    "allow_empty": "INFEROX_SERVER_ALLOW_EMPTY",
}

_SERVER_FIELDS = {f.name: f for f in dataclasses.fields(ServerConfig) if f.name not in ("defaults", "engine_config")}
_ENGINE_FIELDS = {f.name: f for f in dataclasses.fields(EngineConfig)}
_MODEL_FIELDS = ("backends", "device", "dtype", "warmup", "threads", "int8")

DEFAULT, FILE, ENV, FLAG = "default", "file", "environment", "flag"


@dataclass(frozen=True)
class Resolved:
    """The effective configuration and where each value came from (``{key: (value, source)}``)."""

    config: ServerConfig
    sources: dict[str, tuple[Any, str]]

    def describe(self) -> list[tuple[str, str, str]]:
        """``(key, value, source)`` rows, sorted; the token is masked."""
        rows = []
        for key, (value, source) in sorted(self.sources.items()):
            shown = "***" if key == "server.token" and value else repr(value)
            rows.append((key, shown, source))
        return rows


def _parse_server_env(name: str, var: str, raw: str) -> Any:
    kind = _SERVER_FIELDS[name].type
    text = raw.strip()
    if "bool" in str(kind):
        return parse_env_bool(var, raw)
    if name == "token":
        if not text:
            # Set but empty: the user meant to protect the server; protecting nothing silently is worse.
            raise ConfigError("is set but empty: give a token, or unset the variable", field=var, value=raw)
        return text
    if name == "host":
        return text
    if name in ("request_timeout_s", "grpc_port") and text.lower() in ("", "none", "null"):
        return None
    try:
        if name in ("max_body_bytes", "max_request_text_bytes"):
            return parse_size(text)
        if name in ("port", "grpc_port", "max_connections", "max_request_rows", "max_request_tokens"):
            return _parse_int(text)
        return float(text)
    except ValueError as exc:
        raise ConfigError(f"expected a number, got {raw!r}", field=var, value=raw) from exc


def _parse_int(text: str) -> int:
    """An integer setting from the environment; ``1e6`` is accepted when it is a whole number."""
    try:
        return int(text)
    except ValueError:
        value = float(text)
        if not value.is_integer():
            raise
        return int(value)


def _renamed(exc: ConfigError, field: str | None, *, path: str | None = None) -> ConfigError:
    """``exc`` naming ``field`` (and ``path``), its message said once."""
    message = exc.message
    if exc.path and message.startswith(f"{exc.path}: "):
        message = message[len(exc.path) + 2 :]
    if exc.field and message.startswith(f"{exc.field}: "):
        message = message[len(exc.field) + 2 :]
    return ConfigError(message, field=field, value=exc.value, path=path)


def _engine_env(name: str, var: str, raw: str) -> Any:
    """An engine variable's value; a whole number written as a float (``1e12``) is read as the
    integer it is, so that its range check — not "expected a number" — reports it."""
    try:
        return _parse_env(name, var, raw)
    except ConfigError:
        if _ENGINE_FIELDS[name].type not in ("int", "int | None"):
            raise
        try:
            return _parse_int(raw.strip())
        except ValueError:
            raise ConfigError(f"expected an integer, got {raw!r}", field=var, value=raw) from None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror or exc}", path=str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", path=str(path)) from exc
    out: dict[str, Any] = {}
    for table, known in (("server", _SERVER_FIELDS), ("engine", _ENGINE_FIELDS), ("models", _MODEL_FIELDS)):
        section = data.pop(table, {})
        if not isinstance(section, dict):
            raise ConfigError(f"[{table}] must be a table", field=table, value=section, path=str(path))
        for key, value in section.items():
            if key not in known:
                raise ConfigError(f"unknown setting {table}.{key}; known: {', '.join(sorted(known))}", field=f"{table}.{key}", value=value, path=str(path))
            if table == "engine" and key in ("memory_budget_bytes", "session_max_state_bytes") and isinstance(value, str):
                try:
                    value = parse_size(value)
                except ValueError as exc:
                    raise ConfigError(f"bad size {value!r}", field=f"{table}.{key}", value=value, path=str(path)) from exc
            if table == "server" and key in ("max_body_bytes", "max_request_text_bytes") and isinstance(value, str):
                try:
                    value = parse_size(value)
                except ValueError as exc:
                    raise ConfigError(f"bad size {value!r}", field=f"{table}.{key}", value=value, path=str(path)) from exc
            out[f"{table}.{key}"] = tuple(value) if isinstance(value, list) else value
    if data:
        extra = sorted(data)[0]
        raise ConfigError(f"unknown table or key {extra!r}; the file holds [server], [engine] and [models]", field=extra, value=data[extra], path=str(path))
    return out


def resolve(*, file: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None, flags: Mapping[str, Any] | None = None) -> Resolved:
    """The server's configuration from its layers (see the module docstring).

    ``flags`` holds only the values the user gave on the command line, by dotted key. Invalid
    values raise :class:`ConfigError` naming the key (or the variable) and, for a file, the file.
    """
    env = os.environ if environ is None else environ
    sources: dict[str, tuple[Any, str]] = {}
    server_defaults = ServerConfig()
    for name in _SERVER_FIELDS:
        sources[f"server.{name}"] = (getattr(server_defaults, name), DEFAULT)
    engine_defaults = EngineConfig()
    for name in _ENGINE_FIELDS:
        sources[f"engine.{name}"] = (getattr(engine_defaults, name), DEFAULT)
    model_defaults = ServingSettings()
    for name in _MODEL_FIELDS:
        sources[f"models.{name}"] = (getattr(model_defaults, name), DEFAULT)
    if file is not None:
        for key, value in _read_file(Path(file)).items():
            sources[key] = (value, FILE)
    for name, var in SERVER_ENV.items():
        if var in env:
            sources[f"server.{name}"] = (_parse_server_env(name, var, env[var]), ENV)
    for name, var in ENV_ENGINE_VARS.items():
        if var in env:
            sources[f"engine.{name}"] = (_engine_env(name, var, env[var]), ENV)
    for key, value in (flags or {}).items():
        if key not in sources:
            raise ConfigError(f"unknown setting {key!r}", field=key, value=value)
        sources[key] = (value, FLAG)
    where = str(file) if file is not None else None

    def section(prefix: str) -> dict[str, Any]:
        return {k.split(".", 1)[1]: v for k, (v, _) in sources.items() if k.startswith(prefix + ".")}

    try:
        engine = EngineConfig(**section("engine"))
        models = section("models")
        try:
            defaults = ServingSettings.from_mapping({k: list(v) if isinstance(v, tuple) else v for k, v in models.items() if v is not None and v != ()})
        except ConfigError as exc:
            raise _renamed(exc, f"models.{exc.field}" if exc.field else None) from exc
        config = ServerConfig(**section("server"), engine_config=engine, defaults=defaults)
    except ConfigError as exc:
        if exc.path is not None:
            raise
        raise _renamed(exc, exc.field, path=where) from exc
    except TypeError as exc:  # pragma: no cover - a field the tables above do not know
        raise ConfigError(str(exc), path=where) from exc
    _check_server(config, where)
    return Resolved(config=config, sources=sources)


#: Upper bounds of settings whose absurd values would take the machine down rather than fail:
#: a forward pass of 10^12 rows, 10^5 batcher threads per model, 10^12 intra-op threads.
MAX_BATCH_SIZE = 1 << 16
MAX_NUM_WORKERS = 64
MAX_THREADS = 1024
#: gRPC message limits are 32-bit signed integers.
GRPC_MAX_MESSAGE_BYTES = 2**31 - 1


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    import math

    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_server(config: ServerConfig, where: str | None) -> None:
    """Range and type checks of server settings (engine ones are EngineConfig's own, plus the
    bounds above): each bad value is a one-line :class:`ConfigError` naming the setting."""
    checks: list[tuple[str, Any, bool, str]] = [
        ("server.host", config.host, isinstance(config.host, str) and bool(config.host.strip()) and not any(c.isspace() for c in config.host), "must be a host name or address (0.0.0.0 listens on every interface)"),
        ("server.port", config.port, _is_int(config.port) and 0 <= config.port <= 65535, "must be a port number, 0..65535"),
        ("server.grpc_port", config.grpc_port, config.grpc_port is None or (_is_int(config.grpc_port) and 0 <= config.grpc_port <= 65535), "must be a port number, 0..65535"),
        ("server.max_body_bytes", config.max_body_bytes, _is_int(config.max_body_bytes) and config.max_body_bytes > 0, "must be a positive number of bytes (64MiB accepted)"),
        ("server.keep_alive_s", config.keep_alive_s, _is_number(config.keep_alive_s) and config.keep_alive_s >= 1, "must be a number of seconds >= 1"),
        ("server.read_timeout_s", config.read_timeout_s, _is_number(config.read_timeout_s) and 0 < config.read_timeout_s <= 3600, "must be a number of seconds in (0, 3600]"),
        ("server.max_connections", config.max_connections, _is_int(config.max_connections) and 1 <= config.max_connections <= 1_000_000, "must be an integer in 1..1000000"),
        ("server.graceful_timeout_s", config.graceful_timeout_s, _is_number(config.graceful_timeout_s) and config.graceful_timeout_s >= 0, "must be a number of seconds >= 0"),
        ("server.request_timeout_s", config.request_timeout_s, config.request_timeout_s is None or (_is_number(config.request_timeout_s) and config.request_timeout_s > 0), "must be a positive number of seconds"),
        ("server.max_request_rows", config.max_request_rows, _is_int(config.max_request_rows) and 1 <= config.max_request_rows <= 1 << 24, "must be an integer in 1..16777216"),
        ("server.max_request_tokens", config.max_request_tokens, _is_int(config.max_request_tokens) and 1 <= config.max_request_tokens <= 1 << 32, "must be an integer in 1..2^32"),
        ("server.max_request_text_bytes", config.max_request_text_bytes, _is_int(config.max_request_text_bytes) and config.max_request_text_bytes > 0, "must be a positive number of bytes (8MiB accepted)"),
    ]
    engine = config.engine_config
    if engine is not None:
        checks += [
            ("engine.max_batch_size", engine.max_batch_size, engine.max_batch_size <= MAX_BATCH_SIZE, f"must be at most {MAX_BATCH_SIZE}"),
            ("engine.num_workers", engine.num_workers, engine.num_workers is None or engine.num_workers <= MAX_NUM_WORKERS, f"must be at most {MAX_NUM_WORKERS}"),
        ]
    threads = config.defaults.threads
    checks.append(("models.threads", threads, threads is None or threads <= MAX_THREADS, f"must be at most {MAX_THREADS}"))
    for key, value, ok, rule in checks:
        if not ok:
            raise ConfigError(f"{rule}, got {value!r}", field=key, value=value, path=where)
    for name in ("protect_all", "access_log", "allow_pickle", "trust_code", "verify", "exit_on_error", "strict_readiness", "truncate_text", "allow_empty"):
        if not isinstance(getattr(config, name), bool):
            raise ConfigError(f"must be true or false, got {getattr(config, name)!r}", field=f"server.{name}", value=getattr(config, name), path=where)
    if config.grpc_port is not None and config.max_body_bytes > GRPC_MAX_MESSAGE_BYTES:
        raise ConfigError(
            f"must be below 2 GiB ({GRPC_MAX_MESSAGE_BYTES} bytes) with gRPC on: gRPC message limits are 32-bit, got {config.max_body_bytes}",
            field="server.max_body_bytes",
            value=config.max_body_bytes,
            path=where,
        )
