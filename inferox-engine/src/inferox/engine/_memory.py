"""Process memory hygiene for long-running serving processes (glibc ``malloc`` only).

Two things keep a serving process's RSS where its live data is:

* :func:`release_memory` hands freed heap pages back to the OS after a model is unloaded;
* :func:`limit_heap_fragmentation` stops glibc from *raising its mmap threshold*. By default glibc
  serves a block of 128 KiB or more with ``mmap`` (returned to the OS on ``free``) until such a
  block is freed, and then raises the threshold to that block's size, up to 32 MiB. Under
  inference traffic every batch has a new (batch, sequence) shape, so activation buffers of a few
  MiB soon come from the heap instead, interleaved with small long-lived objects; the heap
  fragments and RSS climbs for minutes (a 10-minute MiniLM HTTP soak: +13.8 %, with the bytes in
  use flat). A fixed threshold keeps those buffers on ``mmap``: the same soak grew +1.3 %, and
  served more requests per second, not fewer (``docs/reliability.md`` has both runs).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os
from typing import Any

from inferox.core.constants import ENV_MMAP_THRESHOLD
from inferox.core.errors import ConfigError

__all__ = ["DEFAULT_MMAP_THRESHOLD", "limit_heap_fragmentation", "release_memory"]

#: The mmap threshold serving processes use unless ``INFEROX_MMAP_THRESHOLD`` says otherwise.
DEFAULT_MMAP_THRESHOLD = 256 * 1024
#: glibc's own variable: a user who set it has chosen, and it was applied when the process started.
_GLIBC_ENV = "MALLOC_MMAP_THRESHOLD_"
#: ``mallopt`` parameter number of ``M_MMAP_THRESHOLD`` (glibc ``malloc.h``), and glibc's ceiling
#: for it on 64-bit systems (``HEAP_MAX_SIZE / 2``).
_M_MMAP_THRESHOLD = -3
_MAX_THRESHOLD = 32 * 2**20


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    """glibc, or ``None`` elsewhere (looked up once: ``find_library`` spawns processes)."""
    if os.name != "posix":  # pragma: no cover - Windows
        return None
    for name in ("libc.so.6", ctypes.util.find_library("c")):
        if not name:
            continue
        try:
            libc = ctypes.CDLL(name)
            libc.malloc_trim, libc.mallopt  # noqa: B018 - both exist only in glibc
        except (OSError, AttributeError):  # pragma: no cover - musl or macOS libc
            continue
        return libc
    return None  # pragma: no cover


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``), so that an
    unloaded model's memory shows up as freed in the process RSS."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def mmap_threshold_from_env() -> int:
    """The threshold ``INFEROX_MMAP_THRESHOLD`` asks for (the default when unset, ``0`` for off);
    :class:`ConfigError` naming the variable when its value is not a byte count in range."""
    raw = os.environ.get(ENV_MMAP_THRESHOLD, "").strip()
    if not raw:
        return DEFAULT_MMAP_THRESHOLD
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{ENV_MMAP_THRESHOLD} must be a whole number of bytes (0 turns it off), got {raw!r}", field=ENV_MMAP_THRESHOLD, value=raw) from None
    if not 0 <= value <= _MAX_THRESHOLD:
        raise ConfigError(f"{ENV_MMAP_THRESHOLD} must be between 0 and {_MAX_THRESHOLD} bytes, got {value}", field=ENV_MMAP_THRESHOLD, value=value)
    return value


def limit_heap_fragmentation(threshold: int | None = None) -> int | None:
    """Fix glibc's mmap threshold for this process so varying tensor shapes cannot fragment the heap.

    ``threshold`` (bytes) defaults to ``INFEROX_MMAP_THRESHOLD``, else :data:`DEFAULT_MMAP_THRESHOLD`;
    ``0`` leaves glibc's adaptive threshold. Nothing is changed where the process was started with
    glibc's own ``MALLOC_MMAP_THRESHOLD_``, or on a C library other than glibc. Returns the
    threshold now in force, or ``None`` when nothing was changed. ``inferox serve`` and Ray
    replicas call it at start; call it once in your own long-running process that serves an
    :class:`~inferox.engine.Engine`. It is process-wide, so a library never calls it on import.
    """
    if threshold is None:
        value = mmap_threshold_from_env()  # range-checked there, naming the variable
    elif not 0 <= threshold <= _MAX_THRESHOLD:
        raise ConfigError(f"threshold must be between 0 and {_MAX_THRESHOLD} bytes, got {threshold}", field="threshold", value=threshold)
    else:
        value = threshold
    libc = _libc()
    if value == 0 or libc is None or os.environ.get(_GLIBC_ENV):
        return None
    if libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(value)) != 1:  # pragma: no cover - glibc refuses only out-of-range values
        return None
    return value
