"""The package cache (``INFEROX_CACHE_DIR``).

Layout::

    $INFEROX_CACHE_DIR/
      index.json              # one entry per package: size, source, created, last used, file mtimes
      index.json.lock
      packages/<key>/         # complete packages, each assembled atomically
      locks/<key>.lock        # held while a package is built: other processes wait, then reuse it
      locks/<key>.use         # shared flock held while a package is open: eviction skips it
      hub/                    # huggingface_hub download cache (files fetched by Hub builds)

* **Size limit** (``size_limit`` or ``INFEROX_CACHE_SIZE_LIMIT``, e.g. ``"10GB"``): after an insert,
  whole packages are evicted least-recently-used first until the total fits; a package that is
  open in any process (its ``.use`` file is share-locked) is never evicted.
* **One build per package**: builders of the same key serialise on a file lock; the ones that
  waited find the finished package and reuse it.
* **Integrity**: every file's sha256 is checked when a package enters the cache. Each later hit
  checks presence, sizes and modification times; a file whose mtime changed is re-hashed, and a
  corrupted entry is deleted and rebuilt.
* **Keys cover content**: a folder build's key is ``folder/<name>@<hash>`` where the hash covers
  the build options and the sha256 of every source file the build reads; a Hub build's is
  ``hub/<org>/<name>@<commit sha>``. A hit is checked against it (the package's recorded
  ``source`` must name the same hash, or repository and commit); a mismatch is rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from filelock import FileLock

from inferox.core.constants import ENV_CACHE_SIZE_LIMIT, cache_dir
from inferox.core.errors import ConfigError, InferoxError, ModelNotFoundError, PackageIntegrityError
from inferox.mlpkg._format import METADATA_FILE, TMP_PREFIX
from inferox.mlpkg._fs import clean_debris
from inferox.mlpkg._package import Package, load_package

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no open-package tracking
    fcntl = None  # type: ignore[assignment]

__all__ = ["CacheEntry", "PackageCache", "parse_size"]

log = logging.getLogger("inferox.mlpkg.cache")
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(value: str | int | None, *, field: str = ENV_CACHE_SIZE_LIMIT) -> int | None:
    """``"10GB"`` / ``"512MiB"`` / ``1000`` → bytes; ``None`` or ``""`` → no limit."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError("must not be negative", field=field, value=value)
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(value))
    if not m or m.group(2).upper() not in _UNITS:
        raise ConfigError(f"not a size: {value!r} (use e.g. 500MB, 10GB)", field=field, value=value)
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


@dataclass(frozen=True)
class CacheEntry:
    key: str
    path: Path
    size: int
    created: float
    last_used: float
    source: dict[str, Any]


class _Lease:
    """A shared lock on a package's ``.use`` file, held while the package is open."""

    def __init__(self, fh: IO[str] | None) -> None:
        self._fh = fh

    def release(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()  # closing the descriptor drops the flock


def _safe_key(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "--", key).strip("-") or "package"


class PackageCache:
    """Packages built or downloaded, keyed by source (``"hub/org/name@<sha>"``, ``"folder/<name>@<content hash>"``)."""

    def __init__(self, root: str | Path | None = None, *, size_limit: int | str | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else cache_dir()
        self.size_limit = parse_size(size_limit if size_limit is not None else os.environ.get(ENV_CACHE_SIZE_LIMIT))
        self.packages_dir = self.root / "packages"
        self.locks_dir = self.root / "locks"
        self.index_path = self.root / "index.json"
        for d in (self.packages_dir, self.locks_dir):
            d.mkdir(parents=True, exist_ok=True)

    # -- paths ------------------------------------------------------------------------------------
    def path_for(self, key: str) -> Path:
        return self.packages_dir / _safe_key(key)

    def _lock(self, key: str) -> FileLock:
        return FileLock(str(self.locks_dir / f"{_safe_key(key)}.lock"))

    def _use_file(self, key: str) -> Path:
        return self.locks_dir / f"{_safe_key(key)}.use"

    # -- the index ------------------------------------------------------------------------------------
    @contextmanager
    def _index(self) -> Iterator[dict[str, Any]]:
        """The index, locked across processes for a read-modify-write."""
        with FileLock(str(self.index_path) + ".lock"):
            data = self._read_index()
            yield data
            tmp = self.index_path.with_name(f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:6]}-index.json")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.index_path)

    def _read_index(self) -> dict[str, Any]:
        try:
            data = json.loads(self.index_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"version": 1, "entries": {}}
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("cache index %s is corrupt; rebuilding it from the packages on disk", self.index_path)
            return {"version": 1, "entries": self._scan()}
        if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
            return {"version": 1, "entries": self._scan()}
        return data

    def _scan(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for p in self.packages_dir.iterdir() if self.packages_dir.is_dir() else []:
            if p.is_dir() and not p.name.startswith(TMP_PREFIX):
                now = time.time()
                out[p.name] = {"key": p.name, "dir": p.name, "size": _tree_size(p), "created": now, "last_used": now, "source": {}, "mtimes": {}}
        return out

    def entries(self) -> list[CacheEntry]:
        """Every cached package (oldest use first)."""
        data = self._read_index()["entries"]
        out = [CacheEntry(v["key"], self.packages_dir / v["dir"], int(v["size"]), float(v["created"]), float(v["last_used"]), v.get("source") or {}) for v in data.values()]
        return sorted(out, key=lambda e: e.last_used)

    def total_size(self) -> int:
        return sum(e.size for e in self.entries())

    def __contains__(self, key: str) -> bool:
        return _safe_key(key) in self._read_index()["entries"] and self.path_for(key).is_dir()

    # -- integrity ----------------------------------------------------------------------------------------
    def _record(self, key: str, path: Path, source: dict[str, Any] | None) -> None:
        mtimes = {p.relative_to(path).as_posix(): p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}
        now = time.time()
        with self._index() as idx:
            idx["entries"][_safe_key(key)] = {
                "key": key, "dir": path.name, "size": _tree_size(path), "created": now, "last_used": now, "source": source or {}, "mtimes": mtimes,
            }

    def _valid(self, key: str, path: Path, source: dict[str, Any] | None = None) -> bool:
        entry = self._read_index()["entries"].get(_safe_key(key))
        try:
            pkg = load_package(path)
            stale = _source_mismatch(pkg.metadata.get("source"), source)
            if stale:
                log.warning("cached package %s was built from another source (%s); rebuilding it", key, stale)
                return False
            changed = entry is None or any(
                (path / f["path"]).stat().st_mtime_ns != entry.get("mtimes", {}).get(f["path"]) for f in pkg.files
            )
            if changed:
                load_package(path, verify=True)
                self._record(key, path, (entry or {}).get("source"))
        except (InferoxError, OSError) as exc:
            log.warning("cached package %s is corrupt (%s); rebuilding it", key, exc)
            return False
        return True

    def _remove_dir(self, path: Path) -> None:
        if path.exists():
            trash = path.with_name(f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:6]}-evict-{path.name}")
            os.rename(path, trash)
            shutil.rmtree(trash, ignore_errors=True)

    # -- main API ------------------------------------------------------------------------------------------
    def get(self, key: str) -> Path | None:
        """The cached package for ``key`` if present and intact (touching its last-use time)."""
        path = self.path_for(key)
        with self._lock(key):
            if path.is_dir() and self._valid(key, path):
                self._touch(key)
                return path
        return None

    def get_or_build(self, key: str, build: Callable[[Path], Path], *, source: dict[str, Any] | None = None) -> Path:
        """The package for ``key``, built by ``build(target)`` under the key's lock if missing or corrupt.

        Concurrent callers (threads or processes) with the same key wait for the one building,
        then reuse its package. A new package is hashed in full before it is recorded.
        """
        path = self.path_for(key)
        with self._lock(key):
            clean_debris(self.packages_dir)
            if path.is_dir():
                if self._valid(key, path, source):
                    self._touch(key)
                    return path
                self._remove_dir(path)
            build(path)
            pkg = load_package(path, verify=True)
            stale = _source_mismatch(pkg.metadata.get("source"), source)
            if stale:
                self._remove_dir(path)
                raise PackageIntegrityError(f"the package built for {key!r} does not record its source ({stale})", path=METADATA_FILE, field="source")
            self._record(key, path, source)
        self.evict(protect={key})
        return path

    def open(self, key: str, *, verify: bool = False) -> Package:
        """Load a cached package and hold it open (never evicted) until ``Package.close()``."""
        path = self.path_for(key)
        if not path.is_dir():
            raise ModelNotFoundError(key, available=[e.key for e in self.entries()])
        lease = self.lease(key)
        try:
            pkg = load_package(path, verify=verify)
        except BaseException:
            lease.release()
            raise
        pkg._lease = lease
        self._touch(key)
        return pkg

    def lease(self, key: str) -> _Lease:
        """Mark ``key`` open in this process; eviction skips it until the lease is released."""
        if fcntl is None:  # pragma: no cover
            return _Lease(None)
        fh = open(self._use_file(key), "a+", encoding="utf-8")
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
        return _Lease(fh)

    def is_open(self, key: str) -> bool:
        """Whether any process holds ``key`` open."""
        if fcntl is None:  # pragma: no cover
            return False
        with open(self._use_file(key), "a+", encoding="utf-8") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            return False

    def _touch(self, key: str) -> None:
        with self._index() as idx:
            entry = idx["entries"].get(_safe_key(key))
            if entry is not None:
                entry["last_used"] = time.time()

    def remove(self, key: str) -> bool:
        """Delete one cached package (refused while it is open); return whether it existed."""
        if self.is_open(key):
            raise InferoxError(f"package {key!r} is open; close it before removing it")
        with self._lock(key):
            path = self.path_for(key)
            existed = path.exists()
            self._remove_dir(path)
            with self._index() as idx:
                idx["entries"].pop(_safe_key(key), None)
        return existed

    def evict(self, *, protect: set[str] | None = None) -> list[str]:
        """Evict least-recently-used packages until the cache fits its size limit; return their keys."""
        if self.size_limit is None:
            return []
        protected = {_safe_key(k) for k in (protect or set())}
        evicted: list[str] = []
        with FileLock(str(self.root / "evict.lock")):
            entries = self.entries()
            total = sum(e.size for e in entries)
            for e in entries:
                if total <= self.size_limit:
                    break
                if _safe_key(e.key) in protected or self.is_open(e.key):
                    continue
                lock = self._lock(e.key)
                try:
                    lock.acquire(timeout=0)
                except Exception:  # noqa: BLE001 - filelock.Timeout: someone is building it right now
                    continue
                try:
                    self._remove_dir(e.path)
                    with self._index() as idx:
                        idx["entries"].pop(_safe_key(e.key), None)
                finally:
                    lock.release()
                total -= e.size
                evicted.append(e.key)
                log.info("evicted %s (%d bytes) from the package cache", e.key, e.size)
        return evicted

    def clear(self) -> None:
        """Remove every package that is not open."""
        for e in self.entries():
            if not self.is_open(e.key):
                self.remove(e.key)

    def resolve_hub_revision(self, source: Any, *, policy: Any = None) -> str:
        """The commit SHA of a Hub source's revision (a SHA is returned as it is)."""
        from inferox.mlpkg._hub import resolve_revision

        rev = source.revision
        if rev and re.fullmatch(r"[0-9a-f]{40}", rev):
            return str(rev)
        return resolve_revision(source, policy=policy)


#: Fields of a build's ``source`` that identify its content: a folder build's hash of what it
#: read, a Hub build's repository and commit. A cache hit must record the same values.
_IDENTITY = ("content_sha256", "repo_id", "sha")


def _source_mismatch(recorded: Any, expected: dict[str, Any] | None) -> str | None:
    """Why a package recording ``recorded`` is not the build of ``expected`` (``None``: it is)."""
    if not expected:
        return None
    fields = ("content_sha256",) if expected.get("content_sha256") else tuple(f for f in _IDENTITY if expected.get(f) is not None)
    have = recorded if isinstance(recorded, dict) else {}
    for f in fields:
        if have.get(f) != expected[f]:
            return f"{f} {str(have.get(f))[:16]!r}, expected {str(expected[f])[:16]!r}"
    return None


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
