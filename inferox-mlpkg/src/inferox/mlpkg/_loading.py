"""Loading a package onto a backend, typed accessors, and package verification."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inferox.core.device import DeviceId
from inferox.core.dtype import DType
from inferox.core.errors import (
    ArchitectureNotFoundError,
    BackendUnavailableError,
    InferoxError,
    PackageError,
    PackageFormatError,
    PackageNotFoundError,
    TypeMismatchError,
    UnsafePackageError,
    wrap_backend_error,
)
from inferox.core.model import AnyModel, Model, ModelMetadata
from inferox.core.plugins import get_registry
from inferox.mlpkg._format import BACKENDS_DIR, METADATA_FILE
from inferox.mlpkg._fs import sha256_file
from inferox.mlpkg._package import Package, as_package, load_package, scan_package_tree, unlisted_files
from inferox.mlpkg._weights import load_pickle_weights

__all__ = ["VerifyReport", "as_backend", "instantiate", "load_model", "verify_package"]

OVERRIDE_MODULE = "model.py"
OVERRIDE_FACTORY = "create_model"


def _override_factory(pkg: Package, backend: str, *, trust_code: bool) -> Callable[..., Model] | None:
    """``create_model`` from ``backends/<backend>/model.py``, only with ``trust_code=True``."""
    rel = f"{BACKENDS_DIR}/{backend}/{OVERRIDE_MODULE}"
    path = pkg.path / rel
    if not path.is_file():
        return None
    if not trust_code:
        raise UnsafePackageError(
            f"package {pkg.name!r} ships code ({rel}); it runs only with trust_code=True (read it first)", path=rel, field=OVERRIDE_FACTORY
        )
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    mod_name = f"_inferox_pkg_{backend}_{digest}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(mod_name, None)
        raise PackageError(f"{rel} failed to import: {type(exc).__name__}: {exc}", path=rel) from exc
    factory = getattr(module, OVERRIDE_FACTORY, None)
    if not callable(factory):
        raise PackageFormatError(f"{rel} does not define a callable {OVERRIDE_FACTORY}(...)", path=rel, field=OVERRIDE_FACTORY)
    return factory  # type: ignore[no-any-return]


def instantiate(
    factory: Callable[..., Any],
    *,
    backend: Any,
    config: Mapping[str, Any],
    weights: str | Path | Mapping[str, np.ndarray],
    metadata: ModelMetadata,
    device: DeviceId | None,
    dtype: DType | None,
    origin: str,
    **options: Any,
) -> Model:
    """Call an architecture factory, turning a framework exception into an inferox one."""
    try:
        model = factory(backend=backend, config=dict(config), weights=weights, metadata=metadata, device=device, dtype=dtype, **options)
    except InferoxError:
        raise
    except Exception as exc:
        if origin.startswith(BACKENDS_DIR):
            raise PackageError(f"{origin}: {OVERRIDE_FACTORY} raised {type(exc).__name__}: {exc}", path=origin) from exc
        raise wrap_backend_error(exc, backend=backend.name, model=metadata.name) from exc
    if not isinstance(model, Model):
        raise PackageError(f"{origin} returned {type(model).__name__}, not an inferox.core.Model", path=origin if origin.startswith(BACKENDS_DIR) else None)
    return model


def candidate_backends(pkg: Package) -> list[str]:
    """Backends that could load ``pkg``: its preferred ones first, then any registering its architecture."""
    reg = get_registry()
    have = set(reg.backends_for(pkg.architecture)) | {b for b in pkg.backend_overrides if b in reg.backend_names()}
    order = [b for b in pkg.backends if b in have]
    order += [b for b in sorted(have) if b not in order]
    return order


def _choose_backend(pkg: Package, backend: str | None) -> str:
    reg = get_registry()
    if backend is not None:
        name = backend.strip().lower()
        reg.backend_spec(name)  # BackendUnavailableError naming the installed ones
        if name not in reg.backends_for(pkg.architecture) and name not in pkg.backend_overrides:
            raise ArchitectureNotFoundError(pkg.architecture, backend=name, available=reg.backends_for(pkg.architecture))
        return name
    reasons: list[str] = []
    for name in candidate_backends(pkg):
        try:
            reg.get_backend(name)
        except BackendUnavailableError as exc:
            reasons.append(f"{name}: {exc.reason}")
            continue
        return name
    if reasons:
        raise BackendUnavailableError("any", reason=f"no backend for architecture {pkg.architecture!r} could load: {'; '.join(reasons)}")
    raise ArchitectureNotFoundError(pkg.architecture, available=[])


def package_options(pkg: Package) -> dict[str, Any]:
    """Factory options a package implies: its pre-processing settings and its tokenizer."""
    opts: dict[str, Any] = {}
    if pkg.preprocessing:
        # All of it: the task head, Dense layers and pooler flag are the architecture's business too.
        opts["preprocessing"] = dict(pkg.preprocessing)
    if pkg.tokenizer_path is not None:
        opts["tokenizer_path"] = str(pkg.tokenizer_path)
    return opts


def load_model(
    package: Package | str | Path,
    *,
    backend: str | None = None,
    device: DeviceId | str | None = None,
    dtype: DType | str | None = None,
    trust_code: bool = False,
    allow_pickle: bool = False,
    verify: bool = False,
    **options: Any,
) -> AnyModel:
    """Load a package onto a backend and return it type-erased.

    ``backend=None`` picks the package's preferred backend that is installed and registers its
    architecture, else any that does. The backend's factory for the architecture receives the
    config, the weights path (or, for pickle weights with ``allow_pickle=True``, the tensors), the
    metadata, ``device`` and ``dtype``, plus the options ``preprocessing`` (pooling, normalize,
    max_seq_length, Dense layers, the task head …) and ``tokenizer_path`` when the package has them; extra ``options`` are passed
    through and win. A package's own
    ``backends/<name>/model.py`` (``create_model``) is used instead only with ``trust_code=True``.
    """
    pkg = as_package(package, verify=verify)
    name = _choose_backend(pkg, backend)
    reg = get_registry()
    be = reg.get_backend(name)
    dev = be.check_device(device) if device is not None else None
    dt = DType.parse(dtype) if dtype is not None else None
    weights: str | Path | Mapping[str, np.ndarray]
    if pkg.weights_are_pickle:
        weights = load_pickle_weights(pkg.weights_path, allow_pickle=allow_pickle)
    else:
        weights = pkg.weights_path
    factory = _override_factory(pkg, name, trust_code=trust_code)
    origin = f"{BACKENDS_DIR}/{name}/{OVERRIDE_MODULE}"
    if factory is None:
        factory = reg.architecture_factory(name, pkg.architecture)
        origin = f"{name}:{pkg.architecture}"
    opts = package_options(pkg)
    opts.update(options)
    model = instantiate(factory, backend=be, config=pkg.config, weights=weights, metadata=pkg.model_metadata(), device=dev, dtype=dt, origin=origin, **opts)
    return AnyModel(model)


def as_backend(model: AnyModel, backend: str) -> Model:
    """The concrete model behind ``model``, checked to run on ``backend``; :class:`TypeMismatchError` otherwise."""
    if not isinstance(model, AnyModel):
        raise TypeMismatchError(f"expected an AnyModel, got {type(model).__name__}", expected="AnyModel", actual=type(model).__name__)
    if model.backend_name != backend:
        raise TypeMismatchError(
            f"model {model.name!r} runs on {model.backend_name!r}, not {backend!r}", expected=backend, actual=model.backend_name
        )
    return model.model


@dataclass
class VerifyReport:
    """What :func:`verify_package` found.

    ``ok`` is true when there are no ``problems`` and, if the package has golden outputs and the
    golden check was asked for, at least one backend reproduced them: a run where every backend
    was skipped (none installed, code not trusted) checked no parity and is not ``ok``.
    """

    path: Path
    files_checked: int = 0
    problems: list[str] = field(default_factory=list)
    errors: list[InferoxError] = field(default_factory=list)
    golden: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    #: Whether a backend had to reproduce golden outputs (the package has them and ``run_golden``).
    parity_required: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems and (not self.parity_required or bool(self.golden))

    def add(self, err: InferoxError) -> None:
        self.errors.append(err)
        self.problems.append(str(err))

    def raise_for_problems(self) -> None:
        """Raise the first error found, if any."""
        if self.errors:
            raise self.errors[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "ok": self.ok,
            "files_checked": self.files_checked,
            "problems": list(self.problems),
            "golden_max_abs_diff": dict(self.golden),
            "skipped": dict(self.skipped),
            "parity_required": self.parity_required,
        }


def verify_package(
    path: str | Path | Package,
    *,
    backends: list[str] | None = None,
    run_golden: bool = True,
    trust_code: bool = False,
    atol: float | None = None,
    rtol: float | None = None,
) -> VerifyReport:
    """Check every file's size and sha256, that every file of the package is listed in
    ``metadata.json`` (except the per-deployment files, see ``DEPLOYMENT_FILES``), and that the
    golden inputs give the golden outputs on each installed backend that registers the
    architecture (or on ``backends``), within the package's golden tolerance (``atol`` / ``rtol``
    override it).

    Problems are collected, not raised, so one run reports everything wrong; use
    :meth:`VerifyReport.raise_for_problems` to turn them into an exception.
    """
    root = path.path if isinstance(path, Package) else Path(path)
    report = VerifyReport(path=root)
    try:
        pkg = load_package(root)
    except InferoxError as exc:
        report.add(exc)
        return report
    from inferox.core.errors import PackageIntegrityError

    for entry in pkg.files:
        report.files_checked += 1
        try:
            digest = sha256_file(pkg.path / entry["path"], rel=entry["path"])
        except InferoxError as exc:  # swapped for a FIFO after load_package looked
            report.add(exc)
            continue
        if digest != entry.get("sha256"):
            report.add(PackageIntegrityError(f"{entry['path']}: sha256 does not match {METADATA_FILE}", path=entry["path"], field="sha256"))
    try:
        for rel in unlisted_files(pkg.path, scan_package_tree(pkg.path), pkg.files):
            report.add(PackageIntegrityError(f"{rel} is not listed in {METADATA_FILE}'s files: the package was changed after it was built", path=rel, field="files"))
    except InferoxError as exc:
        report.add(exc)
    golden_meta = pkg.metadata.get("golden") or {}
    if golden_meta.get("outputs") and not pkg.has_golden_outputs:
        out_rel = str(golden_meta["outputs"])
        report.add(PackageNotFoundError(f"{METADATA_FILE} names golden outputs {out_rel} but the file is missing", path=out_rel, field="golden"))
    if report.problems or not run_golden:
        return report
    try:
        inputs, expected = pkg.golden_inputs(), pkg.golden_outputs()
    except InferoxError as exc:
        report.add(exc)
        return report
    if inputs is None or expected is None:
        report.skipped["golden"] = "package has no golden outputs"
        return report
    report.parity_required = True
    pkg_atol, pkg_rtol = pkg.golden_tolerance
    atol = pkg_atol if atol is None else atol
    rtol = pkg_rtol if rtol is None else rtol
    for name in backends if backends is not None else candidate_backends(pkg):
        try:
            model = load_model(pkg, backend=name, trust_code=trust_code)
        except (BackendUnavailableError, UnsafePackageError) as exc:
            report.skipped[name] = str(exc)
            continue
        except InferoxError as exc:
            report.add(exc)
            continue
        try:
            got = model.forward_any(inputs)
        except InferoxError as exc:
            report.add(exc)
            continue
        finally:
            model.model.close()
        worst = 0.0
        for key, want in expected.items():
            if key not in got:
                report.add(PackageFormatError(f"backend {name!r} gave no output {key!r} listed in golden/outputs.safetensors", path="golden/outputs.safetensors", field=key))
                continue
            try:
                have, want64 = np.asarray(got[key], dtype=np.float64), np.asarray(want, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                report.add(PackageFormatError(f"golden output {key!r} cannot be compared: {exc}", path="golden/outputs.safetensors", field=key))
                continue
            if have.shape != want64.shape:
                # A golden file whose header lies about a shape must be reported, not broadcast.
                report.add(
                    PackageIntegrityError(
                        f"backend {name!r}: output {key!r} has shape {list(have.shape)}, the golden output {list(want64.shape)}",
                        path="golden/outputs.safetensors",
                        field=key,
                    )
                )
                continue
            diff = float(np.max(np.abs(have - want64))) if want64.size else 0.0
            worst = max(worst, diff)
            if not np.allclose(have, want64, atol=atol, rtol=rtol):
                report.add(
                    PackageIntegrityError(
                        f"backend {name!r}: output {key!r} differs from the golden output (max abs diff {diff:.3g}, atol {atol}, rtol {rtol})",
                        path="golden/outputs.safetensors",
                        field=key,
                    )
                )
        report.golden[name] = worst
    return report
