"""Downloading a repository from the Hugging Face Hub (or any Hub-compatible server) through
``huggingface_hub``, with retries, timeouts, resumption and typed errors.

* The revision (branch, tag or SHA) is resolved to a commit SHA first; every file is then fetched
  at that SHA, so a branch moving mid-download cannot mix two commits.
* Transient failures (connect / read timeouts, dropped connections, 5xx, 429) are retried per file
  with exponential backoff and full jitter, up to :attr:`DownloadPolicy.max_retries`. Within one
  attempt ``huggingface_hub`` itself resumes a dropped transfer with an HTTP ``Range`` request.
* Files already complete in the download cache are not fetched again by a retry or a later build.
* Hub errors become inferox errors: :class:`~inferox.core.errors.RepositoryNotFoundError`,
  :class:`~inferox.core.errors.RevisionNotFoundError`, :class:`~inferox.core.errors.HubAuthError`,
  :class:`~inferox.core.errors.GatedRepoError`, else :class:`~inferox.core.errors.DownloadError`.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from inferox.core.constants import ENV_HF_TOKEN, cache_dir
from inferox.core.errors import (
    ConfigError,
    DownloadError,
    GatedRepoError,
    HubAuthError,
    InferoxError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from inferox.mlpkg._fs import progress_enabled

__all__ = ["DownloadPolicy", "HubDownload", "HubSource", "download_repo", "map_hub_error", "parse_hub_source", "resolve_revision", "split_hub_source"]

T = TypeVar("T")
HUB_SCHEME = "hf://"
DEFAULT_REVISION = "main"


@dataclass(frozen=True)
class HubSource:
    """A repository on a Hub: ``repo_id`` (``"org/name"``), a revision (branch, tag or SHA),
    an optional token (else ``HF_TOKEN``), an optional endpoint (else ``HF_ENDPOINT`` / huggingface.co)
    and optional ``allow_patterns`` globs selecting files."""

    repo_id: str
    revision: str | None = None
    token: str | None = field(default=None, repr=False)
    endpoint: str | None = None
    allow_patterns: tuple[str, ...] | None = None
    repo_type: str = "model"

    def __post_init__(self) -> None:
        if "@" in self.repo_id:
            raise DownloadError(
                f"invalid repo id {self.repo_id!r}: a revision is not part of the id; write HubSource({self.repo_id.split('@')[0]!r}, "
                f"revision={self.repo_id.split('@', 1)[1]!r}) or the source 'hf://{self.repo_id}'",
                repo_id=self.repo_id,
            )
        parts = self.repo_id.split("/")
        if len(parts) > 2 or not all(p.strip() for p in parts):
            raise DownloadError(f"invalid repo id {self.repo_id!r}: expected 'org/name'", repo_id=self.repo_id)


def parse_hub_source(source: str) -> str:
    """``"hf://org/name"`` → ``"org/name"`` (a ``@revision`` suffix is kept; see :func:`split_hub_source`)."""
    return source[len(HUB_SCHEME):] if source.startswith(HUB_SCHEME) else source


def split_hub_source(source: str, revision: str | None = None) -> tuple[str, str | None]:
    """``"hf://org/name@rev"`` → ``("org/name", "rev")``: the common ``@revision`` spelling.

    A revision both in the source and in ``revision`` must agree (:class:`ConfigError` otherwise).
    """
    repo = parse_hub_source(source)
    if "@" not in repo:
        return repo, revision
    repo, _, rev = repo.partition("@")
    if not rev or "@" in rev:
        raise ConfigError(f"cannot read a revision from {source!r}: write 'hf://org/name@<branch, tag or sha>'", field="source", value=source)
    if revision is not None and revision != rev:
        raise ConfigError(f"{source!r} names revision {rev!r} but revision={revision!r} was given too; give one", field="revision", value=revision)
    return repo, rev


@dataclass(frozen=True)
class DownloadPolicy:
    """Retry and timeout settings. Backoff before retry *n* (1-based) is a random delay in
    ``[0, min(backoff_max, backoff_base * 2**(n-1))]`` (exponential backoff with full jitter)."""

    max_retries: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_workers: int = 8

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        cap = min(self.backoff_max, self.backoff_base * (2 ** max(0, attempt - 1)))
        return (rng or random).uniform(0, cap)


@dataclass
class HubDownload:
    """The result of :func:`download_repo`: the commit SHA and ``{repo path: local file}``."""

    repo_id: str
    revision: str
    sha: str
    files: dict[str, Path]
    attempts: dict[str, int] = field(default_factory=dict)


def _httpx() -> Any:
    """The HTTP library huggingface_hub uses (``httpx2`` in 2.x, ``httpx`` in 1.x)."""
    import importlib

    try:
        return importlib.import_module("httpx2")
    except ImportError:  # pragma: no cover - huggingface_hub 1.x
        return importlib.import_module("httpx")


def _timeout(policy: DownloadPolicy) -> Any:
    return _httpx().Timeout(policy.read_timeout, connect=policy.connect_timeout)


_timeout_lock = threading.Lock()


@contextmanager
def _download_timeout(policy: DownloadPolicy) -> Iterator[None]:
    """huggingface_hub reads its body-download timeout from a module constant; set it for this call."""
    from huggingface_hub import constants

    with _timeout_lock:
        old = constants.HF_HUB_DOWNLOAD_TIMEOUT
        constants.HF_HUB_DOWNLOAD_TIMEOUT = _timeout(policy)
        try:
            yield
        finally:
            constants.HF_HUB_DOWNLOAD_TIMEOUT = old


def _tqdm_class() -> Any:
    from tqdm.auto import tqdm

    class _Tqdm(tqdm):  # type: ignore[misc,valid-type]
        """tqdm that stays quiet when stderr is not a terminal."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if not progress_enabled():
                kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return _Tqdm


def _is_transient(exc: BaseException) -> bool:
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    httpx = _httpx()
    if isinstance(exc, OfflineModeIsEnabled):
        return False
    if isinstance(exc, LocalEntryNotFoundError):
        # huggingface_hub wraps "the HEAD request failed" in this; transient if the cause was.
        cause = exc.__cause__ or exc.__context__
        return cause is None or _is_transient(cause)
    if isinstance(exc, EntryNotFoundError):
        return False
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        return status is None or status >= 500 or status in (408, 429)
    if isinstance(exc, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)):
        return True
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    # huggingface_hub's size consistency check after a short body.
    return isinstance(exc, OSError) and "Consistency check failed" in str(exc)


def _status(exc: BaseException) -> int | None:
    resp = getattr(exc, "response", None)
    return getattr(resp, "status_code", None)


def map_hub_error(exc: BaseException, *, repo_id: str, revision: str | None, filename: str | None = None, token_given: bool = True) -> InferoxError:
    """The inferox error for a ``huggingface_hub`` / transport exception (the original kept as cause)."""
    from huggingface_hub import errors as hf

    err: InferoxError
    rev = revision or DEFAULT_REVISION
    if isinstance(exc, InferoxError):
        return exc
    if isinstance(exc, hf.GatedRepoError):
        err = GatedRepoError(f"repository {repo_id!r} is gated and this token has not been granted access", repo_id=repo_id, revision=rev, filename=filename)
    elif isinstance(exc, hf.RevisionNotFoundError):
        err = RevisionNotFoundError(f"revision {rev!r} not found in repository {repo_id!r}", repo_id=repo_id, revision=rev)
    elif isinstance(exc, hf.RepositoryNotFoundError):
        hint = "" if token_given else " (if it is private, pass token= or set HF_TOKEN)"
        err = RepositoryNotFoundError(f"repository {repo_id!r} not found{hint}", repo_id=repo_id, revision=rev)
    elif isinstance(exc, hf.EntryNotFoundError):
        err = DownloadError(f"file {filename!r} not found in {repo_id}@{rev}", repo_id=repo_id, revision=rev, filename=filename)
    elif isinstance(exc, hf.OfflineModeIsEnabled):
        err = DownloadError(f"cannot download {repo_id}: offline mode is enabled (unset HF_HUB_OFFLINE)", repo_id=repo_id, revision=rev, filename=filename)
    elif _status(exc) in (401, 403):
        what = "refused the token" if token_given else "requires a token: pass token= or set HF_TOKEN"
        err = HubAuthError(f"the Hub {what} for {repo_id!r} (HTTP {_status(exc)})", repo_id=repo_id, revision=rev, filename=filename)
    else:
        what = f"{filename!r} from " if filename else ""
        err = DownloadError(f"downloading {what}{repo_id}@{rev} failed: {type(exc).__name__}: {exc}", repo_id=repo_id, revision=rev, filename=filename)
    err.__cause__ = exc
    return err


class _Retrier:
    def __init__(self, policy: DownloadPolicy, *, repo_id: str, revision: str | None, token_given: bool, sleep: Callable[[float], None] = time.sleep) -> None:
        self.policy = policy
        self.repo_id = repo_id
        self.revision = revision
        self.token_given = token_given
        self.sleep = sleep
        self.attempts: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, fn: Callable[[], T], *, what: str, filename: str | None = None) -> T:
        attempt = 0
        while True:
            attempt += 1
            with self._lock:
                self.attempts[what] = attempt
            try:
                return fn()
            except Exception as exc:
                if not _is_transient(exc) or attempt > self.policy.max_retries:
                    err = map_hub_error(exc, repo_id=self.repo_id, revision=self.revision, filename=filename, token_given=self.token_given)
                    if attempt > 1 and isinstance(err, DownloadError) and type(err) is DownloadError:
                        err.message = f"{err.message} (gave up after {attempt} attempts)"
                        err.args = (err.message,)
                    raise err from exc
                self.sleep(self.policy.delay(attempt))


def resolve_token(token: str | None) -> str | None:
    return token or os.environ.get(ENV_HF_TOKEN) or None


def resolve_endpoint(endpoint: str | None) -> str | None:
    """``endpoint``, else ``HF_ENDPOINT`` read now (huggingface_hub reads it once, at import)."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None


def _resolve(api: Any, source: HubSource, revision: str, retry: _Retrier, policy: DownloadPolicy) -> str:
    def _info() -> str:
        info = api.model_info(source.repo_id, revision=revision, timeout=_timeout(policy))
        assert info.sha is not None
        return str(info.sha)

    try:
        return retry(_info, what="<resolve>")
    except RepositoryNotFoundError as exc:
        # Some servers answer a missing revision like a missing repository: look at the default
        # branch to tell the two apart.
        if revision == DEFAULT_REVISION:
            raise
        try:
            api.model_info(source.repo_id, revision=DEFAULT_REVISION, timeout=_timeout(policy))
        except Exception:  # noqa: BLE001 - the repository itself is missing: keep the first error
            raise exc from None
        raise RevisionNotFoundError(
            f"revision {revision!r} not found in repository {source.repo_id!r}", repo_id=source.repo_id, revision=revision
        ) from exc


def resolve_revision(source: HubSource, *, policy: DownloadPolicy | None = None) -> str:
    """The commit SHA ``source.revision`` (branch, tag or SHA; default ``main``) points at."""
    from huggingface_hub import HfApi

    policy = policy or DownloadPolicy()
    token = resolve_token(source.token)
    revision = source.revision or DEFAULT_REVISION
    retry = _Retrier(policy, repo_id=source.repo_id, revision=revision, token_given=token is not None)
    return _resolve(HfApi(endpoint=resolve_endpoint(source.endpoint), token=token), source, revision, retry, policy)


def download_repo(
    source: HubSource,
    *,
    policy: DownloadPolicy | None = None,
    download_dir: Path | None = None,
    file_filter: Callable[[list[str]], list[str]] | None = None,
) -> HubDownload:
    """Resolve ``source.revision`` to a SHA and download its files (those matching the patterns).

    ``download_dir`` is a ``huggingface_hub`` cache folder (default ``$INFEROX_CACHE_DIR/hub``),
    so retries and later builds reuse what is complete.
    """
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils._paths import filter_repo_objects

    policy = policy or DownloadPolicy()
    token = resolve_token(source.token)
    revision = source.revision or DEFAULT_REVISION
    retry = _Retrier(policy, repo_id=source.repo_id, revision=revision, token_given=token is not None)
    endpoint = resolve_endpoint(source.endpoint)
    api = HfApi(endpoint=endpoint, token=token)
    hub_cache = download_dir or (cache_dir() / "hub")

    sha = _resolve(api, source, revision, retry, policy)

    def _list() -> list[tuple[str, int | None]]:
        entries = api.list_repo_tree(source.repo_id, revision=sha, recursive=True)
        return [(e.path, e.size) for e in entries if isinstance(e, RepoFile)]

    listing = retry(_list, what="<list>")
    paths = [p for p, _ in listing]
    if source.allow_patterns:
        paths = list(filter_repo_objects(paths, allow_patterns=list(source.allow_patterns)))
    if file_filter is not None:
        paths = file_filter(paths)
    tqdm_class = _tqdm_class()

    def _fetch(path: str) -> tuple[str, Path]:
        def _one() -> str:
            return str(
                hf_hub_download(
                    source.repo_id,
                    path,
                    revision=sha,
                    cache_dir=hub_cache,
                    endpoint=endpoint,
                    token=token,
                    etag_timeout=policy.connect_timeout,
                    tqdm_class=tqdm_class,
                )
            )

        return path, Path(retry(_one, what=path, filename=path))

    files: dict[str, Path] = {}
    with _download_timeout(policy):
        if len(paths) <= 1 or policy.max_workers <= 1:
            files.update(_fetch(p) for p in paths)
        else:
            with ThreadPoolExecutor(max_workers=policy.max_workers, thread_name_prefix="inferox-dl") as pool:
                files.update(pool.map(_fetch, paths))
    return HubDownload(repo_id=source.repo_id, revision=revision, sha=sha, files=files, attempts=dict(retry.attempts))


def iter_patterns(patterns: Sequence[str] | None) -> tuple[str, ...] | None:
    return tuple(patterns) if patterns else None
