"""Architectures written once, run by every backend: :class:`Definition` and what runs one.

A definition is the compute of an architecture, written against an array namespace ``xp`` (the
Python array API standard) and the fused operations of :class:`~inferox.core.ops.Ops`::

    def forward(xp, ops, params, inputs, config):
        x = inputs["input"]
        for i, layer in enumerate(params):
            x = ops.linear(x, layer["weight"], layer["bias"])
            ...
        return {"output": x}

    MLP_DEFINITION = Definition(forward=forward, configure=..., prepare=...)

It is attached to the architecture's :class:`~inferox.core.ArchitectureSchema` (``definition=``),
and then:

* every backend that declares a namespace (:meth:`Backend.array_namespace
  <inferox.core.Backend.array_namespace>`) runs it with no code of its own for the architecture —
  the registry gives such a backend a generic factory (:func:`definition_factory`) wherever no
  plugin registered one: NumPy-like :class:`~inferox.core.ArrayBackend`\\ s eagerly, torch under
  ``inference_mode``, jax under ``jit`` with shape buckets;
* the definition run on NumPy in float64 *is* the architecture's reference
  (:func:`definition_reference`): golden outputs at pack time and the conformance suite's numbers
  come from it.

The parts of a definition (each documented on :class:`Definition`): ``forward`` (the compute),
``configure`` (``config.json`` and the package's pre-processing settings → the static config object
``forward`` receives; hashable, so jit can specialise on it), ``select`` (which stored weights it
needs, checked by name and shape), ``prepare`` (once at load: fuse, transpose, precompute tables),
``check_inputs`` (value checks before compute), ``input_defaults`` (fills for left-out optional
inputs, so a compiled signature serves requests with and without them) and ``text`` (what a
tokenizer for it may produce).

:class:`DefinitionPlan` is the backend-independent half of loading (config, specs, weights read,
selected, prepared on the host, the tokenizer); a backend turns a plan into its model
(:meth:`Backend.definition_model <inferox.core.Backend.definition_model>`).
:class:`DefinitionModel` is the eager model core gives every array backend.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from inferox.core.dtype import DType
from inferox.core.errors import ConfigError, DTypeError, InvalidInputError, PackageFormatError, ServiceUnavailableError
from inferox.core.model import Model, ModelMetadata
from inferox.core.ops import Ops
from inferox.core.spec import TensorSpec

if TYPE_CHECKING:
    from inferox.core.backend import Backend
    from inferox.core.schema import ArchitectureSchema

__all__ = [
    "PREPROCESSING_OPTIONS",
    "Definition",
    "DefinitionModel",
    "DefinitionPlan",
    "TextSettings",
    "definition_factory",
    "definition_reference",
    "map_arrays",
    "numpy_namespace",
    "preprocessing_from_options",
    "read_host_weights",
    "select_weights",
]

#: Factory options that override the same keys of the package's ``preprocessing`` settings.
PREPROCESSING_OPTIONS = ("pooling", "normalize", "max_seq_length")

ForwardFn = Callable[[Any, Ops, Any, Mapping[str, Any], Any], Mapping[str, Any]]
ConfigureFn = Callable[[Mapping[str, Any], Mapping[str, Any]], Any]
PrepareFn = Callable[[Any, Any, Any], Any]
SelectFn = Callable[[Mapping[str, Any], Any, "str | None"], dict[str, Any]]
CheckFn = Callable[[Any, Mapping[str, Any], Callable[[Any], tuple[int, int]]], None]


@dataclass(frozen=True)
class TextSettings:
    """What a tokenizer for a definition may produce: its length limits and the inputs it fills."""

    #: The longest sequence the model takes (its position table): a tokenizer never exceeds it.
    limit: int
    #: The default truncation length (``max_seq_length``), ``None`` for the tokenizer's own.
    max_length: int | None = None
    #: The inputs a tokenizer fills, among ``input_ids``, ``attention_mask``, ``token_type_ids``.
    inputs: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")


def _frozen_config(config: Mapping[str, Any], preprocessing: Mapping[str, Any]) -> Any:
    return None


def _no_check(config: Any, inputs: Mapping[str, Any], value_range: Callable[[Any], tuple[int, int]]) -> None:
    return None


@dataclass(frozen=True)
class Definition:
    """An architecture's compute, written once for every backend (see the module docstring).

    Attributes:
        forward: ``forward(xp, ops, params, inputs, config) -> outputs``. ``xp`` is an array API
            namespace, ``ops`` an :class:`~inferox.core.ops.Ops` over it, ``params`` what
            ``prepare`` returned (a pytree of dicts, lists and tuples of ``xp`` arrays in the
            compute dtype), ``inputs`` the request's arrays by name (float inputs already in the
            compute dtype; optional inputs left out are absent), ``config`` what ``configure``
            returned. Returns arrays by output name; core casts each to its spec's dtype. It must
            be traceable: no Python branch on array *values* (a backend's ``ops`` may do that, as
            torch's ``attention_bias`` does), no host round trips.
        configure: ``configure(config, preprocessing) -> config object`` from ``config.json`` and
            the package's pre-processing settings (factory options merged in). Validates (a bad
            field is a :class:`~inferox.core.errors.ConfigError` naming it) and returns something
            hashable: jax compiles one executable per config object. Default: ``None``.
        select: ``select(weights, config, source) -> {name: array}`` picks the stored weights the
            model needs (host arrays with ``.shape``), checking names and shapes; a missing or
            misshapen one is a :class:`~inferox.core.errors.PackageFormatError` naming it. Default:
            the schema's ``weight_shapes`` through :func:`select_weights`.
        prepare: ``prepare(xp, params, config) -> params``, once at load, on host arrays with the
            NumPy namespace: rename to the layout ``forward`` reads, fuse (query/key/value into one
            matrix), precompute tables. Default: the selected weights as they are.
        check_inputs: ``check_inputs(config, inputs, value_range)`` rejects what the model cannot
            compute (ids outside the vocabulary, sequences past the position table) with
            :class:`~inferox.core.errors.InvalidInputError`; ``value_range(array) -> (min, max)``
            is the backend's way to read an integer array's range. Runs before any compute.
        input_defaults: ``input_defaults(config) -> {input: fill}``: constant fills for optional
            inputs a request may leave out (``token_type_ids`` → 0, ``attention_mask`` → 1). A
            backend that compiles per signature fills them so one executable serves both; others
            pass the inputs as they came. Default: none.
        text: ``text(config) -> TextSettings | None``: for models that take token ids, what a
            tokenizer may produce (the factory option ``tokenizer_path`` then attaches one). Default:
            not a text model.
    """

    forward: ForwardFn
    configure: ConfigureFn = _frozen_config
    select: SelectFn | None = None
    prepare: PrepareFn | None = None
    check_inputs: CheckFn = _no_check
    input_defaults: Callable[[Any], Mapping[str, int | float]] | None = None
    text: Callable[[Any], TextSettings | None] | None = None


# -- helpers shared by definitions and backends -----------------------------------------------------
def numpy_namespace() -> Any:
    """The array API namespace for NumPy arrays (``array_api_compat.numpy``)."""
    import array_api_compat.numpy as xp

    return xp


def map_arrays(tree: Any, fn: Callable[[Any], Any]) -> Any:
    """``tree`` (nested dicts, lists and tuples) with ``fn`` applied to every other leaf."""
    if isinstance(tree, Mapping):
        return {k: map_arrays(v, fn) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(map_arrays(v, fn) for v in tree)
    return fn(tree)


def array_leaves(tree: Any) -> list[Any]:
    """Every array of ``tree`` (see :func:`map_arrays`)."""
    out: list[Any] = []
    map_arrays(tree, out.append)
    return out


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in value.shape)


def select_weights(
    weights: Mapping[str, Any],
    expected: Mapping[str, tuple[int, ...]] | Sequence[str],
    *,
    prefixes: tuple[str, ...] = ("",),
    optional: frozenset[str] | set[str] = frozenset(),
    source: str | None = None,
) -> dict[str, Any]:
    """Pick ``expected`` names out of ``weights``, trying each of ``prefixes`` (``"bert."``).

    Shapes are checked where ``expected`` maps names to shapes. A missing weight (not in
    ``optional``) or a wrong shape is a :class:`PackageFormatError` whose ``field`` names the weight.
    """
    names = list(expected)
    prefix = next((p for p in prefixes if all((p + n) in weights for n in names if n not in optional)), None)
    if prefix is None:
        best = max(prefixes, key=lambda p: sum((p + n) in weights for n in names))
        missing = next(n for n in names if n not in optional and (best + n) not in weights)
        raise PackageFormatError(f"weights are missing {best + missing!r} ({len(weights)} tensors present)", path=source, field=best + missing)
    out: dict[str, Any] = {}
    for n in names:
        key = prefix + n
        if key not in weights:
            continue
        value = weights[key]
        if isinstance(expected, Mapping) and _shape(value) != tuple(expected[n]):
            raise PackageFormatError(f"weight {key!r} has shape {_shape(value)}, expected {tuple(expected[n])}", path=source, field=key)
        out[n] = value
    return out


def read_host_weights(weights: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Weights as host numpy arrays — from a safetensors file (a package's) or a mapping of arrays
    (numpy, or anything with ``__array__`` / DLPack) — and the file they came from."""
    if isinstance(weights, Mapping):
        # Copies: a model must not change when the caller later writes into arrays it still owns.
        return {str(k): np.array(v, copy=True) if isinstance(v, np.ndarray) else np.array(_to_numpy(v), copy=True) for k, v in weights.items()}, None
    from inferox.core.weights import load_safetensors

    source = os.fspath(weights)
    return load_safetensors(source, framework="numpy"), source


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor: leave autograd, come to the host
        value = value.detach().cpu()
    try:
        return np.asarray(value)
    except (TypeError, ValueError, RuntimeError):
        return np.from_dlpack(value)


def _float_kind(a: np.ndarray) -> bool:
    return a.dtype.kind == "f" or a.dtype == DType.BF16.to_numpy()


def preprocessing_from_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The pre-processing settings a factory applies: the ``preprocessing`` option (what the package
    records) with the flat options ``pooling`` / ``normalize`` / ``max_seq_length`` winning."""
    pre = options.get("preprocessing")
    out: dict[str, Any] = {}
    if pre is not None:
        if not isinstance(pre, Mapping):
            raise ConfigError("must be an object", field="preprocessing", value=type(pre).__name__)
        out.update(pre)
    for key in PREPROCESSING_OPTIONS:
        if options.get(key) is not None:
            out[key] = options[key]
    return out


# -- the backend-independent half of loading --------------------------------------------------------
@dataclass
class DefinitionPlan:
    """An architecture made ready for a backend: parsed config, specs, prepared host weights, tokenizer.

    Built by :meth:`build` (the generic factory does) from a factory's arguments; a backend's
    :meth:`~inferox.core.Backend.definition_model` turns it into a model by converting
    :attr:`params` (host arrays) to its native arrays and running :meth:`run`.
    """

    schema: ArchitectureSchema
    definition: Definition
    #: What ``Definition.configure`` returned: the static config ``forward`` receives.
    config: Any
    #: The pre-processing settings applied (the package's, factory options merged in).
    preprocessing: dict[str, Any]
    input_specs: list[TensorSpec]
    output_specs: list[TensorSpec]
    #: The prepared parameters as host numpy arrays (a pytree), in the weights' float dtype. A backend
    #: model sets it to ``None`` once it holds its own copy (see :meth:`take_params`).
    params: Any
    #: The safetensors file the weights came from (``None`` for a mapping).
    source: str | None = None
    #: A :class:`~inferox.core.text.TextEncoder` when the factory got ``tokenizer_path``.
    text_encoder: Any = None
    #: Fills for optional inputs left out of a request (``Definition.input_defaults``).
    input_defaults: dict[str, int | float] = field(default_factory=dict)
    #: What a tokenizer for the model may produce (``Definition.text``); ``None``: not a text model.
    text: TextSettings | None = None
    _output_dtypes: dict[str, DType] = field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls,
        schema: ArchitectureSchema,
        *,
        config: Mapping[str, Any],
        weights: str | os.PathLike[str] | Mapping[str, Any],
        options: Mapping[str, Any] | None = None,
        float_dtype: Any = None,
    ) -> DefinitionPlan:
        """Parse, read and select the weights, prepare them on the host, attach a tokenizer.

        ``float_dtype`` (a numpy dtype) casts every float weight before ``prepare``; default: the
        weights' own float dtype (float32 when a file mixes float types).
        """
        definition = schema.load_definition()
        if definition is None:
            raise ConfigError(f"architecture {schema.name!r} has no definition to run", field="definition", value=schema.name)
        opts = dict(options or {})
        if not isinstance(config, Mapping):
            raise ConfigError(f"a {schema.name} config must be an object", field="config", value=type(config).__name__)
        pre = preprocessing_from_options(opts)
        cfg = definition.configure(config, pre)
        inputs, outputs = schema.specs(config, pre)
        host, source = read_host_weights(weights)
        if definition.select is not None:
            chosen = definition.select(host, cfg, source)
        else:
            chosen = select_weights(host, schema.weight_shapes(config), source=source)
        chosen = _check_float(chosen, source, float_dtype)
        params = definition.prepare(numpy_namespace(), chosen, cfg) if definition.prepare is not None else chosen
        text_encoder = None
        settings = definition.text(cfg) if definition.text is not None else None
        if opts.get("tokenizer_path") is not None:
            if settings is None:
                raise ConfigError(f"architecture {schema.name!r} does not take text", field="tokenizer_path", value=str(opts["tokenizer_path"]))
            from inferox.core.text import TextEncoder

            text_encoder = TextEncoder.from_file(opts["tokenizer_path"], max_length=settings.max_length, limit=settings.limit, inputs=settings.inputs)
        defaults = dict(definition.input_defaults(cfg)) if definition.input_defaults is not None else {}
        return cls(
            schema=schema, definition=definition, config=cfg, preprocessing=pre, input_specs=list(inputs), output_specs=list(outputs),
            params=params, source=source, text_encoder=text_encoder, input_defaults=defaults, text=settings,
            _output_dtypes={s.name: s.dtype for s in outputs},
        )

    def take_params(self) -> Any:
        """The host parameters, handed over once: the plan forgets them, so that a model holding
        converted copies (on a GPU, in bf16) does not keep the host ones alive as well."""
        params, self.params = self.params, None
        if params is None:
            raise ConfigError("this plan's parameters were already taken by a model", field="params", value=None)
        return params

    def example_inputs(self, batch: int = 1, length: int = 8) -> dict[str, np.ndarray]:
        """Every required input at ``batch`` x ``length`` (dynamic dimensions) as host arrays: the
        definition's fill for inputs it has one for (an attention mask of ones), zeros for the rest.
        What a backend model's ``example_inputs`` converts to its native arrays."""
        out: dict[str, np.ndarray] = {}
        for spec in self.input_specs:
            if spec.optional:
                continue
            shape = [(batch if i == 0 else length) if d is None else d for i, d in enumerate(spec.shape)]
            out[spec.name] = np.full(shape, self.input_defaults.get(spec.name, 0), dtype=spec.dtype.to_numpy())
        return out

    # -- running ------------------------------------------------------------------------------
    def check_inputs(self, inputs: Mapping[str, Any], value_range: Callable[[Any], tuple[int, int]]) -> None:
        """The definition's value checks (:class:`InvalidInputError`), before any compute."""
        self.definition.check_inputs(self.config, inputs, value_range)

    def run(self, xp: Any, ops: Ops, params: Any, inputs: Mapping[str, Any], float_dtype: Any) -> dict[str, Any]:
        """``forward`` on native ``inputs``: float inputs cast to ``float_dtype`` first, outputs cast
        to their specs' dtypes after (``float_dtype`` is the namespace's dtype of the parameters)."""
        ready = {}
        for name, value in inputs.items():
            if value is None:
                continue
            if xp.isdtype(value.dtype, "real floating") and value.dtype != float_dtype:
                value = xp.astype(value, float_dtype)
            ready[name] = value
        outputs = self.definition.forward(xp, ops, params, ready, self.config)
        out: dict[str, Any] = {}
        for name, value in outputs.items():
            want = self._output_dtypes.get(name)
            if want is not None:
                target = getattr(xp, want.numpy_name)
                if value.dtype != target:
                    value = xp.astype(value, target)
            out[name] = value
        return out


def _check_float(arrays: Mapping[str, Any], source: str | None, float_dtype: Any) -> dict[str, Any]:
    """Parameters must be floating point (a :class:`PackageFormatError` naming the first that is
    not); floats are cast to ``float_dtype``, or to float32 when the file mixes float types."""
    host = {k: np.asarray(v) if not isinstance(v, np.ndarray) else v for k, v in arrays.items()}
    for name, a in host.items():
        if not _float_kind(a):
            raise PackageFormatError(f"weight {name!r} has dtype {a.dtype}, expected a float type", path=source, field=name)
    target = float_dtype
    if target is None and len({a.dtype for a in host.values()}) > 1:
        target = np.float32
    if target is None:
        return host
    return {k: v if v.dtype == target else v.astype(target) for k, v in host.items()}


# -- the eager model every array backend gets ---------------------------------------------------------
#: The dtypes an eager :class:`DefinitionModel` may compute in (where its backend supports them).
EAGER_DTYPES = (DType.F16, DType.F32, DType.F64)


class DefinitionModel(Model):
    """A definition run eagerly on a backend's namespace and ops (what :class:`~inferox.core.ArrayBackend` gives).

    Parameters are the plan's host arrays converted with the backend's ``as_native`` (in ``dtype``:
    f16, f32 or f64 where the backend supports it; default the weights' own), float inputs are cast
    to that dtype, outputs to their specs' dtypes.
    """

    def __init__(self, plan: DefinitionPlan, *, backend: Backend, metadata: ModelMetadata, device: Any = None, dtype: DType | str | None = None) -> None:
        dev = backend.check_device(device)
        super().__init__(backend=backend, metadata=metadata, device=dev)
        self.plan = plan
        #: The static config the definition runs with (what ``Definition.configure`` returned).
        self.config = plan.config
        self.text_encoder = plan.text_encoder
        self.xp = backend.array_namespace(dev)
        self.ops = backend.ops(dev)
        compute = DType.parse(dtype) if dtype is not None else None
        if compute is not None and (compute not in EAGER_DTYPES or compute not in backend.supported_dtypes(dev)):
            allowed = [d.value for d in EAGER_DTYPES if d in backend.supported_dtypes(dev)]
            raise DTypeError(f"backend {backend.name!r} cannot compute a model in {compute.value}", name="dtype", expected=", ".join(allowed), actual=compute.value)
        host = plan.take_params()
        if compute is not None:
            host = map_arrays(host, lambda a: a.astype(compute.to_numpy()) if _float_kind(a) else a)
        self.params: Any = map_arrays(host, lambda a: backend.as_native(a, device=dev))
        floats = [a for a in array_leaves(host) if _float_kind(a)]
        self._float_dtype = getattr(self.xp, (DType.from_numpy(floats[0].dtype) if floats else DType.F32).numpy_name)
        self._closed = False

    @property
    def input_specs(self) -> Sequence[TensorSpec]:
        return self.plan.input_specs

    @property
    def output_specs(self) -> Sequence[TensorSpec]:
        return self.plan.output_specs

    def check_inputs(self, inputs: Mapping[str, Any]) -> None:
        self.plan.check_inputs(inputs, _value_range)

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        if self._closed:
            raise ServiceUnavailableError(f"model {self.name!r} is closed", model=self.name)
        return self.plan.run(self.xp, self.ops, self.params, inputs, self._float_dtype)

    def encode_text(self, texts: Sequence[str] | str, *, max_length: int | None = None) -> dict[str, Any]:
        """Tokenise and run ``texts`` in one call (needs a tokenizer: the ``tokenizer_path`` option)."""
        return encode_and_run(self, texts, max_length=max_length)

    def memory_requirements(self) -> int:
        return 0 if self._closed else sum(int(np.asarray(a).nbytes) for a in array_leaves(self.params))

    def close(self) -> None:
        self._closed = True
        self.params = None


def _value_range(value: Any) -> tuple[int, int]:
    a = np.asarray(value)
    return int(a.min()), int(a.max())


def encode_and_run(model: Model, texts: Sequence[str] | str, *, max_length: int | None = None) -> dict[str, Any]:
    """Tokenise ``texts`` with ``model.text_encoder``, check and run them (native outputs)."""
    encoder = getattr(model, "text_encoder", None)
    if encoder is None:
        raise InvalidInputError("this model has no tokenizer; build it with the tokenizer_path option", name="text")
    batch = encoder.encode(texts, max_length=max_length)
    natives = {k: model.backend.as_native(v, dtype=DType.I64, device=model.device) for k, v in batch.items()}
    model.check_inputs(natives)
    return model.forward(natives)


# -- the generic factory and the reference -----------------------------------------------------------
def definition_factory(schema: ArchitectureSchema) -> Callable[..., Model]:
    """The factory the registry gives a backend for ``schema`` when no plugin registered one: it builds
    a :class:`DefinitionPlan` and asks the backend for its model
    (:meth:`Backend.definition_model <inferox.core.Backend.definition_model>`)."""

    def create_model(
        *,
        backend: Backend,
        config: Mapping[str, Any],
        weights: str | os.PathLike[str] | Mapping[str, Any],
        metadata: ModelMetadata,
        device: Any = None,
        dtype: DType | str | None = None,
        **options: Any,
    ) -> Model:
        if dtype is not None:
            parsed = DType.parse(dtype)
            if not parsed.is_float:
                raise DTypeError(f"a model computes in a float dtype, not {parsed.value}", name="dtype", expected="f16, bf16, f32 or f64", actual=parsed.value)
        plan = DefinitionPlan.build(schema, config=config, weights=weights, options=options)
        return backend.definition_model(plan, metadata=metadata, device=device, dtype=dtype, **options)

    create_model.__name__ = f"create_{schema.name.replace('-', '_')}"
    create_model.__qualname__ = create_model.__name__
    create_model.__doc__ = f"The generic factory of architecture {schema.name!r}: its definition on the backend's namespace and ops."
    return create_model


def definition_reference(schema: ArchitectureSchema) -> Callable[..., dict[str, np.ndarray]]:
    """``reference(config, weights, inputs, **options) -> outputs``: ``schema``'s definition run on
    NumPy with the reference :class:`~inferox.core.ops.Ops`, parameters and float inputs in float64,
    outputs in their specs' dtypes. What golden outputs and the conformance suite's numbers are."""

    def reference(config: Mapping[str, Any], weights: Mapping[str, Any] | str | os.PathLike[str], inputs: Mapping[str, Any], **options: Any) -> dict[str, np.ndarray]:
        plan = DefinitionPlan.build(schema, config=config, weights=weights, options={k: v for k, v in options.items() if k != "tokenizer_path"}, float_dtype=np.float64)
        xp = numpy_namespace()
        ready = {k: np.asarray(v) for k, v in inputs.items() if v is not None}
        outputs = plan.run(xp, Ops(xp), plan.params, ready, xp.float64)
        return {k: np.asarray(v) for k, v in outputs.items()}

    reference.__name__ = f"{schema.name.replace('-', '_')}_reference"
    reference.__qualname__ = reference.__name__
    return reference
