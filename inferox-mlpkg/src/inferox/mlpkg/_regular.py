"""Reading only regular files: a FIFO, socket or device inside a package (or a build's source) is
refused by name instead of blocking the reader forever."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO, Any

from inferox.core.errors import PackageFormatError

__all__ = ["file_kind", "open_regular"]


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words (for error messages)."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def open_regular(path: Path, *, rel: str | None = None, encoding: str | None = None) -> IO[Any]:
    """Open ``path`` for reading only if it is a regular file (a symlink to one is fine).

    Opening a FIFO for reading blocks until a writer appears, and reading a device never ends, so
    the file is opened non-blocking and checked with ``fstat`` on the descriptor itself (no race
    with a swap between check and open); anything else is a :class:`PackageFormatError` naming it.
    Missing files raise ``FileNotFoundError`` as ``open()`` would.
    """
    name = rel or str(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise PackageFormatError(f"{name} is {file_kind(mode)}, not a regular file; packages are read only from regular files", path=name)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "r" if encoding else "rb", encoding=encoding)
    except BaseException:
        os.close(fd)
        raise
