"""Atomic assembly under faults: a process killed mid-build, a full disk, debris from crashes."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from inferox.core.errors import InferoxIOError, PackageFormatError
from inferox.mlpkg import PackageCache, build_package, clean_debris, load_package
from tests.support.disks import TmpfsDisks
from tests.support.model_files import write_mlp_folder

_KILL_ME = textwrap.dedent(
    """
    import dataclasses, os, pathlib, time
    from inferox.core import hookimpl
    from inferox.core.plugins import get_registry
    from inferox.mlpkg import build_package

    def stall(config, weights, inputs, **options):  # a reference that reports that it runs, then hangs until killed
        pathlib.Path({marker!r}).write_text(str(os.getpid()))
        time.sleep(120)

    registry = get_registry()
    stalling = dataclasses.replace(registry.schema("mlp"), name="stallmlp", model_types=("stallmlp",), reference=stall)

    class Stall:
        @hookimpl
        def inferox_contract_version(self):
            return "1.1"

        @hookimpl
        def inferox_register_schemas(self, register):
            register(stalling)

    registry.register_plugin(Stall(), name="stall")
    build_package({src!r}, output_dir={out!r}, name="victim")
    """
)


def test_process_killed_mid_build_leaves_no_half_package(tmp_path: Path, no_backends: Any) -> None:
    src = write_mlp_folder(tmp_path / "src", extra={"model_type": "stallmlp"})
    out = tmp_path / "out"
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_ME.format(src=str(src), out=str(out), marker=str(marker))], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not marker.exists():  # the golden outputs are being computed: the package is half assembled
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.05)
    debris = [p for p in out.iterdir() if p.name.startswith(".inferox-tmp-")]
    assert len(debris) == 1 and (debris[0] / "model.safetensors").exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert not (out / "victim").exists()  # no half package under the real name
    assert debris[0].exists()  # the debris of the kill is still there ...
    path = build_package(write_mlp_folder(tmp_path / "src2"), output_dir=out, name="victim")
    assert load_package(path, verify=True).name == "victim"
    assert sorted(p.name for p in out.iterdir()) == ["victim"]  # ... and the next build cleaned it


def test_clean_debris_spares_live_builders(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = tmp_path / f".inferox-tmp-{sleeper.pid}-aa-x"
        dead = tmp_path / ".inferox-tmp-999999999-bb-y"
        odd = tmp_path / ".inferox-tmp-nopid"
        mine = tmp_path / f".inferox-tmp-{os.getpid()}-cc-z"
        for d in (live, dead, mine):
            d.mkdir()
        odd.write_text("stray file")
        (tmp_path / "keep").mkdir()
        removed = clean_debris(tmp_path)
        assert sorted(p.name for p in removed) == sorted([dead.name, odd.name, mine.name])
        assert live.exists() and (tmp_path / "keep").exists()
        assert clean_debris(tmp_path / "missing") == []
    finally:
        sleeper.kill()
        sleeper.wait()


def test_failed_rebuild_keeps_the_old_package(tmp_path: Path, no_backends: Any) -> None:
    src = write_mlp_folder(tmp_path / "src")
    path = build_package(src, output_dir=tmp_path / "out")
    good = (path / "model.safetensors").read_bytes()
    (src / "model.safetensors").write_bytes(good[:-50])
    with pytest.raises(PackageFormatError):
        build_package(src, output_dir=tmp_path / "out")
    assert load_package(path, verify=True) and (path / "model.safetensors").read_bytes() == good


def test_error_inside_assembly_removes_the_temporary_folder(tmp_path: Path, no_backends: Any) -> None:
    from inferox.core.errors import PackageNotFoundError

    src = write_mlp_folder(tmp_path / "src")
    (src / "vocab.txt").symlink_to(tmp_path / "gone")  # fails while copying, mid-assembly
    with pytest.raises(PackageNotFoundError) as ei:
        build_package(src, output_dir=tmp_path / "out")
    assert ei.value.path == str(src / "vocab.txt")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.fixture
def small_disk(tmpfs: TmpfsDisks) -> Path:
    """A 384 KiB disk."""
    return tmpfs("384k")


def test_full_disk_during_assembly(small_disk: Path, tmp_path: Path, no_backends: Any) -> None:
    big = write_mlp_folder(tmp_path / "big", [128, 640, 64])  # ~500 KB of weights: does not fit
    assert (big / "model.safetensors").stat().st_size > 384 * 1024
    with pytest.raises(InferoxIOError) as ei:
        build_package(big, output_dir=small_disk)
    assert ei.value.code == "IO_ERROR" and ei.value.errno == errno.ENOSPC and ei.value.path
    assert "no space left" in str(ei.value)
    assert list(small_disk.iterdir()) == []  # neither a half package nor debris
    small = write_mlp_folder(tmp_path / "small")
    path = build_package(small, output_dir=small_disk)  # the disk is usable again at once
    assert load_package(path, verify=True).name == "small"


def test_full_disk_leaves_the_cache_usable(small_disk: Path, tmp_path: Path, no_backends: Any) -> None:
    cache = PackageCache(small_disk / "cache")
    big = write_mlp_folder(tmp_path / "big", [128, 640, 64])
    with pytest.raises(InferoxIOError) as ei:
        build_package(big, cache=cache)
    assert ei.value.errno == errno.ENOSPC
    assert cache.entries() == []
    path = build_package(write_mlp_folder(tmp_path / "small"), cache=cache)
    assert [e.key.split("@")[0] for e in cache.entries()] == ["folder/small"] and load_package(path, verify=True)


def test_progress_bars_only_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib
    import io

    from inferox.mlpkg import _fs

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    monkeypatch.delenv("INFEROX_NO_PROGRESS", raising=False)
    assert _fs.progress_enabled() is False  # pytest's captured stderr is not a terminal
    monkeypatch.setattr(sys, "stderr", Tty())
    assert _fs.progress_enabled() is True
    monkeypatch.setenv("INFEROX_NO_PROGRESS", "1")
    assert _fs.progress_enabled() is False
    monkeypatch.setattr(_fs, "_PROGRESS_MIN_BYTES", 0)
    f = tmp_path / "blob"
    f.write_bytes(b"x" * 3_000_000)
    bar_out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", bar_out)
    assert _fs.sha256_file(f, progress=True) == hashlib.sha256(f.read_bytes()).hexdigest()
    assert "sha256 blob" in bar_out.getvalue()
