"""``inferox.core.usable_cpus``: the affinity set capped by the cgroup's CPU quota.

The quota readers are exercised on real ``/proc`` and ``/sys`` trees laid out as the kernel lays
them out (cgroup v2 with ``cpu.max``, v1 with ``cpu.cfs_quota_us``, a container's namespaced
view), and the affinity half on this process's real affinity set, changed with
``os.sched_setaffinity`` in a child process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from inferox.core import cgroup_cpu_limit, usable_cpus

_V2_MOUNTINFO = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
_V1_MOUNTINFO = (
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
)


def _tree(root: Path, *, mountinfo: str, cgroup: str, files: dict[str, str]) -> Path:
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text(mountinfo)
    (root / "proc/self/cgroup").write_text(cgroup)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_cgroup_v2_quota_the_tightest_on_the_path_counts(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        mountinfo=_V2_MOUNTINFO,
        cgroup="0::/kubepods/pod1/ctr\n",
        files={
            "sys/fs/cgroup/kubepods/cpu.max": "400000 100000\n",  # the parent allows 4 CPUs
            "sys/fs/cgroup/kubepods/pod1/cpu.max": "max 100000\n",
            "sys/fs/cgroup/kubepods/pod1/ctr/cpu.max": "150000 100000\n",  # the container 1.5
        },
    )
    assert cgroup_cpu_limit(root=root) == pytest.approx(1.5)
    # 1.5 CPUs of quota round down: two busy threads would be throttled in turn every period.
    assert usable_cpus(root=root) == min(1, len(os.sched_getaffinity(0)))


def test_cgroup_v2_without_a_quota_leaves_the_affinity(tmp_path: Path) -> None:
    root = _tree(tmp_path, mountinfo=_V2_MOUNTINFO, cgroup="0::/user.slice\n", files={"sys/fs/cgroup/user.slice/cpu.max": "max 100000\n"})
    assert cgroup_cpu_limit(root=root) is None
    assert usable_cpus(root=root) == len(os.sched_getaffinity(0))


def test_cgroup_v1_quota_and_a_container_namespaced_view(tmp_path: Path) -> None:
    # The host's path leaks through /proc/self/cgroup while the mount's root is the container's
    # own cgroup: the quota is read at the mount point.
    mountinfo = "32 31 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
    root = _tree(
        tmp_path,
        mountinfo=mountinfo,
        cgroup="4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n",
        files={"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "50000\n", "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
    )
    assert cgroup_cpu_limit(root=root) == pytest.approx(0.5)
    assert usable_cpus(root=root) == 1  # never below one


def test_cgroup_v1_unlimited_and_unreadable_files_mean_no_limit(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        mountinfo=_V1_MOUNTINFO,
        cgroup="2:cpu,cpuacct:/batch\n",
        files={
            "sys/fs/cgroup/cpu,cpuacct/batch/cpu.cfs_quota_us": "-1\n",
            "sys/fs/cgroup/cpu,cpuacct/batch/cpu.cfs_period_us": "100000\n",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "garbage\n",
        },
    )
    assert cgroup_cpu_limit(root=root) is None
    assert cgroup_cpu_limit(root=tmp_path / "no-proc-here") is None


def test_affinity_set_of_a_real_process() -> None:
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no affinity call on this platform")
    first = min(os.sched_getaffinity(0))
    code = f"import os; os.sched_setaffinity(0, {{{first}}}); from inferox.core import usable_cpus; print(usable_cpus())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "1"
    assert usable_cpus() <= len(os.sched_getaffinity(0))
