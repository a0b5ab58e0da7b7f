"""``JaxModel``: the base class of jit-compiled JAX models, and :class:`JaxDefinitionModel`.

Every architecture with a :class:`~inferox.core.Definition` (``mlp``, the encoder families, a
plugin's) runs as a :class:`JaxDefinitionModel`: the definition on ``jax.numpy`` with
:class:`~inferox.jax.ops.JaxOps` *is* its :meth:`JaxModel.apply`. There is no per-architecture JAX
code. A model written by hand subclasses :class:`JaxModel`, declares its input and output
:class:`~inferox.core.TensorSpec`\\ s and writes one *pure* function, :meth:`JaxModel.apply`
``(params, inputs) -> outputs`` over pytrees of ``jax.Array``. The base class does the rest:

* **Parameters** — a pytree of ``jax.Array`` placed on the model's device, with floating-point
  leaves cast to the dtype chosen at load (``f32``, ``f16`` or ``bf16``; ``f64`` only with x64).
  :func:`load_params` reads them from a safetensors file or a mapping of numpy arrays.
* **Shape buckets** — XLA compiles one executable per input shape. :meth:`JaxModel.forward` pads
  the batch dimension (and, for inputs whose spec has a ``pad_value``, the other dynamic
  dimensions, e.g. the sequence) up to the next bucket of :class:`BucketPolicy`, runs the
  executable compiled for that bucket, and slices the outputs back. Executables are compiled
  ahead of time (``jax.jit(...).lower(...).compile()``) and cached for the model's life, so N
  differently shaped requests inside one bucket compile once; :attr:`JaxModel.compile_count`
  says how many executables were built and :meth:`JaxModel.warmup` builds the common buckets
  before traffic. Padding rows are independent of real rows only if the model treats batch items
  independently, and sequence padding is neutral only if the model masks it (BERT's attention
  mask): a subclass for which that is not true passes ``buckets=None``.
* **Errors** — anything JAX raises while tracing, compiling or running is re-raised as an
  Inferox error (:class:`~inferox.core.BackendError` with the JAX exception as ``__cause__``).
"""

from __future__ import annotations

import math
import threading
from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from inferox.core.backend import narrow_checked
from inferox.core.definition import DefinitionPlan, encode_and_run
from inferox.core.device import DeviceId
from inferox.core.dtype import DType
from inferox.core.errors import (
    BackendError,
    ConfigError,
    DTypeError,
    InvalidInputError,
    ServiceUnavailableError,
)
from inferox.core.model import Model, ModelMetadata
from inferox.core.spec import TensorSpec
from inferox.core.weights import load_safetensors
from inferox.jax._errors import jax_errors
from inferox.jax.backend import x64_enabled
from inferox.jax.plugin import BACKEND_NAME

if TYPE_CHECKING:
    from inferox.jax.backend import JaxBackend

__all__ = ["PARAM_DTYPES", "BucketPolicy", "JaxDefinitionModel", "JaxModel", "bucket_policy", "cast_params", "load_params"]

#: Parameter dtypes a model may be loaded in (``f64`` additionally when x64 is on).
PARAM_DTYPES = (DType.F32, DType.F16, DType.BF16)


@dataclass(frozen=True)
class BucketPolicy:
    """Which padded sizes inputs are rounded up to, so that jit compiles a bounded set of shapes.

    A size larger than the last bucket is rounded up to a multiple of the last bucket. A sequence
    bucket never exceeds ``max_sequence`` (a model's position limit) when the size itself fits.
    """

    batch: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    sequence: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    max_sequence: int | None = None
    #: Batch sizes and sequence lengths :meth:`JaxModel.warmup` compiles ahead of traffic.
    warmup_batch: tuple[int, ...] = (1,)
    warmup_sequence: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for field_name in ("batch", "sequence"):
            values = getattr(self, field_name)
            if any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in values) or list(values) != sorted(set(values)):
                raise InvalidInputError(f"BucketPolicy.{field_name} must be increasing positive integers", name=field_name, actual=values)

    @staticmethod
    def _round(n: int, buckets: tuple[int, ...]) -> int:
        if n <= 0 or not buckets:
            return n
        for b in buckets:
            if b >= n:
                return b
        return math.ceil(n / buckets[-1]) * buckets[-1]

    def batch_bucket(self, n: int) -> int:
        """The padded batch size for ``n`` items."""
        return self._round(n, self.batch)

    def sequence_bucket(self, n: int) -> int:
        """The padded length for a dynamic non-batch dimension of size ``n``."""
        b = self._round(n, self.sequence)
        if self.max_sequence is not None and n <= self.max_sequence:
            b = min(b, self.max_sequence)
        return b


def _check_param_dtype(dtype: DType | str | None) -> DType | None:
    if dtype is None:
        return None
    target = DType.parse(dtype)
    allowed = PARAM_DTYPES + ((DType.F64,) if x64_enabled() else ())
    if target not in allowed:
        raise DTypeError(f"a JAX model cannot be loaded in {target.value}", name="dtype", expected=", ".join(d.value for d in allowed), actual=target.value)
    return target


def _host_leaf(value: np.ndarray, dtype: DType | None) -> np.ndarray:
    """A host parameter with floats cast to ``dtype`` and 64-bit ints narrowed (checked) without x64."""
    arr = np.asarray(value)
    if arr.dtype.kind == "f" or arr.dtype == DType.BF16.to_numpy():
        if dtype is not None:
            return arr.astype(dtype.to_numpy())
        if arr.dtype == np.float64 and not x64_enabled():
            return arr.astype(np.float32)  # weights are stored f64 rarely; f32 is the documented default
        return arr
    if arr.dtype.kind in "iu" and arr.dtype.itemsize == 8 and not x64_enabled():
        return narrow_checked(arr, DType.I32 if arr.dtype.kind == "i" else DType.U32)
    return arr


def cast_params(params: Any, dtype: DType | str) -> Any:
    """``params`` (a pytree of arrays) with every floating-point leaf cast to ``dtype``."""
    target = _check_param_dtype(dtype)
    assert target is not None
    jdt = target.to_jax()

    def cast(leaf: Any) -> Any:
        return leaf.astype(jdt) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf

    with jax_errors():
        return jax.tree_util.tree_map(cast, params)


def load_params(
    weights: str | Path | Mapping[str, np.ndarray],
    *,
    dtype: DType | str | None = None,
    device: Any = None,
) -> dict[str, jax.Array]:
    """Parameters by name from a safetensors file or a mapping of numpy arrays, as ``jax.Array``.

    Floating-point tensors are cast to ``dtype`` (``f32``/``f16``/``bf16``; default: as stored,
    ``f64`` → ``f32`` without x64); 64-bit integer tensors are narrowed with a range check when
    x64 is off. ``device`` is a ``jax.Device`` (default: JAX's default device).
    """
    target = _check_param_dtype(dtype)
    if isinstance(weights, (str, Path)):
        host: Mapping[str, np.ndarray] = load_safetensors(weights, framework="numpy")
    elif isinstance(weights, Mapping):
        host = weights
    else:
        raise InvalidInputError("weights must be a path or a mapping of arrays", name="weights", expected="str, Path or Mapping[str, ndarray]", actual=type(weights).__name__)
    with jax_errors():
        return {name: jax.device_put(_host_leaf(arr, target), device) for name, arr in host.items()}


class JaxModel(Model):
    """Base class for jit-compiled JAX models; subclasses implement :meth:`apply` and the specs."""

    #: An object with ``encode(texts, max_length=None) -> dict[str, ndarray]`` for text models.
    text_encoder: Any = None

    def __init__(
        self,
        *,
        backend: JaxBackend,
        metadata: ModelMetadata,
        params: Any,
        device: DeviceId | str | None = None,
        dtype: DType | str | None = None,
        buckets: BucketPolicy | None = None,
    ) -> None:
        dev = backend.check_device(device)
        super().__init__(backend=backend, metadata=metadata, device=dev)
        self.backend: JaxBackend = backend
        self.dtype = _check_param_dtype(dtype)
        self.buckets = buckets if buckets is not None else BucketPolicy()
        self.bucketing = buckets is not None or type(self).default_bucketing
        jdev = backend.jax_device(dev)
        self._jax_device = jdev
        with jax_errors(model=metadata.name):
            tree = jax.tree_util.tree_map(lambda leaf: _host_leaf(np.asarray(leaf), self.dtype) if isinstance(leaf, np.ndarray) else leaf, params)
            if self.dtype is not None:
                tree = cast_params(tree, self.dtype)
            self.params: Any = jax.device_put(tree, jdev)
        self._compiled: dict[tuple[Any, ...], Any] = {}
        self._compile_lock = threading.Lock()
        self._jitted = jax.jit(self._traced_apply)
        self._closed = False
        #: How many executables this model has compiled (one per distinct padded shape).
        self.compile_count = 0

    #: Whether forward pads to buckets when no BucketPolicy is passed (set False on a subclass whose
    #: outputs would change with padding).
    default_bucketing = True

    # -- what a subclass writes ----------------------------------------------------------------------
    @abstractmethod
    def apply(self, params: Any, inputs: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """The model as a pure function of its parameters and (padded) inputs; traced by ``jax.jit``."""

    def _traced_apply(self, params: Any, inputs: dict[str, jax.Array]) -> dict[str, jax.Array]:
        return self.apply(params, inputs)

    # -- bookkeeping ------------------------------------------------------------------------------
    def memory_requirements(self) -> int:
        """Bytes held by the parameters."""
        if self._closed:
            return 0
        return sum(int(leaf.nbytes) for leaf in jax.tree_util.tree_leaves(self.params))

    def close(self) -> None:
        """Drop the parameters and compiled executables; later calls raise ``ServiceUnavailableError``."""
        self._closed = True
        self.params = None
        self._compiled.clear()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ServiceUnavailableError(f"model {self.name!r} is closed", model=self.name)

    # -- bucketing ---------------------------------------------------------------------------------
    def _specs(self) -> dict[str, TensorSpec]:
        return {s.name: s for s in self.input_specs}

    def pad_inputs(self, inputs: Mapping[str, jax.Array]) -> tuple[dict[str, jax.Array], int | None, int | None]:
        """Inputs padded to their buckets, the true batch size and the true padded-sequence length.

        The batch (first, dynamic) dimension of every batched input is padded with the spec's
        ``pad_value`` (0 when unset); other dynamic dimensions are padded only for specs with a
        ``pad_value``. All batched inputs must agree on the batch size.
        """
        specs = self._specs()
        batch: int | None = None
        seq: int | None = None
        for name, arr in inputs.items():
            spec = specs.get(name)
            if spec is not None and spec.is_batched and arr.ndim:
                if batch is None:
                    batch = int(arr.shape[0])
                elif int(arr.shape[0]) != batch:
                    raise InvalidInputError("batched inputs disagree on the batch size", name=name, expected=batch, actual=int(arr.shape[0]))
        if not self.bucketing:
            return dict(inputs), batch, None
        out: dict[str, jax.Array] = {}
        for name, arr in inputs.items():
            spec = specs.get(name)
            if spec is None or spec.ndim != arr.ndim:
                out[name] = arr
                continue
            widths = [(0, 0)] * arr.ndim
            for axis in spec.dynamic_axes:
                size = int(arr.shape[axis])
                if axis == 0 and spec.is_batched:
                    widths[0] = (0, self.buckets.batch_bucket(size) - size)
                elif spec.pad_value is not None:
                    seq = size if seq is None else seq
                    widths[axis] = (0, self.buckets.sequence_bucket(size) - size)
            if any(w for _, w in widths):
                pad = spec.pad_value if spec.pad_value is not None else 0
                # Padded on the host: an eager jnp.pad would make XLA compile a pad kernel for every
                # new request shape (~0.1 s each on CPU), which is exactly what buckets avoid.
                host = np.asarray(arr)  # a zero-copy view on the CPU
                arr = jax.device_put(np.pad(host, widths, constant_values=np.asarray(pad).astype(host.dtype)), self._jax_device)
            out[name] = arr
        return out, batch, seq

    def unpad_outputs(self, outputs: Mapping[str, jax.Array], *, batch: int | None, sequence: int | None) -> dict[str, jax.Array]:
        """Outputs sliced back to the true batch size (and sequence length, on dynamic non-batch axes)."""
        specs = {s.name: s for s in self.output_specs}
        out: dict[str, jax.Array] = {}
        for name, arr in outputs.items():
            spec = specs.get(name)
            if spec is None or spec.ndim != arr.ndim:
                out[name] = arr
                continue
            index: list[slice] = [slice(None)] * arr.ndim
            for axis in spec.dynamic_axes:
                if axis == 0 and spec.is_batched and batch is not None:
                    index[0] = slice(0, batch)
                elif axis > 0 and sequence is not None:
                    index[axis] = slice(0, sequence)
            out[name] = self._slice(arr, tuple(index)) if any(s != slice(None) for s in index) else arr
        return out

    def _slice(self, arr: jax.Array, index: tuple[slice, ...]) -> jax.Array:
        """``arr[index]`` without compiling a slice kernel per request shape.

        On the CPU the slice is a numpy view of the output buffer handed back to JAX (an axis-0 slice
        is shared, not copied). On accelerators the slice runs on the device, where XLA compiles one
        small kernel per new size and caches it; the host route would cost two transfers per call
        instead. (Not yet measured on a GPU: revisit with numbers from docs/gpu-runs/.)
        """
        if self.device.is_cpu:
            out: jax.Array = jax.device_put(np.asarray(arr)[index], self._jax_device)
            return out
        return arr[index]  # pragma: gpu

    def _key(self, inputs: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(sorted((k, tuple(int(d) for d in v.shape), str(v.dtype)) for k, v in inputs.items()))

    def compiled_for(self, inputs: Mapping[str, Any]) -> Any:
        """The executable for these (already padded) input shapes and dtypes, compiled once."""
        key = self._key(inputs)
        fn = self._compiled.get(key)
        if fn is None:
            with self._compile_lock:
                fn = self._compiled.get(key)
                if fn is None:
                    structs = {k: jax.ShapeDtypeStruct(tuple(v.shape), v.dtype) for k, v in inputs.items()}  # type: ignore[no-untyped-call]
                    fn = self._jitted.lower(self.params, structs).compile()
                    self._compiled[key] = fn
                    self.compile_count += 1
        return fn

    @property
    def compiled_shapes(self) -> list[tuple[Any, ...]]:
        """The input signatures compiled so far (``((name, shape, dtype), …)``)."""
        return list(self._compiled)

    # -- running ----------------------------------------------------------------------------------
    def _to_jax(self, name: str, value: Any) -> jax.Array:
        if isinstance(value, jax.Array):
            return value
        return self.backend.as_native(value, dtype=self._specs()[name].dtype if name in self._specs() else None, device=self.device)  # type: ignore[no-any-return]

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, jax.Array]:
        """Pad to the bucket, run the cached executable, slice back (see the module docstring)."""
        self._check_open()
        with jax_errors(model=self.name):
            arrays = {k: self._to_jax(k, v) for k, v in inputs.items()}
            padded, batch, seq = self.pad_inputs(arrays)
            outputs = self.compiled_for(padded)(self.params, padded)
            if not isinstance(outputs, Mapping):
                raise BackendError(f"{type(self).__name__}.apply must return a dict of arrays, got {type(outputs).__name__}", backend=BACKEND_NAME, model=self.name)
            return self.unpad_outputs(outputs, batch=batch, sequence=seq)

    def warmup_inputs(self) -> Iterator[dict[str, jax.Array]]:
        """Example padded inputs for the buckets :meth:`warmup` compiles.

        Yields nothing when an input has a dynamic dimension that is neither the batch nor
        paddable (its sizes cannot be guessed).
        """
        specs = list(self.input_specs)
        for spec in specs:
            for axis in spec.dynamic_axes:
                if not (axis == 0 and spec.is_batched) and spec.pad_value is None:
                    return
        seqs = self.buckets.warmup_sequence or self.buckets.sequence[:1] or (1,)
        needs_seq = any(axis > 0 for spec in specs for axis in spec.dynamic_axes)
        for b in self.buckets.warmup_batch:
            for s in seqs if needs_seq else (None,):
                example: dict[str, jax.Array] = {}
                for spec in specs:
                    if spec.optional:
                        continue
                    shape = tuple(
                        (self.buckets.batch_bucket(b) if i == 0 and spec.is_batched else self.buckets.sequence_bucket(s or 1)) if d is None else d
                        for i, d in enumerate(spec.shape)
                    )
                    # The dtype requests will really arrive in (i64 token ids are narrowed to i32 without x64).
                    dtype = self.backend.narrowed_dtype(spec.dtype, self.device)
                    example[spec.name] = jax.ShapeDtypeStruct(shape, dtype.to_jax())  # type: ignore[no-untyped-call,assignment]
                yield example

    def warmup(self) -> None:
        """Compile the executables for the common buckets (:attr:`BucketPolicy.warmup_batch` x sequence)."""
        self._check_open()
        with jax_errors(model=self.name):
            for example in self.warmup_inputs():
                self.compiled_for(example)


# -- architecture definitions ------------------------------------------------------------------------
def _int_tuple(options: Mapping[str, Any], key: str, default: tuple[int, ...]) -> tuple[int, ...]:
    value = options.get(key)
    if value is None:
        return default
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ConfigError("must be a list of positive integers", field=key, value=value)
    out = tuple(value)
    if not out or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in out):
        raise ConfigError("must be a non-empty list of positive integers", field=key, value=value)
    return tuple(sorted(set(out)))


def bucket_policy(
    options: Mapping[str, Any],
    *,
    max_sequence: int | None,
    sequence: tuple[int, ...] = (16, 32, 64, 128, 256, 512),
    warmup_sequence: tuple[int, ...] = (),
) -> BucketPolicy:
    """The :class:`BucketPolicy` the options ``batch_buckets``, ``seq_buckets``, ``warmup_batch_sizes``
    and ``warmup_seq_lengths`` describe (defaults: powers of two)."""
    seq = _int_tuple(options, "seq_buckets", sequence)
    if max_sequence is not None:
        seq = (*(s for s in seq if s < max_sequence), max_sequence)
    return BucketPolicy(
        batch=_int_tuple(options, "batch_buckets", (1, 2, 4, 8, 16, 32, 64)),
        sequence=seq,
        max_sequence=max_sequence,
        warmup_batch=_int_tuple(options, "warmup_batch_sizes", (1,)),
        # A warm-up length past the position table would compile a shape no request can have.
        warmup_sequence=tuple(sorted({min(s, max_sequence) if max_sequence else s for s in _int_tuple(options, "warmup_seq_lengths", warmup_sequence)})),
    )


class JaxDefinitionModel(JaxModel):
    """An architecture definition, jit-compiled per shape bucket (see the module docstring).

    The definition on ``jax.numpy`` with :class:`~inferox.jax.ops.JaxOps` is :meth:`apply`; the
    plan's static config is closed over, so each bucket compiles once. Optional inputs the
    definition has a fill for (``attention_mask`` → 1, ``token_type_ids`` → 0) are filled when a
    request leaves them out, so one executable per bucket serves requests with and without them.
    :attr:`trace_count` counts how many times the definition was traced (once per compiled bucket).
    """

    def __init__(
        self,
        plan: DefinitionPlan,
        *,
        backend: JaxBackend,
        metadata: ModelMetadata,
        device: DeviceId | str | None = None,
        dtype: DType | str | None = None,
        buckets: BucketPolicy | None = None,
    ) -> None:
        self.plan = plan
        #: The static config the definition runs with (``Definition.configure``'s result).
        self.config = plan.config
        self.trace_count = 0
        super().__init__(backend=backend, metadata=metadata, params=plan.take_params(), device=device, dtype=dtype, buckets=buckets)
        #: A :class:`~inferox.core.text.TextEncoder` when the factory was given ``tokenizer_path``.
        self.text_encoder = plan.text_encoder
        self.ops = backend.ops(self.device)
        floats = [leaf for leaf in jax.tree_util.tree_leaves(self.params) if jnp.issubdtype(leaf.dtype, jnp.floating)]
        self._float_dtype = floats[0].dtype if floats else jnp.float32

    @property
    def input_specs(self) -> Sequence[TensorSpec]:
        return self.plan.input_specs

    @property
    def output_specs(self) -> Sequence[TensorSpec]:
        return self.plan.output_specs

    def apply(self, params: Any, inputs: dict[str, jax.Array]) -> dict[str, jax.Array]:
        self.trace_count += 1  # runs only while tracing: a count of compilations, not of calls
        return self.plan.run(jnp, self.ops, params, inputs, self._float_dtype)

    def _fills(self, inputs: Mapping[str, Any]) -> dict[str, tuple[int | float, tuple[int, ...]]]:
        """``{optional input: (fill, shape)}`` for the inputs a request left out that the definition fills."""
        specs = self._specs()
        out: dict[str, tuple[int | float, tuple[int, ...]]] = {}
        for name, fill in self.plan.input_defaults.items():
            spec = specs.get(name)
            if spec is None or inputs.get(name) is not None:
                continue
            like = next((v for k, v in inputs.items() if v is not None and specs.get(k) is not None and specs[k].ndim == spec.ndim and not specs[k].optional), None)
            if like is not None:
                out[name] = (fill, tuple(int(d) for d in like.shape))
        return out

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, jax.Array]:
        """Fill the optional inputs the definition has fills for, then run the bucket."""
        full = {k: v for k, v in inputs.items() if v is not None}
        specs = self._specs()
        for name, (fill, shape) in self._fills(full).items():
            full[name] = np.full(shape, fill, self.backend.narrowed_dtype(specs[name].dtype, self.device).to_numpy())
        return super().forward(full)

    def warmup_inputs(self) -> Iterator[dict[str, jax.Array]]:
        """The signatures requests arrive with: the required inputs plus the filled optional ones."""
        filled = set(self.plan.input_defaults)
        for example in super().warmup_inputs():
            like = next(iter(example.values()), None)
            for spec in self.plan.input_specs:
                if spec.optional and spec.name in filled and like is not None and spec.ndim == like.ndim:
                    dtype = self.backend.narrowed_dtype(spec.dtype, self.device)
                    example[spec.name] = jax.ShapeDtypeStruct(tuple(like.shape), dtype.to_jax())  # type: ignore[no-untyped-call,assignment]
            yield example

    @staticmethod
    def _value_range(value: Any) -> tuple[int, int]:
        a = np.asarray(value)
        return int(a.min()), int(a.max())

    def check_inputs(self, inputs: Mapping[str, Any]) -> None:
        """The definition's value checks (ids in the vocabulary, lengths within the positions …)."""
        self.plan.check_inputs(inputs, self._value_range)

    def encode_text(self, texts: Sequence[str] | str, *, max_length: int | None = None) -> dict[str, jax.Array]:
        """Tokenise and run ``texts`` in one call (needs ``text_encoder``); returns jax outputs."""
        return encode_and_run(self, texts, max_length=max_length)
