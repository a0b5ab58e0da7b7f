"""What an architecture *is*, independent of any backend: :class:`ArchitectureSchema`.

A plugin contributes a schema through the ``inferox_register_schemas`` hook. A schema with a
:class:`~inferox.core.definition.Definition` (its compute, written once against an array namespace)
runs on every backend that declares a namespace, with no per-backend code; a plugin may still
register a backend's own factory for it through ``inferox_register_architectures`` (a hand-written
backend must).
The package builder (``inferox pack``), ``inferox verify``, the engine and the conformance suite read
architectures from the plugin registry only (:meth:`inferox.core.PluginRegistry.schema`); the
standard architectures ``mlp`` and ``bert`` are contributed the same way, by core's built-in plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from inferox.core.errors import ConfigError, PluginError
from inferox.core.spec import TensorSpec

if TYPE_CHECKING:
    from inferox.core.definition import Definition

__all__ = ["ArchitectureSchema", "ReferenceFn", "ResolveFn", "TaskFn", "random_weights"]

ParseFn = Callable[[Mapping[str, Any]], Any]
ShapesFn = Callable[[Mapping[str, Any]], Mapping[str, tuple[int, ...]]]
SpecsFn = Callable[[Mapping[str, Any], Mapping[str, Any]], tuple[list[TensorSpec], list[TensorSpec]]]
OutputsFn = Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]]
DescribeFn = Callable[[Mapping[str, Any]], dict[str, Any]]
GoldenFn = Callable[[Mapping[str, Any], Mapping[str, Any], np.random.Generator], dict[str, np.ndarray]]
#: ``reference(config, weights, inputs, **options) -> outputs``: the architecture computed in NumPy.
ReferenceFn = Callable[..., dict[str, np.ndarray]]
#: ``resolve(config, preprocessing, *, weight_names, encoder_only) -> preprocessing``: what a package records.
ResolveFn = Callable[..., dict[str, Any]]
#: ``task(config, preprocessing) -> {"task": ..., ...} | None``: what a server needs to serve the model.
TaskFn = Callable[[Mapping[str, Any], Mapping[str, Any]], "dict[str, Any] | None"]


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
            every backend's factory with it and ``inferox pack`` computes golden outputs with it.
            ``None``: the definition run on NumPy in float64 where there is one
            (:func:`~inferox.core.definition.definition_reference`), else numbers are not checked.
        definition: the architecture's compute (a :class:`~inferox.core.definition.Definition`, or a
            lazy ``"module:attribute"`` naming one): every backend that declares an array namespace
            runs it, and it is the reference. ``None``: only backends that register a factory run it.
        resolve: ``resolve(config, preprocessing, *, weight_names, encoder_only) -> preprocessing``:
            at pack time, the settings a package records from the source (which task head the
            checkpoint's ``architectures`` names, which optional weights it holds); refuses a head
            it does not support with :class:`~inferox.core.errors.UnsupportedHeadError` unless
            ``encoder_only``. ``None``: the source's pre-processing settings as they are.
        task: ``task(config, preprocessing) -> dict | None``: what a server needs to serve the model
            (``{"task": "embed" | "classify" | "rerank", ...}``), recorded in ``model_info.json``.
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
    definition: str | Definition | None = None
    resolve: ResolveFn | None = None
    task: TaskFn | None = None
    plugin: str = field(default="", compare=False)

    def outputs_by_default(self, config: Mapping[str, Any], preprocessing: Mapping[str, Any] | None = None) -> list[str]:
        """The outputs a request that names none gets (every output unless the schema says otherwise)."""
        pre = preprocessing or {}
        if self.default_outputs is not None:
            return list(self.default_outputs(config, pre))
        return [s.name for s in self.specs(config, pre)[1]]

    @property
    def has_reference(self) -> bool:
        """Whether numbers can be checked: a registered reference, or a definition to run on NumPy."""
        return self.reference is not None or self.definition is not None

    def load_reference(self) -> ReferenceFn | None:
        """The reference implementation: the registered one (imported if it was given as a
        ``"module:function"`` string), else the definition run on NumPy in float64, else ``None``."""
        if self.reference is None:
            if self.definition is None:
                return None
            from inferox.core.definition import definition_reference

            self.load_definition()  # a broken definition is reported here, naming the plugin
            return definition_reference(self)
        if callable(self.reference):
            return self.reference
        return self._load("reference", self.reference)  # type: ignore[no-any-return]

    def load_definition(self) -> Definition | None:
        """The architecture's :class:`~inferox.core.definition.Definition`, imported if it was given
        as a ``"module:attribute"`` string; ``None`` when the schema has none."""
        if self.definition is None or not isinstance(self.definition, str):
            return self.definition
        from inferox.core.definition import Definition

        loaded = self._load("definition", self.definition, check=False)
        if not isinstance(loaded, Definition):
            raise PluginError(f"the definition of architecture {self.name!r} ({self.definition}) is not an inferox.core.Definition", plugin=self.plugin)
        return loaded

    def _load(self, what: str, path: str, *, check: bool = True) -> Any:
        from inferox.core.plugins import load_object

        try:
            obj = load_object(path)
        except (ImportError, AttributeError) as exc:
            raise PluginError(f"the {what} of architecture {self.name!r} ({path}) failed to load: {type(exc).__name__}: {exc}", plugin=self.plugin) from exc
        if check and not callable(obj):
            raise PluginError(f"the {what} of architecture {self.name!r} ({path}) is not callable", plugin=self.plugin)
        return obj


def random_weights(schema: ArchitectureSchema, config: Mapping[str, Any], rng: np.random.Generator, *, scale: float = 0.2) -> dict[str, np.ndarray]:
    """Float32 weights of the shapes ``schema`` wants for ``config``, drawn from ``rng`` (standard normal times ``scale``)."""
    shapes = schema.weight_shapes(config)
    if not shapes:
        raise ConfigError(f"architecture {schema.name!r} declares no weights", field="weight_shapes", value=dict(shapes))
    return {name: (rng.standard_normal(shape) * scale).astype(np.float32) for name, shape in shapes.items()}
