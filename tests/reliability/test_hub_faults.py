"""The Hub server dying mid-download, and a full disk under the download cache.

Real huggingface_hub against real olah (offline, on loopback) through the fault-injecting proxy of
``tests/mlpkg/hubserver.py``. "Dying" means the proxy cuts the weights file after a few megabytes
and then stops listening (every retry and resume is refused) — what a crashed or restarted server
looks like to a client. Afterwards: a typed :class:`DownloadError`, no package and no corrupt file
under its final name, the package cache still usable, and a later build (server back) succeeds.
"""

from __future__ import annotations

import errno
import threading
from pathlib import Path
from typing import Any

import pytest

from inferox.core.errors import DownloadError, InferoxError, InferoxIOError
from inferox.mlpkg import DownloadPolicy, PackageCache, build_package, load_package
from tests.support.disks import TmpfsDisks
from tests.support.hub import FaultProxy, OlahServer
from tests.support.model_files import mlp_files
from tests.support.timing import scaled

#: Timeouts a busy machine's olah answers within (no test here provokes one: the faults are cut
#: connections, a dead server and a full disk).
FAST = DownloadPolicy(max_retries=2, backoff_base=0.01, backoff_max=0.05, connect_timeout=scaled(10), read_timeout=scaled(30))
#: One attempt: huggingface_hub's own retry loop (5 HEAD retries, up to 8 s apart, which
#: DownloadPolicy does not reach) already spends ~25 s on a dead server.
ONCE = DownloadPolicy(max_retries=0, backoff_base=0.01, backoff_max=0.05, connect_timeout=scaled(10), read_timeout=scaled(30))


class DyingProxy(FaultProxy):
    """A proxy that, once it has cut a file short (``faults.drop``), stops listening for good."""

    def __init__(self, upstream_port: int) -> None:
        super().__init__(upstream_port)
        self.died = threading.Event()

    def _send(self, h: Any, status: int, headers: Any, body: bytes, method: str, *, cut: int | None = None) -> None:
        super()._send(h, status, headers, body, method, cut=cut)
        if cut is not None and not self.died.is_set():
            self.died.set()
            threading.Thread(target=self.stop, daemon=True).start()


def test_hub_dying_mid_file_is_a_download_error_and_a_later_build_succeeds(
    olah: OlahServer, hub_env: pytest.MonkeyPatch, tmp_path: Path, figures: Any
) -> None:
    files = mlp_files([1024, 3000, 2])  # ~12 MB: huggingface_hub writes 10 MiB chunks
    size = len(files["model.safetensors"])
    repo_id = olah.repos.new(files, prefix="rel")[0]
    cache = PackageCache(tmp_path / "cache")
    download = tmp_path / "dl"
    dying = DyingProxy(olah.port)
    dying.faults.drop["model.safetensors"] = (size // 2, 1)
    hub_env.setenv("HF_ENDPOINT", dying.endpoint)
    try:
        with pytest.raises(DownloadError) as ei:
            build_package(f"hf://{repo_id}", cache=cache, endpoint=dying.endpoint, policy=ONCE, download_dir=download)
    finally:
        dying.stop()
    assert dying.died.is_set()  # the server really died mid-file
    err = ei.value
    assert type(err) is DownloadError and err.code == "DOWNLOAD_ERROR" and err.repo_id == repo_id
    assert err.filename == "model.safetensors" and "refused" in str(err).lower(), str(err)
    # nothing corrupt under a final name: no package, no cache entry, no full-named partial weights
    assert cache.entries() == []
    assert not list(cache.packages_dir.glob("*")) if cache.packages_dir.exists() else True
    finished = [p for p in download.rglob("model.safetensors") if p.is_file()] if download.exists() else []
    assert all(p.stat().st_size == size and p.read_bytes() == files["model.safetensors"] for p in finished)
    # the server comes back: the same cache builds the package, complete and verified
    back = FaultProxy(olah.port)
    hub_env.setenv("HF_ENDPOINT", back.endpoint)
    try:
        path = build_package(f"hf://{repo_id}", cache=cache, endpoint=back.endpoint, policy=FAST, download_dir=download)
    finally:
        back.stop()
    pkg = load_package(path, verify=True)
    assert (path / "model.safetensors").read_bytes() == files["model.safetensors"]
    assert pkg.source_repo_id == repo_id and [e.key.split("@")[0] for e in cache.entries()] == [f"hub/{repo_id}"]
    figures.record(file_bytes=size, cut_after_bytes=size // 2, faults_injected=1, retries_refused=len(dying.requests()))


def test_full_disk_while_downloading_into_the_cache(
    olah: OlahServer, proxy: FaultProxy, hub_env: pytest.MonkeyPatch, tmpfs: TmpfsDisks, tmp_path: Path, figures: Any
) -> None:
    disk = tmpfs("1m")
    big = mlp_files([256, 1200, 16])  # ~1.3 MB of weights: the download cannot fit
    repo_big = olah.repos.new(big, prefix="rel")[0]
    hub_env.setenv("HF_ENDPOINT", proxy.endpoint)
    cache = PackageCache(disk / "cache")
    with pytest.raises(InferoxError) as ei:
        build_package(f"hf://{repo_big}", cache=cache, endpoint=proxy.endpoint, policy=FAST, download_dir=disk / "dl")
    err = ei.value
    assert isinstance(err, (InferoxIOError, DownloadError)), err
    assert err.code in ("IO_ERROR", "DOWNLOAD_ERROR")
    if isinstance(err, InferoxIOError):
        assert err.errno == errno.ENOSPC
    assert "no space left" in str(err).lower()
    assert cache.entries() == []
    # the partial download is only ever a resumable ``.incomplete`` blob, never under its final name
    assert not [p for p in (disk / "dl").rglob("model.safetensors")]
    # the cache is usable at once: a package that fits builds into the same cache on the same disk
    small = mlp_files([4, 8, 3])
    repo_small = olah.repos.new(small, prefix="rel")[0]
    for p in (disk / "dl").rglob("*"):  # free the space the partial download took (what a user would do)
        if p.is_file() and p.name.endswith(".incomplete"):
            p.unlink()
    path = build_package(f"hf://{repo_small}", cache=cache, endpoint=proxy.endpoint, policy=FAST, download_dir=disk / "dl")
    assert load_package(path, verify=True).source_repo_id == repo_small
    assert (path / "model.safetensors").read_bytes() == small["model.safetensors"]
    figures.record(disk_bytes=2**20, download_bytes=len(big["model.safetensors"]), error_code=err.code)


def test_full_disk_while_assembling_into_the_cache(
    olah: OlahServer, proxy: FaultProxy, hub_env: pytest.MonkeyPatch, tmpfs: TmpfsDisks, tmp_path: Path, figures: Any
) -> None:
    disk = tmpfs("1m")
    big = mlp_files([256, 1200, 16])  # the download (on the normal disk) works; the package does not fit
    repo_big = olah.repos.new(big, prefix="rel")[0]
    hub_env.setenv("HF_ENDPOINT", proxy.endpoint)
    cache = PackageCache(disk / "cache")
    with pytest.raises(InferoxIOError) as ei:
        build_package(f"hf://{repo_big}", cache=cache, endpoint=proxy.endpoint, policy=FAST, download_dir=tmp_path / "dl")
    err = ei.value
    assert err.code == "IO_ERROR" and err.errno == errno.ENOSPC and err.path
    assert cache.entries() == []
    leftovers = [p for p in (disk / "cache").rglob("*") if p.is_file() and p.suffix in (".safetensors", ".json")]
    assert leftovers == [], leftovers  # no half-written package in the cache
    small = mlp_files([4, 8, 3])
    repo_small = olah.repos.new(small, prefix="rel")[0]
    path = build_package(f"hf://{repo_small}", cache=cache, endpoint=proxy.endpoint, policy=FAST, download_dir=tmp_path / "dl")
    assert load_package(path, verify=True).source_repo_id == repo_small
    assert [e.key.split("@")[0] for e in cache.entries()] == [f"hub/{repo_small}"]
    figures.record(disk_bytes=2**20, package_bytes=len(big["model.safetensors"]), error_code=err.code)
