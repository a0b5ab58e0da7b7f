"""``model.toml``: what to build, read and validated with errors naming the file and the field.

::

    name = "minilm"                       # package name (default: the source's last path part)
    version = "1"                         # optional, free-form
    source = "hf://sentence-transformers/all-MiniLM-L6-v2"   # or a folder, relative to this file
    revision = "main"                     # branch, tag or commit SHA (Hub sources)
    architecture = "bert"                 # default: config.json's model_type
    backends = ["torch", "jax"]           # required; case-insensitive, preference order
    allow_patterns = ["*.json", "*.safetensors", "*.txt"]   # optional Hub file filter
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferox.core.errors import ConfigError, PackageNotFoundError
from inferox.mlpkg._regular import open_regular

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["ModelToml", "normalize_backends", "parse_model_toml"]

_KNOWN_KEYS = {"name", "version", "source", "revision", "architecture", "backends", "allow_patterns", "description", "endpoint"}


@dataclass(frozen=True)
class ModelToml:
    """A parsed ``model.toml``. ``source`` is a resolved folder path or a Hub repo id."""

    path: Path
    name: str | None
    source: str
    revision: str | None
    architecture: str | None
    backends: tuple[str, ...]
    allow_patterns: tuple[str, ...] | None
    version: str | None
    description: str
    endpoint: str | None


def known_backends() -> set[str]:
    """The backends some installed plugin registers (the registry is the only list of backends)."""
    from inferox.core.plugins import get_registry

    return set(get_registry().backend_names())


def normalize_backends(value: Any, *, path: str | None = None, field: str = "backends") -> tuple[str, ...]:
    """Lower-case, de-duplicated backend names; unknown names or a malformed value → :class:`ConfigError`."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError("must be a non-empty list of backend names", field=field, value=value, path=path)
    known = known_backends()
    out: list[str] = []
    for v in value:
        name = v.strip().lower()
        if name not in known:
            raise ConfigError(f"unknown backend {v!r} (known: {', '.join(sorted(known))})", field=field, value=v, path=path)
        if name not in out:
            out.append(name)
    return tuple(out)


def _str_field(data: dict[str, Any], key: str, path: str, *, required: bool = False) -> str | None:
    if key not in data:
        if required:
            raise ConfigError("is required", field=key, path=path)
        return None
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"must be a non-empty string, got {value!r}", field=key, value=value, path=path)
    return value.strip()


def _backends(data: dict[str, Any], path: str) -> tuple[str, ...]:
    if "backends" not in data:
        raise ConfigError(f"is required: the backends this package is for ({', '.join(sorted(known_backends()))})", field="backends", path=path)
    return normalize_backends(data["backends"], path=path)


def _patterns(value: Any, path: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError("must be a list of glob patterns", field="allow_patterns", value=value, path=path)
    return tuple(value)


def parse_model_toml(path: str | Path) -> ModelToml:
    """Read and validate a ``model.toml``."""
    p = Path(path)
    where = str(p)
    try:
        if p.is_dir():
            raise ConfigError("is a folder, not a model.toml file", path=where)
        with open_regular(p) as fh:  # a FIFO named model.toml must not block the build
            raw = fh.read()
    except FileNotFoundError:
        raise PackageNotFoundError(f"no such model.toml: {where}", path=where) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=where) from exc
    unknown = sorted(set(data) - _KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"unknown field {unknown[0]!r} (allowed: {', '.join(sorted(_KNOWN_KEYS))})", field=unknown[0], path=where)
    source = _str_field(data, "source", where, required=True)
    assert source is not None
    if not _is_hub(source):
        src_path = Path(source).expanduser()
        if not src_path.is_absolute():
            src_path = (p.parent / src_path).resolve()
        source = str(src_path)
    version = data.get("version")
    if version is not None and not isinstance(version, (str, int)):
        raise ConfigError(f"must be a string, got {version!r}", field="version", value=version, path=where)
    desc = data.get("description", "")
    if not isinstance(desc, str):
        raise ConfigError("must be a string", field="description", value=desc, path=where)
    return ModelToml(
        path=p,
        name=_str_field(data, "name", where),
        source=source,
        revision=_str_field(data, "revision", where),
        architecture=(_str_field(data, "architecture", where) or "").lower() or None,
        backends=_backends(data, where),
        allow_patterns=_patterns(data.get("allow_patterns"), where),
        version=str(version) if version is not None else None,
        description=desc,
        endpoint=_str_field(data, "endpoint", where),
    )


def _is_hub(source: str) -> bool:
    return source.startswith("hf://")


def dedupe(items: Iterable[str]) -> list[str]:
    out: list[str] = []
    for i in items:
        if i not in out:
            out.append(i)
    return out
