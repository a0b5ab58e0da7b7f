"""Reading a package: :func:`load_package` validates it and returns a :class:`Package`."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import stat
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from inferox.core.errors import (
    InvalidInputError,
    PackageError,
    PackageFormatError,
    PackageIntegrityError,
    PackageNotFoundError,
    UnsafePackageError,
)
from inferox.core.model import ModelMetadata
from inferox.core.spec import TensorSpec
from inferox.mlpkg._format import (
    BACKENDS_DIR,
    CONFIG_FILE,
    GOLDEN_ATOL,
    GOLDEN_INPUTS,
    GOLDEN_OUTPUTS,
    GOLDEN_RTOL,
    LEGACY_GOLDEN_TOLERANCE,
    METADATA_FILE,
    MODEL_INFO_FILE,
    PICKLE_SUFFIXES,
    PREPROCESSING_FILE,
    WEIGHTS_FILE,
    check_format_version,
    read_json,
)
from inferox.mlpkg._fs import sha256_file
from inferox.mlpkg._outputs import read_default_outputs
from inferox.mlpkg._regular import file_kind, open_regular
from inferox.mlpkg._weights import read_safetensors_header

__all__ = ["DEPLOYMENT_FILES", "Package", "check_manifest", "load_package", "scan_package_tree", "unlisted_files", "validate_files"]


@dataclass
class Package:
    """A validated package folder. Load it onto a backend with :func:`inferox.mlpkg.load_model`."""

    path: Path
    metadata: dict[str, Any]
    model_info: dict[str, Any]
    config: dict[str, Any]
    input_specs: list[TensorSpec]
    output_specs: list[TensorSpec]
    preprocessing: dict[str, Any] = field(default_factory=dict)
    _lease: Any = field(default=None, repr=False, compare=False)
    #: The folder the package was loaded from, when ``path`` is the private copy of its verified
    #: bytes (``load_package(verify=True)``); ``None`` when ``path`` is that folder.
    origin: Path | None = None

    # -- identity -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.metadata["name"])

    @property
    def version(self) -> str:
        return str(self.metadata.get("version") or "1")

    @property
    def format_version(self) -> str:
        return str(self.metadata["format_version"])

    @property
    def revision(self) -> str | None:
        """The commit SHA the package was built from (Hub sources), else ``None``."""
        return self.metadata.get("revision")

    @property
    def source_repo_id(self) -> str | None:
        return self.metadata.get("source_repo_id")

    @property
    def architecture(self) -> str:
        return str(self.model_info["architecture"])

    @property
    def model_type(self) -> str:
        return str(self.model_info.get("model_type") or self.architecture)

    @property
    def family(self) -> str | None:
        return self.model_info.get("family")

    @property
    def backends(self) -> list[str]:
        """Backends the package was built for, in preference order (empty: any with the architecture)."""
        return list(self.model_info.get("backends") or [])

    @property
    def backend_overrides(self) -> list[str]:
        return list(self.metadata.get("backend_overrides") or [])

    @property
    def parameters(self) -> int | None:
        return self.model_info.get("parameters")

    @property
    def files(self) -> list[dict[str, Any]]:
        return list(self.metadata["files"])

    # -- files ------------------------------------------------------------------------------------
    @property
    def weights_path(self) -> Path:
        return self.path / str(self.metadata.get("weights") or WEIGHTS_FILE)

    @property
    def weights_are_pickle(self) -> bool:
        return self.weights_path.suffix.lower() in PICKLE_SUFFIXES

    @property
    def tokenizer_path(self) -> Path | None:
        p = self.path / "tokenizer.json"
        return p if p.is_file() else None

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    def backend_dir(self, backend: str) -> Path:
        return self.path / BACKENDS_DIR / backend.lower()

    # -- pre/post-processing ------------------------------------------------------------------------
    @property
    def pooling(self) -> str | None:
        return self.preprocessing.get("pooling")

    @property
    def normalize(self) -> bool:
        return bool(self.preprocessing.get("normalize", False))

    @property
    def max_seq_length(self) -> int | None:
        value = self.preprocessing.get("max_seq_length")
        return int(value) if value is not None else None

    # -- golden cases ---------------------------------------------------------------------------------
    @property
    def default_outputs(self) -> tuple[str, ...] | None:
        """The outputs a request that names none gets (``None``: every output; see ``_outputs``)."""
        return read_default_outputs(self.model_info, self.output_specs, rel=MODEL_INFO_FILE)

    @property
    def has_golden_outputs(self) -> bool:
        return (self.path / GOLDEN_OUTPUTS).is_file()

    def golden_inputs(self) -> dict[str, np.ndarray] | None:
        """The stored golden inputs (``None`` when the package has none)."""
        return _read_tensors(self.path, GOLDEN_INPUTS)

    def golden_outputs(self) -> dict[str, np.ndarray] | None:
        """The outputs the golden inputs must give (``None`` when no backend was there at build)."""
        return _read_tensors(self.path, GOLDEN_OUTPUTS)

    @property
    def golden_tolerance(self) -> tuple[float, float]:
        """``(atol, rtol)`` of the golden case: what the build recorded, else the current defaults.

        Builds before the tolerance was measured recorded 1e-4 / 1e-3, which lets a tanh GELU pass
        for an exact one: that pair is read as the current defaults (``GOLDEN_ATOL`` / ``GOLDEN_RTOL``).
        """
        golden = _golden_info(self.metadata)
        atol, rtol = golden.get("atol"), golden.get("rtol")
        recorded = (float(GOLDEN_ATOL if atol is None else atol), float(GOLDEN_RTOL if rtol is None else rtol))
        return (GOLDEN_ATOL, GOLDEN_RTOL) if recorded == LEGACY_GOLDEN_TOLERANCE else recorded

    def model_metadata(self) -> ModelMetadata:
        """The :class:`~inferox.core.ModelMetadata` handed to architecture factories."""
        extra = {
            "package_path": str(self.path),
            "format_version": self.format_version,
            "revision": self.revision,
            "source_repo_id": self.source_repo_id,
            "preprocessing": dict(self.preprocessing),
            "tokenizer_path": str(self.tokenizer_path) if self.tokenizer_path else None,
            "model_info": dict(self.model_info),
        }
        return ModelMetadata(
            name=self.name,
            architecture=self.architecture,
            version=self.version,
            description=str(self.metadata.get("description", "")),
            parameters=self.parameters,
            extra=extra,
        )

    def load_model(self, **kwargs: Any) -> Any:
        """Shortcut for :func:`inferox.mlpkg.load_model(self, ...) <inferox.mlpkg.load_model>` (returns an ``AnyModel``)."""
        from inferox.mlpkg._loading import load_model

        return load_model(self, **kwargs)

    # -- lifetime (cache leases) ------------------------------------------------------------------------
    def close(self) -> None:
        """Release the cache lease (if the package came from a :class:`PackageCache`)."""
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()

    def __enter__(self) -> Package:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Package {self.name!r} {self.architecture} at {self.path}>"


def _read_tensors(root: Path, rel: str) -> dict[str, np.ndarray] | None:
    p = root / rel
    if not p.is_file():
        return None
    from safetensors.numpy import load_file

    read_safetensors_header(p, rel=rel)
    try:
        return dict(load_file(str(p)))
    except Exception as exc:
        raise PackageFormatError(f"{rel} cannot be read: {exc}", path=rel) from exc


def _require(data: Mapping[str, Any], key: str, typ: type | tuple[type, ...], rel: str) -> Any:
    if key not in data:
        raise PackageFormatError(f"{rel} is missing field {key!r}", path=rel, field=key)
    value = data[key]
    if not isinstance(value, typ):
        raise PackageFormatError(f"{rel}: field {key!r} has the wrong type ({type(value).__name__})", path=rel, field=key)
    return value


def _specs(info: Mapping[str, Any], key: str) -> list[TensorSpec]:
    raw = _require(info, key, list, MODEL_INFO_FILE)
    out = []
    for i, item in enumerate(raw):
        try:
            out.append(TensorSpec.from_dict(item))
        except InvalidInputError as exc:
            raise PackageFormatError(f"{MODEL_INFO_FILE}: {key}[{i}] is not a valid TensorSpec: {exc}", path=MODEL_INFO_FILE, field=key) from exc
    return out


def _safe_rel(rel: Any, field: str = "files") -> str:
    if not isinstance(rel, str) or not rel:
        what = "a files entry has no path" if field == "files" else f"{field} must be a non-empty relative path"
        raise PackageFormatError(f"{METADATA_FILE}: {what}", path=METADATA_FILE, field=field)
    pp = PurePosixPath(rel)
    if pp.is_absolute() or ".." in pp.parts or "\0" in rel:
        raise PackageFormatError(f"{METADATA_FILE}: file path {rel!r} escapes the package", path=METADATA_FILE, field=field)
    return rel


#: Files a deployment may add to a package folder without listing them in ``metadata.json``
#: (``serving.toml`` is read by ``inferox serve``; ``__pycache__`` is written by Python when a
#: trusted ``backends/<name>/model.py`` is imported).
DEPLOYMENT_FILES = ("serving.toml",)
_DEPLOYMENT_DIRS = ("__pycache__",)


def scan_package_tree(root: Path) -> dict[str, Path]:
    """Every regular file of the package: ``{relative POSIX path: resolved path}``.

    Refuses what loading must never touch: a symlink whose target lies outside the package
    (:class:`UnsafePackageError`: loading would read, and a rebuild copy, files the package does
    not own), a symlink that cannot be resolved (a loop, or a missing target), and anything that
    is neither a regular file nor a folder — a FIFO would block its reader forever, a device
    never ends (:class:`PackageFormatError` naming it).
    """
    base = root.resolve()
    out: dict[str, Path] = {}
    for dirpath, dirs, names in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(dirs) + sorted(names):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            try:
                st = os.lstat(p)
            except OSError as exc:
                raise PackageFormatError(f"{rel} cannot be read: {exc.strerror}", path=rel) from None
            target = p
            if stat.S_ISLNK(st.st_mode):
                try:
                    target = p.resolve(strict=True)
                    st = os.stat(p)
                except (RuntimeError, OSError):  # RuntimeError: Python 3.11's "symlink loop"
                    raise PackageFormatError(f"{rel} is a symlink that cannot be resolved (a loop or a missing target)", path=rel) from None
                if not target.is_relative_to(base):
                    raise UnsafePackageError(f"{rel} is a symlink to {target}, outside the package", path=rel)
            if stat.S_ISDIR(st.st_mode):
                continue  # a real folder is walked; a symlinked one points inside and is walked there
            if not stat.S_ISREG(st.st_mode):
                raise PackageFormatError(f"{rel} is {file_kind(st.st_mode)}; a package holds only regular files and folders", path=rel)
            out[rel] = target
    return out


def check_no_escaping_symlinks(root: Path) -> None:
    """Refuse symlinks leading outside the package, unresolvable symlinks and non-regular files."""
    scan_package_tree(root)


def unlisted_files(root: Path, tree: Mapping[str, Path], files: Sequence[Any]) -> list[str]:
    """Files of the package that ``metadata.json``'s ``files`` does not cover.

    A file is covered when it is listed, or when a listed symlink resolves to it;
    ``metadata.json`` itself and the per-deployment files (:data:`DEPLOYMENT_FILES` at the top,
    anything under a ``__pycache__`` folder) need no entry.
    """
    listed: set[str] = set()
    targets: set[Path] = set()
    for entry in files:
        rel = entry.get("path") if isinstance(entry, Mapping) else None
        if isinstance(rel, str):
            listed.add(rel)
            with contextlib.suppress(OSError, RuntimeError):
                targets.add((root / rel).resolve())
    out = []
    for rel, real in tree.items():
        parts = PurePosixPath(rel).parts
        if rel in listed or rel == METADATA_FILE or rel in DEPLOYMENT_FILES or any(d in parts[:-1] for d in _DEPLOYMENT_DIRS):
            continue
        if real.resolve() in targets:
            continue
        out.append(rel)
    return out


def check_manifest(root: Path, tree: Mapping[str, Path], files: Sequence[Any]) -> None:
    """Every file of the package is listed in ``metadata.json`` (``PackageIntegrityError`` otherwise)."""
    extra = unlisted_files(root, tree, files)
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise PackageIntegrityError(
            f"{extra[0]}{more} is not listed in {METADATA_FILE}'s files: the package was changed after it was built", path=extra[0], field="files"
        )


def _golden_info(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata.json``'s ``golden``: null or an object whose tolerances are non-negative numbers."""
    golden = metadata.get("golden")
    if golden is None:
        return {}
    if not isinstance(golden, dict):
        raise PackageFormatError(f"{METADATA_FILE}: golden must be an object or null, not {type(golden).__name__}", path=METADATA_FILE, field="golden")
    for key in ("atol", "rtol"):
        value = golden.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise PackageFormatError(f"{METADATA_FILE}: golden.{key} must be a non-negative number, not {value!r}", path=METADATA_FILE, field=f"golden.{key}")
    for key in ("inputs", "outputs", "backend"):
        value = golden.get(key)
        if value is not None and not isinstance(value, str):
            raise PackageFormatError(f"{METADATA_FILE}: golden.{key} must be a string or null, not {type(value).__name__}", path=METADATA_FILE, field=f"golden.{key}")
    return golden


def _backend_overrides(metadata: Mapping[str, Any]) -> list[str]:
    value = metadata.get("backend_overrides") or []
    if not isinstance(value, list) or not all(isinstance(b, str) and b and "/" not in b and "\\" not in b and b not in (".", "..") for b in value):
        raise PackageFormatError(f"{METADATA_FILE}: backend_overrides must be a list of backend names", path=METADATA_FILE, field="backend_overrides")
    return value


def validate_files(root: Path, files: Sequence[Any], *, hashes: bool) -> None:
    """Check every listed file exists with its recorded size (and sha256 when ``hashes``)."""
    for entry in files:
        if not isinstance(entry, Mapping):
            raise PackageFormatError(f"{METADATA_FILE}: files entries must be objects", path=METADATA_FILE, field="files")
        rel = _safe_rel(entry.get("path"))
        p = root / rel
        try:
            exists = p.is_file()
            size = p.stat().st_size if exists else -1
        except OSError as exc:  # e.g. a name longer than the filesystem allows
            raise PackageFormatError(f"{METADATA_FILE}: file path {rel[:80]!r} cannot be read: {exc.strerror}", path=METADATA_FILE, field="files") from None
        if not exists:
            raise PackageNotFoundError(f"package file {rel} is missing", path=rel)
        if size != entry.get("size"):
            raise PackageIntegrityError(f"{rel} has {size} bytes, metadata.json records {entry.get('size')}", path=rel, field="size")
        if hashes and sha256_file(p, rel=rel) != entry.get("sha256"):
            raise PackageIntegrityError(f"{rel}: sha256 does not match metadata.json (the file is corrupt or was modified)", path=rel, field="sha256")


def _read_metadata(root: Path, *, raw: bool) -> tuple[Any, bytes | None]:
    """``metadata.json`` parsed (and, with ``raw``, the very bytes it was parsed from)."""
    if not raw:
        return read_json(root / METADATA_FILE, rel=METADATA_FILE), None
    try:
        with open_regular(root / METADATA_FILE, rel=METADATA_FILE) as fh:
            data = fh.read()
    except FileNotFoundError:
        raise PackageNotFoundError(f"missing {METADATA_FILE}", path=METADATA_FILE) from None
    try:
        return json.loads(data.decode("utf-8")), data
    except (ValueError, UnicodeDecodeError) as exc:
        raise PackageFormatError(f"{METADATA_FILE} is not valid JSON: {exc}", path=METADATA_FILE) from exc
    except RecursionError:
        raise PackageFormatError(f"{METADATA_FILE} is not valid JSON: nested too deeply", path=METADATA_FILE) from None


def _verified_copy(root: Path, files: Sequence[Any], metadata_bytes: bytes) -> Path:
    """A private copy of the package's listed files, each read once: hashed and written from the
    same bytes, so what is loaded afterwards (from the copy) is exactly what was verified — a file
    swapped in the package folder between the check and the load cannot be served. The copy is a
    fresh ``0700`` folder under the temporary directory (``TMPDIR``)."""
    copy = Path(tempfile.mkdtemp(prefix="inferox-verified-"))
    try:
        (copy / METADATA_FILE).write_bytes(metadata_bytes)
        for entry in files:
            if not isinstance(entry, Mapping):
                raise PackageFormatError(f"{METADATA_FILE}: files entries must be objects", path=METADATA_FILE, field="files")
            rel = _safe_rel(entry.get("path"))
            dst = copy / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            size = 0
            try:
                with open_regular(root / rel, rel=rel) as src, open(dst, "xb") as out:
                    while chunk := src.read(_COPY_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
            except FileNotFoundError:
                raise PackageNotFoundError(f"package file {rel} is missing", path=rel) from None
            except IsADirectoryError:  # pragma: no cover - open_regular reports folders itself
                raise PackageFormatError(f"{rel} is a folder, not a file", path=rel) from None
            if size != entry.get("size"):
                raise PackageIntegrityError(f"{rel} has {size} bytes, metadata.json records {entry.get('size')}", path=rel, field="size")
            if digest.hexdigest() != entry.get("sha256"):
                raise PackageIntegrityError(f"{rel}: sha256 does not match metadata.json (the file is corrupt or was modified)", path=rel, field="sha256")
    except BaseException:
        shutil.rmtree(copy, ignore_errors=True)
        raise
    return copy


#: Bytes read (hashed and copied) at a time when verifying.
_COPY_CHUNK = 1 << 20


def load_package(path: str | Path, *, verify: bool = False) -> Package:
    """Open and validate the package at ``path``.

    Every file listed in ``metadata.json`` is checked for presence and size; with ``verify=True``
    its sha256 as well, and every file must be listed. A verified package is read from a private
    copy of the bytes that were hashed (``Package.path``; ``Package.origin`` is the folder given),
    removed once the package object is gone: what loads is exactly what was verified. Problems
    raise a :class:`~inferox.core.errors.PackageError` subclass naming the file (``err.path``)
    and, where it applies, the field (``err.field``).
    """
    root = origin = Path(path)
    if not root.exists():
        raise PackageNotFoundError(f"no package at {root}", path=str(root))
    if not root.is_dir():
        raise PackageFormatError(f"{root} is not a package folder", path=str(root))
    tree = scan_package_tree(root)
    metadata, metadata_bytes = _read_metadata(root, raw=verify)
    if not isinstance(metadata, dict):
        raise PackageFormatError(f"{METADATA_FILE} must hold a JSON object", path=METADATA_FILE)
    check_format_version(_require(metadata, "format_version", (str, int, float), METADATA_FILE))
    _require(metadata, "name", str, METADATA_FILE)
    files = _require(metadata, "files", list, METADATA_FILE)
    _golden_info(metadata)
    if verify:
        assert metadata_bytes is not None
        check_manifest(root, tree, files)
        root = _verified_copy(root, files, metadata_bytes)
        try:
            pkg = _open(root, metadata, files, verified=True)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        pkg.origin = origin
        weakref.finalize(pkg, shutil.rmtree, str(root), True)
        return pkg
    return _open(root, metadata, files, verified=False)


def _open(root: Path, metadata: dict[str, Any], files: list[Any], *, verified: bool) -> Package:
    """The package in ``root`` once ``metadata.json`` is read (the files are checked here unless
    ``verified``: then ``root`` holds only copies whose sha256 matched)."""
    info = read_json(root / MODEL_INFO_FILE, rel=MODEL_INFO_FILE)
    if not isinstance(info, dict):
        raise PackageFormatError(f"{MODEL_INFO_FILE} must hold a JSON object", path=MODEL_INFO_FILE)
    _require(info, "architecture", str, MODEL_INFO_FILE)
    inputs, outputs = _specs(info, "inputs"), _specs(info, "outputs")
    read_default_outputs(info, outputs, rel=MODEL_INFO_FILE)  # a bad field is the package's error, at load
    if not verified:
        validate_files(root, files, hashes=False)
    config = read_json(root / CONFIG_FILE, rel=CONFIG_FILE)
    if not isinstance(config, dict):
        raise PackageFormatError(f"{CONFIG_FILE} must hold a JSON object", path=CONFIG_FILE)
    weights_rel = _safe_rel(metadata.get("weights") or WEIGHTS_FILE, "weights")
    weights = root / weights_rel
    try:
        weights_found = weights.is_file()
    except OSError as exc:
        raise PackageFormatError(f"{METADATA_FILE}: weights path {weights_rel[:80]!r} cannot be read: {exc.strerror}", path=METADATA_FILE, field="weights") from None
    if not weights_found:
        raise PackageNotFoundError(f"weights file {weights_rel} is missing", path=weights_rel)
    if weights.suffix == ".safetensors":
        read_safetensors_header(weights, rel=weights_rel)
    for backend in _backend_overrides(metadata):
        rel = f"{BACKENDS_DIR}/{backend}"
        if not (root / rel).is_dir():
            raise PackageNotFoundError(f"backend folder {rel} is missing", path=rel, field="backend_overrides")
    pre: dict[str, Any] = {}
    if (root / PREPROCESSING_FILE).exists():
        pre = read_json(root / PREPROCESSING_FILE, rel=PREPROCESSING_FILE)
        if not isinstance(pre, dict):
            raise PackageFormatError(f"{PREPROCESSING_FILE} must hold a JSON object", path=PREPROCESSING_FILE)
    return Package(path=root, metadata=metadata, model_info=info, config=config, input_specs=inputs, output_specs=outputs, preprocessing=pre)


def as_package(package: Package | str | Path, *, verify: bool = False) -> Package:
    if isinstance(package, Package):
        if verify:
            # Verified from its folder again, into a fresh private copy the load then reads.
            return load_package(package.origin or package.path, verify=True)
        return package
    if isinstance(package, (str, Path)):
        return load_package(package, verify=verify)
    raise PackageError(f"expected a Package or a path, got {type(package).__name__}")
