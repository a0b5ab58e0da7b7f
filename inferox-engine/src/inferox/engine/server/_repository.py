"""The model repository the server serves: a folder of packages, and their serving settings.

Layout (as Triton's model repository)::

    <repo>/<name>/metadata.json ...            a package served as version "1"
    <repo>/<name>/<version>/metadata.json ...  versioned packages (the folder name is the version)
    <repo>/<name>/serving.toml                 optional serving settings for the model

Which versions are served is the model's version policy (``serving.toml``'s ``[version_policy]``:
``latest = N``, ``specific = ["1", "3"]`` or ``all = true``; default: the latest one), as in
Triton; requests that name no version go to the highest served one.

Names reaching the repository from HTTP are checked before any path is built, and every resolved
path must stay inside the repository (a symlink pointing outside is refused), so the load endpoint
can only ever reach packages the operator put there.
"""

from __future__ import annotations

import math
import os
import re
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from inferox.core.errors import ConfigError, InvalidInputError, ModelNotFoundError, UnsafePackageError
from inferox.engine._engine import version_key

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["PACKAGE_MARKER", "SETTINGS_FILE", "ModelRepository", "RepositoryEntry", "ServingSettings", "check_model_name", "is_package"]

#: A folder holding this file is a package.
PACKAGE_MARKER = "metadata.json"
#: Per-model serving settings, beside the package (or its versions).
SETTINGS_FILE = "serving.toml"
#: A plain name (matched whole with ``fullmatch``: ``$`` would let a trailing newline through).
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
#: A version folder: digits only, as Triton's (``1.bak``, ``old`` are not versions and are ignored).
_VERSION_RE = re.compile(r"[0-9]{1,18}")


def _read_regular(path: Path) -> bytes:
    """The bytes of ``path`` if it is a regular file (opened non-blocking and checked on the
    descriptor, so a FIFO named ``serving.toml`` cannot hang the repository)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ConfigError(f"cannot be read: {exc.strerror}", field=SETTINGS_FILE, path=str(path)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError("is not a regular file", field=SETTINGS_FILE, path=str(path))
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(_MAX_SETTINGS_BYTES + 1)[: _MAX_SETTINGS_BYTES + 1]
    finally:
        os.close(fd)


#: A serving.toml is a few lines; more than this is not one.
_MAX_SETTINGS_BYTES = 1 << 20


def check_model_name(name: str, *, what: str = "model name") -> str:
    """Return ``name`` if it is a plain model (or version) name; :class:`InvalidInputError` otherwise.

    Only letters, digits, ``_``, ``.`` and ``-``, not starting with a dot, and never ``..`` — so a
    name can never be a path.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or ".." in name:
        # Names come from the wire: echoed cut short, never whole.
        shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:75] + "…"
        actual = name[:80] if isinstance(name, str) else shown
        raise InvalidInputError(
            f"invalid {what} {shown}", name=what.replace(" ", "_"), expected="letters, digits, '_', '.', '-' (no path separators)", actual=actual
        )
    return name


def is_package(path: Path) -> bool:
    """Whether ``path`` is a package folder."""
    return (path / PACKAGE_MARKER).is_file()


@dataclass(frozen=True)
class ServingSettings:
    """How one model is served (all optional; unset fields fall back to the server's flags).

    ``backends`` lists the backends to load the model on (the first answers requests that do not
    name one); ``max_batch_size``/``max_batch_tokens``/``batch_delay_ms``/``max_queue_size`` tune
    the engine's dynamic batcher for this model (``max_batch_tokens``: length-aware batching);
    ``timeout_s`` bounds each request; ``warmup`` runs a warm-up forward pass before the model
    reports ready; ``threads`` is the backend's intra-op thread count (the ``threads`` load option:
    per model on onnx, process-wide on torch, XLA's pool on jax while it has not started; default:
    the CPUs the process may use); ``dtype`` loads the weights as ``f32``/``f16``/``bf16``;
    ``int8`` serves an int8-quantised model (onnx);
    ``version_policy`` picks the versions served: ``("latest", n)``, ``("specific", (v, ...))`` or
    ``("all",)`` (``None``: the latest one).
    """

    backends: tuple[str, ...] = ()
    device: str | None = None
    dtype: str | None = None
    max_batch_size: int | None = None
    max_batch_tokens: int | None = None
    batch_delay_ms: float | None = None
    max_queue_size: int | None = None
    timeout_s: float | None = None
    warmup: bool | None = None
    threads: int | None = None
    #: Serve an int8-quantised model (an onnx-backend load option; another backend refuses it).
    int8: bool | None = None
    version_policy: tuple[Any, ...] | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, path: str | None = None) -> ServingSettings:
        """Validate a parsed TOML table; :class:`ConfigError` names the file and the field."""
        known = {f.name for f in fields(cls)} | {"backend"}
        for key in data:
            if key not in known:
                raise ConfigError(f"unknown setting {key!r}", field=key, value=data[key], path=path)
        out: dict[str, Any] = {}
        backends: Any = data.get("backends", data.get("backend"))
        if backends is not None:
            if isinstance(backends, str):
                backends = [backends]
            if not isinstance(backends, list) or not all(isinstance(b, str) and b for b in backends):
                raise ConfigError("must be a backend name or a list of them", field="backends", value=backends, path=path)
            out["backends"] = tuple(backends)
        for key in ("device", "dtype"):
            if key in data:
                if not isinstance(data[key], str):
                    raise ConfigError("must be a string", field=key, value=data[key], path=path)
                out[key] = data[key]
        for key, minimum, maximum in (("max_batch_size", 1, 1 << 16), ("max_batch_tokens", 0, 1 << 32), ("max_queue_size", 1, 1 << 24), ("threads", 1, 1024)):
            if key in data:
                v = data[key]
                if isinstance(v, bool) or not isinstance(v, int) or not minimum <= v <= maximum:
                    raise ConfigError(f"must be an integer in {minimum}..{maximum}, got {v!r}", field=key, value=v, path=path)
                out[key] = v
        for key in ("batch_delay_ms", "timeout_s"):
            if key in data:
                v = data[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or (key == "timeout_s" and v == 0):
                    raise ConfigError("must be a positive number" if key == "timeout_s" else "must be a number >= 0", field=key, value=v, path=path)
                out[key] = float(v)
        for key in ("warmup", "int8"):
            if key in data:
                if not isinstance(data[key], bool):
                    raise ConfigError("must be true or false", field=key, value=data[key], path=path)
                out[key] = data[key]
        if "version_policy" in data:
            out["version_policy"] = _version_policy(data["version_policy"], path)
        return cls(**out)

    @classmethod
    def from_file(cls, path: Path) -> ServingSettings:
        """Read a ``serving.toml``; :class:`ConfigError` names the file when it is not a regular
        file (a FIFO would block the reader), not UTF-8, or not valid TOML."""
        try:
            data = tomllib.loads(_read_regular(path).decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"not UTF-8 text (byte {exc.start}): save it as UTF-8", field=SETTINGS_FILE, path=str(path)) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"invalid TOML: {exc}", path=str(path)) from exc
        except RecursionError:
            raise ConfigError("invalid TOML: nested too deeply", path=str(path)) from None
        return cls.from_mapping(data, path=str(path))

    def merged_over(self, defaults: ServingSettings) -> ServingSettings:
        """These settings, with unset fields taken from ``defaults``."""
        changes: dict[str, Any] = {}
        for f in fields(self):
            mine = getattr(self, f.name)
            if mine is None or mine == ():
                changes[f.name] = getattr(defaults, f.name)
        return replace(self, **changes)


def _version_policy(value: Any, path: str | None) -> tuple[Any, ...]:
    """``[version_policy]`` of a serving.toml as ``("latest", n)``, ``("specific", (v, ...))`` or ``("all",)``."""
    field_name = "version_policy"
    if isinstance(value, tuple):  # already parsed (settings built in code)
        value = {value[0]: value[1] if len(value) > 1 else True}
    if not isinstance(value, Mapping) or len(value) != 1:
        raise ConfigError("must be a table with one of latest = N, specific = [versions] or all = true", field=field_name, value=value, path=path)
    kind, arg = next(iter(value.items()))
    if kind == "latest":
        if isinstance(arg, bool) or not isinstance(arg, int) or arg < 1:
            raise ConfigError("latest must be an integer >= 1", field="version_policy.latest", value=arg, path=path)
        return ("latest", arg)
    if kind == "specific":
        if not isinstance(arg, (list, tuple)) or not arg or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in arg):
            raise ConfigError("specific must be a non-empty list of versions", field="version_policy.specific", value=arg, path=path)
        return ("specific", tuple(check_model_name(str(v), what="model version") for v in arg))
    if kind == "all":
        if arg is not True:
            raise ConfigError("all must be true", field="version_policy.all", value=arg, path=path)
        return ("all",)
    raise ConfigError(f"unknown version policy {kind!r}; use latest, specific or all", field=f"version_policy.{kind}", value=arg, path=path)


@dataclass(frozen=True)
class RepositoryEntry:
    """One model of the repository: its versions (``{version: package path}``) and settings."""

    name: str
    versions: dict[str, Path] = field(default_factory=dict)
    settings: ServingSettings = field(default_factory=ServingSettings)

    @property
    def latest(self) -> str:
        """The highest version (numeric versions compare as numbers)."""
        return max(self.versions, key=version_key)

    def served_versions(self) -> list[str]:
        """The versions the model's version policy serves, lowest first; :class:`ModelNotFoundError`
        naming the policy when it selects none of the versions present."""
        ordered = sorted(self.versions, key=version_key)
        policy = self.settings.version_policy or ("latest", 1)
        if policy[0] == "all":
            return ordered
        if policy[0] == "latest":
            return ordered[-policy[1] :]
        chosen = [v for v in ordered if v in policy[1]]
        if not chosen:
            raise ModelNotFoundError(f"{self.name}/versions/{'|'.join(policy[1])}", available=[f"{self.name}/versions/{v}" for v in ordered])
        return chosen


class ModelRepository:
    """A folder of packages (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        root_path = Path(root)
        if not root_path.is_dir():
            raise ConfigError("model repository is not a directory", field="repository", value=str(root), path=str(root))
        self.root = root_path.resolve()

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if resolved != self.root and not resolved.is_relative_to(self.root):
            raise UnsafePackageError(f"{path} resolves outside the model repository", path=str(path))
        return resolved

    def names(self) -> list[str]:
        """Every model name in the repository (folders that are, or hold, packages)."""
        out = []
        for child in sorted(self.root.iterdir()):
            if not child.is_dir() or not _NAME_RE.fullmatch(child.name):
                continue
            if is_package(child) or any(_VERSION_RE.fullmatch(v.name) and is_package(v) for v in child.iterdir() if v.is_dir()):
                out.append(child.name)
        return out

    def entry(self, name: str) -> RepositoryEntry:
        """The model ``name``: :class:`InvalidInputError` for a name that is not plain,
        :class:`UnsafePackageError` for one that resolves outside the repository,
        :class:`ModelNotFoundError` when no package is there."""
        check_model_name(name)
        folder = self.root / name
        if not folder.exists():
            raise ModelNotFoundError(name, available=self.names())
        folder = self._inside(folder)
        if not folder.is_dir():  # a plain file in the repository is no model
            raise ModelNotFoundError(name, available=self.names())
        versions: dict[str, Path] = {}
        if is_package(folder):
            versions["1"] = folder
        else:
            for child in sorted(folder.iterdir()):
                if child.is_dir() and _VERSION_RE.fullmatch(child.name) and is_package(child):
                    versions[child.name] = self._inside(child)
        if not versions:
            raise ModelNotFoundError(name, available=self.names())
        settings_path = folder / SETTINGS_FILE
        # exists(), not is_file(): a serving.toml that is a FIFO or a folder is reported, not ignored.
        settings = ServingSettings.from_file(self._inside(settings_path)) if settings_path.exists() else ServingSettings()
        return RepositoryEntry(name=name, versions=versions, settings=settings)

    def __repr__(self) -> str:
        return f"ModelRepository({str(self.root)!r})"
