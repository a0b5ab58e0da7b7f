"""Conformance that checks numbers: a backend's factory for an architecture against its NumPy reference.

For every architecture a backend registers a factory for, whose schema carries a reference
implementation, :func:`check_architecture` builds the schema's example model with seeded random
weights, runs the schema's golden inputs through the backend and through the reference, and compares
every output with the tolerance of the dtype the model computes in (:data:`TOLERANCES`). A mismatch
is a :class:`ArchitectureMismatch` naming the architecture, the output, the largest difference and
where it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from inferox.core.backend import Backend
from inferox.core.dtype import DType
from inferox.core.errors import ConfigError
from inferox.core.model import AnyModel, ModelMetadata
from inferox.core.plugins import PluginRegistry
from inferox.core.schema import random_weights

__all__ = ["TOLERANCES", "ArchitectureMismatch", "NumbersReport", "check_architecture", "checked_architectures", "refused_dtype_error"]

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
    reference = schema.load_reference()
    if reference is None:
        raise ConfigError(f"architecture {schema.name!r} has no reference implementation to check numbers against", field="reference", value=schema.name)
    compute = DType.parse(dtype) if dtype is not None else DType.F32
    atol, rtol = TOLERANCES.get(compute, TOLERANCES[DType.F32])
    config = dict(schema.example_config)
    pre = dict(schema.example_preprocessing)
    options: dict[str, Any] = {"preprocessing": pre} if pre else {}
    rng = np.random.default_rng(seed)
    weights = random_weights(schema, config, rng, scale=schema.example_weight_scale)
    inputs = schema.golden(config, pre, rng)
    expected = reference(config, weights, inputs, **options)
    factory = registry.architecture_factory(backend.name, schema.name)
    model = factory(
        backend=backend, config=config, weights=weights, metadata=ModelMetadata(f"conformance-{schema.name}", architecture=schema.name),
        device=None, dtype=dtype, **options,
    )
    try:
        got = AnyModel(model).forward_any(dict(inputs))
    finally:
        model.close()
    specs = {s.name: s for s in schema.specs(config, pre)[1]}
    where = f"architecture {schema.name!r} on backend {backend.name!r} (dtype {compute.value})"
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
        err = np.abs(have.astype(np.float64) - want.astype(np.float64))
        diffs[name] = float(err.max()) if err.size else 0.0
        excess = err - (atol + rtol * np.abs(want.astype(np.float64)))
        if err.size and (not np.all(np.isfinite(have)) or excess.max() > 0):
            at = np.unravel_index(int(np.argmax(np.where(np.isfinite(err), err, np.inf))), err.shape)
            detail = (
                f"{where}: output {name!r} differs from the reference by up to {diffs[name]:.3g} at index {tuple(int(i) for i in at)} "
                f"(got {have[at]!r}, reference {want[at]!r}; tolerance atol={atol:g}, rtol={rtol:g})"
            )
            if worst is None or diffs[name] > worst[0]:
                worst = (diffs[name], name, detail)
    if worst is not None:
        raise ArchitectureMismatch(worst[2], architecture=schema.name, output=worst[1], max_difference=worst[0])
    return NumbersReport(schema.name, compute, diffs)


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
