"""XLA's CPU thread pools fitted to the machine, as far as XLA lets them be; imported by this
backend's modules before jax.

What can be controlled, and what cannot (jaxlib 0.10):

* XLA sizes its CPU pools (the ``tf_XLAEigen`` intra-op pool and the client's own) by the
  process's **affinity set**, once, when jax starts its CPU client (the first ``jax.devices()``
  or computation). No flag or API changes their size: ``intra_op_parallelism_threads`` is a
  TensorFlow session option, not an XLA flag — after another flag in ``XLA_FLAGS`` it is silently
  ignored, and alone it aborts the process (XLA reads a lone bare word as a flag *file*).
* A **cgroup CPU quota** below the affinity set (``docker --cpus 2`` on a 16-core host) is
  invisible to XLA. The one lever is ``--xla_cpu_multi_thread_eigen=false``, which runs Eigen's
  matrix multiplications and convolutions — the bulk of a transformer's work — single-threaded
  instead of across the oversubscribed pool. Inferox adds it to ``XLA_FLAGS`` when the CPUs the
  process may use (:func:`inferox.core.usable_cpus`) are fewer than its affinity set, provided
  jax's CPU client has not started yet and ``XLA_FLAGS`` does not already decide it. A model's
  ``threads`` option has no effect on jax: XLA's pools are the process's.
* Idle XLA pool threads sleep (Eigen's pool spins only briefly before blocking); there is no
  switch for that spin.

Everything is decided once per process, when this backend is first imported.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

__all__ = ["apply_defaults", "thread_info"]

FLAG = "--xla_cpu_multi_thread_eigen"
_lock = threading.Lock()


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - no affinity call on this platform
        return os.cpu_count() or 1


def started() -> bool:
    """Whether jax's backends (its CPU client) have started: after that, ``XLA_FLAGS`` is read."""
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # pragma: no cover - another jax: assume it has
        return True


def apply_defaults() -> bool:
    """Switch Eigen's multi-threading off when it would oversubscribe (see the module docstring);
    ``True`` when ``XLA_FLAGS`` was changed."""
    from inferox.core import usable_cpus

    with _lock:
        flags = os.environ.get("XLA_FLAGS", "")
        if FLAG in flags or started():
            return False
        if usable_cpus() >= _affinity():
            return False
        os.environ["XLA_FLAGS"] = f"{flags} {FLAG}=false".strip()
        return True


def thread_info() -> dict[str, Any]:
    """XLA's CPU pools as configured: the intra-op pool (the affinity set, XLA's rule), whether
    Eigen's dot and convolution kernels use it, and the CPUs the process may use."""
    from inferox.core import usable_cpus

    single = f"{FLAG}=false" in os.environ.get("XLA_FLAGS", "").replace("False", "false")
    return {"intra_op": 1 if single else _affinity(), "eigen_multi_threaded": not single, "usable_cpus": usable_cpus(), "xla_flags": os.environ.get("XLA_FLAGS", "")}


# On import, before jax is.
apply_defaults()
