"""Filesystem helpers: hashing with progress, fsync, and atomic assembly of package folders.

A package is assembled in a temporary folder *beside* its target (same filesystem, so the final
``rename`` is atomic), fsynced, and renamed into place. A crash, a kill or a full disk leaves only a
``.inferox-tmp-*`` folder, which the next build in that folder removes.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from inferox.core.errors import InferoxError, from_os_error
from inferox.mlpkg._format import TMP_PREFIX
from inferox.mlpkg._regular import file_kind, open_regular

__all__ = [
    "atomic_package_dir",
    "clean_debris",
    "file_entry",
    "file_kind",
    "fsync_tree",
    "open_regular",
    "progress_enabled",
    "sha256_file",
]

_CHUNK = 1 << 20
#: Files at least this large get a progress bar while hashed.
_PROGRESS_MIN_BYTES = 64 << 20


def progress_enabled() -> bool:
    """Progress bars only on a terminal, and never when ``INFEROX_NO_PROGRESS`` or ``HF_HUB_DISABLE_PROGRESS_BARS`` is set."""
    if os.environ.get("INFEROX_NO_PROGRESS") or os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS"):
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def sha256_file(path: Path, *, progress: bool | None = None, rel: str | None = None) -> str:
    """Hex sha256 of a regular file, streamed, with a progress bar for large files on a terminal."""
    h = hashlib.sha256()
    bar: Any = None
    with open_regular(path, rel=rel) as fh:
        size = os.fstat(fh.fileno()).st_size
        show = (progress_enabled() if progress is None else progress) and size >= _PROGRESS_MIN_BYTES
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"sha256 {path.name}", leave=False)
        try:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    return h.hexdigest()


def file_entry(root: Path, path: Path) -> dict[str, Any]:
    """``{"path", "size", "sha256"}`` for ``metadata.json``; paths are POSIX and relative to ``root``."""
    return {"path": path.relative_to(root).as_posix(), "size": path.stat().st_size, "sha256": sha256_file(path)}


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` so a rename publishes durable contents."""
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def normalize_modes(root: Path) -> None:
    """Give every file ``0o666`` and folder ``0o777`` less the umask, as ``open()`` would.

    Some writers (safetensors) create files ``0o600``; a package should be readable by whoever may
    read its folder, whichever library wrote each file.
    """
    mask = os.umask(0o022)
    os.umask(mask)
    os.chmod(root, 0o777 & ~mask)
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            os.chmod(os.path.join(dirpath, d), 0o777 & ~mask)
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o666 & ~mask)


def clean_debris(parent: Path, *, min_age_s: float = 0.0) -> list[Path]:
    """Remove ``.inferox-tmp-*`` leftovers of interrupted builds in ``parent``; return what went.

    A folder whose owning process is still alive (its pid is in the name) is left alone, so two
    builds in one folder never delete each other's work.
    """
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    now = time.time()
    for entry in parent.iterdir():
        if not entry.name.startswith(TMP_PREFIX):
            continue
        pid = _pid_of(entry.name)
        if pid is not None and pid != os.getpid() and _alive(pid):
            continue
        try:
            if now - entry.lstat().st_mtime < min_age_s:
                continue
        except FileNotFoundError:
            continue
        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() and not entry.is_symlink() else entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _pid_of(name: str) -> int | None:
    parts = name[len(TMP_PREFIX):].split("-")
    try:
        return int(parts[0])
    except (ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's live process
        return True
    # A zombie (killed child not yet reaped) is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ")[-1][:1] != "Z"
    except OSError:  # pragma: no cover - no /proc (macOS)
        return True


@contextmanager
def atomic_package_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it replaces ``target`` atomically.

    On any failure the temporary folder is removed and the exception propagates (``OSError`` as an
    Inferox IO error naming the file); ``target`` is left as it was.
    """
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise from_os_error(exc, path=str(parent)) from exc
    clean_debris(parent)
    tmp = parent / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-{target.name}"
    tmp.mkdir()
    try:
        yield tmp
        normalize_modes(tmp)
        fsync_tree(tmp)
        if target.exists():
            # Move the old package aside first: rename(2) cannot replace a non-empty folder.
            old = parent / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-old-{target.name}"
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
        _fsync_dir(parent)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, InferoxError):
            if exc.errno == errno.ENOSPC:
                raise from_os_error(exc, path=str(exc.filename or target)) from exc
            raise from_os_error(exc) from exc
        raise
