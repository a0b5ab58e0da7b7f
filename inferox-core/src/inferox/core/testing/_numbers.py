"""Conformance that checks numbers: a backend's factory for an architecture against its NumPy reference.

For every architecture a backend registers a factory for, whose schema carries a reference
implementation, :func:`check_architecture` builds the schema's example model with seeded random
weights, runs the schema's golden inputs through the backend and through the reference, and compares
every output with the tolerance of the dtype the model computes in (:data:`TOLERANCES`). A mismatch
is a :class:`ArchitectureMismatch` naming the architecture, the output, the largest difference and
where it is.

The check is only as good as its example: :func:`gelu_sensitivity` proves that the example weights
and inputs move the reference by more than the tolerance when the exact GELU becomes the tanh one,
so that a backend making that mistake cannot pass; :func:`native_input_outputs` runs the same
example with the backend's own native tensors as inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferox.core.backend import Backend
from inferox.core.dtype import DType
from inferox.core.errors import ConfigError, InferoxError
from inferox.core.model import AnyModel, ModelMetadata
from inferox.core.plugins import PluginRegistry
from inferox.core.schema import ArchitectureSchema, ReferenceFn, random_weights

__all__ = [
    "TANH_GELU",
    "TOLERANCES",
    "ArchitectureMismatch",
    "NumbersReport",
    "Sensitivity",
    "check_architecture",
    "checked_architectures",
    "gelu_sensitivity",
    "native_input_outputs",
    "refused_dtype_error",
]

#: ``dtype the model computes in → (atol, rtol)``: ``|got - want| <= atol + rtol * |want|`` elementwise.
#: The reference runs in float64; f32 leaves room for summation order and fused kernels, f16/bf16
#: for their 11 / 8 significant bits through a few layers.
TOLERANCES: dict[DType, tuple[float, float]] = {
    DType.F64: (1e-6, 1e-6),
    DType.F32: (5e-5, 1e-4),
    DType.F16: (2e-2, 2e-2),
    DType.BF16: (1e-1, 5e-2),
}


class ArchitectureMismatch(AssertionError):
    """A backend's output differs from the architecture's reference beyond the dtype's tolerance."""

    def __init__(self, message: str, *, architecture: str, output: str, max_difference: float) -> None:
        super().__init__(message)
        self.architecture = architecture
        self.output = output
        self.max_difference = max_difference


#: How a config spells the exact GELU, and the tanh approximation the sensitivity probe swaps in
#: (Hugging Face's names, which the standard architectures use for ``activation`` / ``hidden_act``).
EXACT_GELU = "gelu"
TANH_GELU = "gelu_pytorch_tanh"


@dataclass(frozen=True)
class NumbersReport:
    """What :func:`check_architecture` compared: each output's largest absolute difference."""

    architecture: str
    dtype: DType
    max_differences: dict[str, float]


def checked_architectures(backend: str, registry: PluginRegistry) -> list[str]:
    """The architectures ``backend`` registers a factory for whose schema has a reference implementation."""
    names = set(registry.schema_names())
    return [a for a in sorted(registry.architectures(backend)) if a in names and registry.schema(a).has_reference]


@dataclass(frozen=True)
class _Example:
    """What the numbers checks feed a factory and the reference: the schema's example, seeded."""

    config: dict[str, Any]
    pre: dict[str, Any]
    options: dict[str, Any]
    weights: dict[str, np.ndarray]
    inputs: dict[str, np.ndarray]


def _example(schema: ArchitectureSchema, seed: int) -> _Example:
    config = dict(schema.example_config)
    pre = dict(schema.example_preprocessing)
    rng = np.random.default_rng(seed)
    weights = random_weights(schema, config, rng, scale=schema.example_weight_scale)
    inputs = schema.golden(config, pre, rng)
    return _Example(config, pre, {"preprocessing": pre} if pre else {}, weights, inputs)


def _reference_of(schema: ArchitectureSchema) -> ReferenceFn:
    reference = schema.load_reference()
    if reference is None:
        raise ConfigError(f"architecture {schema.name!r} has no reference implementation to check numbers against", field="reference", value=schema.name)
    return reference


def _where(backend: Backend, schema: ArchitectureSchema, registry: PluginRegistry, compute: DType) -> str:
    try:
        plugin = registry.implementation(backend.name, schema.name).plugin
    except InferoxError:  # pragma: no cover - the factory was found a moment ago
        plugin = ""
    by = f" (plugin {plugin!r})" if plugin else ""
    return f"architecture {schema.name!r} on backend {backend.name!r}{by} (dtype {compute.value})"


def _largest_excess(have: np.ndarray, want: np.ndarray, atol: float, rtol: float) -> tuple[float, tuple[int, ...], bool]:
    """``(max |have - want|, index of the worst element, beyond tolerance?)``; a non-finite value is beyond."""
    err = np.abs(have.astype(np.float64) - want.astype(np.float64))
    if not err.size:
        return 0.0, (), False
    excess = err - (atol + rtol * np.abs(want.astype(np.float64)))
    bad = bool(not np.all(np.isfinite(have)) or excess.max() > 0)
    at = np.unravel_index(int(np.argmax(np.where(np.isfinite(err), err, np.inf))), err.shape)
    return float(err.max()), tuple(int(i) for i in at), bad


def check_architecture(
    backend: Backend,
    architecture: str,
    *,
    registry: PluginRegistry,
    dtype: DType | str | None = None,
    seed: int = 0,
) -> NumbersReport:
    """Run ``architecture``'s golden inputs through ``backend``'s factory and its reference; compare.

    ``dtype`` is passed to the factory (``None``: the weights' f32); the tolerance is that dtype's.
    Raises :class:`ArchitectureMismatch` for the output that differs most beyond tolerance, or for
    a missing output or a wrong shape or dtype (outputs keep the dtypes their specs declare).
    """
    schema = registry.schema(architecture)
    reference = _reference_of(schema)
    compute = DType.parse(dtype) if dtype is not None else DType.F32
    atol, rtol = TOLERANCES.get(compute, TOLERANCES[DType.F32])
    ex = _example(schema, seed)
    expected = reference(ex.config, ex.weights, ex.inputs, **ex.options)
    factory = registry.architecture_factory(backend.name, schema.name)
    model = factory(
        backend=backend, config=ex.config, weights=ex.weights, metadata=ModelMetadata(f"conformance-{schema.name}", architecture=schema.name),
        device=None, dtype=dtype, **ex.options,
    )
    try:
        got = AnyModel(model).forward_any(dict(ex.inputs))
    finally:
        model.close()
    specs = {s.name: s for s in schema.specs(ex.config, ex.pre)[1]}
    where = _where(backend, schema, registry, compute)
    diffs: dict[str, float] = {}
    worst: tuple[float, str, str] | None = None
    for name, want in expected.items():
        if name not in got:
            raise ArchitectureMismatch(f"{where}: output {name!r} is missing (got {', '.join(sorted(got))})", architecture=schema.name, output=name, max_difference=float("inf"))
        have = np.asarray(got[name])
        if have.shape != want.shape:
            raise ArchitectureMismatch(f"{where}: output {name!r} has shape {have.shape}, the reference {want.shape}", architecture=schema.name, output=name, max_difference=float("inf"))
        spec = specs.get(name)
        if spec is not None and DType.from_numpy(have.dtype) is not spec.dtype:
            raise ArchitectureMismatch(
                f"{where}: output {name!r} has dtype {have.dtype}, its spec declares {spec.dtype.value}", architecture=schema.name, output=name, max_difference=float("inf")
            )
        diffs[name], at, bad = _largest_excess(have, want, atol, rtol)
        if bad:
            detail = (
                f"{where}: output {name!r} differs from the reference by up to {diffs[name]:.3g} at index {at} "
                f"(got {have[at]!r}, reference {want[at]!r}; tolerance atol={atol:g}, rtol={rtol:g})"
            )
            if worst is None or diffs[name] > worst[0]:
                worst = (diffs[name], name, detail)
    if worst is not None:
        raise ArchitectureMismatch(worst[2], architecture=schema.name, output=worst[1], max_difference=worst[0])
    return NumbersReport(schema.name, compute, diffs)


@dataclass(frozen=True)
class Sensitivity:
    """What :func:`gelu_sensitivity` found: how far the reference moves, per output, when the exact
    GELU (``fields``: the config fields that name it) becomes the tanh approximation."""

    architecture: str
    fields: tuple[str, ...]
    max_differences: dict[str, float] = field(default_factory=dict)
    #: The outputs whose change exceeds the f32 tolerance: the ones a tanh-GELU backend fails on.
    separating: tuple[str, ...] = ()

    @property
    def separates(self) -> bool:
        """Whether the numbers check can catch a backend that computes the tanh GELU instead."""
        return bool(self.separating)


def gelu_sensitivity(schema: ArchitectureSchema, *, seed: int = 0) -> Sensitivity | None:
    """Whether the schema's example separates the exact GELU from its tanh approximation.

    Runs the reference on the example weights and inputs :func:`check_architecture` uses, once as
    the example config says and once with every field naming the exact GELU (``"gelu"``) switched to
    the tanh one (``"gelu_pytorch_tanh"``), and compares the two with the f32 tolerance: unless some
    output moves beyond it, a backend computing the tanh GELU would pass the numbers check, and the
    example's weights (``example_weight_scale``) or inputs are too small to show the difference.
    ``None`` when the example config names no exact GELU; a :class:`ConfigError` when the schema
    does not accept the tanh spelling (the probe cannot run).
    """
    fields = tuple(sorted(k for k, v in schema.example_config.items() if v == EXACT_GELU))
    if not fields:
        return None
    reference = _reference_of(schema)
    ex = _example(schema, seed)
    variant = {**ex.config, **{k: TANH_GELU for k in fields}}
    schema.parse(variant)  # a ConfigError naming the field when the architecture has no tanh GELU
    exact = reference(ex.config, ex.weights, ex.inputs, **ex.options)
    approx = reference(variant, ex.weights, ex.inputs, **ex.options)
    atol, rtol = TOLERANCES[DType.F32]
    diffs: dict[str, float] = {}
    separating: list[str] = []
    for name, want in exact.items():
        diffs[name], _, beyond = _largest_excess(np.asarray(approx[name]), np.asarray(want), atol, rtol)
        if beyond:
            separating.append(name)
    return Sensitivity(schema.name, fields, diffs, tuple(separating))


def native_input_outputs(backend: Backend, architecture: str, *, registry: PluginRegistry, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(outputs from numpy inputs, outputs from the backend's native tensors)`` of the example model.

    The example's golden inputs are turned into the backend's own arrays, as a caller of that
    framework holds them (``backend.as_native``: i64 token ids are i32 on JAX without x64), and
    passed to the same model: a caller holding torch tensors, jax arrays or ORT values must get the
    same numbers as one holding numpy arrays.
    """
    schema = registry.schema(architecture)
    ex = _example(schema, seed)
    factory = registry.architecture_factory(backend.name, schema.name)
    model = factory(backend=backend, config=ex.config, weights=ex.weights, metadata=ModelMetadata(f"conformance-{schema.name}", architecture=schema.name),
                    device=None, dtype=None, **ex.options)
    try:
        any_model = AnyModel(model)
        from_numpy = any_model.forward_any(dict(ex.inputs))
        native = {k: backend.as_native(np.ascontiguousarray(v), dtype=DType.from_numpy(v.dtype), device=any_model.device) for k, v in ex.inputs.items()}
        from_native = any_model.forward_any(native)
    finally:
        model.close()
    return {k: np.asarray(v) for k, v in from_numpy.items()}, {k: np.asarray(v) for k, v in from_native.items()}


def refused_dtype_error(backend: Backend, architecture: str, *, registry: PluginRegistry, dtype: str = "i32") -> BaseException | None:
    """The error ``backend``'s factory raises for a dtype no model computes in (``None`` if it accepted it)."""
    schema = registry.schema(architecture)
    config = dict(schema.example_config)
    weights = random_weights(schema, config, np.random.default_rng(0))
    factory = registry.architecture_factory(backend.name, schema.name)
    pre: Mapping[str, Any] = schema.example_preprocessing
    try:
        model = factory(backend=backend, config=config, weights=weights, metadata=ModelMetadata("conformance-dtype"), device=None, dtype=dtype, **({"preprocessing": dict(pre)} if pre else {}))
    except Exception as exc:  # noqa: BLE001 - the caller checks what it is
        return exc
    model.close()
    return None
