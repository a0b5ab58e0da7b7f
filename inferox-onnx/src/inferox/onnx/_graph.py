"""The shared glue of inferox-onnx: writing graphs, the graph cache, ONNX Runtime's fusions and int8.

Every graph this backend runs is traced from an architecture's definition
(:mod:`inferox.onnx._trace`); what happens to it afterwards is here, once for every architecture:

* :class:`GraphBuilder` — a thin layer over ``onnx.helper`` the tracer records into: each
  :meth:`GraphBuilder.op` call appends one node and returns its output name(s);
  :meth:`GraphBuilder.const` adds an initializer; :meth:`GraphBuilder.build` drops the nodes no
  output needs, checks and returns the ``onnx.ModelProto``.
* :func:`optimize_graph` — ONNX Runtime's transformer optimiser (its Python fusions) over a traced
  graph, for what the traced operators left to fuse.
* **int8** — :data:`INT8_SCHEMES`: ``"blockwise"`` (``MatMulNBits``) or ``"dynamic"``
  (``quantize_dynamic``, 7-bit weights on x86-64 CPUs without VNNI: :func:`int8_reduce_range`).
* **The graph cache.** Tracing MiniLM's definition and running the fusions and quantisers over it
  takes seconds; loading the result takes a fraction of that. Graphs are kept under
  ``$INFEROX_CACHE_DIR/onnx/<key>/`` where ``<key>`` is a SHA-256 over everything the graph depends
  on (:func:`cache_key` of what the model assembles: the definition's identity and source, its
  config and pre-processing, the inputs the graph takes, the weights' content hash, the graph
  options, the device kind, and the versions of this builder, ``onnx`` and ``onnxruntime``). A
  changed weights file, even at the same path, gets a new key. Writes are atomic (a temporary file
  in the same folder renamed into place with ``os.replace``), so a reader sees no file or a
  complete one, and two processes building the same graph at once both succeed. A cached graph
  that fails to load (truncated, edited by hand) is removed and rebuilt once; other entries are
  never touched.
* :func:`obtain_graph` is the one way a model gets its graph: from the cache when an entry with the
  same key exists, else built (traced, optimised, quantised) now and written to the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from inferox.core import distribution_version
from inferox.core.constants import cache_dir
from inferox.core.device import DeviceId
from inferox.core.dtype import DType
from inferox.core.errors import ConfigError, from_os_error
from inferox.onnx.plugin import DISTRIBUTION

__all__ = [
    "CACHE_SUBDIR",
    "GRAPH_FILE",
    "INFO_FILE",
    "INT8_SCHEMES",
    "MS_DOMAIN",
    "OPSET",
    "GraphBuilder",
    "GraphOptions",
    "ObtainedGraph",
    "array_digest",
    "base_key",
    "cache_key",
    "cpu_flags",
    "file_digest",
    "fused_counts",
    "graph_cache_dir",
    "initializer_bytes",
    "int8_reduce_range",
    "node_counts",
    "obtain_graph",
    "onnx_elem_type",
    "optimize_graph",
    "write_atomic",
]


# ------------------------------------------------------------------------------------------ graphs
#: ONNX Runtime's contrib-operator domain (fused attention, Gelu, …).
MS_DOMAIN = "com.microsoft"
#: The default-domain opset the graphs are written in (LayerNormalization needs 17).
OPSET = 17

_ELEM: dict[DType, int] = {
    DType.F32: TensorProto.FLOAT,
    DType.F16: TensorProto.FLOAT16,
    DType.BF16: TensorProto.BFLOAT16,
    DType.F64: TensorProto.DOUBLE,
    DType.I64: TensorProto.INT64,
    DType.I32: TensorProto.INT32,
    DType.I16: TensorProto.INT16,
    DType.I8: TensorProto.INT8,
    DType.U8: TensorProto.UINT8,
    DType.U16: TensorProto.UINT16,
    DType.U32: TensorProto.UINT32,
    DType.U64: TensorProto.UINT64,
    DType.BOOL: TensorProto.BOOL,
}


def onnx_elem_type(dtype: DType | str) -> int:
    """The ``TensorProto`` element type of an Inferox dtype."""
    return _ELEM[DType.parse(dtype)]


class GraphBuilder:
    """Collects nodes, initializers, inputs and outputs of one graph."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._names: set[str] = set()
        self._count = 0

    def _fresh(self, hint: str) -> str:
        while True:
            self._count += 1
            name = f"{hint}_{self._count}"
            if name not in self._names:
                return name

    def reserve(self, *names: str) -> None:
        """Keep ``names`` (graph outputs to come) free: no initializer will take one."""
        self._names.update(names)

    def input(self, name: str, dtype: DType | str, shape: Sequence[int | str | None]) -> str:
        """Declare a graph input (``None`` or a string: a dynamic dimension)."""
        self.inputs.append(helper.make_tensor_value_info(name, onnx_elem_type(dtype), list(shape)))
        self._names.add(name)  # no initializer may take an input's name
        return name

    def output(self, name: str, dtype: DType | str, shape: Sequence[int | str | None]) -> str:
        """Declare a graph output; ``name`` must be produced by a node."""
        self.outputs.append(helper.make_tensor_value_info(name, onnx_elem_type(dtype), list(shape)))
        return name

    def const(self, name: str, value: Any, dtype: Any = None) -> str:
        """An initializer holding ``value`` (copied into the graph)."""
        array = np.asarray(value, dtype=dtype)
        if name in self._names:
            name = self._fresh(name)
        self._names.add(name)
        # copy(order="C"), not ascontiguousarray: that one turns a 0-d scalar into shape (1,).
        self.initializers.append(numpy_helper.from_array(array.copy(order="C"), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], *, name: str | None = None, outputs: int = 1, domain: str = "", **attrs: Any) -> Any:
        """Append a node; returns its output name (or a list of names when ``outputs > 1``)."""
        node_name = name or self._fresh(op_type)
        outs = [f"{node_name}_out{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=node_name, domain=domain or None, **attrs))
        return outs[0] if outputs == 1 else outs

    def rename_output(self, value: str, name: str) -> str:
        """Make the node producing ``value`` write ``name`` instead (graph outputs keep stable names).

        An initializer already called ``name`` is renamed out of the way first.
        """
        clash = next((t for t in self.initializers if t.name == name), None)
        if clash is not None:
            self._rename(name, self._fresh(name))
        self._names.add(name)
        for node in self.nodes:
            if value in node.output:
                self._rename(value, name)
                return name
        raise KeyError(value)

    def _rename(self, old: str, new: str) -> None:
        """Rename a value everywhere: the node or initializer producing it and every reader."""
        for t in self.initializers:
            if t.name == old:
                t.name = new
        for node in self.nodes:
            for i, out in enumerate(node.output):
                if out == old:
                    node.output[i] = new
            for i, inp in enumerate(node.input):
                if inp == old:
                    node.input[i] = new
        self._names.add(new)

    def prune(self) -> None:
        """Drop the nodes no graph output depends on, and the initializers no remaining node reads.

        A tracer records every operation a definition performs, including those a fused operator
        later made redundant (the separate bias ``Add`` of a projection that ``BiasGelu`` took over).
        """
        needed = {o.name for o in self.outputs}
        kept: list[onnx.NodeProto] = []
        for node in reversed(self.nodes):
            if any(out in needed for out in node.output if out):
                kept.append(node)
                needed.update(i for i in node.input if i)
        self.nodes = kept[::-1]
        self.initializers = [t for t in self.initializers if t.name in needed]

    def build(self, *, opset: int = OPSET, producer: str = "inferox-onnx", prune: bool = True) -> onnx.ModelProto:
        """The checked ``ModelProto`` (after :meth:`prune`, unless ``prune=False``)."""
        if prune:
            self.prune()
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)
        opsets = [helper.make_opsetid("", opset)]
        if any(n.domain == MS_DOMAIN for n in self.nodes):
            opsets.append(helper.make_opsetid(MS_DOMAIN, 1))  # ONNX Runtime's contrib operators
        model = helper.make_model(graph, opset_imports=opsets, producer_name=producer)
        model.ir_version = min(model.ir_version, 9)  # readable by every onnxruntime >= 1.16
        onnx.checker.check_model(model, full_check=False)
        return model


def node_counts(model: onnx.ModelProto) -> dict[str, int]:
    """How many nodes of each operator type the graph has (sorted by name)."""
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def fused_counts(model: onnx.ModelProto) -> dict[str, int]:
    """The ONNX Runtime contrib operators (``com.microsoft``) in the graph: its fusions."""
    counts: dict[str, int] = {}
    for node in model.graph.node:
        if node.domain == MS_DOMAIN:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def optimize_graph(model: onnx.ModelProto, *, num_heads: int = 0, hidden_size: int = 0, use_gpu: bool = False) -> onnx.ModelProto:
    """ONNX Runtime's transformer optimiser (``model_type="bert"``, its Python fusions only) over a
    traced graph: it fuses what the traced operators left as patterns (an attention written with
    plain operators, a bias and GELU, an ``Add`` and ``LayerNormalization``).

    Only the Python fusions run here (``opt_level=0``): the result stays portable across machines,
    and the session applies ONNX Runtime's own graph optimisations, tuned to the machine, at load.
    ``num_heads`` / ``hidden_size`` 0 let the optimiser read them from the graph.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    # The optimizer warns when a graph's producer is not "pytorch" (ours is "inferox-onnx"), and
    # about patterns it looked for and did not find: quiet those loggers for the call.
    with _quiet("onnxruntime.transformers.optimizer", "onnxruntime.transformers.fusion_utils", "onnxruntime.transformers.onnx_model"):
        # optimize_model changes the proto it is given: hand it a copy, the caller keeps its own.
        optimized = optimize_model(
            onnx.ModelProto.FromString(model.SerializeToString()), model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
            opt_level=0, use_gpu=use_gpu,
        )
    result: onnx.ModelProto = optimized.model
    # The fused operators live in the com.microsoft domain; declare it so that onnx's checker and
    # shape inference (which quantisation runs) accept the graph.
    if any(n.domain == MS_DOMAIN for n in result.graph.node) and not any(o.domain == MS_DOMAIN for o in result.opset_import):
        result.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return result


# ------------------------------------------------------------------------------------------- cache
CACHE_SUBDIR = "onnx"
GRAPH_FILE = "model.onnx"
INFO_FILE = "info.json"

_CHUNK = 1 << 22
_digest_memo: dict[tuple[str, int, int], str] = {}
_memo_lock = threading.Lock()


def graph_cache_dir() -> Path:
    """``$INFEROX_CACHE_DIR/onnx`` (read at call time, so tests may point it elsewhere)."""
    return cache_dir() / CACHE_SUBDIR


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, remembered per (path, size, mtime) for this process."""
    source = os.fspath(path)
    try:
        st = os.stat(source)
        memo_key = (os.path.realpath(source), st.st_size, st.st_mtime_ns)
        with _memo_lock:
            hit = _digest_memo.get(memo_key)
        if hit is not None:
            return hit
        h = hashlib.sha256()
        with open(source, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except OSError as exc:
        raise from_os_error(exc, path=source) from exc
    digest = h.hexdigest()
    with _memo_lock:
        _digest_memo[memo_key] = digest
    return digest


def array_digest(arrays: Mapping[str, Any]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of in-memory weights."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(np.asarray(arrays[name]))
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def cache_key(parts: Mapping[str, Any]) -> str:
    """The cache key of a graph: SHA-256 of ``parts`` as canonical JSON."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def write_atomic(target: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` for a temporary path beside ``target``, then rename it onto ``target``.

    The temporary file is removed if ``write`` fails, so no partial file is ever left under the
    final name (or at all).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


# ------------------------------------------------------------------------------- weights, options

#: Bumped whenever the tracer writes a different graph for the same inputs (invalidates the cache).
#: 2: graphs traced from the architectures' definitions (1: the hand-written mlp / bert graphs).
GRAPH_FORMAT = 2


def initializer_bytes(model: onnx.ModelProto, *, min_elements: int = 2) -> int:
    """Bytes of the graph's initializers of at least ``min_elements`` elements: the weights (and,
    once quantised, their scales), without the scalar constants the graph writes for itself."""
    total = 0
    for init in model.graph.initializer:
        n = int(np.prod(init.dims)) if init.dims else 1
        if n >= min_elements:
            total += n * helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
    return total


def _bool_option(options: Mapping[str, Any], key: str, default: bool) -> bool:
    value = options.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError("must be true or false", field=key, value=value)
    return value


@dataclass(frozen=True)
class GraphOptions:
    """The load options that change the graph: ``optimize`` (ONNX Runtime's transformer fusions,
    default on), ``int8`` (int8 quantisation, default off; ``int8_scheme`` picks how, see
    :data:`INT8_SCHEMES`) and ``cache`` (keep the
    built graph under ``$INFEROX_CACHE_DIR/onnx``, default on)."""

    optimize: bool = True
    int8: bool = False
    int8_scheme: str = "blockwise"
    cache: bool = True

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> GraphOptions:
        scheme = options.get("int8_scheme") or "blockwise"
        if scheme not in INT8_SCHEMES:
            raise ConfigError(f"must be one of {', '.join(INT8_SCHEMES)}", field="int8_scheme", value=scheme)
        return cls(
            optimize=_bool_option(options, "optimize", True),
            int8=_bool_option(options, "int8", False),
            int8_scheme=str(scheme),
            cache=_bool_option(options, "cache", True),
        )


@dataclass
class ObtainedGraph:
    """A graph ready for a session: a cache path (or the proto when caching is off) and what the
    build recorded (``fusions``: ONNX Runtime's fused-operator counts; ``from_cache``)."""

    graph: onnx.ModelProto | Path
    info: dict[str, Any]
    from_cache: bool
    entry: Path | None

    def discard(self) -> None:
        """Remove this graph's cache entry (it failed to load); other entries are untouched."""
        if self.entry is not None:
            shutil.rmtree(self.entry, ignore_errors=True)


#: int8 schemes. ``"blockwise"`` (the default): every MatMul's weights in int8 per block of
#: :data:`BLOCK_SIZE` along the input dimension, activations quantised to int8 at run time per block
#: as well (ONNX Runtime's ``MatMulNBits`` with ``accuracy_level=4``, int8 kernels). ``"dynamic"``:
#: ``quantize_dynamic`` — int8 weights per output channel, activations quantised per tensor at run
#: time (``MatMulInteger`` / ``QAttention``, the fused attention's projections included). Per-tensor
#: activation scales cannot follow BERT's outlier features on short inputs: on the parity sentences
#: "dynamic" reaches cosine 0.976 to fp32 where "blockwise" keeps 0.998 (numbers in
#: ``benchmarks/results/onnx.md``), so "dynamic" is faster but not the default.
INT8_SCHEMES = ("blockwise", "dynamic")
BLOCK_SIZE = 128
#: What ``"dynamic"`` rewrites: the matmuls and the fused attention's projections. Embedding
#: look-ups (``EmbedLayerNormalization``, ``Gather``) stay f32: they are reads, not products.
DYNAMIC_OPS = ["MatMul", "Attention", "Gemm"]


@contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Raise these loggers to ERROR for the block: the quantisers log advice at INFO/WARNING (on the
    root logger, partly) that is about other workflows (static quantisation, calibration)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


#: x86-64 CPU flags (``/proc/cpuinfo``) whose int8 dot-product instructions accumulate u8-by-s8 products
#: in 32 bits. Without one of them ONNX Runtime's u8-by-s8 kernels use AVX2's ``vpmaddubsw``, which adds
#: pairs of products into a *saturating* int16: with full 8-bit weights large activations clip
#: (measured on an AMD EPYC with AVX2 and no VNNI: max |error| 0.57 on a 64-128-8 MLP whose outputs
#: reach 6.5, against 0.07 on u8-by-u8 and 0.11 with 7-bit weights). ONNX Runtime's quantisation docs
#: give the remedy: ``reduce_range`` (7-bit weights) on such CPUs.
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_flags(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where the file is absent, e.g. macOS)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def int8_reduce_range(machine: str | None = None, flags: frozenset[str] | None = None) -> bool:
    """Whether ``"dynamic"`` int8 must quantise weights to 7 bits on this CPU (x86-64 without VNNI).

    On other architectures (arm64's ``sdot``/``udot`` accumulate in 32 bits) and on VNNI CPUs the
    full 8-bit range is exact; on an x86-64 CPU without VNNI the u8-by-s8 kernels saturate (see
    :data:`VNNI_FLAGS`). The answer is part of the graph cache key, so a cache shared between
    machines never hands one CPU a graph quantised for another.
    """
    import platform

    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i386", "i686"):
        return False
    return not ((cpu_flags() if flags is None else flags) & VNNI_FLAGS)


def _quantize(model: onnx.ModelProto, target: Path, scheme: str) -> None:
    if scheme == "dynamic":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with _quiet("", "onnxruntime.quantization"):
            # Shape inference cannot type the outputs of the fused contrib operators; all are float.
            quantize_dynamic(model, target, op_types_to_quantize=DYNAMIC_OPS, per_channel=True, weight_type=QuantType.QInt8,
                             reduce_range=int8_reduce_range(), extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        return
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    with _quiet("", "onnxruntime.quantization", "onnxruntime.quantization.matmul_nbits_quantizer"):
        quantizer = MatMulNBitsQuantizer(onnx.ModelProto.FromString(model.SerializeToString()), bits=8, block_size=BLOCK_SIZE,
                                         is_symmetric=True, accuracy_level=4)
        quantizer.process()
    onnx.save_model(quantizer.model.model, str(target))


def base_key(device: DeviceId, options: GraphOptions) -> dict[str, Any]:
    """The cache-key parts every graph shares: the format, the versions of this builder, ``onnx`` and
    ``onnxruntime`` (a new runtime may fuse differently), the device kind and the graph options."""
    import onnxruntime

    return {
        "format": GRAPH_FORMAT,
        "builder": distribution_version(DISTRIBUTION),
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "device": device.kind,
        "optimize": options.optimize,
        "int8": options.int8 and options.int8_scheme,
        # A graph quantised with 7-bit weights for a CPU without VNNI is not the one a VNNI CPU gets.
        "int8_reduce_range": bool(options.int8 and options.int8_scheme == "dynamic" and int8_reduce_range()),
    }


def obtain_graph(
    *,
    key: Mapping[str, Any],
    options: GraphOptions,
    build: Callable[[], tuple[onnx.ModelProto, dict[str, Any]]],
) -> ObtainedGraph:
    """The graph for ``key`` (everything it depends on, see :func:`base_key`), from the cache or built
    now by ``build()``.

    ``build`` returns the (optimised) fp32 graph and facts about it; quantisation, when asked, is
    done here on its result.
    """
    if not options.cache:
        model, info = build()
        if options.int8:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / GRAPH_FILE
                _quantize(model, path, options.int8_scheme)
                model = onnx.load(str(path))
                info = {**info, "weight_bytes": initializer_bytes(model)}
        return ObtainedGraph(model, {**info, "int8": options.int8 and options.int8_scheme}, from_cache=False, entry=None)

    digest = cache_key(key)
    entry = graph_cache_dir() / digest
    graph_path = entry / GRAPH_FILE
    info_path = entry / INFO_FILE
    if graph_path.is_file() and info_path.is_file():
        try:
            info = json.loads(info_path.read_text())
            return ObtainedGraph(graph_path, info, from_cache=True, entry=entry)
        except (OSError, ValueError):
            shutil.rmtree(entry, ignore_errors=True)  # unreadable entry: rebuild it below
    model, info = build()
    info = {**info, "int8": options.int8 and options.int8_scheme, "key": digest}
    if options.int8:
        write_atomic(graph_path, lambda tmp: _quantize(model, tmp, options.int8_scheme))
        info["weight_bytes"] = initializer_bytes(onnx.load(str(graph_path)))
    else:
        write_atomic(graph_path, lambda tmp: onnx.save_model(model, str(tmp)))
    # The info file is written last: an entry counts as complete only when both files exist.
    write_atomic(info_path, lambda tmp: tmp.write_text(json.dumps(info, indent=2, sort_keys=True)))
    return ObtainedGraph(graph_path, info, from_cache=False, entry=entry)
