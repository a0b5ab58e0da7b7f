"""ONNX Runtime models: :class:`OnnxDefinitionModel` runs an architecture definition traced into an
ONNX graph; :class:`OnnxModel`, its base, runs any ONNX graph.

Every architecture with a :class:`~inferox.core.Definition` (``mlp``, the encoder families, a
plugin's) runs as an :class:`OnnxDefinitionModel`: its definition is traced into a graph
(:mod:`inferox.onnx._trace`, with :class:`~inferox.onnx.ops.OnnxOps` emitting ONNX Runtime's fused
operators), which is quantised when asked and kept in the graph cache (:mod:`inferox.onnx._graph`).
There is no per-architecture ONNX code.

:class:`OnnxModel` takes an ONNX graph — a ``ModelProto``, its serialised bytes, or a path to a
``.onnx`` file — with its tensor specs; a subclass may override :meth:`OnnxModel.feeds` (inputs to
the graph's feed dict) and :meth:`OnnxModel.outputs` (graph outputs to the model's). It takes care of:

* **the session** — one ``onnxruntime.InferenceSession`` with every ONNX Runtime graph
  optimisation enabled, on the CPU provider or, for ``cuda:N``, the CUDA provider;
* **threads** — the ``threads`` option sets the session's intra-op thread count. Unlike torch's
  ``set_num_threads`` it is *per model*: other models in the process keep theirs. The default is
  the CPUs this process may use (:func:`inferox.core.usable_cpus`: affinity and cgroup quota;
  ONNX Runtime's own default counts the machine's cores). Inter-op execution is sequential (one
  thread) and pool threads never spin-wait (``session.intra_op.allow_spinning=0``): an idle pool
  costs no CPU. With one thread ONNX Runtime runs every kernel on the calling thread (no pool);
* **errors** — every ONNX Runtime exception becomes an Inferox error with the runtime's exception
  as ``__cause__`` (see :mod:`inferox.onnx._errors`);
* **memory** — :meth:`memory_requirements` is the size of the graph (weights are initializers);
  :meth:`close` drops the session.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnxruntime as ort

from inferox.core import usable_cpus
from inferox.core.backend import Backend
from inferox.core.definition import encode_and_run
from inferox.core.device import DeviceId
from inferox.core.dtype import DType
from inferox.core.errors import BackendError, ConfigError, DTypeError, ServiceUnavailableError
from inferox.core.model import Model, ModelMetadata
from inferox.core.spec import TensorSpec
from inferox.onnx._errors import onnx_errors
from inferox.onnx.plugin import BACKEND_NAME

if TYPE_CHECKING:
    from inferox.core.definition import DefinitionPlan
    from inferox.onnx._graph import GraphOptions, ObtainedGraph
    from inferox.onnx.backend import OnnxBackend

__all__ = [
    "LOAD_DTYPES",
    "OnnxDefinitionModel",
    "OnnxModel",
    "check_load_dtype",
    "check_threads",
    "default_threads",
    "session_options",
]

#: Dtypes a model's floating parameters may be loaded in: the graphs are built in f32 (``int8``
#: is a separate load option, see docs/onnx-backend.md).
LOAD_DTYPES = (DType.F32,)


def check_load_dtype(dtype: DType | str | None) -> DType | None:
    """``None`` or ``f32``; anything else is a :class:`DTypeError` naming ``dtype``."""
    if dtype is None:
        return None
    parsed = DType.parse(dtype)
    if parsed not in LOAD_DTYPES:
        raise DTypeError(
            "an ONNX model is built in f32 (use the int8 option for a quantised graph)",
            name="dtype",
            expected=", ".join(d.value for d in LOAD_DTYPES),
            actual=parsed.value,
        )
    return parsed


def check_threads(threads: Any) -> int | None:
    """``None`` or a positive integer; anything else is a :class:`ConfigError` naming ``threads``."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError("threads must be a positive integer", field="threads", value=threads)
    return threads


def default_threads(threads: int | None) -> int:
    """``threads``, else the CPUs this process may use (affinity and cgroup quota)."""
    return usable_cpus() if threads is None else threads


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Session options: every graph optimisation, sequential execution, ``threads`` intra-op
    threads (default: the CPUs this process may use), no spin-waiting in either pool."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = default_threads(threads)
    # A spinning pool thread burns a core for a while after every kernel: on a server whose other
    # requests (tokenising, the event loop, other models) need that core, sleeping is cheaper.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3  # errors only: fusion notices are not the user's business
    return opts


def _default_backend() -> OnnxBackend:
    from inferox.onnx.backend import OnnxBackend

    return OnnxBackend()


class OnnxModel(Model):
    """A model run by an ONNX Runtime ``InferenceSession``.

    Args:
        graph: the ONNX graph — a ``ModelProto``, serialised bytes, or a ``.onnx`` path.
        metadata: the model's :class:`~inferox.core.ModelMetadata`.
        input_specs / output_specs: the model's tensor specs.
        backend: the onnx backend (a fresh :class:`~inferox.onnx.OnnxBackend` when omitted).
        device: ``cpu`` or ``cuda:N`` (``None`` → the backend's default device); checked.
        dtype: ``None`` or ``f32`` (the graphs are f32).
        threads: intra-op threads of this model's session (per model, see the module docstring).
        weight_bytes: what :meth:`memory_requirements` reports (default: the serialised graph's size).
    """

    #: ``InferenceSession.run`` may be called from several threads at once (ONNX Runtime documents it
    #: and releases the GIL while it runs; the graph variants are built under a lock): the engine
    #: may then run one pass per CPU its intra-op threads leave free.
    thread_safe = True

    def __init__(
        self,
        graph: onnx.ModelProto | bytes | str | os.PathLike[str],
        *,
        metadata: ModelMetadata,
        input_specs: Sequence[TensorSpec],
        output_specs: Sequence[TensorSpec],
        backend: Backend | None = None,
        device: DeviceId | str | None = None,
        dtype: DType | str | None = None,
        threads: int | None = None,
        weight_bytes: int | None = None,
    ) -> None:
        backend = backend if backend is not None else _default_backend()
        if backend.name != BACKEND_NAME:
            raise ConfigError(f"an OnnxModel needs the onnx backend, not {backend.name!r}", field="backend", value=backend.name)
        dev = backend.check_device(device)
        super().__init__(backend=backend, metadata=metadata, device=dev)
        self._input_specs = tuple(input_specs)
        self._output_specs = tuple(output_specs)
        self.load_dtype = check_load_dtype(dtype)
        self.threads = check_threads(threads)
        #: The intra-op threads the session runs with (``threads``, else the usable CPUs).
        self.intra_op_threads = default_threads(self.threads)
        self.graph_path: Path | None = None
        self._session: ort.InferenceSession | None = self._open(graph)
        if weight_bytes is not None:
            self._graph_bytes = int(weight_bytes)

    def _open(self, graph: onnx.ModelProto | bytes | str | os.PathLike[str]) -> ort.InferenceSession:
        """An ``InferenceSession`` for ``graph`` on this model's device (errors wrapped); sets
        :attr:`graph_path` (``None`` for a graph in memory) and the graph's input and output names."""
        if isinstance(graph, onnx.ModelProto):
            source: bytes | str = graph.SerializeToString()
            self._graph_bytes = len(source)
            self.graph_path = None
        elif isinstance(graph, (bytes, bytearray)):
            source = bytes(graph)
            self._graph_bytes = len(source)
            self.graph_path = None
        else:
            self.graph_path = Path(graph)
            source = str(self.graph_path)
            self._graph_bytes = self.graph_path.stat().st_size if self.graph_path.is_file() else 0
        from inferox.onnx.backend import providers_for

        with onnx_errors(device=str(self.device), model=self.name):
            session = ort.InferenceSession(source, session_options(self.intra_op_threads), providers=providers_for(self.device))
        self._graph_inputs = {i.name for i in session.get_inputs()}
        self._graph_outputs = [o.name for o in session.get_outputs()]
        return session

    # -- specs ----------------------------------------------------------------------------------
    @property
    def input_specs(self) -> Sequence[TensorSpec]:
        return self._input_specs

    @property
    def output_specs(self) -> Sequence[TensorSpec]:
        return self._output_specs

    @property
    def session(self) -> ort.InferenceSession:
        """The ``InferenceSession`` (a :class:`ServiceUnavailableError` once the model is closed)."""
        if self._session is None:
            raise ServiceUnavailableError(f"model {self.name!r} is closed", model=self.name)
        return self._session

    @property
    def closed(self) -> bool:
        return self._session is None

    @property
    def providers(self) -> list[str]:
        """The execution providers the session runs on, in priority order."""
        return list(self.session.get_providers())

    def thread_info(self) -> dict[str, Any]:
        """This model's session pools: ``intra_op`` threads (the calling thread included),
        sequential inter-op execution, no spin-waiting; and the CPUs the process may use."""
        return {"intra_op": self.intra_op_threads, "inter_op": 1, "spinning": False, "usable_cpus": usable_cpus()}

    # -- running --------------------------------------------------------------------------------
    def feeds(self, inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """The session's feed dict for (validated, host) inputs. Default: the inputs the graph takes."""
        return {k: v for k, v in inputs.items() if k in self._graph_inputs and v is not None}

    def outputs(self, values: dict[str, np.ndarray]) -> dict[str, Any]:
        """The model's outputs from the graph's (named as in the graph). Default: unchanged."""
        return values

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Run the session on ``inputs``; ONNX Runtime errors wrapped."""
        session = self.session
        with onnx_errors(device=str(self.device), model=self.name):
            # Optional inputs the caller left out arrive as None: feeds() fills in their defaults.
            host = {k: self.backend.to_numpy(v) for k, v in inputs.items() if v is not None}
            values = session.run(self._graph_outputs, self.feeds(host))
            return self.outputs(dict(zip(self._graph_outputs, values)))

    def example_inputs(self, batch: int = 1) -> dict[str, np.ndarray]:
        """Zeros for every required input, dynamic dimensions set to ``batch`` (first) or 1."""
        out: dict[str, np.ndarray] = {}
        for spec in self._input_specs:
            if spec.optional:
                continue
            shape = [(batch if i == 0 else 1) if d is None else d for i, d in enumerate(spec.shape)]
            out[spec.name] = np.zeros(shape, dtype=spec.dtype.to_numpy())
        return out

    def warmup(self) -> None:
        """One forward pass on :meth:`example_inputs` (allocates the session's buffers)."""
        self.forward(self.example_inputs())

    # -- memory ---------------------------------------------------------------------------------
    def memory_requirements(self) -> int:
        """Bytes of the model's weights (the architectures pass them; else the serialised graph's size)."""
        return int(self._graph_bytes)

    def close(self) -> None:
        """Drop the session and give its memory back. Idempotent."""
        self._session = None


# -- architecture definitions ------------------------------------------------------------------------
def _source_digest(fn: Any) -> str:
    """What identifies a function's code: its source file's hash (an edit in a development install
    changes it without a version bump), else its compiled code's."""
    import hashlib
    import inspect
    import marshal

    from inferox.onnx._graph import file_digest

    try:
        path = inspect.getsourcefile(fn)
    except TypeError:
        path = None
    if path and os.path.isfile(path):
        return file_digest(path)
    code = getattr(fn, "__code__", None)
    return hashlib.sha256(marshal.dumps(code)).hexdigest() if code is not None else type(fn).__qualname__


def definition_identity(plan: DefinitionPlan) -> dict[str, Any]:
    """The cache-key part naming a definition and its code: ``module:qualname`` of ``forward`` and
    the hashes of the sources of its functions, of core's reference operations and of this tracer."""
    from inferox.core import ops as core_ops
    from inferox.onnx import _trace, ops

    definition = plan.definition
    functions = [f for f in (definition.forward, definition.configure, definition.select, definition.prepare) if f is not None]
    sources = {_source_digest(f) for f in functions} | {_source_digest(m) for m in (core_ops, ops, _trace)}
    forward = definition.forward
    return {"forward": f"{getattr(forward, '__module__', '?')}:{getattr(forward, '__qualname__', type(forward).__qualname__)}", "sources": sorted(sources)}


def _jsonable(value: Any) -> Any:
    """A config object as JSON-able data (dataclasses as their fields) for the cache key."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__type__": type(value).__qualname__, **{f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _spec_key(spec: TensorSpec) -> list[Any]:
    return [spec.name, spec.dtype.value, list(spec.shape), spec.optional]


def _value_range(value: Any) -> tuple[int, int]:
    a = np.asarray(value)
    return int(a.min()), int(a.max())


class OnnxDefinitionModel(OnnxModel):
    """An architecture definition traced into an ONNX graph and run by ONNX Runtime.

    The graph takes the definition's required inputs and the optional ones it has fills for
    (``Definition.input_defaults``: ``attention_mask`` → 1, ``token_type_ids`` → 0), filled here
    when a request leaves them out, so one graph serves both. A request that brings an optional
    input without a fill (``position_ids``) gets a second graph traced with it, built on its first
    use (and cached like the first).

    Attributes: ``plan`` (the :class:`~inferox.core.DefinitionPlan`, whose host parameters the model
    takes over and drops once the session holds them, when the weights can be read again from the
    package's file), ``config``
    (the definition's static config), ``text_encoder``, ``fusions`` (ONNX Runtime's fused operators
    in the graph, by type), ``nodes`` (the graph's operator counts as traced and as handed to the
    session), ``int8`` (the int8 scheme, ``None`` for f32), ``from_cache`` (whether the graph came
    from the graph cache).

    Args:
        plan: the architecture made ready by :class:`~inferox.core.DefinitionPlan`.
        backend / metadata / device / threads: as :class:`OnnxModel`'s.
        dtype: ``None`` or ``f32``.
        options: the graph options (``optimize``, ``int8``, ``int8_scheme``, ``cache``).
    """

    def __init__(
        self,
        plan: DefinitionPlan,
        *,
        backend: Backend,
        metadata: ModelMetadata,
        device: DeviceId | str | None = None,
        dtype: DType | str | None = None,
        threads: int | None = None,
        options: GraphOptions | None = None,
    ) -> None:
        from inferox.onnx._graph import GraphOptions

        check_load_dtype(dtype)
        dev = backend.check_device(device)
        self.plan = plan
        #: The static config the definition runs with (``Definition.configure``'s result).
        self.config = plan.config
        #: A :class:`~inferox.core.text.TextEncoder` when the factory was given ``tokenizer_path``.
        self.text_encoder = plan.text_encoder
        self.graph_options = options if options is not None else GraphOptions()
        self._device = dev
        self._label = metadata.name
        #: The prepared host parameters, until the session holds them (see :meth:`_host_params`).
        self._params: Any = plan.take_params()
        self._specs = {s.name: s for s in plan.input_specs}
        #: The inputs the main graph takes: the required ones and those the definition fills.
        self.graph_inputs = frozenset(s.name for s in plan.input_specs if not s.optional or s.name in plan.input_defaults)
        self._weights_digest = self._digest_weights()
        self._variants: dict[frozenset[str], tuple[ort.InferenceSession, list[str]]] = {}
        self._variant_lock = threading.Lock()
        obtained = self._obtain(self.graph_inputs)
        try:
            super().__init__(obtained.graph, metadata=metadata, input_specs=plan.input_specs, output_specs=plan.output_specs, backend=backend,
                             device=dev, dtype=dtype, threads=threads, weight_bytes=obtained.info.get("weight_bytes"))
        except BackendError:
            if not obtained.from_cache:
                raise
            # A cached graph the runtime cannot load (truncated, edited): drop that entry, rebuild once.
            obtained.discard()
            obtained = self._obtain(self.graph_inputs)
            super().__init__(obtained.graph, metadata=metadata, input_specs=plan.input_specs, output_specs=plan.output_specs, backend=backend,
                             device=dev, dtype=dtype, threads=threads, weight_bytes=obtained.info.get("weight_bytes"))
        info = obtained.info
        self.fusions: dict[str, int] = dict(info.get("fusions", {}))
        self.nodes: dict[str, dict[str, int]] = dict(info.get("nodes", {}))
        self.int8: str | None = info.get("int8") or None
        self.from_cache = obtained.from_cache
        if plan.source is not None and plan.definition.select is not None:
            # The session holds the weights now; a graph for another signature reads them again
            # from the package's file (_host_params), so the host copy need not stay in memory.
            self._params = None

    # -- building graphs ---------------------------------------------------------------------------
    def _digest_weights(self) -> str:
        from inferox.core.definition import map_arrays
        from inferox.onnx._graph import array_digest, file_digest

        if self.plan.source is not None:
            return "file:" + file_digest(self.plan.source)
        flat: dict[str, Any] = {}

        def walk(tree: Any, path: str) -> None:
            if isinstance(tree, Mapping):
                for k, v in tree.items():
                    walk(v, f"{path}{k}.")
            elif isinstance(tree, (list, tuple)):
                for i, v in enumerate(tree):
                    walk(v, f"{path}{i}.")
            else:
                flat[path] = tree

        walk(map_arrays(self._params, np.asarray), "")
        return "arrays:" + array_digest(flat)

    def cache_key(self, inputs: frozenset[str]) -> dict[str, Any]:
        """Everything the graph taking ``inputs`` depends on (hashed into its cache entry's name)."""
        from inferox.onnx._graph import base_key

        plan = self.plan
        return {
            **base_key(self._device, self.graph_options),
            "architecture": plan.schema.name,
            "definition": definition_identity(plan),
            "config": _jsonable(plan.config),
            "preprocessing": _jsonable(plan.preprocessing),
            "specs": [[_spec_key(s) for s in plan.input_specs], [_spec_key(s) for s in plan.output_specs]],
            "inputs": sorted(inputs),
            "weights": self._weights_digest,
        }

    def _host_params(self) -> Any:
        """The prepared host parameters: the plan's, or read again from the package's file."""
        if self._params is not None:
            return self._params
        plan = self.plan
        from inferox.core.definition import numpy_namespace, read_host_weights

        assert plan.source is not None and plan.definition.select is not None
        host, source = read_host_weights(plan.source)
        chosen = plan.definition.select(host, plan.config, source)
        chosen = {k: np.asarray(v, dtype=np.float32) for k, v in chosen.items()}
        return plan.definition.prepare(numpy_namespace(), chosen, plan.config) if plan.definition.prepare is not None else chosen

    def _build(self, inputs: frozenset[str]) -> tuple[onnx.ModelProto, dict[str, Any]]:
        """Trace the definition into a graph taking ``inputs``, then fuse what is left to fuse."""
        from inferox.onnx._graph import fused_counts, node_counts, optimize_graph
        from inferox.onnx._trace import trace_plan

        params = self._host_params()
        plan = dataclasses.replace(self.plan, params=params)
        fuse = self.graph_options.optimize
        with onnx_errors(device=str(self._device), model=self._label):
            traced = trace_plan(plan, inputs=inputs, fuse=fuse, model=self._label)
            graph = traced
            if fuse and any(n.op_type in _LEFT_TO_FUSE for n in traced.graph.node):
                # Patterns the traced operators could not fuse (an attention OnnxOps did not
                # recognise, a GELU written out): ONNX Runtime's transformer optimiser may.
                graph = optimize_graph(traced, use_gpu=self._device.is_cuda)
        from inferox.core.definition import array_leaves

        weight_bytes = sum(int(np.asarray(a).size) * 4 if np.asarray(a).dtype.kind == "f" else int(np.asarray(a).nbytes) for a in array_leaves(params))
        return graph, {"fusions": fused_counts(graph), "nodes": {"traced": node_counts(traced), "optimized": node_counts(graph)}, "weight_bytes": weight_bytes}

    def _obtain(self, inputs: frozenset[str]) -> ObtainedGraph:
        from inferox.onnx._graph import obtain_graph

        return obtain_graph(key=self.cache_key(inputs), options=self.graph_options, build=lambda: self._build(inputs))

    def _variant(self, inputs: frozenset[str]) -> tuple[ort.InferenceSession, list[str]]:
        """The session of the graph taking ``inputs`` (built on first use)."""
        with self._variant_lock:
            hit = self._variants.get(inputs)
            if hit is not None:
                return hit
            obtained = self._obtain(inputs)
            from inferox.onnx.backend import providers_for

            source = obtained.graph.SerializeToString() if isinstance(obtained.graph, onnx.ModelProto) else str(obtained.graph)
            with onnx_errors(device=str(self.device), model=self.name):
                session = ort.InferenceSession(source, session_options(self.threads), providers=providers_for(self.device))
            hit = self._variants[inputs] = (session, [o.name for o in session.get_outputs()])
            return hit

    # -- running -------------------------------------------------------------------------------------
    def check_inputs(self, inputs: Mapping[str, Any]) -> None:
        """The definition's value checks (ids in the vocabulary, lengths within the positions …)."""
        self.plan.check_inputs(inputs, _value_range)

    def feeds(self, inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Inputs in their specs' dtypes, the optional ones the definition fills filled where left out."""
        out: dict[str, Any] = {}
        for name, value in inputs.items():
            spec = self._specs.get(name)
            if spec is not None and value is not None:
                out[name] = np.asarray(value, dtype=spec.dtype.to_numpy())
        for name, fill in self.plan.input_defaults.items():
            spec = self._specs.get(name)
            if spec is None or name in out or name not in self.graph_inputs:
                continue
            like = next((out[s.name] for s in self.plan.input_specs if not s.optional and s.name in out and s.ndim == spec.ndim), None)
            if like is not None:
                out[name] = np.full(like.shape, fill, dtype=spec.dtype.to_numpy())
        return out

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Run the graph that takes the inputs given (the main one unless an optional input without
        a fill came); ONNX Runtime errors wrapped."""
        session = self.session
        host = {k: self.backend.to_numpy(v) for k, v in inputs.items() if v is not None}
        feeds = self.feeds(host)
        extra = frozenset(feeds) - self.graph_inputs
        names = self._graph_outputs
        if extra:
            session, names = self._variant(self.graph_inputs | extra)
        with onnx_errors(device=str(self.device), model=self.name):
            values = session.run(names, feeds)
        return dict(zip(names, values))

    def encode_text(self, texts: Sequence[str] | str, *, max_length: int | None = None) -> dict[str, Any]:
        """Tokenise and run ``texts`` in one call (needs a tokenizer: the ``tokenizer_path`` option)."""
        return encode_and_run(self, texts, max_length=max_length)

    def example_inputs(self, batch: int = 1, length: int = 8) -> dict[str, np.ndarray]:
        """Every required input at ``batch`` x ``length`` (:meth:`DefinitionPlan.example_inputs`)."""
        return self.plan.example_inputs(batch, length)

    def close(self) -> None:
        """Drop the sessions (the main graph's and any other signature's). Idempotent."""
        super().close()
        with self._variant_lock:
            self._variants.clear()


#: Operators a fused trace leaves only where OnnxOps did not fuse (then ONNX Runtime's optimiser runs).
_LEFT_TO_FUSE = frozenset({"Softmax", "Erf", "LayerNormalization"})
