"""Thread pools that fit the CPUs a server may use: the real ``inferox serve`` in a subprocess,
confined to one CPU by a cgroup CPU quota (where this machine lets a test make one) or by its
affinity set, must size its pools to one CPU with spin-waiting off — as the framework reports
them in the model's metadata, and as the threads the process really created show: a server left
to its defaults runs exactly the threads one told ``--threads 1`` does."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.test_cli_zero_step import serving
from tests.conftest import have

#: Runs the server's command with its affinity set to one CPU and, when given, inside a cgroup.
_CONFINE = (
    "import os, sys\n"
    "if sys.argv[1]:\n"
    "    with open(sys.argv[1], 'w') as f: f.write(str(os.getpid()))\n"
    "if sys.argv[2]:\n"
    "    os.sched_setaffinity(0, {int(sys.argv[2])})\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


def _cpu_cgroup_v1() -> Path | None:
    """A writable cgroup v1 ``cpu`` hierarchy (cgroup v2 needs the ``cpu`` controller delegated)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(rest) >= 3 and rest[0] == "cgroup" and "cpu" in rest[2].split(","):
            return Path(fields[4])
    return None


@pytest.fixture
def one_cpu() -> Iterator[tuple[str, str]]:
    """``(cgroup.procs file, affinity cpu)`` confining a process to one CPU: a cgroup with a quota
    of one CPU where the machine allows it (the affinity set stays whole, so only the quota can
    tell), else an affinity set of one CPU."""
    root = _cpu_cgroup_v1()
    group = root / f"inferox-test-{uuid.uuid4().hex[:8]}" if root is not None else None
    try:
        if group is None:
            raise OSError("no cgroup v1 cpu hierarchy")
        group.mkdir()
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text("100000")
    except OSError:
        group = None
    if group is None and len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU already: nothing to confine")
    try:
        yield (str(group / "cgroup.procs"), "") if group is not None else ("", str(min(os.sched_getaffinity(0))))
    finally:
        if group is not None:
            for _ in range(50):  # the cgroup can be removed once its processes have exited
                try:
                    group.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_a_confined_server_sizes_its_pools_to_one_cpu(backend: str, one_cpu: tuple[str, str], minilm_package: Path) -> None:
    if not have({"torch": "torch", "onnx": "onnxruntime"}[backend]):
        pytest.skip(f"{backend} is not installed")
    procs, cpu = one_cpu
    prefix = [sys.executable, "-c", _CONFINE, procs, cpu]
    texts = {"model": "minilm", "input": ["a sentence long enough to use a parallel kernel or two"] * 4, "encoding_format": "float"}
    counts: list[int] = []
    for flags in ([], ["--threads", "1"]):
        with serving([str(minilm_package), "--backend", backend, "--no-batching", *flags], prefix=prefix) as (url, proc):
            params = httpx.get(f"{url}/v2/models/minilm").json()["parameters"]
            assert params["threads_usable_cpus"] == 1, params
            assert params["threads_intra_op"] == 1 and params["threads_inter_op"] == 1 and params["threads_spinning"] is False, params
            for _ in range(3):
                assert httpx.post(f"{url}/v1/embeddings", json=texts, timeout=120).status_code == 200
            counts.append(_threads(proc.pid))
    # The defaults created no thread a one-thread server does not have: no pool beyond the CPU. (Not
    # equality: the data plane's tokenising pool starts its threads on demand, so either server may
    # hold one more Python thread when it is counted; an intra-op pool sized past the CPU would put
    # the defaults above the one-thread server.)
    assert counts[0] <= counts[1], counts
