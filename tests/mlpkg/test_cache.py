"""The package cache: one build per key, corruption detection, LRU eviction that spares open
packages, an index that survives the process, and size parsing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from inferox.core.errors import ConfigError, InferoxError, ModelNotFoundError
from inferox.mlpkg import PackageCache, build_from_folder, load_package
from inferox.mlpkg._cache import parse_size
from tests.support.model_files import write_mlp_folder


class Counter:
    """A builder that builds an MLP package from ``src`` and counts its calls."""

    def __init__(self, src: Path) -> None:
        self.src = src
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, target: Path) -> Path:
        with self.lock:
            self.calls += 1
        from inferox.mlpkg._build import _assemble, _folder_files

        return _assemble(_folder_files(self.src), target, name=target.name, version=None, description="", architecture=None, backends=None,
                         source={"type": "folder"}, allow_pickle=False, golden=False)


@pytest.fixture
def cache(tmp_path: Path) -> PackageCache:
    return PackageCache(tmp_path / "cache")


@pytest.fixture
def builder(mlp_dir: Path) -> Counter:
    return Counter(mlp_dir)


def test_builds_once_then_reuses(cache: PackageCache, builder: Counter) -> None:
    p1 = cache.get_or_build("k/one", builder)
    p2 = cache.get_or_build("k/one", builder)
    assert p1 == p2 == cache.path_for("k/one") and builder.calls == 1
    assert "k/one" in cache and "k/two" not in cache
    assert cache.get("k/one") == p1 and cache.get("k/two") is None
    assert cache.total_size() == sum(f.stat().st_size for f in p1.rglob("*") if f.is_file())


def test_default_root_is_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFEROX_CACHE_DIR", str(tmp_path / "envcache"))
    monkeypatch.setenv("INFEROX_CACHE_SIZE_LIMIT", "2MB")
    c = PackageCache()
    assert c.root == tmp_path / "envcache" and c.size_limit == 2_000_000


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "json"])
def test_corrupted_entry_is_detected_and_rebuilt(cache: PackageCache, builder: Counter, damage: str) -> None:
    path = cache.get_or_build("k", builder)
    w = path / ("config.json" if damage == "json" else "model.safetensors")
    data = bytearray(w.read_bytes())
    if damage == "flip":
        data[-5] ^= 0x40
        w.write_bytes(bytes(data))
    elif damage == "truncate":
        w.write_bytes(bytes(data[:-9]))
    elif damage == "delete":
        w.unlink()
    else:
        w.write_text("{" + " " * (len(data) - 1))  # same size, broken JSON
    assert cache.get("k") is None  # detected
    again = cache.get_or_build("k", builder)
    assert again == path and builder.calls == 2
    assert load_package(again, verify=True)


def test_touched_but_intact_entry_is_rehashed_not_rebuilt(cache: PackageCache, builder: Counter) -> None:
    path = cache.get_or_build("k", builder)
    w = path / "model.safetensors"
    st = w.stat()
    os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    assert cache.get_or_build("k", builder) == path and builder.calls == 1


def test_lru_eviction_of_whole_packages(tmp_path: Path, mlp_dir: Path) -> None:
    probe = PackageCache(tmp_path / "probe")
    size = probe.total_size() or _size_of(probe.get_or_build("x", Counter(mlp_dir)))
    cache = PackageCache(tmp_path / "cache", size_limit=int(size * 2.5))
    b = Counter(mlp_dir)
    cache.get_or_build("a", b)
    cache.get_or_build("b", b)
    cache.get("a")  # a is now more recently used than b
    cache.get_or_build("c", b)
    assert sorted(e.key for e in cache.entries()) == ["a", "c"] and not cache.path_for("b").exists()
    assert cache.total_size() <= cache.size_limit  # type: ignore[operator]


def test_open_packages_are_never_evicted(tmp_path: Path, mlp_dir: Path) -> None:
    size = _size_of(PackageCache(tmp_path / "probe").get_or_build("x", Counter(mlp_dir)))
    cache = PackageCache(tmp_path / "cache", size_limit=int(size * 1.5))
    b = Counter(mlp_dir)
    cache.get_or_build("a", b)
    pkg = cache.open("a")
    assert cache.is_open("a") and pkg.name == "a"
    cache.get_or_build("b", b)  # over the limit, but "a" is open and "b" is the new one
    assert sorted(e.key for e in cache.entries()) == ["a", "b"]
    with pytest.raises(InferoxError, match="is open"):
        cache.remove("a")
    pkg.close()
    assert not cache.is_open("a")
    assert cache.evict() == ["a"] and [e.key for e in cache.entries()] == ["b"]
    with pytest.raises(ModelNotFoundError) as ei:
        cache.open("a")
    assert ei.value.code == "MODEL_NOT_FOUND" and ei.value.available == ["b"]


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from inferox.mlpkg import PackageCache
    c = PackageCache({root!r})
    with c.open("a") as pkg:
        print("OPEN", [e.key for e in c.entries()], flush=True)
        time.sleep(60)
    """
)


def test_open_in_another_process_and_index_survives_processes(cache: PackageCache, builder: Counter) -> None:
    cache.get_or_build("a", builder)
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER.format(root=str(cache.root))], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("OPEN") and "'a'" in line  # the other process sees this one's index
        assert cache.is_open("a")
        cache.size_limit = 1
        assert cache.evict() == []  # open elsewhere: kept
    finally:
        proc.kill()
        proc.wait()
    assert not cache.is_open("a")  # the lock died with the process
    assert cache.evict() == ["a"]


def test_concurrent_builders_in_threads_build_once(cache: PackageCache, builder: Counter) -> None:
    paths: list[Path] = []
    threads = [threading.Thread(target=lambda: paths.append(cache.get_or_build("same", builder))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert builder.calls == 1 and len(set(paths)) == 1 and len(paths) == 4


def test_corrupt_index_is_rebuilt_from_disk(cache: PackageCache, builder: Counter) -> None:
    cache.get_or_build("a", builder)
    cache.index_path.write_text("{broken")
    assert [e.path.name for e in cache.entries()] == ["a"]
    cache.index_path.write_text(json.dumps({"entries": []}))
    assert [e.path.name for e in cache.entries()] == ["a"]
    assert cache.get_or_build("a", builder) == cache.path_for("a") and builder.calls == 1  # rehashed, kept


def test_remove_and_clear(cache: PackageCache, builder: Counter) -> None:
    cache.get_or_build("a", builder)
    cache.get_or_build("b", builder)
    assert cache.remove("a") is True and cache.remove("a") is False
    cache.clear()
    assert cache.entries() == [] and not any(cache.packages_dir.iterdir())


def test_folder_builds_go_to_the_cache_by_default(tmp_path: Path, mlp_dir: Path, no_backends: Any) -> None:
    path = build_from_folder(mlp_dir, name="viacache")
    assert path.parent == PackageCache().packages_dir  # $INFEROX_CACHE_DIR (set by the root conftest)
    assert build_from_folder(mlp_dir, name="viacache") == path  # same content: reused
    write_mlp_folder(mlp_dir, [4, 5, 3], seed=9)
    changed = build_from_folder(mlp_dir, name="viacache")  # new content: a new entry (issue 14, item 9)
    assert changed != path and load_package(changed).config["layer_sizes"] == [4, 5, 3]


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("", None), (1000, 1000), ("10GB", 10**10), ("1.5 MiB", 1572864), ("512kb", 512000), ("7", 7)])
def test_parse_size(value: Any, expected: int | None) -> None:
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", ["ten", "5 parsecs", -1])
def test_parse_size_errors(value: Any) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_size(value)
    assert ei.value.field == "INFEROX_CACHE_SIZE_LIMIT"


def _size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
