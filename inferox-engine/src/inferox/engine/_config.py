"""``EngineConfig``: validated engine settings, from keywords, builders, the environment or TOML."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferox.core.constants import ENV_ENGINE_VARS
from inferox.core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

__all__ = [
    "DEFAULT_ACCELERATOR_BATCH_TOKENS",
    "DEFAULT_TEXT_BATCH_TOKENS",
    "MAX_AUTO_WORKERS",
    "EngineConfig",
    "ModelOptions",
    "batch_tokens_for",
    "workers_for",
]

#: The token budget of one forward pass of a text model on CPU when ``max_batch_tokens`` is not
#: set. On CPU a BERT-class encoder's cost per row is flat up to about a thousand padded positions
#: per pass and grows past it (MiniLM, one thread: 86-93 ms per 244-token row in passes of 2-4 rows,
#: 115 ms in passes of 32 — attention's working set leaves the cache), while 32 short sentences
#: (32 x 8 = 256 positions) still make one pass.
DEFAULT_TEXT_BATCH_TOKENS = 1024
#: The same budget on an accelerator, where bigger passes keep the device busy.
DEFAULT_ACCELERATOR_BATCH_TOKENS = 16384
#: Most batcher workers ``num_workers=None`` gives one instance.
MAX_AUTO_WORKERS = 4

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def _installed_backends() -> list[str]:
    from inferox.core.plugins import get_registry

    return get_registry().backend_names()


def _check_int(name: str, value: Any, *, minimum: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"must be an integer ≥ {minimum}{' or None' if optional else ''}, got {value!r}", field=name, value=value)
    if value < minimum:
        raise ConfigError(f"must be ≥ {minimum}, got {value}", field=name, value=value)


def _check_float(name: str, value: Any, *, positive: bool, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"must be a finite number{' or None' if optional else ''}, got {value!r}", field=name, value=value)
    if positive and value <= 0:
        raise ConfigError(f"must be > 0, got {value}", field=name, value=value)
    if not positive and value < 0:
        raise ConfigError(f"must be ≥ 0, got {value}", field=name, value=value)
    return float(value)


@dataclass(frozen=True)
class EngineConfig:
    """Settings of an :class:`~inferox.engine.Engine`; every field is validated at construction.

    Invalid values raise :class:`~inferox.core.ConfigError` whose ``field`` names the field and
    ``value`` holds what was given. Build one with keywords, with the ``with_*`` builders (each
    returns a new, re-validated config), from ``INFEROX_*`` environment variables
    (:meth:`from_env`) or from a TOML file (:meth:`from_toml`).
    """

    #: Most rows one forward pass may take (requests are coalesced up to this many rows).
    max_batch_size: int = 32
    #: Length-aware batching: most tokens (rows * padded length) one forward pass may take, with
    #: requests grouped by token length instead of FIFO order. ``None``: a model that takes text
    #: (one with a tokenizer) gets :data:`DEFAULT_TEXT_BATCH_TOKENS` on CPU
    #: (:data:`DEFAULT_ACCELERATOR_BATCH_TOKENS` on an accelerator), any other model FIFO by rows;
    #: ``0``: FIFO by rows for every model.
    max_batch_tokens: int | None = None
    #: How long the batcher waits for more requests to join a batch, in milliseconds.
    max_queue_delay_ms: float = 2.0
    #: Most requests waiting per model instance; beyond it ``infer`` raises ``QueueFullError``.
    max_queue_size: int = 1024
    #: Deadline for a request that names none (``None``: no deadline), in seconds.
    default_timeout_s: float | None = None
    #: Record per-stage timings (validation, conversion, forward, output conversion) in results.
    profiling: bool = False
    #: Most bytes of weights all loaded model instances may hold together (``None``: unlimited).
    memory_budget_bytes: int | None = None
    #: Backends to try, in order, when a request names none or its backend fails.
    backend_preference: tuple[str, ...] = ()
    #: Dynamic batching on; off runs each request in its caller's thread.
    batching: bool = True
    #: Batcher worker threads per model instance, i.e. forward passes one instance may run at once.
    #: ``None``: as many as the CPUs its intra-op threads leave free, for a model that declares
    #: itself ``thread_safe`` (usable CPUs // intra-op threads, at most :data:`MAX_AUTO_WORKERS`);
    #: one for any other model (its passes would queue on its lock anyway).
    num_workers: int | None = None
    #: Idle seconds after which a session expires (``None``: never).
    session_ttl_s: float | None = None
    #: Most bytes of state one session may hold (``None``: unlimited).
    session_max_state_bytes: int | None = 64 * 2**20
    #: Most state keys one session may hold (``None``: unlimited).
    session_max_keys: int | None = 1024

    def __post_init__(self) -> None:
        _check_int("max_batch_size", self.max_batch_size, minimum=1)
        _check_int("max_batch_tokens", self.max_batch_tokens, minimum=0, optional=True)
        object.__setattr__(self, "max_queue_delay_ms", _check_float("max_queue_delay_ms", self.max_queue_delay_ms, positive=False))
        _check_int("max_queue_size", self.max_queue_size, minimum=1)
        object.__setattr__(self, "default_timeout_s", _check_float("default_timeout_s", self.default_timeout_s, positive=True, optional=True))
        if not isinstance(self.profiling, bool):
            raise ConfigError(f"must be a bool, got {self.profiling!r}", field="profiling", value=self.profiling)
        _check_int("memory_budget_bytes", self.memory_budget_bytes, minimum=1, optional=True)
        if not isinstance(self.batching, bool):
            raise ConfigError(f"must be a bool, got {self.batching!r}", field="batching", value=self.batching)
        _check_int("num_workers", self.num_workers, minimum=1, optional=True)
        object.__setattr__(self, "session_ttl_s", _check_float("session_ttl_s", self.session_ttl_s, positive=True, optional=True))
        _check_int("session_max_state_bytes", self.session_max_state_bytes, minimum=1, optional=True)
        _check_int("session_max_keys", self.session_max_keys, minimum=1, optional=True)
        object.__setattr__(self, "backend_preference", self._check_backends(self.backend_preference))

    @staticmethod
    def _check_backends(value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = tuple(v for v in (p.strip() for p in value.split(",")) if v)
        if not isinstance(value, (tuple, list)) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"must be a sequence of backend names, got {value!r}", field="backend_preference", value=value)
        names = tuple(v.lower() for v in value)
        if len(set(names)) != len(names):
            raise ConfigError(f"names a backend twice: {list(names)}", field="backend_preference", value=value)
        if names:
            installed = _installed_backends()
            unknown = [n for n in names if n not in installed]
            if unknown:
                raise ConfigError(
                    f"unknown backend {unknown[0]!r}; installed backends: {', '.join(installed) or '(none)'}",
                    field="backend_preference",
                    value=unknown[0],
                )
        return names

    # -- builders ---------------------------------------------------------------------------------
    def replace(self, **changes: Any) -> EngineConfig:
        """A copy with ``changes`` applied (validated again); unknown names raise ``ConfigError``."""
        known = {f.name for f in dataclasses.fields(self) if not f.name.startswith("_")}
        for key in changes:
            if key not in known:
                raise ConfigError(f"unknown setting {key!r}; known: {', '.join(sorted(known))}", field=key, value=changes[key])
        return dataclasses.replace(self, **changes)

    def with_max_batch_size(self, size: int) -> EngineConfig:
        return self.replace(max_batch_size=size)

    def with_max_batch_tokens(self, tokens: int | None) -> EngineConfig:
        return self.replace(max_batch_tokens=tokens)

    def with_max_queue_delay_ms(self, delay_ms: float) -> EngineConfig:
        return self.replace(max_queue_delay_ms=delay_ms)

    def with_max_queue_size(self, size: int) -> EngineConfig:
        return self.replace(max_queue_size=size)

    def with_default_timeout(self, seconds: float | None) -> EngineConfig:
        return self.replace(default_timeout_s=seconds)

    def with_profiling(self, enabled: bool = True) -> EngineConfig:
        return self.replace(profiling=enabled)

    def with_memory_budget(self, nbytes: int | None) -> EngineConfig:
        return self.replace(memory_budget_bytes=nbytes)

    #: The original engine's name for the memory budget.
    with_memory_pool_size = with_memory_budget

    def with_backend_preference(self, *backends: str) -> EngineConfig:
        return self.replace(backend_preference=tuple(backends))

    def with_batching(self, enabled: bool = True) -> EngineConfig:
        return self.replace(batching=enabled)

    def with_num_workers(self, workers: int | None) -> EngineConfig:
        return self.replace(num_workers=workers)

    def with_session_ttl(self, seconds: float | None) -> EngineConfig:
        return self.replace(session_ttl_s=seconds)

    def with_session_limits(self, *, max_state_bytes: int | None = None, max_keys: int | None = None) -> EngineConfig:
        return self.replace(session_max_state_bytes=max_state_bytes, session_max_keys=max_keys)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}

    # -- other sources ------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> EngineConfig:
        """Defaults, overridden by the ``INFEROX_*`` variables that are set (see
        ``inferox.core.constants.ENV_ENGINE_VARS``), then by ``overrides``.

        A value that does not parse raises ``ConfigError`` whose ``field`` is the variable's name.
        Optional numbers accept ``none`` / empty for ``None``; sizes accept units (``2GB``, ``512MiB``).
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for fname, var in ENV_ENGINE_VARS.items():
            raw = env.get(var)
            if raw is None:
                continue
            values[fname] = _parse_env(fname, var, raw)
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> EngineConfig:
        """Settings from a TOML file: top-level keys, or an ``[engine]`` table.

        Errors name the file (``ConfigError.path``) and the field.
        """
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file: {exc.strerror or exc}", path=str(p)) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"invalid TOML: {exc}", path=str(p)) from exc
        table = data.get("engine", data)
        if not isinstance(table, dict):
            raise ConfigError("[engine] must be a table", field="engine", value=table, path=str(p))
        known = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key not in known:
                raise ConfigError(f"unknown setting {key!r}; known: {', '.join(sorted(known))}", field=key, value=value, path=str(p))
            values[key] = tuple(value) if key == "backend_preference" and isinstance(value, list) else value
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(exc.message, field=exc.field, value=exc.value, path=str(p)) from exc


_OPTIONAL = {"max_batch_tokens", "num_workers", "default_timeout_s", "memory_budget_bytes", "session_ttl_s", "session_max_state_bytes", "session_max_keys"}
_BOOLS = {"profiling", "batching"}
_FLOATS = {"max_queue_delay_ms", "default_timeout_s", "session_ttl_s"}
_SIZES = {"memory_budget_bytes", "session_max_state_bytes"}


def parse_env_bool(var: str, raw: str) -> bool:
    """An environment variable's true/false value (1/true/yes/on, 0/false/no/off), else a ConfigError naming it."""
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"expected true/false, got {raw!r}", field=var, value=raw)


def _parse_env(fname: str, var: str, raw: str) -> Any:
    text = raw.strip()
    if fname == "backend_preference":
        return tuple(p.strip() for p in text.split(",") if p.strip())
    if fname in _OPTIONAL and text.lower() in ("", "none", "null"):
        return None
    if fname in _BOOLS:
        return parse_env_bool(var, raw)
    try:
        if fname in _FLOATS:
            return float(text)
        if fname in _SIZES:
            return parse_size(text)
        return int(text)
    except ValueError as exc:
        raise ConfigError(f"expected a number, got {raw!r}", field=var, value=raw) from exc


def parse_size(text: str) -> int:
    """``"2GB"`` → 2_000_000_000, ``"512MiB"`` → 536_870_912, ``"1000"`` → 1000."""
    s = text.strip().lower().replace(" ", "")
    num = s.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = s[len(num) :]
    if unit not in _UNITS or not num:
        raise ValueError(f"bad size {text!r}")
    return int(float(num) * _UNITS[unit])


@dataclass(frozen=True)
class ModelOptions:
    """Per-model overrides of the engine's settings (``None``: the engine's value).

    Given to :meth:`Engine.register` / :meth:`Engine.load`, they apply to that model name (and
    version) only: one engine serves many models, each batched, bounded and timed its own way.
    """

    #: Most rows one forward pass of this model may take.
    max_batch_size: int | None = None
    #: Length-aware batching for this model: most tokens (rows * padded length) per forward pass.
    max_batch_tokens: int | None = None
    #: How long this model's batcher waits for more requests, in milliseconds.
    max_queue_delay_ms: float | None = None
    #: Most requests waiting per instance of this model.
    max_queue_size: int | None = None
    #: Deadline of a request to this model that names none, in seconds.
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        _check_int("max_batch_size", self.max_batch_size, minimum=1, optional=True)
        _check_int("max_batch_tokens", self.max_batch_tokens, minimum=0, optional=True)
        object.__setattr__(self, "max_queue_delay_ms", _check_float("max_queue_delay_ms", self.max_queue_delay_ms, positive=False, optional=True))
        _check_int("max_queue_size", self.max_queue_size, minimum=1, optional=True)
        object.__setattr__(self, "timeout_s", _check_float("timeout_s", self.timeout_s, positive=True, optional=True))

    def apply(self, config: EngineConfig) -> EngineConfig:
        """``config`` with the batcher settings this model overrides."""
        changes = {k: getattr(self, k) for k in ("max_batch_size", "max_batch_tokens", "max_queue_delay_ms", "max_queue_size") if getattr(self, k) is not None}
        return config.replace(**changes) if changes else config


def batch_tokens_for(configured: int | None, *, text: bool, device: str) -> int | None:
    """The token budget of one forward pass (``None``: FIFO by rows): ``configured`` when set
    (``0`` turns length-aware batching off); otherwise, for a model that takes text,
    :data:`DEFAULT_TEXT_BATCH_TOKENS` on CPU (:data:`DEFAULT_ACCELERATOR_BATCH_TOKENS` elsewhere),
    and ``None`` for any other model."""
    if configured is not None:
        return configured or None
    if not text:
        return None
    return DEFAULT_TEXT_BATCH_TOKENS if device.split(":")[0] == "cpu" else DEFAULT_ACCELERATOR_BATCH_TOKENS


def workers_for(configured: int | None, *, thread_safe: bool, threads: Mapping[str, Any]) -> int:
    """Batcher workers of one instance: ``configured`` when set; otherwise, for a thread-safe model,
    the usable CPUs its intra-op threads leave (``threads`` is its ``thread_info()``), at most
    :data:`MAX_AUTO_WORKERS`; one for any other model.

    One intra-op thread on two CPUs leaves a CPU idle while a pass runs; a second worker runs the
    next pass on it (Triton's instance count). A model whose pool already spans the CPUs gets one.
    """
    if configured is not None:
        return configured
    if not thread_safe:
        return 1
    intra = threads.get("intra_op")
    cpus = threads.get("usable_cpus")
    if not isinstance(intra, int) or not isinstance(cpus, int) or intra < 1 or cpus < 1:
        return 1
    return max(1, min(MAX_AUTO_WORKERS, cpus // intra))
