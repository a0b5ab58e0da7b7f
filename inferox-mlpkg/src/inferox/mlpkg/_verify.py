"""Verifying a package's numbers: its golden outputs and every backend, against the architecture's reference.

The truth is the architecture's NumPy reference (float64) run on the package's own weights and golden
inputs, not whichever backend computed the golden outputs at build time: a backend that was wrong
then (a tanh GELU for the exact one) must not become the standard every other backend is held to.
So :func:`check_parity` compares

* the stored golden outputs with the reference (the row ``golden``), and
* each backend's outputs on the golden inputs with the reference,

within the package's golden tolerance (``atol`` / ``rtol``, see ``_format.GOLDEN_ATOL``). Where the
architecture has no reference (or the weights are pickled), the backends are compared with the stored
golden outputs instead. Each comparison is one :class:`ParityRow`: a backend that crashes gets a row
with its error, and the other rows are still computed. A difference beyond tolerance is a
:class:`~inferox.core.errors.NumericMismatchError` naming the backend, the output, the largest
difference and where it is — not a :class:`~inferox.core.errors.PackageIntegrityError`, which is for
files whose hashes do not match.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from inferox.core.dtype import DType
from inferox.core.errors import (
    BackendUnavailableError,
    InferoxError,
    NumericMismatchError,
    PackageFormatError,
    PackageIntegrityError,
    UnsafePackageError,
    wrap_backend_error,
)
from inferox.core.plugins import get_registry
from inferox.mlpkg._format import GOLDEN_INPUTS, GOLDEN_OUTPUTS
from inferox.mlpkg._package import Package

if TYPE_CHECKING:
    from inferox.mlpkg._loading import VerifyReport

__all__ = ["GOLDEN", "REFERENCE", "ParityRow", "check_parity", "reference_outputs"]

#: The subject of the row comparing the package's stored golden outputs (every other row is a backend).
GOLDEN = "golden"
#: What rows are compared against when the architecture has a reference.
REFERENCE = "reference"


@dataclass(frozen=True)
class ParityRow:
    """One comparison of :func:`check_parity`: ``subject`` (a backend's name, or ``"golden"``) against
    ``against`` (``"reference"`` or ``"golden"``).

    ``max_difference`` is the largest absolute difference over every output, at ``output[index]``;
    ``error`` is what made the row fail (a :class:`~inferox.core.errors.NumericMismatchError`, or the
    error a backend raised); ``skipped`` says why the row was not computed.
    """

    subject: str
    against: str
    max_difference: float | None = None
    output: str | None = None
    index: tuple[int, ...] | None = None
    error: InferoxError | None = None
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.skipped is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject, "against": self.against, "max_difference": self.max_difference, "output": self.output,
            "index": list(self.index) if self.index is not None else None, "ok": self.ok,
            "error": None if self.error is None else {"code": self.error.code, "message": self.error.message}, "skipped": self.skipped,
        }


def _who(subject: str, golden_backend: str | None) -> str:
    if subject == GOLDEN:
        if golden_backend == REFERENCE:  # packs record golden outputs computed by the reference itself
            return "the package's golden outputs (computed by the reference at build)"
        return "the package's golden outputs" + (f" (computed by backend {golden_backend!r} at build)" if golden_backend else "")
    reg = get_registry()
    try:
        plugin = reg.backend_spec(subject).plugin
    except InferoxError:  # pragma: no cover - the backend loaded a moment ago
        plugin = ""
    return f"backend {subject!r}" + (f" (plugin {plugin!r})" if plugin else "")


def compare(subject: str, against: str, got: Mapping[str, Any], want: Mapping[str, np.ndarray], *, atol: float, rtol: float,
            golden_backend: str | None = None) -> ParityRow:
    """Compare ``got`` with ``want`` output by output (``|got - want| <= atol + rtol * |want|``)."""
    who = _who(subject, golden_backend)
    worst: tuple[float, str, tuple[int, ...]] | None = None  # the largest difference anywhere
    beyond: tuple[float, str, tuple[int, ...], Any, Any] | None = None  # the largest among those beyond tolerance
    for key, expected in want.items():
        if key not in got:
            if subject == GOLDEN:
                err: InferoxError = PackageFormatError(f"{GOLDEN_OUTPUTS} has no output {key!r}, which the {against} gives", path=GOLDEN_OUTPUTS, field=key)
            else:
                err = NumericMismatchError(f"{who} gave no output {key!r}, which the {against} gives", subject=subject, against=against, output=key)
            return ParityRow(subject, against, error=err)
        try:
            have, want64 = np.asarray(got[key], dtype=np.float64), np.asarray(expected, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            return ParityRow(subject, against, error=PackageFormatError(f"output {key!r} of {who} cannot be compared: {exc}", path=GOLDEN_OUTPUTS, field=key))
        if have.shape != want64.shape:
            shapes = f"output {key!r} has shape {list(have.shape)}, the {against} {list(want64.shape)}"
            if subject == GOLDEN:  # a golden file whose header lies about a shape is reported, not broadcast
                return ParityRow(subject, against, error=PackageIntegrityError(f"{GOLDEN_OUTPUTS}: {shapes}", path=GOLDEN_OUTPUTS, field=key))
            return ParityRow(subject, against, error=NumericMismatchError(f"{who}: {shapes}", subject=subject, against=against, output=key))
        if not want64.size:
            continue
        diff = np.abs(have - want64)
        finite = np.where(np.isfinite(diff), diff, np.inf)
        at = tuple(int(i) for i in np.unravel_index(int(np.argmax(finite)), diff.shape))
        largest = float(finite[at])
        if worst is None or largest > worst[0]:
            worst = (largest, key, at)
        excess = finite - (atol + rtol * np.abs(want64))
        if excess.max() > 0:
            bad = tuple(int(i) for i in np.unravel_index(int(np.argmax(np.where(excess > 0, finite, -1.0))), diff.shape))
            if beyond is None or float(finite[bad]) > beyond[0]:
                beyond = (float(finite[bad]), key, bad, have[bad], want64[bad])
    if beyond is not None:
        size, key, at, have_v, want_v = beyond
        message = (
            f"{who}: output {key!r} differs from the {against} by up to {size:.3g} at index {at} "
            f"(got {have_v:.7g}, {against} {want_v:.7g}; tolerance atol={atol:g}, rtol={rtol:g})"
        )
        mismatch = NumericMismatchError(message, subject=subject, against=against, output=key, index=at, max_difference=size, atol=atol, rtol=rtol)
        assert worst is not None  # beyond implies a largest difference
        return ParityRow(subject, against, max_difference=worst[0], output=worst[1], index=worst[2], error=mismatch)
    if worst is None:
        return ParityRow(subject, against, max_difference=0.0)
    return ParityRow(subject, against, max_difference=worst[0], output=worst[1], index=worst[2])


def reference_outputs(pkg: Package, inputs: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray] | None, str]:
    """The architecture's reference run on the package's weights and ``inputs``: ``(outputs, "")``, or
    ``(None, why there are none)``. An error inside the reference propagates."""
    reg = get_registry()
    try:
        schema = reg.schema(pkg.architecture)
    except InferoxError as exc:
        return None, f"architecture {pkg.architecture!r} is unknown here ({exc})"
    reference = schema.load_reference()
    if reference is None:
        return None, f"architecture {schema.name!r} has no reference implementation"
    if pkg.weights_are_pickle:
        return None, "the package's weights are pickled (the reference reads safetensors only)"
    from safetensors.numpy import load_file

    from inferox.mlpkg._loading import package_options

    options = {k: v for k, v in package_options(pkg).items() if k == "preprocessing"}
    weights = load_file(str(pkg.weights_path))
    out = reference(dict(pkg.config), weights, dict(inputs), **options)
    return {k: np.asarray(v) for k, v in out.items()}, ""


def check_parity(
    pkg: Package,
    report: VerifyReport,
    *,
    backends: list[str] | None,
    trust_code: bool,
    atol: float | None,
    rtol: float | None,
    reference: bool = True,
) -> None:
    """Fill ``report`` with the parity rows of ``pkg`` (see the module docstring)."""
    from inferox.mlpkg._loading import candidate_backends, load_model

    try:
        inputs, stored = pkg.golden_inputs(), pkg.golden_outputs()
    except InferoxError as exc:
        report.add(exc)
        return
    if inputs is None:
        report.skipped[GOLDEN] = "the package has no golden inputs"
        return
    try:  # golden files re-signed with a lying header must be reported, not run through anything
        _check_golden_inputs(pkg, inputs)
    except InferoxError as exc:
        report.add(exc)
        return
    truth, why = (None, "the reference was not asked for")
    if reference:
        try:
            truth, why = reference_outputs(pkg, inputs)
        except InferoxError as exc:
            why = f"the reference failed: {exc.message}"
        except Exception as exc:  # noqa: BLE001 - a plugin's reference is code of its own: report, fall back
            why = f"the reference failed: {type(exc).__name__}: {exc}"
    against = REFERENCE if truth is not None else GOLDEN
    if truth is None:
        truth = stored
    if truth is None:
        report.skipped[GOLDEN] = f"the package has golden inputs but no golden outputs, and {why}: parity not checked"
        return
    names = backends if backends is not None else candidate_backends(pkg)
    if stored is None and not names:
        report.skipped[GOLDEN] = f"the package has no golden outputs and no installed backend implements {pkg.architecture!r}: parity not checked"
        return
    report.parity_required = True
    report.against = against
    if against == GOLDEN:
        report.notes.append(f"compared with the stored golden outputs: {why}")
    pkg_atol, pkg_rtol = pkg.golden_tolerance
    report.atol = pkg_atol if atol is None else atol
    report.rtol = pkg_rtol if rtol is None else rtol
    golden_backend = (pkg.metadata.get("golden") or {}).get("backend")
    if against == REFERENCE:
        if stored is None:
            _add(report, ParityRow(GOLDEN, REFERENCE, skipped="no golden outputs stored (no backend ran at build time)"))
        elif (wrong := _golden_output_dtype_error(pkg, stored)) is not None:
            _add(report, ParityRow(GOLDEN, REFERENCE, error=wrong))
        else:
            _add(report, compare(GOLDEN, REFERENCE, stored, truth, atol=report.atol, rtol=report.rtol, golden_backend=golden_backend))
    for name in names:
        try:
            model = load_model(pkg, backend=name, trust_code=trust_code)
        except (BackendUnavailableError, UnsafePackageError) as exc:
            _add(report, ParityRow(name, against, skipped=str(exc)))
            continue
        except InferoxError as exc:
            _add(report, ParityRow(name, against, error=exc))
            continue
        try:
            got = model.forward_any(inputs)
        except Exception as exc:  # noqa: BLE001 - one backend crashing must not hide the others' rows
            _add(report, ParityRow(name, against, error=wrap_backend_error(exc, backend=name, model=pkg.name)))
            continue
        finally:
            model.model.close()
        _add(report, compare(name, against, got, truth, atol=report.atol, rtol=report.rtol))


def _check_golden_inputs(pkg: Package, inputs: Mapping[str, np.ndarray]) -> None:
    """The golden inputs are what the package's input specs declare: every required input, of a dtype
    that casts safely to the spec's and of a matching shape (a typed error naming the input)."""
    for spec in pkg.input_specs:
        if spec.name not in inputs:
            if not spec.optional:
                raise PackageFormatError(f"{GOLDEN_INPUTS} has no input {spec.name!r}, which the package's inputs require", path=GOLDEN_INPUTS, field=spec.name)
            continue
        value = inputs[spec.name]
        spec.check_dtype(DType.from_numpy(value.dtype))
        spec.check_shape(value.shape)


def _golden_output_dtype_error(pkg: Package, stored: Mapping[str, np.ndarray]) -> InferoxError | None:
    """A stored golden output whose dtype is not the one its spec declares (bytes read as another type)."""
    for spec in pkg.output_specs:
        value = stored.get(spec.name)
        try:
            dtype = DType.from_numpy(value.dtype) if value is not None else spec.dtype
        except InferoxError:  # a numpy dtype Inferox has no name for (complex …)
            dtype = None
        if dtype is not spec.dtype:
            assert value is not None
            return PackageFormatError(
                f"{GOLDEN_OUTPUTS}: output {spec.name!r} has dtype {value.dtype}, the package's outputs declare {spec.dtype.value}", path=GOLDEN_OUTPUTS, field=spec.name
            )
    return None


def _add(report: VerifyReport, row: ParityRow) -> None:
    report.rows.append(row)
    if row.error is not None:
        report.add(row.error)
    if row.skipped is not None and row.subject != GOLDEN:
        report.skipped[row.subject] = row.skipped
    if row.max_difference is not None and row.subject != GOLDEN:
        report.golden[row.subject] = row.max_difference
