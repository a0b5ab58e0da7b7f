"""Torch's thread pools sized to the machine; imported by this backend's modules before torch.

When one of this backend's modules is what imports torch, Inferox chooses torch's thread settings,
once:

* OpenMP's wait policy ``PASSIVE`` (``OMP_WAIT_POLICY``, read when torch loads its OpenMP runtime,
  i.e. at ``import torch``): an idle pool thread then sleeps instead of spinning for ~300,000
  iterations after every parallel region — CPU that a busy server's other requests need;
* ``torch.set_num_threads`` = the CPUs this process may use (:func:`inferox.core.usable_cpus`:
  affinity and cgroup quota; torch's own default counts the machine's cores, not the process's
  share) and one inter-op thread (Inferox never forks graph work onto torch's inter-op pool).

A program that imported torch first, or sized its pools with ``OMP_NUM_THREADS`` /
``MKL_NUM_THREADS``, keeps its own settings. A model's ``threads`` option sets
``torch.set_num_threads`` (process-wide: torch has one intra-op pool).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Any

__all__ = ["OWNS_TORCH", "apply_defaults", "thread_info"]

#: Whether this backend imports torch (the program did not before): only then are its thread
#: defaults Inferox's to choose.
OWNS_TORCH = "torch" not in sys.modules
#: Environment variables through which the user has already sized torch's pools.
USER_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
if OWNS_TORCH:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
#: The OpenMP wait policy torch's runtime starts with (``None``: unknown, torch was imported first).
WAIT_POLICY: str | None = (os.environ.get("OMP_WAIT_POLICY") or "ACTIVE").upper() if OWNS_TORCH else None

_applied = False
_lock = threading.Lock()


def apply_defaults() -> None:
    """Size torch's pools to the CPUs this process may use (once; see the module docstring)."""
    global _applied
    with _lock:
        if _applied:
            return
        _applied = True
        if not OWNS_TORCH or any(v in os.environ for v in USER_THREAD_VARS):
            return
        import torch

        from inferox.core import usable_cpus

        torch.set_num_threads(usable_cpus())
        # Only possible before any inter-op work has started; too late is no harm (the pool is idle).
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)


def thread_info() -> dict[str, Any]:
    """Torch's pools as torch reports them now (process-wide)."""
    import torch

    from inferox.core import usable_cpus

    info: dict[str, Any] = {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads(), "usable_cpus": usable_cpus()}
    if WAIT_POLICY is not None:
        info["spinning"] = WAIT_POLICY != "PASSIVE"
        info["omp_wait_policy"] = WAIT_POLICY
    return info
