"""What an architecture *is*, independent of any backend: :class:`ArchitectureSchema`.

A plugin contributes a schema through the ``inferox_register_schemas`` hook, and — separately, from
the same or any other plugin — a backend's factory for it through ``inferox_register_architectures``.
The package builder (``inferox pack``), ``inferox verify``, the engine and the conformance suite read
architectures from the plugin registry only (:meth:`inferox.core.PluginRegistry.schema`); the
standard architectures ``mlp`` and ``bert`` are contributed the same way, by core's built-in plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferox.core.errors import ConfigError, PluginError
from inferox.core.spec import TensorSpec

__all__ = ["ArchitectureSchema", "ReferenceFn", "random_weights"]

ParseFn = Callable[[Mapping[str, Any]], Any]
ShapesFn = Callable[[Mapping[str, Any]], Mapping[str, tuple[int, ...]]]
SpecsFn = Callable[[Mapping[str, Any], Mapping[str, Any]], tuple[list[TensorSpec], list[TensorSpec]]]
OutputsFn = Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]]
DescribeFn = Callable[[Mapping[str, Any]], dict[str, Any]]
GoldenFn = Callable[[Mapping[str, Any], Mapping[str, Any], np.random.Generator], dict[str, np.ndarray]]
#: ``reference(config, weights, inputs, **options) -> outputs``: the architecture computed in NumPy.
ReferenceFn = Callable[..., dict[str, np.ndarray]]


def _no_facts(config: Mapping[str, Any]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class ArchitectureSchema:
    """An architecture, as every backend and package must agree on it.

    Each callable takes the model's ``config.json`` (a mapping) and, where named, the package's
    pre-processing settings (``preprocessing.json``, ``{}`` when there are none); a bad config raises
    :class:`~inferox.core.errors.ConfigError` naming the field.

    Attributes:
        name: the architecture's name (lower case), what packages record and factories register for.
        parse: ``parse(config)`` validates the config (and returns the parsed form the backends use).
        weight_shapes: ``weight_shapes(config)`` → every weight name the model needs and its shape.
        specs: ``specs(config, preprocessing)`` → ``(input specs, output specs)``.
        golden: ``golden(config, preprocessing, rng)`` → a small batch of inputs: what a package
            stores as its golden case and what the conformance suite feeds every backend.
        example_config: a tiny valid config, for the conformance suite and for tests.
        example_weight_scale: the standard deviation of the conformance suite's random weights: large
            enough that activations reach the range where a wrong one (tanh vs exact GELU) shows.
        example_preprocessing: pre-processing settings the conformance suite uses with it (passed
            to the factory and the reference as ``preprocessing=``), so optional outputs are checked too.
        model_types: the ``config.json`` ``model_type`` values that mean this architecture — how a
            Hugging Face folder is recognised (the name itself always counts).
        family: a free-form grouping shown to users (``"encoder"``, ``"feedforward"``).
        default_outputs: ``default_outputs(config, preprocessing)`` → the outputs a request gets when
            it names none, recorded in packages built for the architecture (default: every output).
        describe: ``describe(config)`` → facts worth showing (hidden size, layers), recorded in
            ``model_info.json``.
        reference: a NumPy implementation, ``reference(config, weights, inputs, **options) ->
            outputs`` (or a lazy ``"module:function"`` naming one): the conformance suite compares
            every backend's factory with it. ``None``: the numbers are not checked.
        plugin: the plugin that registered the schema (filled in by the registry).
    """

    name: str
    parse: ParseFn
    weight_shapes: ShapesFn
    specs: SpecsFn
    golden: GoldenFn
    example_config: Mapping[str, Any]
    model_types: tuple[str, ...] = ()
    family: str = ""
    example_preprocessing: Mapping[str, Any] = field(default_factory=dict)
    example_weight_scale: float = 0.2
    default_outputs: OutputsFn | None = None
    describe: DescribeFn = _no_facts
    reference: str | ReferenceFn | None = None
    plugin: str = field(default="", compare=False)

    def outputs_by_default(self, config: Mapping[str, Any], preprocessing: Mapping[str, Any] | None = None) -> list[str]:
        """The outputs a request that names none gets (every output unless the schema says otherwise)."""
        pre = preprocessing or {}
        if self.default_outputs is not None:
            return list(self.default_outputs(config, pre))
        return [s.name for s in self.specs(config, pre)[1]]

    def load_reference(self) -> ReferenceFn | None:
        """The reference implementation, imported if it was registered as a ``"module:function"`` string."""
        if self.reference is None or callable(self.reference):
            return self.reference
        from inferox.core.plugins import load_object

        try:
            fn = load_object(self.reference)
        except (ImportError, AttributeError) as exc:
            raise PluginError(f"the reference of architecture {self.name!r} ({self.reference}) failed to load: {type(exc).__name__}: {exc}", plugin=self.plugin) from exc
        if not callable(fn):
            raise PluginError(f"the reference of architecture {self.name!r} ({self.reference}) is not callable", plugin=self.plugin)
        return fn  # type: ignore[no-any-return]


def random_weights(schema: ArchitectureSchema, config: Mapping[str, Any], rng: np.random.Generator, *, scale: float = 0.2) -> dict[str, np.ndarray]:
    """Float32 weights of the shapes ``schema`` wants for ``config``, drawn from ``rng`` (standard normal times ``scale``)."""
    shapes = schema.weight_shapes(config)
    if not shapes:
        raise ConfigError(f"architecture {schema.name!r} declares no weights", field="weight_shapes", value=dict(shapes))
    return {name: (rng.standard_normal(shape) * scale).astype(np.float32) for name, shape in shapes.items()}
