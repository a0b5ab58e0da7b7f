"""Every environment variable Inferox reads, and the defaults behind them, in one place."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "BUILTIN_PLUGIN",
    "CONTRACT_VERSION",
    "DEFAULT_CACHE_DIR",
    "ENTRY_POINT_GROUP",
    "ENV_BLOCKED_PLUGINS",
    "ENV_CACHE_DIR",
    "ENV_CACHE_SIZE_LIMIT",
    "ENV_ENGINE_VARS",
    "ENV_HF_TOKEN",
    "ENV_MMAP_THRESHOLD",
    "ENV_PACKAGE_DIR",
    "PROJECT_NAME",
    "STANDARD_BACKEND_DISTRIBUTIONS",
    "blocked_plugins",
    "cache_dir",
]

#: pluggy project name and entry-point group that plugins declare themselves under.
PROJECT_NAME = "inferox"
ENTRY_POINT_GROUP = "inferox"

#: The plugin contract's version, "MAJOR.MINOR". A plugin built for another major, or for a newer
#: minor than this core, is refused with both versions named; every older minor loads unchanged.
#: 1.1 added ``inferox_register_schemas`` (architectures as plugins) and the conformance suite's
#: numbers checks; 1.2 added ``inferox_register_implementations`` (``inferox_register_architectures``
#: stays as its alias), the conformance checks for GELU sensitivity, native inputs and extreme
#: casts, architecture definitions (``ArchitectureSchema.definition``) and
#: ``BackendSpec(definitions=True)`` (a backend that runs every definition). A conformance check
#: added in a minor only warns for plugins declaring an older one.
CONTRACT_VERSION = "1.2"

#: The name core's own built-in plugin (the standard architectures' schemas) is registered under.
BUILTIN_PLUGIN = "inferox-core"
#: The distributions of this repository that implement core's standard architectures: named in
#: "what to install" hints only (core imports none of them).
STANDARD_BACKEND_DISTRIBUTIONS = ("inferox-torch", "inferox-jax", "inferox-onnx")

#: Comma-separated plugin (entry-point) names to skip at discovery, e.g. ``INFEROX_BLOCKED_PLUGINS=jax``.
ENV_BLOCKED_PLUGINS = "INFEROX_BLOCKED_PLUGINS"
#: Where packages built or downloaded are cached.
ENV_CACHE_DIR = "INFEROX_CACHE_DIR"
#: Size limit of the package cache, in bytes or with a unit ("10GB").
ENV_CACHE_SIZE_LIMIT = "INFEROX_CACHE_SIZE_LIMIT"
#: Default output folder for built packages when none is given.
ENV_PACKAGE_DIR = "INFEROX_PACKAGE_DIR"
#: Hugging Face token, read the same way huggingface_hub reads it.
ENV_HF_TOKEN = "HF_TOKEN"
#: Serving processes (``inferox serve``, Ray replicas) fix glibc's mmap threshold at this many bytes
#: (default 256 KiB) so tensor buffers of ever-new shapes do not fragment the heap; ``0`` leaves
#: glibc's own adaptive threshold (see ``inferox.engine.limit_heap_fragmentation``).
ENV_MMAP_THRESHOLD = "INFEROX_MMAP_THRESHOLD"

#: Engine settings (``inferox.engine.EngineConfig.from_env``), one variable per config field.
ENV_MAX_BATCH_SIZE = "INFEROX_MAX_BATCH_SIZE"
ENV_MAX_BATCH_TOKENS = "INFEROX_MAX_BATCH_TOKENS"
ENV_MAX_QUEUE_DELAY_MS = "INFEROX_MAX_QUEUE_DELAY_MS"
ENV_MAX_QUEUE_SIZE = "INFEROX_MAX_QUEUE_SIZE"
ENV_DEFAULT_TIMEOUT_S = "INFEROX_DEFAULT_TIMEOUT_S"
ENV_PROFILING = "INFEROX_PROFILING"
ENV_MEMORY_BUDGET_BYTES = "INFEROX_MEMORY_BUDGET_BYTES"
ENV_BACKEND_PREFERENCE = "INFEROX_BACKEND_PREFERENCE"
ENV_BATCHING = "INFEROX_BATCHING"
ENV_NUM_WORKERS = "INFEROX_NUM_WORKERS"
ENV_SESSION_TTL_S = "INFEROX_SESSION_TTL_S"
ENV_SESSION_MAX_STATE_BYTES = "INFEROX_SESSION_MAX_STATE_BYTES"
ENV_SESSION_MAX_KEYS = "INFEROX_SESSION_MAX_KEYS"
#: ``EngineConfig`` field name → the environment variable that sets it.
ENV_ENGINE_VARS: dict[str, str] = {
    "max_batch_size": ENV_MAX_BATCH_SIZE,
    "max_batch_tokens": ENV_MAX_BATCH_TOKENS,
    "max_queue_delay_ms": ENV_MAX_QUEUE_DELAY_MS,
    "max_queue_size": ENV_MAX_QUEUE_SIZE,
    "default_timeout_s": ENV_DEFAULT_TIMEOUT_S,
    "profiling": ENV_PROFILING,
    "memory_budget_bytes": ENV_MEMORY_BUDGET_BYTES,
    "backend_preference": ENV_BACKEND_PREFERENCE,
    "batching": ENV_BATCHING,
    "num_workers": ENV_NUM_WORKERS,
    "session_ttl_s": ENV_SESSION_TTL_S,
    "session_max_state_bytes": ENV_SESSION_MAX_STATE_BYTES,
    "session_max_keys": ENV_SESSION_MAX_KEYS,
}

DEFAULT_CACHE_DIR = Path("~/.cache/inferox").expanduser()


def blocked_plugins() -> frozenset[str]:
    """The plugin names listed in ``INFEROX_BLOCKED_PLUGINS`` (read on every call, not at import)."""
    raw = os.environ.get(ENV_BLOCKED_PLUGINS, "")
    return frozenset(p.strip().lower() for p in raw.split(",") if p.strip())


def cache_dir() -> Path:
    """``INFEROX_CACHE_DIR``, else ``~/.cache/inferox``."""
    value = os.environ.get(ENV_CACHE_DIR)
    return Path(value).expanduser() if value else DEFAULT_CACHE_DIR
