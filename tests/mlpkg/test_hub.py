"""Building packages from a real Hub-compatible server (olah, offline, on loopback) through
huggingface_hub, with a fault-injecting proxy in front of it for tokens, stalls and dropped
connections. Nothing here mocks huggingface_hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from inferox.core.errors import (
    DownloadError,
    GatedRepoError,
    HubAuthError,
    PackageNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from inferox.mlpkg import DownloadPolicy, HubSource, PackageCache, build_package, load_package
from tests.support.hub import Hub
from tests.support.model_files import mlp_files
from tests.support.net import free_port
from tests.support.timing import scaled

pytestmark = pytest.mark.hub

#: Retries without waiting; timeouts that a busy machine's olah answers within (connect_timeout is
#: also huggingface_hub's wait for a file's metadata): no test with this policy provokes a timeout.
FAST = DownloadPolicy(max_retries=2, backoff_base=0.01, backoff_max=0.05, connect_timeout=scaled(10), read_timeout=scaled(30))


def build(hub: Hub, repo: str | HubSource, out: Path | None, **kw: object) -> Path:
    kw.setdefault("policy", FAST)
    kw.setdefault("download_dir", hub.download_dir)
    src = repo if isinstance(repo, HubSource) else f"hf://{repo}"
    return build_package(src, output_dir=out, endpoint=hub.endpoint, **kw)  # type: ignore[arg-type]


def test_small_repository_builds_and_records_the_sha(hub: Hub, tmp_path: Path) -> None:
    repo_id, sha = hub.new_repo({**mlp_files(), "README.md": "# tiny\n"})
    path = build(hub, repo_id, tmp_path / "out")
    pkg = load_package(path, verify=True)
    assert path == tmp_path / "out" / repo_id.split("/")[1]
    assert pkg.revision == sha and pkg.source_repo_id == repo_id
    assert pkg.architecture == "mlp" and pkg.config["layer_sizes"] == [4, 8, 3]
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["source"]["requested_revision"] == "main"
    assert (path / "README.md").read_text() == "# tiny\n"


def test_real_minilm_files_from_the_hub(hub: Hub, minilm_repo: tuple[str, str], minilm_dir: Path, tmp_path: Path) -> None:
    repo_id, sha = minilm_repo
    path = build(hub, repo_id, tmp_path / "out", name="minilm")
    pkg = load_package(path, verify=True)
    assert pkg.revision == sha
    assert pkg.architecture == "bert" and pkg.model_info["hidden_size"] == 384 and pkg.model_info["num_layers"] == 6
    assert pkg.model_info["vocab_size"] == 30522 and pkg.parameters == 22713728
    assert (pkg.pooling, pkg.normalize, pkg.max_seq_length) == ("mean", True, 256)
    assert pkg.tokenizer_path is not None and (path / "1_Pooling" / "config.json").is_file()
    assert (path / "model.safetensors").read_bytes() == (minilm_dir / "model.safetensors").read_bytes()
    assert [s.name for s in pkg.output_specs] == ["last_hidden_state", "pooler_output", "sentence_embedding"]


def test_revision_by_branch_tag_and_sha(hub: Hub, tmp_path: Path) -> None:
    repo_id, sha_main = hub.new_repo(mlp_files([4, 8, 3]))
    hub.repos.tag(repo_id, "v1")
    sha_dev = hub.repos.commit(repo_id, mlp_files([5, 6, 2]), branch="dev")
    assert sha_dev != sha_main
    by_branch = load_package(build(hub, repo_id, tmp_path / "b", revision="dev"))
    assert by_branch.revision == sha_dev and by_branch.config["layer_sizes"] == [5, 6, 2]
    by_tag = load_package(build(hub, repo_id, tmp_path / "t", revision="v1"))
    assert by_tag.revision == sha_main and by_tag.config["layer_sizes"] == [4, 8, 3]
    by_sha = load_package(build(hub, repo_id, tmp_path / "s", revision=sha_dev))
    assert by_sha.revision == sha_dev and by_sha.metadata["source"]["requested_revision"] == sha_dev


def test_missing_repository(hub: Hub, tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFoundError) as ei:
        build(hub, "org/does-not-exist", tmp_path / "out")
    assert ei.value.code == "REPOSITORY_NOT_FOUND" and ei.value.repo_id == "org/does-not-exist"
    assert "HF_TOKEN" in str(ei.value)  # no token given: the message says a private repo needs one
    assert not (tmp_path / "out" / "does-not-exist").exists()


def test_missing_revision(hub: Hub, tmp_path: Path) -> None:
    repo_id, _ = hub.new_repo(mlp_files())
    with pytest.raises(RevisionNotFoundError) as ei:
        build(hub, repo_id, tmp_path / "out", revision="no-such-branch")
    assert ei.value.code == "REVISION_NOT_FOUND" and ei.value.revision == "no-such-branch" and ei.value.repo_id == repo_id


def test_token_required_and_missing_then_given(hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo_id, sha = hub.new_repo(mlp_files())
    hub.proxy.faults.token = "s3cret"
    with pytest.raises(HubAuthError) as ei:
        build(hub, repo_id, tmp_path / "a")
    assert ei.value.code == "UNAUTHORIZED" and ei.value.repo_id == repo_id and "HF_TOKEN" in str(ei.value)
    with pytest.raises(HubAuthError) as wrong:
        build(hub, repo_id, tmp_path / "b", token="wrong")
    assert "refused the token" in str(wrong.value)
    pkg = load_package(build(hub, repo_id, tmp_path / "c", token="s3cret"))
    assert pkg.revision == sha
    assert all(e.auth == "Bearer s3cret" for e in hub.proxy.requests() if e.status != 401)
    monkeypatch.setenv("HF_TOKEN", "s3cret")  # the token may come from the environment too
    assert load_package(build(hub, repo_id, tmp_path / "d")).revision == sha


def test_gated_repository(hub: Hub, tmp_path: Path) -> None:
    repo_id, _ = hub.new_repo(mlp_files())
    hub.proxy.faults.gated = True
    with pytest.raises(GatedRepoError) as ei:
        build(hub, repo_id, tmp_path / "out", token="t")
    assert ei.value.code == "GATED_REPOSITORY" and ei.value.repo_id == repo_id
    assert isinstance(ei.value, HubAuthError)


def test_connection_dropped_mid_file_resumes_with_range(hub: Hub, tmp_path: Path) -> None:
    # huggingface_hub writes in 10 MiB chunks, so a resumable cut must come after the first one.
    files = mlp_files([1024, 3000, 2])
    size = len(files["model.safetensors"])
    assert size > 11_000_000
    repo_id, _ = hub.new_repo(files)
    hub.proxy.faults.drop["model.safetensors"] = (11_000_000, 1)
    path = build(hub, repo_id, tmp_path / "out")
    pkg = load_package(path, verify=True)  # complete and uncorrupted
    assert (path / "model.safetensors").read_bytes() == files["model.safetensors"]
    gets = hub.proxy.requests("GET", "model.safetensors")
    assert gets[0].range is None and gets[0].status == 200
    resumed = [g for g in gets if g.range]
    assert len(resumed) == 1 and resumed[0].status == 206  # resumed, not restarted
    start = int(resumed[0].range.removeprefix("bytes=").rstrip("-"))  # type: ignore[union-attr]
    assert 0 < start <= 11_000_000
    assert pkg.weights_path.stat().st_size == size


def test_server_stalls_then_clear_error_after_retries(hub: Hub, tmp_path: Path) -> None:
    repo_id, _ = hub.new_repo(mlp_files())
    hub.proxy.faults.stall["*"] = 30
    policy = DownloadPolicy(max_retries=2, backoff_base=0.01, backoff_max=0.02, connect_timeout=0.5, read_timeout=0.3)
    with pytest.raises(DownloadError) as ei:
        build(hub, repo_id, tmp_path / "out", policy=policy)
    assert type(ei.value) is DownloadError and ei.value.code == "DOWNLOAD_ERROR" and ei.value.repo_id == repo_id
    assert "gave up after 3 attempts" in str(ei.value) and "Timeout" in str(ei.value)
    assert len(hub.proxy.requests(path_part="/api/models/")) == 3  # one try + two retries
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_stall_once_is_retried_and_the_build_completes(hub: Hub, tmp_path: Path) -> None:
    repo_id, sha = hub.new_repo(mlp_files())
    hub.proxy.faults.stall["model.safetensors"] = 30
    hub.proxy.faults.stall_times["model.safetensors"] = 1
    # The stalled request must time out (30 s stall), every other one must not: scaled, below 30 s.
    policy = DownloadPolicy(max_retries=3, backoff_base=0.01, backoff_max=0.02, connect_timeout=scaled(2), read_timeout=scaled(2))
    pkg = load_package(build(hub, repo_id, tmp_path / "out", policy=policy), verify=True)
    assert pkg.revision == sha
    assert len(hub.proxy.requests(path_part="model.safetensors")) >= 2


def test_unicode_and_special_character_file_names(hub: Hub, tmp_path: Path) -> None:
    odd = {"données/é.txt": "é", "name with spaces.json": "{}", "weird#&+=,;@.txt": "w", "日本語/ファイル.md": "ja", "emoji-😀.txt": "e"}
    repo_id, _ = hub.new_repo({**mlp_files(), **odd})
    path = build(hub, repo_id, tmp_path / "out")
    pkg = load_package(path, verify=True)
    listed = {f["path"] for f in pkg.files}
    for rel, text in odd.items():
        assert rel in listed
        assert (path / rel).read_text(encoding="utf-8") == text


@pytest.mark.slow  # ~50 s: olah answers each of the ~2,000 requests by reading git objects
def test_more_than_a_thousand_small_files(hub: Hub, tmp_path: Path) -> None:
    # Spread over folders: olah lists a folder per lookup, so one flat folder of 1,000 is quadratic there.
    many = {f"data/{i // 40:02d}/part-{i:04d}.txt": f"{i}\n" for i in range(1005)}
    repo_id, _ = hub.new_repo({**mlp_files(), **many})
    path = build(hub, repo_id, tmp_path / "out", policy=DownloadPolicy(max_retries=2, backoff_base=0.01, max_workers=16))
    pkg = load_package(path, verify=True)
    assert sum(1 for f in pkg.files if f["path"].startswith("data/")) == 1005
    assert (path / "data" / "25" / "part-1004.txt").read_text() == "1004\n"


def test_empty_repository(hub: Hub, tmp_path: Path) -> None:
    repo_id, _ = hub.new_repo(None)  # git init, no commit: no revision to resolve
    with pytest.raises((RepositoryNotFoundError, RevisionNotFoundError)) as ei:
        build(hub, repo_id, tmp_path / "out")
    assert ei.value.repo_id == repo_id
    readme_only, _ = hub.new_repo({"README.md": "nothing here"})
    with pytest.raises(PackageNotFoundError) as ei2:
        build(hub, readme_only, tmp_path / "out")
    assert ei2.value.code == "PACKAGE_NOT_FOUND" and ei2.value.path == "config.json"


def test_repository_without_weights(hub: Hub, tmp_path: Path) -> None:
    files = mlp_files()
    del files["model.safetensors"]
    repo_id, _ = hub.new_repo({**files, "tokenizer.json": "{}"})
    with pytest.raises(PackageNotFoundError) as ei:
        build(hub, repo_id, tmp_path / "out")
    assert ei.value.field == "weights" and ei.value.path == "model.safetensors"
    assert not (tmp_path / "out" / repo_id.split("/")[1]).exists()


def test_allow_patterns_and_hub_source_object(hub: Hub, tmp_path: Path) -> None:
    repo_id, sha = hub.new_repo({**mlp_files(), "README.md": "r", "notes/extra.txt": "x"})
    src = HubSource(repo_id, revision="main", allow_patterns=("*.json", "*.safetensors"))
    path = build(hub, src, tmp_path / "out")
    assert not (path / "README.md").exists() and not (path / "notes").exists()
    assert load_package(path).revision == sha
    assert not hub.proxy.requests("GET", "README.md")  # filtered before downloading


def test_cache_builds_once_per_revision(hub: Hub, tmp_path: Path) -> None:
    repo_id, sha = hub.new_repo(mlp_files())
    cache = PackageCache(tmp_path / "cache")
    p1 = build(hub, repo_id, None, cache=cache)
    p2 = build(hub, repo_id, None, cache=cache, revision=sha)
    assert p1 == p2 and p1.parent == cache.packages_dir and sha in p1.name
    assert load_package(p1).metadata["source"]["requested_revision"] == "main"
    assert len(hub.proxy.requests("GET", "model.safetensors")) == 1
    assert [e.key for e in cache.entries()] == [f"hub/{repo_id}@{sha}"]


def test_offline_mode_is_a_clear_error(hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    repo_id, _ = hub.new_repo(mlp_files())
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DownloadError) as ei:
        build(hub, repo_id, tmp_path / "out")
    assert "offline" in str(ei.value) and ei.value.repo_id == repo_id


_CONCURRENT = textwrap.dedent(
    """
    import sys
    from huggingface_hub import constants
    constants.HF_HUB_OFFLINE = False
    from inferox.mlpkg import DownloadPolicy, PackageCache, build_package
    path = build_package("hf://{repo}", endpoint="{endpoint}", cache=PackageCache({cache!r}),
                         download_dir={dl!r}, policy=DownloadPolicy(max_retries=1, backoff_base=0.01))
    print("PATH", path)
    """
)


def test_two_processes_building_the_same_package_build_once(hub: Hub, tmp_path: Path) -> None:
    repo_id, sha = hub.new_repo(mlp_files([64, 128, 8]))
    hub.proxy.faults.delay["model.safetensors"] = 1.0  # widen the window in which both are building
    script = _CONCURRENT.format(repo=repo_id, endpoint=hub.endpoint, cache=str(tmp_path / "cache"), dl=str(tmp_path / "dl"))
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=scaled(120)) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    paths = {line.split(" ", 1)[1] for out, _ in outs for line in out.splitlines() if line.startswith("PATH ")}
    assert len(paths) == 1
    assert len(hub.proxy.requests("GET", "model.safetensors")) == 1  # one build, the other waited and reused it
    pkg = load_package(paths.pop(), verify=True)
    assert pkg.revision == sha
    assert np.asarray(pkg.config["layer_sizes"]).tolist() == [64, 128, 8]


def test_transient_server_errors_are_retried(hub: Hub, tmp_path: Path) -> None:
    repo_id, sha = hub.new_repo(mlp_files())
    hub.proxy.faults.fail["/api/models/"] = (503, 2)
    hub.proxy.faults.fail["config.json"] = (502, 1)
    pkg = load_package(build(hub, repo_id, tmp_path / "out"), verify=True)
    assert pkg.revision == sha
    assert [e.status for e in hub.proxy.requests(path_part="/api/models/")][:3] == [503, 503, 200]


def test_connection_refused_is_a_download_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(DownloadError) as ei:
        build_package("hf://org/x", output_dir=tmp_path, endpoint=endpoint, policy=FAST, download_dir=tmp_path / "dl")
    assert type(ei.value) is DownloadError and ei.value.repo_id == "org/x" and "gave up after 3 attempts" in str(ei.value)


def test_backoff_is_exponential_with_full_jitter() -> None:
    import random

    policy = DownloadPolicy(backoff_base=0.5, backoff_max=3.0)
    rng = random.Random(7)
    for attempt, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)]:
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays) and max(delays) > 0.8 * cap  # spread over [0, cap]


def test_invalid_repo_ids() -> None:
    for bad in ("a/b/c", "org/", " /x"):
        with pytest.raises(DownloadError) as ei:
            HubSource(bad)
        assert ei.value.repo_id == bad


def test_endpoint_from_hf_endpoint_read_at_call_time(hub: Hub, tmp_path: Path) -> None:
    # huggingface_hub read HF_ENDPOINT at import, before the fixture set it; inferox reads it per call.
    repo_id, sha = hub.new_repo(mlp_files())
    path = build_package(f"hf://{repo_id}", output_dir=tmp_path / "out", policy=FAST, download_dir=hub.download_dir)
    assert load_package(path).revision == sha and hub.proxy.requests(path_part=repo_id)
