"""How many CPUs this process may actually use: what every backend sizes its thread pools by.

``os.cpu_count()`` is the machine's CPU count, not the process's share of it. A process pinned to
two cores (``taskset``, ``os.sched_setaffinity``, a Kubernetes CPU manager) or throttled to two
CPUs' worth of time by its cgroup (``docker run --cpus 2``, a Kubernetes CPU limit) that sizes its
pools by ``os.cpu_count()`` on a 64-core host runs 64 threads per pool on two CPUs: they take turns
at every barrier of every parallel kernel, and spinning threads burn the quota while waiting.

:func:`usable_cpus` is the smaller of the affinity set and the cgroup's CPU quota (cgroup v2
``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; the tightest limit on the path from
the process's cgroup up to the hierarchy's root), rounded down — a quota of 1.5 CPUs gives 1: two
threads would be throttled in turn every period — and never below 1.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["cgroup_cpu_limit", "usable_cpus"]


def _affinity_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - macOS / Windows have no affinity call
        return os.cpu_count() or 1


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def _mounts(root: Path) -> list[tuple[str, str, str, str]]:
    """``(fstype, mount root, mount point, super options)`` of every cgroup mount (``/proc/self/mountinfo``)."""
    text = _read(root / "proc/self/mountinfo") or ""
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or len(rest) < 3 or rest[0] not in ("cgroup", "cgroup2"):
            continue
        out.append((rest[0], fields[3], fields[4], rest[2]))
    return out


def _cgroup_paths(root: Path) -> dict[str, str]:
    """The process's cgroup per controller (``"cpu"``) and, under the key ``""``, its v2 cgroup."""
    text = _read(root / "proc/self/cgroup") or ""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            out[""] = path
        for c in controllers.split(","):
            out[c] = path
    return out


def _levels(mount_point: str, mount_root: str, cgroup: str, root: Path) -> list[Path]:
    """The folders of ``cgroup`` and each of its ancestors, as seen under ``mount_point``.

    Inside a container the mount's root is the container's own cgroup; a path outside it (the
    host's view leaking through ``/proc/self/cgroup``) falls back to the mount point itself.
    """
    rel = cgroup
    if mount_root != "/" and (cgroup == mount_root or cgroup.startswith(mount_root.rstrip("/") + "/")):
        rel = cgroup[len(mount_root.rstrip("/")) :]
    elif mount_root != "/":
        rel = "/"
    base = root / mount_point.lstrip("/")
    parts = [p for p in rel.split("/") if p]
    return [base.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def _v2_limit(folder: Path) -> float | None:
    text = _read(folder / "cpu.max")
    if not text:
        return None
    quota, _, period = text.partition(" ")
    if quota == "max":
        return None
    try:
        q, p = int(quota), int(period or 100_000)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def _v1_limit(folder: Path) -> float | None:
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    try:
        q, p = int(quota or "-1"), int(period or "0")
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def cgroup_cpu_limit(*, root: str | os.PathLike[str] = "/") -> float | None:
    """The CPU time this process's cgroup allows, in CPUs (``1.5``: 150 ms per 100 ms), or ``None``
    when no quota is set (or there are no cgroups). The tightest quota between the process's cgroup
    and the root of its hierarchy counts, for cgroup v2 and v1 alike. ``root`` is where ``/proc``
    and ``/sys`` are found (for tests)."""
    base = Path(root)
    paths = _cgroup_paths(base)
    limits: list[float] = []
    for fstype, mount_root, mount_point, options in _mounts(base):
        if fstype == "cgroup2":
            cgroup = paths.get("")
            read = _v2_limit
        elif "cpu" in options.split(","):
            cgroup = paths.get("cpu")
            read = _v1_limit
        else:
            continue
        if cgroup is None:
            continue
        for folder in _levels(mount_point, mount_root, cgroup, base):
            limit = read(folder)
            if limit is not None:
                limits.append(limit)
    return min(limits) if limits else None


def usable_cpus(*, root: str | os.PathLike[str] = "/") -> int:
    """CPUs this process may use: its affinity set, capped by its cgroup's CPU quota (rounded
    down), at least 1. Backends size their default intra-op pools by it."""
    count = _affinity_count()
    limit = cgroup_cpu_limit(root=root)
    if limit is not None:
        count = min(count, max(1, math.floor(limit)))
    return max(1, count)
