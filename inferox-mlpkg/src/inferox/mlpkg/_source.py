"""What a model source is, and the package (or repository) folder to serve it from.

``inferox serve``, ``inferox run`` and ``Engine.load`` take any of:

* a **package** folder (``metadata.json``) — served as it is;
* a **model repository** (``NAME/metadata.json`` or ``NAME/VERSION/metadata.json``) — served as it
  is (``inferox serve`` only: it holds several models);
* a **model folder** — a Hugging Face or sentence-transformers folder (``config.json`` and
  weights) — or a ``model.toml``;
* a **Hub repository** ``hf://org/name`` or ``hf://org/name@revision``.

:func:`resolve_source` packs the last two implicitly into the package cache, with the same checks
as ``inferox pack`` and the cache's key rules (a folder's key covers the sha256 of every file the
build reads, a Hub build's the resolved commit), so a second start reuses the package, and a
folder whose weights changed is packed again. Packing always goes to the cache, never to
``INFEROX_PACKAGE_DIR``: a package there has no key to tell a changed source from the same one.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferox.core.errors import PackageNotFoundError
from inferox.mlpkg._format import CONFIG_FILE, METADATA_FILE
from inferox.mlpkg._hub import HUB_SCHEME

__all__ = ["SOURCE_KINDS", "ResolvedSource", "is_model_repository", "resolve_source", "source_kind"]

log = logging.getLogger("inferox.mlpkg")

#: What :func:`source_kind` may answer.
SOURCE_KINDS = ("package", "repository", "folder", "toml", "hub")
_TOML = "model.toml"
#: Said in the error for a path with nothing servable: what was looked for.
LOOKED_FOR = (
    f"a package ({METADATA_FILE}), a model folder ({CONFIG_FILE} and weights), a {_TOML}, "
    f"or a model repository (NAME/{METADATA_FILE} or NAME/VERSION/{METADATA_FILE})"
)


@dataclass(frozen=True)
class ResolvedSource:
    """A model source and what to serve it from."""

    #: The source as given (a path or ``hf://org/name[@revision]``).
    source: str
    #: One of :data:`SOURCE_KINDS`.
    kind: str
    #: The package folder to load (packed into the cache for ``folder``, ``toml`` and ``hub``), or
    #: the repository folder.
    path: Path
    #: Whether the source was packed (or found already packed) into the package cache.
    packed: bool = False

    @property
    def is_repository(self) -> bool:
        return self.kind == "repository"


def _is_package(path: Path) -> bool:
    return (path / METADATA_FILE).is_file()


def is_model_repository(path: Path) -> bool:
    """Whether ``path`` is a folder of packages (``NAME/`` or ``NAME/VERSION/``), as served by
    ``inferox serve`` (Triton's model repository layout)."""
    try:
        children = [c for c in path.iterdir() if c.is_dir() and not c.name.startswith(".")]
    except OSError:
        return False
    for child in children:
        if _is_package(child):
            return True
        try:
            if any(v.is_dir() and _is_package(v) for v in child.iterdir()):
                return True
        except OSError:
            continue
    return False


def source_kind(source: str | os.PathLike[str]) -> str:
    """Which of :data:`SOURCE_KINDS` ``source`` is, without packing anything.

    A path that does not exist, or holds nothing servable, is a
    :class:`~inferox.core.errors.PackageNotFoundError` naming the path and what was looked for.
    """
    text = os.fspath(source)
    if isinstance(text, str) and text.startswith(HUB_SCHEME):
        return "hub"
    path = Path(text).expanduser()
    if not path.exists():
        raise PackageNotFoundError(
            f"no such package, model folder or model repository: {text} (Hub models are written {HUB_SCHEME}org/name)", path=str(text), field="source"
        )
    if path.is_file():
        if path.name == _TOML or path.suffix == ".toml":
            return "toml"
    elif _is_package(path):
        return "package"
    elif (path / CONFIG_FILE).is_file():
        return "folder"
    elif (path / _TOML).is_file():
        return "toml"
    elif is_model_repository(path):
        return "repository"
    raise PackageNotFoundError(f"nothing servable at {text}: looked for {LOOKED_FOR}", path=str(text), field="source")


def resolve_source(
    source: str | os.PathLike[str],
    *,
    revision: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    allow_pickle: bool = False,
    cache: Any = None,
) -> ResolvedSource:
    """Resolve ``source`` (see the module docstring) to the folder to serve, packing a model
    folder, a ``model.toml`` or a Hub repository into the package cache first.

    ``revision``, ``endpoint`` and ``token`` apply to Hub sources (``HF_ENDPOINT`` and
    ``HF_TOKEN`` otherwise); ``allow_pickle`` lets a build convert pickle weights, as
    ``inferox pack --allow-pickle`` does; ``cache`` is the :class:`PackageCache` to pack into
    (default: ``INFEROX_CACHE_DIR``'s). Errors are ``inferox pack``'s: nothing servable or a
    missing path is a :class:`~inferox.core.errors.PackageNotFoundError` naming it.
    """
    kind = source_kind(source)
    text = os.fspath(source)
    if kind in ("package", "repository"):
        return ResolvedSource(text, kind, Path(text).expanduser())
    from inferox.mlpkg._build import build_package
    from inferox.mlpkg._cache import PackageCache

    store = cache if cache is not None else PackageCache()
    log.info("packing %s into the package cache %s", text, store.root)
    hub: dict[str, Any] = {"revision": revision, "endpoint": endpoint, "token": token} if kind == "hub" else {}
    if kind == "folder" and revision is not None:
        from inferox.core.errors import ConfigError

        raise ConfigError(f"a revision applies to Hub sources ({HUB_SCHEME}org/name), not to the folder {text}", field="revision", value=revision)
    try:
        path = build_package(text if kind == "hub" else Path(text).expanduser(), cache=store, allow_pickle=allow_pickle, **hub)
    except PackageNotFoundError as exc:
        if kind == "hub" or exc.message.startswith(text):
            raise
        # "the source has no weights": say which source, as a user typed it.
        raise PackageNotFoundError(f"{text}: {exc.message}", path=exc.path or text, field=exc.field) from exc
    return ResolvedSource(text, kind, Path(path), packed=True)
