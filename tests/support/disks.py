"""Small real disks for full-disk tests: tmpfs mounts of a chosen size, unmounted afterwards.

A tmpfs mount needs CAP_SYS_ADMIN in the test process's own mount namespace. Root has it (CI runs
as root, as does this repository's development machine). An unprivileged user namespace
(``unshare -rm``) would grant it only to a child process, whose mounts the test process — where
the code under test runs — cannot see; so without root the full-disk tests skip and say so.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest


class TmpfsDisks:
    """``disks.mount("384k")`` → an empty folder backed by a tmpfs of that size."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.mounted: list[Path] = []

    def mount(self, size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("a full-disk test mounts a small tmpfs, which needs root (CAP_SYS_ADMIN in this mount namespace); CI runs as root")
        mnt = self.workdir / f"disk-{uuid.uuid4().hex[:6]}"
        mnt.mkdir()
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mnt)], capture_output=True, text=True)
        if res.returncode != 0:
            # Root without CAP_SYS_ADMIN: an unprivileged container. Say what the kernel said.
            pytest.skip(f"cannot mount a {size} tmpfs here (root, but: {res.stderr.strip() or res.returncode})")
        self.mounted.append(mnt)
        return mnt

    __call__ = mount

    def unmount_all(self) -> None:
        for mnt in self.mounted:
            subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True)
        self.mounted.clear()
