"""Tracing an architecture definition into an ONNX graph: an array namespace that records nodes.

A :class:`~inferox.core.Definition` is written against an array namespace ``xp``. :class:`Tracer`
gives it one (:attr:`Tracer.xp`, a :class:`TraceNamespace`) whose arrays are symbolic
(:class:`TracedArray`): every operation appends an ONNX node to a
:class:`~inferox.onnx._graph.GraphBuilder` instead of computing. The definition's ``forward`` runs
once, on symbolic inputs, and what it returns becomes the graph's outputs.

Why a recorder of our own rather than ``ndonnx``, ``spox`` or ``onnxscript``: the definitions read
their inputs' shapes and compute with them (``b, n = ids.shape``, ``xp.reshape(x, (b, n, 3, heads,
head_dim))``, ``xp.arange(n)``, ``table[:n]``). The array API standard reports a dimension unknown
until run time as ``None``, which ``ndonnx`` (the one array-API library over ONNX) does, so those
lines fail there; ``spox`` and ``onnxscript`` build operators, not an array namespace. Here a
dimension unknown at trace time is a :class:`Dim`: a symbol that can be added, subtracted,
multiplied, passed to ``reshape`` / ``arange`` / slices and compared, whose value the graph computes
(``Shape``) only where it is needed. Dimensions known at trace time stay Python ints.

What the recorder does beyond recording:

* **constants fold** — an operation on arrays known at trace time (the weights, ``table[0]``,
  ``W.T``) is computed with NumPy, and only its result becomes an initializer;
* **fills stay scalars** — ``xp.full_like(x, v)`` inside ``xp.where`` or arithmetic becomes the
  scalar ``v`` (ONNX broadcasts it), never a materialised tensor;
* **layout round trips cancel** — ``Transpose`` of a ``Transpose`` composes, ``Reshape`` of a
  ``Reshape`` reads the original, and a reshape back to an array's own shape returns that array, so
  a fused operator's output is not split into heads and merged again;
* **producers are remembered** (:attr:`TracedArray.node`, :attr:`TracedArray.meta`), so that
  :class:`~inferox.onnx.ops.OnnxOps` can see what an operation's inputs were made of and emit ONNX
  Runtime's fused operators;
* **unused nodes are dropped** when the graph is built (:meth:`GraphBuilder.prune
  <inferox.onnx._graph.GraphBuilder.prune>`).

Inputs' dynamic dimensions are shared by position: dimension 0 of every input is ``batch``,
dimension 1 ``sequence`` (a definition's ``check_inputs`` refuses companion inputs of other
shapes, as the encoders' does). A definition must not branch on array *values* or ask for a
dynamic dimension's value in Python (``int(n)``, ``range(n)``): that is a
:class:`~inferox.core.errors.BackendError` naming what was asked.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import helper

from inferox.core.errors import BackendError
from inferox.onnx._graph import OPSET, GraphBuilder
from inferox.onnx.plugin import BACKEND_NAME

if TYPE_CHECKING:
    from inferox.core.definition import DefinitionPlan

__all__ = ["Dim", "TraceNamespace", "TracedArray", "Tracer", "trace_arrays", "trace_plan", "untraceable"]

_INT64_MAX = int(np.iinfo(np.int64).max)
_INT64_MIN = int(np.iinfo(np.int64).min)
_I64 = np.dtype(np.int64)
_BOOL = np.dtype(np.bool_)
#: The float dtype of arrays made without one (``xp.full(shape, 1.0)``): the graphs compute in f32.
DEFAULT_FLOAT = np.dtype(np.float32)


def untraceable(what: str) -> BackendError:
    """The error for a definition that asks the tracer for something only a run has."""
    return BackendError(f"cannot be traced into ONNX: {what}", backend=BACKEND_NAME)


# -- symbolic dimensions ------------------------------------------------------------------------------
_DIM_OPS: dict[str, tuple[str, Callable[[int, int], int], str]] = {
    "add": ("Add", operator.add, "+"),
    "sub": ("Sub", operator.sub, "-"),
    "mul": ("Mul", operator.mul, "*"),
    "floordiv": ("Div", operator.floordiv, "//"),
}


class Dim:
    """A dimension whose size is known only when the graph runs.

    A *leaf* is read from an array's shape (``source``: the array and axis); an *expression*
    (``expr``: operation and operands) comes from arithmetic on dimensions (``n + 1``). Leaves are
    equal only to themselves, expressions when built the same way from equal operands: that is how
    the tracer knows that ``(b, n, h)`` and ``ids.shape + (h,)`` are the same shape.
    """

    __slots__ = ("_hash", "expr", "label", "source")

    def __init__(self, label: str, *, source: tuple[TracedArray, int] | None = None, expr: tuple[str, Any, Any] | None = None) -> None:
        self.label = label
        self.source = source
        self.expr = expr
        self._hash = hash(expr) if expr is not None else id(self)

    def __repr__(self) -> str:
        return self.label

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if isinstance(other, Dim) and self.expr is not None and other.expr is not None:
            return self.expr == other.expr
        return False

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def _op(self, op: str, other: Any, *, reverse: bool = False) -> Any:
        if isinstance(other, bool) or not isinstance(other, (int, np.integer, Dim)):
            return NotImplemented
        a, b = (other, self) if reverse else (self, other)
        return dim_op(op, a if isinstance(a, Dim) else int(a), b if isinstance(b, Dim) else int(b))

    def __add__(self, other: Any) -> Any:
        return self._op("add", other)

    def __radd__(self, other: Any) -> Any:
        return self._op("add", other, reverse=True)

    def __sub__(self, other: Any) -> Any:
        return self._op("sub", other)

    def __rsub__(self, other: Any) -> Any:
        return self._op("sub", other, reverse=True)

    def __mul__(self, other: Any) -> Any:
        return self._op("mul", other)

    def __rmul__(self, other: Any) -> Any:
        return self._op("mul", other, reverse=True)

    def __floordiv__(self, other: Any) -> Any:
        return self._op("floordiv", other)

    def __index__(self) -> int:
        raise untraceable(f"the value of the dynamic dimension {self.label!r} was asked for in Python (int(), range(), a shape check)")

    __int__ = __index__

    def __bool__(self) -> bool:
        raise untraceable(f"the dynamic dimension {self.label!r} was tested in a Python condition")

    def __lt__(self, other: Any) -> bool:
        raise untraceable(f"the dynamic dimension {self.label!r} was compared in Python")

    __le__ = __gt__ = __ge__ = __lt__


def dim_op(op: str, a: int | Dim, b: int | Dim) -> int | Dim:
    """``a <op> b`` for ints and dimensions, simplified where it can be (``n + 0`` is ``n``)."""
    if not isinstance(a, Dim) and not isinstance(b, Dim):
        return _DIM_OPS[op][1](a, b)
    if op == "add" and (a == 0 or b == 0):
        return b if a == 0 else a
    if op == "sub" and b == 0:
        return a
    if op == "sub" and isinstance(a, Dim) and a == b:
        return 0
    if op == "mul" and (a == 1 or b == 1):
        return b if a == 1 else a
    if op == "floordiv" and b == 1:
        return a
    return Dim(f"({a}{_DIM_OPS[op][2]}{b})", expr=(op, a, b))


def same_dim(a: int | Dim, b: int | Dim) -> bool:
    """Whether two dimensions are known to be equal at trace time."""
    if isinstance(a, Dim) or isinstance(b, Dim):
        return isinstance(a, Dim) and isinstance(b, Dim) and a == b
    return int(a) == int(b)


def same_shape(a: Sequence[int | Dim], b: Sequence[int | Dim]) -> bool:
    return len(a) == len(b) and all(same_dim(x, y) for x, y in zip(a, b))


def broadcast_shapes(*shapes: Sequence[int | Dim]) -> tuple[int | Dim, ...]:
    """The array API broadcast of ``shapes``; of two different unknown dimensions, the first wins
    (the graph broadcasts them at run time; they are equal or one of them is 1)."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[int | Dim] = []
    for axis in range(rank):
        dims = [s[len(s) - rank + axis] for s in shapes if len(s) - rank + axis >= 0]
        chosen: int | Dim = 1
        for d in dims:
            if isinstance(d, Dim):
                if not isinstance(chosen, Dim) and chosen == 1:
                    chosen = d
            elif d != 1:
                if isinstance(chosen, int) and chosen not in (1, d):
                    raise untraceable(f"shapes {[tuple(s) for s in shapes]} do not broadcast")
                chosen = d
        out.append(chosen)
    return tuple(out)


# -- symbolic arrays --------------------------------------------------------------------------------------
@dataclass
class Node:
    """What produced a traced array: the operator, its inputs and attributes (for the peepholes)."""

    op_type: str
    inputs: tuple[Any, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    domain: str = ""


class TracedArray:
    """A symbolic array: a value of the graph being traced (or a constant not yet written into it).

    ``shape`` holds ints and :class:`Dim`\\ s, ``dtype`` a NumPy dtype. ``value`` is the array when
    it is known at trace time (weights, what folds from them); ``name`` the graph value once the
    array is in the graph. ``node`` records the producing operation, ``meta`` what
    :class:`~inferox.onnx.ops.OnnxOps` noted about it (a projection's parts, an embedding's table).
    """

    __slots__ = ("dtype", "fill", "hint", "meta", "name", "node", "shape", "tracer", "value")

    def __init__(
        self,
        tracer: Tracer,
        *,
        shape: Sequence[int | Dim],
        dtype: Any,
        value: np.ndarray | None = None,
        name: str | None = None,
        node: Node | None = None,
        fill: Any = None,
        hint: str | None = None,
    ) -> None:
        self.tracer = tracer
        self.shape: tuple[int | Dim, ...] = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.value = value
        self.name = name
        self.node = node
        #: A scalar this array is filled with (``full_like``): used as the scalar where it broadcasts.
        self.fill = fill
        self.hint = hint
        self.meta: dict[str, Any] = {}

    # -- the array API's attributes ------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int | Dim:
        out: int | Dim = 1
        for d in self.shape:
            out = dim_op("mul", out, d)
        return out

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def T(self) -> TracedArray:
        return self.tracer.xp.permute_dims(self, tuple(reversed(range(self.ndim))))

    @property
    def mT(self) -> TracedArray:
        return self.tracer.xp.matrix_transpose(self)

    @property
    def is_constant(self) -> bool:
        return self.value is not None

    def __array_namespace__(self, *, api_version: str | None = None) -> TraceNamespace:
        return self.tracer.xp

    def to_device(self, device: Any, /, *, stream: Any = None) -> TracedArray:
        return self

    def __repr__(self) -> str:
        what = "constant" if self.value is not None else (self.name or "value")
        return f"TracedArray({what}, shape={self.shape}, dtype={self.dtype})"

    # -- Python conversions: only constants have values ---------------------------------------------
    def _concrete(self, what: str) -> np.ndarray:
        if self.value is None:
            raise untraceable(f"{what} of a value computed by the graph (a Python branch on array values?)")
        return self.value

    def __bool__(self) -> bool:
        return bool(self._concrete("bool()"))

    def __int__(self) -> int:
        return int(self._concrete("int()"))

    def __float__(self) -> float:
        return float(self._concrete("float()"))

    def __index__(self) -> int:
        return operator.index(self._concrete("an index").item())

    def __len__(self) -> int:
        if not self.shape or isinstance(self.shape[0], Dim):
            raise untraceable("len() of an array whose first dimension is dynamic")
        return int(self.shape[0])

    def __iter__(self) -> Iterator[TracedArray]:
        for i in range(len(self)):
            yield self[i]

    def __setitem__(self, key: Any, value: Any) -> None:
        raise untraceable("item assignment (traced arrays are immutable; use xp.where)")

    # -- operators ------------------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> TracedArray:
        return self.tracer.xp.getitem(self, key)

    def __add__(self, other: Any) -> TracedArray:
        return self.tracer.xp.add(self, other)

    def __radd__(self, other: Any) -> TracedArray:
        return self.tracer.xp.add(other, self)

    def __sub__(self, other: Any) -> TracedArray:
        return self.tracer.xp.subtract(self, other)

    def __rsub__(self, other: Any) -> TracedArray:
        return self.tracer.xp.subtract(other, self)

    def __mul__(self, other: Any) -> TracedArray:
        return self.tracer.xp.multiply(self, other)

    def __rmul__(self, other: Any) -> TracedArray:
        return self.tracer.xp.multiply(other, self)

    def __truediv__(self, other: Any) -> TracedArray:
        return self.tracer.xp.divide(self, other)

    def __rtruediv__(self, other: Any) -> TracedArray:
        return self.tracer.xp.divide(other, self)

    def __floordiv__(self, other: Any) -> TracedArray:
        return self.tracer.xp.floor_divide(self, other)

    def __rfloordiv__(self, other: Any) -> TracedArray:
        return self.tracer.xp.floor_divide(other, self)

    def __mod__(self, other: Any) -> TracedArray:
        return self.tracer.xp.remainder(self, other)

    def __pow__(self, other: Any) -> TracedArray:
        return self.tracer.xp.pow(self, other)

    def __rpow__(self, other: Any) -> TracedArray:
        return self.tracer.xp.pow(other, self)

    def __matmul__(self, other: Any) -> TracedArray:
        return self.tracer.xp.matmul(self, other)

    def __rmatmul__(self, other: Any) -> TracedArray:
        return self.tracer.xp.matmul(other, self)

    def __neg__(self) -> TracedArray:
        return self.tracer.xp.negative(self)

    def __pos__(self) -> TracedArray:
        return self

    def __abs__(self) -> TracedArray:
        return self.tracer.xp.abs(self)

    def __invert__(self) -> TracedArray:
        return self.tracer.xp.logical_not(self) if self.dtype == _BOOL else self.tracer.xp.bitwise_invert(self)

    def __and__(self, other: Any) -> TracedArray:
        return self.tracer.xp.logical_and(self, other)

    __rand__ = __and__

    def __or__(self, other: Any) -> TracedArray:
        return self.tracer.xp.logical_or(self, other)

    __ror__ = __or__

    def __eq__(self, other: Any) -> TracedArray:  # type: ignore[override]
        return self.tracer.xp.equal(self, other)

    def __ne__(self, other: Any) -> TracedArray:  # type: ignore[override]
        return self.tracer.xp.not_equal(self, other)

    def __lt__(self, other: Any) -> TracedArray:
        return self.tracer.xp.less(self, other)

    def __le__(self, other: Any) -> TracedArray:
        return self.tracer.xp.less_equal(self, other)

    def __gt__(self, other: Any) -> TracedArray:
        return self.tracer.xp.greater(self, other)

    def __ge__(self, other: Any) -> TracedArray:
        return self.tracer.xp.greater_equal(self, other)

    __hash__ = object.__hash__


# -- the recorder -----------------------------------------------------------------------------------------
class Tracer:
    """Records one graph: inputs, the nodes a definition's operations produce, constants, outputs."""

    def __init__(self, name: str) -> None:
        self.builder = GraphBuilder(name)
        #: The array namespace a definition is traced with.
        self.xp = TraceNamespace(self)
        self._constants: dict[int, str] = {}
        self._small: dict[tuple[str, tuple[int, ...], bytes], str] = {}
        self._alive: list[np.ndarray] = []  # constants keep their ids while the trace runs
        self._dims: dict[str, Dim] = {}
        self._dim_values: dict[Dim, str] = {}
        self._dim_scalars: dict[Dim, str] = {}
        self._outputs: set[str] = set()
        self._seen: dict[tuple[Any, ...], TracedArray] = {}

    # -- inputs and constants -------------------------------------------------------------------------
    def input(self, name: str, dtype: Any, shape: Sequence[int | None]) -> TracedArray:
        """A graph input; its ``None`` dimensions become :class:`Dim`\\ s shared by position
        (``batch``, ``sequence``, ``dim2`` …)."""
        dims: list[int | Dim] = []
        params: list[int | str] = []
        array = TracedArray(self, shape=(), dtype=dtype, name=name)
        for axis, d in enumerate(shape):
            if d is None:
                label = ("batch", "sequence")[axis] if axis < 2 else f"dim{axis}"
                dim = self._dims.get(label)
                if dim is None:
                    dim = self._dims[label] = Dim(label, source=(array, axis))
                dims.append(dim)
                params.append(label)
            else:
                dims.append(int(d))
                params.append(int(d))
        array.shape = tuple(dims)
        self.builder.input(name, _dtype_name(array.dtype), params)
        return array

    def constant(self, value: Any, *, dtype: Any = None, hint: str | None = None) -> TracedArray:
        """An array known at trace time (written into the graph only if a node reads it)."""
        array = np.asarray(value, dtype=dtype)
        self._alive.append(array)
        return TracedArray(self, shape=array.shape, dtype=array.dtype, value=array, hint=hint)

    def name_of(self, array: TracedArray) -> str:
        """The graph value of ``array``: an initializer for a constant, an ``Expand`` for a fill."""
        if array.name is not None:
            return array.name
        if array.value is not None:
            array.name = self._initializer(array.value, array.hint)
            return array.name
        if array.fill is not None:
            scalar = self.constant(np.asarray(array.fill, dtype=array.dtype))
            array.name = self.builder.op("Expand", [self.name_of(scalar), self.shape_value(array.shape)])
            return array.name
        raise AssertionError(f"{array!r} has no value")  # every other array is a node's output

    def _initializer(self, value: np.ndarray, hint: str | None) -> str:
        if value.size <= 16:  # scalars and short vectors: one initializer per distinct value
            key = (value.dtype.str, value.shape, value.tobytes())
            name = self._small.get(key)
            if name is None:
                name = self._small[key] = self.builder.const(hint or "const", value)
            return name
        name = self._constants.get(id(value))
        if name is None:
            self._alive.append(value)
            name = self._constants[id(value)] = self.builder.const(hint or "const", value)
        return name

    # -- nodes ---------------------------------------------------------------------------------------------
    def emit(
        self,
        op_type: str,
        inputs: Sequence[TracedArray | str | None],
        *,
        shape: Sequence[int | Dim | None],
        dtype: Any,
        domain: str = "",
        outputs: int = 1,
        **attrs: Any,
    ) -> TracedArray:
        """Append a node and return its first output (``outputs`` > 1: outputs the operator
        requires that nothing reads); ``None`` in ``shape`` is a new dimension read from the result."""
        names = ["" if i is None else i if isinstance(i, str) else self.name_of(i) for i in inputs]
        while names and names[-1] == "":
            names.pop()  # trailing optional inputs left out
        # The same operation on the same values is recorded once (a definition may cast the mask
        # in every layer): the earlier result is returned.
        key = (op_type, domain, outputs, tuple(names), repr(sorted(attrs.items())))
        seen = self._seen.get(key)
        if seen is not None:
            return seen
        made = self.builder.op(op_type, names, domain=domain, outputs=outputs, **attrs)
        out_name = made if outputs == 1 else made[0]
        out = TracedArray(self, shape=(), dtype=dtype, name=out_name,
                          node=Node(op_type, tuple(inputs), dict(attrs), domain))
        out.shape = tuple(Dim(f"{op_type.lower()}_{out_name}_{axis}", source=(out, axis)) if d is None else d for axis, d in enumerate(shape))
        self._seen[key] = out
        return out

    # -- dimensions at run time ----------------------------------------------------------------------------
    def dim_value(self, dim: int | Dim) -> str:
        """A 1-D int64 tensor of one element holding ``dim`` (a constant, or computed from shapes)."""
        if not isinstance(dim, Dim):
            return self.name_of(self.constant(np.array([int(dim)], np.int64)))
        hit = self._dim_values.get(dim)
        if hit is not None:
            return hit
        if dim.expr is not None:
            op, a, b = dim.expr
            name = str(self.builder.op(_DIM_OPS[op][0], [self.dim_value(a), self.dim_value(b)]))
        else:
            assert dim.source is not None
            array, axis = dim.source
            name = str(self.builder.op("Shape", [self.name_of(array)], start=axis, end=axis + 1))
        self._dim_values[dim] = name
        return name

    def dim_scalar(self, dim: int | Dim) -> str:
        """A 0-d int64 tensor holding ``dim``."""
        if not isinstance(dim, Dim):
            return self.name_of(self.constant(np.array(int(dim), np.int64)))
        hit = self._dim_scalars.get(dim)
        if hit is None:
            axes = self.name_of(self.constant(np.array([0], np.int64)))
            hit = self._dim_scalars[dim] = str(self.builder.op("Squeeze", [self.dim_value(dim), axes]))
        return hit

    def shape_value(self, dims: Sequence[int | Dim]) -> str:
        """A 1-D int64 tensor holding ``dims`` (runs of known sizes as one constant)."""
        if all(not isinstance(d, Dim) for d in dims):
            return self.name_of(self.constant(np.array([int(d) for d in dims], np.int64)))
        pieces: list[str] = []
        run: list[int] = []
        for d in dims:
            if isinstance(d, Dim):
                if run:
                    pieces.append(self.name_of(self.constant(np.array(run, np.int64))))
                    run = []
                pieces.append(self.dim_value(d))
            else:
                run.append(int(d))
        if run:
            pieces.append(self.name_of(self.constant(np.array(run, np.int64))))
        return pieces[0] if len(pieces) == 1 else str(self.builder.op("Concat", pieces, axis=0))

    # -- outputs and the result ----------------------------------------------------------------------------
    def output(self, name: str, array: TracedArray) -> None:
        """Make ``array`` the graph output ``name`` (its producer writes the name directly where it can)."""
        if not isinstance(array, TracedArray):
            array = self.xp.asarray(array)
        value = self.name_of(array)
        is_node_output = array.node is not None and value not in self._outputs and not any(i.name == value for i in self.builder.inputs)
        if is_node_output and value != name:
            self.builder.rename_output(value, name)
            array.name = name
        elif value != name:
            self.builder.op("Identity", [value], name=f"{name}/Identity")
            self.builder.rename_output(f"{name}/Identity_out0", name)
        self._outputs.add(name)
        params = [d.label if isinstance(d, Dim) and d.expr is None and d.label in self._dims else None if isinstance(d, Dim) else int(d) for d in array.shape]
        self.builder.output(name, _dtype_name(array.dtype), params)

    def build(self) -> onnx.ModelProto:
        return self.builder.build(opset=OPSET)


def _dtype_name(dtype: np.dtype) -> Any:
    """The element type ``GraphBuilder`` takes for a NumPy dtype."""
    from inferox.core.dtype import DType

    return DType.from_numpy(dtype)


def _elem(dtype: np.dtype) -> int:
    return int(helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))


# -- the namespace -------------------------------------------------------------------------------------------
_KINDS: dict[str, Callable[[np.dtype[Any]], bool]] = {
    "bool": lambda d: d.kind == "b",
    "signed integer": lambda d: d.kind == "i",
    "unsigned integer": lambda d: d.kind == "u",
    "integral": lambda d: d.kind in "iu",
    "real floating": lambda d: d.kind == "f",
    "complex floating": lambda d: d.kind == "c",
    "numeric": lambda d: d.kind in "iufc",
}


class TraceNamespace:
    """The array API functions the architecture definitions use, recording ONNX nodes.

    Arrays are :class:`TracedArray`\\ s; dtypes are NumPy dtypes (``xp.float32 == np.float32``).
    What is known at trace time is computed with NumPy and folds into constants.
    """

    __name__ = "inferox.onnx.trace"

    e = math.e
    pi = math.pi
    inf = math.inf
    nan = math.nan
    newaxis = None

    def __init__(self, tracer: Tracer) -> None:
        self._t = tracer

    def __repr__(self) -> str:
        return "<inferox.onnx trace namespace>"

    # -- dtypes -------------------------------------------------------------------------------------------
    def isdtype(self, dtype: Any, kind: Any) -> bool:
        d = np.dtype(dtype)
        if isinstance(kind, tuple):
            return any(self.isdtype(d, k) for k in kind)
        if isinstance(kind, str):
            return _KINDS[kind](d)
        return bool(d == np.dtype(kind))

    def finfo(self, dtype: Any) -> Any:
        return np.finfo(dtype.dtype if isinstance(dtype, TracedArray) else dtype)

    def iinfo(self, dtype: Any) -> Any:
        return np.iinfo(dtype.dtype if isinstance(dtype, TracedArray) else dtype)

    def result_type(self, *args: Any) -> np.dtype:
        return np.result_type(*(a.dtype if isinstance(a, TracedArray) else a for a in args))

    def astype(self, x: TracedArray, dtype: Any, /, *, copy: bool = True, device: Any = None) -> TracedArray:
        x = self.asarray(x)
        target = np.dtype(dtype)
        if x.dtype == target:
            return x
        if x.value is not None:
            return self._t.constant(x.value.astype(target))
        if x.fill is not None:
            return TracedArray(self._t, shape=x.shape, dtype=target, fill=np.asarray(x.fill).astype(target).item())
        return self._t.emit("Cast", [x], shape=x.shape, dtype=target, to=_elem(target))

    # -- creation ---------------------------------------------------------------------------------------
    def asarray(self, obj: Any, /, *, dtype: Any = None, device: Any = None, copy: bool | None = None) -> TracedArray:
        if isinstance(obj, TracedArray):
            return obj if dtype is None else self.astype(obj, dtype)
        if isinstance(obj, Dim):
            scalar = TracedArray(self._t, shape=(), dtype=_I64, name=self._t.dim_scalar(obj))
            return scalar if dtype is None else self.astype(scalar, dtype)
        if isinstance(obj, (list, tuple)) and any(isinstance(v, (Dim, TracedArray)) for v in obj):
            return self.stack([self.asarray(v, dtype=_I64 if dtype is None else dtype) for v in obj])
        if dtype is None and isinstance(obj, float):
            dtype = DEFAULT_FLOAT
        return self._t.constant(obj, dtype=dtype)

    def _full(self, shape: Any, fill: Any, dtype: Any) -> TracedArray:
        dims = (shape,) if isinstance(shape, (int, Dim)) else tuple(shape)
        if dtype is None:
            dtype = _BOOL if isinstance(fill, bool) else _I64 if isinstance(fill, int) else DEFAULT_FLOAT
        if all(not isinstance(d, Dim) for d in dims):
            return self._t.constant(np.full(tuple(int(d) for d in dims), fill, dtype=dtype))
        return TracedArray(self._t, shape=dims, dtype=dtype, fill=np.asarray(fill, dtype=dtype).item())

    def full(self, shape: Any, fill_value: Any, *, dtype: Any = None, device: Any = None) -> TracedArray:
        return self._full(shape, fill_value, dtype)

    def zeros(self, shape: Any, *, dtype: Any = None, device: Any = None) -> TracedArray:
        return self._full(shape, 0, dtype or DEFAULT_FLOAT)

    def ones(self, shape: Any, *, dtype: Any = None, device: Any = None) -> TracedArray:
        return self._full(shape, 1, dtype or DEFAULT_FLOAT)

    def empty(self, shape: Any, *, dtype: Any = None, device: Any = None) -> TracedArray:
        return self.zeros(shape, dtype=dtype)

    def full_like(self, x: TracedArray, /, fill_value: Any, *, dtype: Any = None, device: Any = None) -> TracedArray:
        return self._full(x.shape, fill_value, dtype or x.dtype)

    def zeros_like(self, x: TracedArray, /, *, dtype: Any = None, device: Any = None) -> TracedArray:
        return self._full(x.shape, 0, dtype or x.dtype)

    def ones_like(self, x: TracedArray, /, *, dtype: Any = None, device: Any = None) -> TracedArray:
        return self._full(x.shape, 1, dtype or x.dtype)

    empty_like = zeros_like

    def arange(self, start: Any, /, stop: Any = None, step: Any = 1, *, dtype: Any = None, device: Any = None) -> TracedArray:
        if stop is None:
            start, stop = 0, start
        parts = (start, stop, step)
        if all(not isinstance(v, (Dim, TracedArray)) for v in parts):
            values = np.arange(start, stop, step)
            return self._t.constant(values if dtype is None else values.astype(dtype))
        integral = all(isinstance(v, (int, Dim)) or (isinstance(v, TracedArray) and v.dtype.kind in "iu") for v in parts)
        kind = _I64 if integral else DEFAULT_FLOAT
        scalars = [self.astype(self.asarray(v) if isinstance(v, (Dim, TracedArray)) else self._t.constant(np.asarray(v, kind)), kind) for v in parts]
        if step == 1 and isinstance(start, int) and isinstance(stop, Dim):
            length: int | Dim | None = dim_op("sub", stop, start)
        else:
            length = None
        out = self._t.emit("Range", scalars, shape=(length,), dtype=kind)
        return out if dtype is None else self.astype(out, dtype)

    # -- elementwise ------------------------------------------------------------------------------------
    def _operands(self, *values: Any) -> list[TracedArray]:
        arrays = [v for v in values if isinstance(v, TracedArray)]
        if not arrays:
            raise untraceable("an operation on Python scalars only")
        dtype = arrays[0].dtype
        for a in arrays[1:]:
            dtype = np.result_type(dtype, a.dtype)
        out: list[TracedArray] = []
        for v in values:
            if isinstance(v, TracedArray):
                out.append(v)
            elif isinstance(v, Dim):
                out.append(self.asarray(v))
            else:
                # A Python scalar takes the arrays' dtype (the array API's rule), unless it needs a float.
                kind = dtype if not (isinstance(v, float) and dtype.kind in "iub") else DEFAULT_FLOAT
                out.append(self._t.constant(np.asarray(v, dtype=kind)))
        dtype = out[0].dtype
        for a in out[1:]:
            dtype = np.result_type(dtype, a.dtype)
        return [a if a.dtype == dtype else self.astype(a, dtype) for a in out]

    def _scalar_or_array(self, a: TracedArray, shape: tuple[int | Dim, ...], others: Sequence[TracedArray]) -> TracedArray:
        """A fill as its scalar where the other operands alone have the result's shape."""
        if a.fill is None:
            return a
        rest = [o.shape for o in others if o is not a]
        if rest and same_shape(broadcast_shapes(*rest), shape):
            return self._t.constant(np.asarray(a.fill, dtype=a.dtype))
        return a

    def _nary(self, op_type: str, fn: Callable[..., Any], *values: Any, out_dtype: Any = None) -> TracedArray:
        arrays = self._operands(*values)
        dtype = np.dtype(out_dtype) if out_dtype is not None else arrays[0].dtype
        if all(a.value is not None for a in arrays):
            return self._t.constant(np.asarray(fn(*(a.value for a in arrays))).astype(dtype))
        shape = broadcast_shapes(*(a.shape for a in arrays))
        if len(arrays) == 2 and op_type in _IDENTITIES:
            # x + 0, x - 0, x * 1, x / 1: x itself (when the constant changes neither shape nor dtype).
            first, second = arrays
            for keep, other in [(first, second)] if op_type in ("Sub", "Div") else [(first, second), (second, first)]:
                if _is_scalar(other, _IDENTITIES[op_type]) and same_shape(keep.shape, shape) and keep.dtype == dtype:
                    return keep
        if all(a.fill is not None or a.value is not None for a in arrays):
            fills: list[Any] = [a.fill if a.fill is not None else a.value for a in arrays]
            if all(np.ndim(f) == 0 for f in fills):
                return TracedArray(self._t, shape=shape, dtype=dtype, fill=np.asarray(fn(*fills)).astype(dtype).item())
        ready = [self._scalar_or_array(a, shape, arrays) for a in arrays]
        return self._t.emit(op_type, ready, shape=shape, dtype=dtype)

    def add(self, a: Any, b: Any, /) -> TracedArray:
        return self._nary("Add", np.add, a, b)

    def subtract(self, a: Any, b: Any, /) -> TracedArray:
        return self._nary("Sub", np.subtract, a, b)

    def multiply(self, a: Any, b: Any, /) -> TracedArray:
        return self._nary("Mul", np.multiply, a, b)

    def divide(self, a: Any, b: Any, /) -> TracedArray:
        x, y = self._operands(a, b)
        if x.dtype.kind in "iub":  # true division of integers gives floats (ONNX's Div would truncate)
            x, y = self.astype(x, DEFAULT_FLOAT), self.astype(y, DEFAULT_FLOAT)
        return self._nary("Div", np.divide, x, y)

    def floor_divide(self, a: Any, b: Any, /) -> TracedArray:
        x, y = self._operands(a, b)
        if x.dtype.kind == "f":
            return self.floor(self.divide(x, y))
        return self.divide_exact(self.subtract(x, self.remainder(x, y)), y)

    def divide_exact(self, a: TracedArray, b: TracedArray) -> TracedArray:
        return self._nary("Div", np.floor_divide, a, b)

    def remainder(self, a: Any, b: Any, /) -> TracedArray:
        x, y = self._operands(a, b)
        if x.value is not None and y.value is not None:
            return self._t.constant(np.remainder(x.value, y.value))
        shape = broadcast_shapes(x.shape, y.shape)
        if x.dtype.kind != "f":
            return self._t.emit("Mod", [x, y], shape=shape, dtype=x.dtype, fmod=0)  # integers: the divisor's sign, as Python's %
        # Floats: ONNX has only C's fmod (the dividend's sign); the array API's remainder takes the divisor's.
        r = self._t.emit("Mod", [x, y], shape=shape, dtype=x.dtype, fmod=1)
        wrong_sign = self.logical_and(self.not_equal(r, 0.0), self.not_equal(self.less(r, 0.0), self.less(y, 0.0)))
        return self.where(wrong_sign, self.add(r, y), r)

    def pow(self, a: Any, b: Any, /) -> TracedArray:
        return self._nary("Pow", np.power, a, b)

    def maximum(self, a: Any, b: Any, /) -> TracedArray:
        return self._nary("Max", np.maximum, a, b)

    def minimum(self, a: Any, b: Any, /) -> TracedArray:
        return self._nary("Min", np.minimum, a, b)

    def equal(self, a: Any, b: Any, /) -> TracedArray:
        return self._nary("Equal", np.equal, a, b, out_dtype=_BOOL)

    def not_equal(self, a: Any, b: Any, /) -> TracedArray:
        return self.logical_not(self.equal(a, b))

    def less(self, a: Any, b: Any, /) -> TracedArray:
        return self._nary("Less", np.less, a, b, out_dtype=_BOOL)

    def less_equal(self, a: Any, b: Any, /) -> TracedArray:
        return self._nary("LessOrEqual", np.less_equal, a, b, out_dtype=_BOOL)

    def greater(self, a: Any, b: Any, /) -> TracedArray:
        return self._nary("Greater", np.greater, a, b, out_dtype=_BOOL)

    def greater_equal(self, a: Any, b: Any, /) -> TracedArray:
        return self._nary("GreaterOrEqual", np.greater_equal, a, b, out_dtype=_BOOL)

    def logical_and(self, a: Any, b: Any, /) -> TracedArray:
        return self._nary("And", np.logical_and, self.astype(self.asarray(a), _BOOL), self.astype(self.asarray(b), _BOOL))

    def logical_or(self, a: Any, b: Any, /) -> TracedArray:
        return self._nary("Or", np.logical_or, self.astype(self.asarray(a), _BOOL), self.astype(self.asarray(b), _BOOL))

    def where(self, condition: Any, a: Any, b: Any, /) -> TracedArray:
        cond = self.astype(self.asarray(condition), _BOOL)
        x, y = self._operands(a, b)
        if cond.value is not None and x.value is not None and y.value is not None:
            return self._t.constant(np.where(cond.value, x.value, y.value))
        shape = broadcast_shapes(cond.shape, x.shape, y.shape)
        every = [cond, x, y]
        return self._t.emit("Where", [self._scalar_or_array(v, shape, every) for v in every], shape=shape, dtype=x.dtype)

    def _unary(self, op_type: str, fn: Callable[[Any], Any], x: Any) -> TracedArray:
        x = self.asarray(x)
        if x.value is not None:
            return self._t.constant(np.asarray(fn(x.value)).astype(x.dtype))
        if x.fill is not None:
            return TracedArray(self._t, shape=x.shape, dtype=x.dtype, fill=np.asarray(fn(np.asarray(x.fill, x.dtype))).item())
        return self._t.emit(op_type, [x], shape=x.shape, dtype=x.dtype)

    def abs(self, x: Any, /) -> TracedArray:
        return self._unary("Abs", np.abs, x)

    def exp(self, x: Any, /) -> TracedArray:
        return self._unary("Exp", np.exp, x)

    def log(self, x: Any, /) -> TracedArray:
        return self._unary("Log", np.log, x)

    def sqrt(self, x: Any, /) -> TracedArray:
        return self._unary("Sqrt", np.sqrt, x)

    def tanh(self, x: Any, /) -> TracedArray:
        return self._unary("Tanh", np.tanh, x)

    def sin(self, x: Any, /) -> TracedArray:
        return self._unary("Sin", np.sin, x)

    def cos(self, x: Any, /) -> TracedArray:
        return self._unary("Cos", np.cos, x)

    def negative(self, x: Any, /) -> TracedArray:
        return self._unary("Neg", np.negative, x)

    def sign(self, x: Any, /) -> TracedArray:
        return self._unary("Sign", np.sign, x)

    def floor(self, x: Any, /) -> TracedArray:
        return self._unary("Floor", np.floor, x)

    def ceil(self, x: Any, /) -> TracedArray:
        return self._unary("Ceil", np.ceil, x)

    def round(self, x: Any, /) -> TracedArray:
        return self._unary("Round", np.round, x)

    def logical_not(self, x: Any, /) -> TracedArray:
        return self._unary("Not", np.logical_not, self.astype(self.asarray(x), _BOOL))

    def bitwise_invert(self, x: Any, /) -> TracedArray:
        x = self.asarray(x)
        if x.dtype == _BOOL:
            return self.logical_not(x)
        return self.subtract(self.negative(x), 1)  # ~x == -x - 1 (BitwiseNot needs opset 18)

    def square(self, x: Any, /) -> TracedArray:
        return self.multiply(x, x)

    def positive(self, x: Any, /) -> TracedArray:
        return self.asarray(x)

    # -- shapes and layout ----------------------------------------------------------------------------
    def reshape(self, x: TracedArray, /, shape: Sequence[int | Dim], *, copy: bool | None = None) -> TracedArray:
        x = self.asarray(x)
        target = list((shape,) if isinstance(shape, (int, Dim)) else shape)
        if x.value is not None and all(not isinstance(d, Dim) for d in target):
            return self._t.constant(np.reshape(x.value, [int(d) for d in target]))
        src = x
        while src.node is not None and src.node.op_type == "Reshape":
            src = src.node.inputs[0]  # a reshape reads the original: the intermediate layout never matters
        resolved = self._resolve_minus_one(src.shape, target)
        if same_shape(src.shape, resolved):
            return src
        if src.fill is not None:
            return TracedArray(self._t, shape=resolved, dtype=src.dtype, fill=src.fill)
        code: list[int | None] = []
        for axis, d in enumerate(target):
            if not isinstance(d, Dim):
                code.append(int(d))
            elif axis < src.ndim and same_dim(src.shape[axis], d):
                code.append(0)  # ONNX Reshape: 0 copies the input's dimension at the same position
            else:
                code.append(None)
        unknown = [i for i, c in enumerate(code) if c is None]
        if len(unknown) == 1 and -1 not in code:
            code[unknown[0]] = -1
            unknown = []
        if unknown:
            spec = self._t.shape_value([target[i] if c is None else c for i, c in enumerate(code)])
        else:
            spec = self._t.name_of(self._t.constant(np.array(code, np.int64)))
        return self._t.emit("Reshape", [src, spec], shape=[None if (isinstance(d, int) and d == -1) else d for d in resolved], dtype=src.dtype)

    @staticmethod
    def _resolve_minus_one(source: Sequence[int | Dim], target: Sequence[int | Dim]) -> list[int | Dim]:
        out = list(target)
        if not any(not isinstance(d, Dim) and d == -1 for d in target):
            return out
        axis = next(i for i, d in enumerate(target) if not isinstance(d, Dim) and d == -1)
        remaining = [d for d in source if isinstance(d, Dim)]
        static = math.prod(int(d) for d in source if not isinstance(d, Dim))
        for d in target:
            if isinstance(d, Dim):
                match = next((i for i, r in enumerate(remaining) if r == d), None)
                if match is None:
                    return out  # stays -1: read from the result
                remaining.pop(match)
            elif d != -1:
                static //= max(int(d), 1)
        if not remaining:
            out[axis] = static
        return out

    def permute_dims(self, x: TracedArray, /, axes: Sequence[int]) -> TracedArray:
        x = self.asarray(x)
        perm = [int(a) % max(x.ndim, 1) for a in axes]
        if x.value is not None:
            return self._t.constant(np.transpose(x.value, perm))
        src = x
        if src.node is not None and src.node.op_type == "Transpose":
            inner = src.node.attrs["perm"]
            perm = [inner[p] for p in perm]
            src = src.node.inputs[0]
        if perm == list(range(src.ndim)):
            return src
        return self._t.emit("Transpose", [src], shape=[src.shape[p] for p in perm], dtype=src.dtype, perm=perm)

    def matrix_transpose(self, x: TracedArray, /) -> TracedArray:
        x = self.asarray(x)
        return self.permute_dims(x, [*range(x.ndim - 2), x.ndim - 1, x.ndim - 2])

    def expand_dims(self, x: TracedArray, /, *, axis: int = 0) -> TracedArray:
        x = self.asarray(x)
        axis = axis if axis >= 0 else x.ndim + 1 + axis
        if x.value is not None:
            return self._t.constant(np.expand_dims(x.value, axis))
        shape = [*x.shape[:axis], 1, *x.shape[axis:]]
        return self._t.emit("Unsqueeze", [x, self._t.constant(np.array([axis], np.int64))], shape=shape, dtype=x.dtype)

    def squeeze(self, x: TracedArray, /, axis: int | tuple[int, ...]) -> TracedArray:
        x = self.asarray(x)
        axes = sorted(a % x.ndim for a in ((axis,) if isinstance(axis, int) else axis))
        if x.value is not None:
            return self._t.constant(np.squeeze(x.value, tuple(axes)))
        shape = [d for i, d in enumerate(x.shape) if i not in axes]
        return self._t.emit("Squeeze", [x, self._t.constant(np.array(axes, np.int64))], shape=shape, dtype=x.dtype)

    def broadcast_to(self, x: TracedArray, /, shape: Sequence[int | Dim]) -> TracedArray:
        x = self.asarray(x)
        dims = tuple(shape)
        if x.value is not None and all(not isinstance(d, Dim) for d in dims):
            return self._t.constant(np.broadcast_to(x.value, [int(d) for d in dims]))
        return self._t.emit("Expand", [x, self._t.shape_value(dims)], shape=broadcast_shapes(x.shape, dims), dtype=x.dtype)

    def concat(self, arrays: Sequence[TracedArray] | tuple[TracedArray, ...], /, *, axis: int | None = 0) -> TracedArray:
        items = self._operands(*arrays)
        if axis is None:
            items = [self.reshape(a, (-1,)) for a in items]
            axis = 0
        axis = axis % items[0].ndim
        if all(a.value is not None for a in items):
            return self._t.constant(np.concatenate([a.value for a in items], axis=axis))
        total: int | Dim = 0
        for a in items:
            total = dim_op("add", total, a.shape[axis])
        shape = [*items[0].shape[:axis], total, *items[0].shape[axis + 1:]]
        return self._t.emit("Concat", items, shape=shape, dtype=items[0].dtype, axis=axis)

    def stack(self, arrays: Sequence[TracedArray] | tuple[TracedArray, ...], /, *, axis: int = 0) -> TracedArray:
        return self.concat([self.expand_dims(self.asarray(a), axis=axis) for a in arrays], axis=axis)

    def flip(self, x: TracedArray, /, *, axis: int | tuple[int, ...] | None = None) -> TracedArray:
        x = self.asarray(x)
        axes = list(range(x.ndim)) if axis is None else [a % x.ndim for a in ((axis,) if isinstance(axis, int) else axis)]
        if x.value is not None:
            return self._t.constant(np.flip(x.value, tuple(axes)))
        n = len(axes)
        const = self._t.constant
        inputs = [x, const(np.full(n, -1, np.int64)), const(np.full(n, _INT64_MIN, np.int64)), const(np.array(axes, np.int64)), const(np.full(n, -1, np.int64))]
        return self._t.emit("Slice", inputs, shape=x.shape, dtype=x.dtype)

    def take(self, x: TracedArray, indices: Any, /, *, axis: int | None = None) -> TracedArray:
        x, idx = self.asarray(x), self.asarray(indices)
        if axis is None:
            x, axis = self.reshape(x, (-1,)), 0
        axis = axis % x.ndim
        if x.value is not None and idx.value is not None:
            return self._t.constant(np.take(x.value, idx.value, axis=axis))
        shape = [*x.shape[:axis], *idx.shape, *x.shape[axis + 1:]]
        return self._t.emit("Gather", [x, idx], shape=shape, dtype=x.dtype, axis=axis)

    def getitem(self, x: TracedArray, key: Any) -> TracedArray:
        """``x[key]`` for ints, slices (bounds may be dimensions), ``None``, ``...`` and one integer array."""
        keys = key if isinstance(key, tuple) else (key,)
        if any(isinstance(k, TracedArray) and k.dtype == _BOOL for k in keys):
            raise untraceable("boolean-mask indexing (its result's shape depends on the values)")
        static = all(isinstance(k, (int, np.integer, slice, type(None), type(Ellipsis))) and not _has_dim(k) for k in keys)
        if x.value is not None and static:
            return self._t.constant(np.asarray(x.value[key]))
        real = sum(1 for k in keys if k is not None and k is not Ellipsis)
        if Ellipsis in keys:
            at = keys.index(Ellipsis)
            keys = (*keys[:at], *([slice(None)] * (x.ndim - real)), *keys[at + 1:])
        else:
            keys = (*keys, *([slice(None)] * (x.ndim - real)))
        slices: list[tuple[int, slice]] = []
        picks: list[tuple[int, Any]] = []
        new_axes: list[int] = []
        axis = out_axis = 0
        for k in keys:
            if k is None:
                new_axes.append(out_axis)
                out_axis += 1
            elif isinstance(k, slice):
                if k != slice(None) and k != slice(None, None, 1):
                    slices.append((axis, k))
                axis += 1
                out_axis += 1
            else:
                picks.append((axis, k))
                axis += 1
        y = self._slice(x, slices) if slices else x
        if x.value is not None and len(slices) == 1 and slices[0][0] == 0 and not picks:
            sl = slices[0][1]
            if sl.start in (None, 0) and sl.step in (None, 1) and isinstance(sl.stop, Dim):
                y.meta["rows"] = (x, sl.stop)  # the first rows of a constant table (positions 0..n-1)
        for axis_, k in reversed(picks):
            y = self.take(y, k if isinstance(k, TracedArray) else self._t.constant(np.array(k, np.int64)) if not isinstance(k, Dim) else self.asarray(k), axis=axis_)
        for position in new_axes:
            y = self.expand_dims(y, axis=position)
        return y

    def _slice(self, x: TracedArray, slices: list[tuple[int, slice]]) -> TracedArray:
        starts: list[int | Dim] = []
        ends: list[int | Dim] = []
        steps: list[int] = []
        shape: list[int | Dim | None] = list(x.shape)
        for axis, sl in slices:
            step = 1 if sl.step is None else int(sl.step)
            start = sl.start if sl.start is not None else (0 if step > 0 else -1)
            stop = sl.stop if sl.stop is not None else (_INT64_MAX if step > 0 else _INT64_MIN)
            starts.append(start)
            ends.append(stop)
            steps.append(step)
            dim = x.shape[axis]
            shape[axis] = _slice_length(dim, sl)
        const = self._t.constant
        inputs: list[Any] = [
            x, self._t.shape_value(starts), self._t.shape_value(ends),
            const(np.array([a for a, _ in slices], np.int64)), const(np.array(steps, np.int64)),
        ]
        return self._t.emit("Slice", inputs, shape=shape, dtype=x.dtype)

    # -- linear algebra -------------------------------------------------------------------------------
    def matmul(self, a: Any, b: Any, /) -> TracedArray:
        x, y = self._operands(a, b)
        if x.value is not None and y.value is not None:
            return self._t.constant(np.matmul(x.value, y.value))
        xs, ys = list(x.shape), list(y.shape)
        if len(xs) == 1 and len(ys) == 1:
            shape: list[int | Dim] = []
        elif len(xs) == 1:
            shape = [*ys[:-2], ys[-1]]
        elif len(ys) == 1:
            shape = xs[:-1]
        else:
            shape = [*broadcast_shapes(xs[:-2], ys[:-2]), xs[-2], ys[-1]]
        return self._t.emit("MatMul", [x, y], shape=shape, dtype=x.dtype)

    # -- reductions -------------------------------------------------------------------------------------
    def _axes(self, x: TracedArray, axis: int | tuple[int, ...] | None) -> list[int]:
        if axis is None:
            return list(range(x.ndim))
        return sorted(a % x.ndim for a in ((axis,) if isinstance(axis, int) else axis))

    def _reduce(self, op_type: str, fn: Callable[..., Any], x: Any, axis: Any, keepdims: bool, dtype: Any = None) -> TracedArray:
        x = self.asarray(x)
        if dtype is not None:
            x = self.astype(x, dtype)
        axes = self._axes(x, axis)
        if x.value is not None:
            return self._t.constant(np.asarray(fn(x.value, axis=tuple(axes), keepdims=keepdims)).astype(x.dtype))
        shape = [1 if i in axes else d for i, d in enumerate(x.shape)] if keepdims else [d for i, d in enumerate(x.shape) if i not in axes]
        if op_type == "ReduceSum":  # axes is an input from opset 13, an attribute of the others until 18
            return self._t.emit(op_type, [x, self._t.constant(np.array(axes, np.int64))], shape=shape, dtype=x.dtype, keepdims=int(keepdims))
        return self._t.emit(op_type, [x], shape=shape, dtype=x.dtype, axes=axes, keepdims=int(keepdims))

    def sum(self, x: Any, /, *, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> TracedArray:
        return self._reduce("ReduceSum", np.sum, x, axis, keepdims, dtype)

    def prod(self, x: Any, /, *, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> TracedArray:
        return self._reduce("ReduceProd", np.prod, x, axis, keepdims, dtype)

    def mean(self, x: Any, /, *, axis: Any = None, keepdims: bool = False) -> TracedArray:
        return self._reduce("ReduceMean", np.mean, x, axis, keepdims)

    def max(self, x: Any, /, *, axis: Any = None, keepdims: bool = False) -> TracedArray:
        return self._reduce("ReduceMax", np.max, x, axis, keepdims)

    def min(self, x: Any, /, *, axis: Any = None, keepdims: bool = False) -> TracedArray:
        return self._reduce("ReduceMin", np.min, x, axis, keepdims)

    def _arg(self, op_type: str, fn: Callable[..., Any], x: Any, axis: int | None, keepdims: bool) -> TracedArray:
        x = self.asarray(x)
        if axis is None:
            x, axis = self.reshape(x, (-1,)), 0
        axis = axis % x.ndim
        if x.value is not None:
            return self._t.constant(np.asarray(fn(x.value, axis=axis, keepdims=keepdims)).astype(np.int64))
        shape = [1 if i == axis else d for i, d in enumerate(x.shape)] if keepdims else [d for i, d in enumerate(x.shape) if i != axis]
        return self._t.emit(op_type, [x], shape=shape, dtype=_I64, axis=axis, keepdims=int(keepdims))

    def argmax(self, x: Any, /, *, axis: int | None = None, keepdims: bool = False) -> TracedArray:
        return self._arg("ArgMax", np.argmax, x, axis, keepdims)

    def argmin(self, x: Any, /, *, axis: int | None = None, keepdims: bool = False) -> TracedArray:
        return self._arg("ArgMin", np.argmin, x, axis, keepdims)

    def cumulative_sum(self, x: Any, /, *, axis: int | None = None, dtype: Any = None, include_initial: bool = False) -> TracedArray:
        x = self.asarray(x)
        if dtype is not None:
            x = self.astype(x, dtype)
        if axis is None:
            if x.ndim != 1:
                raise untraceable("cumulative_sum without an axis of an array of more than one dimension")
            axis = 0
        axis = axis % x.ndim
        if include_initial:
            raise untraceable("cumulative_sum(include_initial=True)")
        if x.value is not None:
            return self._t.constant(np.cumsum(x.value, axis=axis).astype(x.dtype))
        return self._t.emit("CumSum", [x, self._t.constant(np.array(axis, np.int64))], shape=x.shape, dtype=x.dtype)


# The dtypes, as NumPy dtypes (set here: a class attribute named ``bool`` would shadow the builtin
# in the class body).
for _dtype in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64"):
    setattr(TraceNamespace, _dtype, np.dtype(_dtype))


#: The constant that leaves the other operand of these operators unchanged.
_IDENTITIES = {"Add": 0, "Sub": 0, "Mul": 1, "Div": 1}


def _is_scalar(a: TracedArray, value: int) -> bool:
    """Whether ``a`` is a constant holding only ``value`` (in every element of a shape of ones)."""
    return a.value is not None and all(d == 1 for d in a.shape) and bool(np.all(a.value == value))


def _has_dim(key: Any) -> bool:
    if isinstance(key, Dim):
        return True
    if isinstance(key, slice):
        return any(isinstance(v, Dim) for v in (key.start, key.stop, key.step))
    return False


def _slice_length(dim: int | Dim, sl: slice) -> int | Dim | None:
    """The length of ``sl`` over a dimension of size ``dim`` where it is known at trace time."""
    bounds = (sl.start, sl.stop, sl.step)
    if not isinstance(dim, Dim) and not any(isinstance(v, Dim) for v in bounds):
        return len(range(*sl.indices(int(dim))))
    step = 1 if sl.step is None else sl.step
    if step == 1 and sl.start in (None, 0) and sl.stop is not None and isinstance(sl.stop, Dim):
        return sl.stop  # table[:n]: the caller promises n rows exist (check_inputs does)
    if step in (1, -1) and sl.start is None and sl.stop is None:
        return dim
    if step == 1 and isinstance(sl.start, int) and sl.start >= 0 and sl.stop is None:
        return dim_op("sub", dim, sl.start)
    return None


def trace_arrays(tracer: Tracer, tree: Any, prefix: str = "") -> Any:
    """A pytree of host arrays (the prepared parameters) as constants named by their path."""
    if isinstance(tree, Mapping):
        return {k: trace_arrays(tracer, v, f"{prefix}{k}.") for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(trace_arrays(tracer, v, f"{prefix}{i}.") for i, v in enumerate(tree))
    return tracer.constant(np.asarray(tree), hint=prefix.rstrip(".") or "param")


def trace_plan(plan: DefinitionPlan, *, inputs: Collection[str], fuse: bool = True, model: str | None = None) -> onnx.ModelProto:
    """The ONNX graph of ``plan``'s definition, taking the inputs named in ``inputs``.

    The prepared parameters become initializers (floats in f32); the graph's inputs and outputs are
    named and typed as the plan's specs, with the dynamic dimensions ``batch`` and ``sequence``.
    ``fuse`` lets :class:`~inferox.onnx.ops.OnnxOps` use ONNX Runtime's fused operators. What
    cannot be traced is a :class:`BackendError` naming the architecture (and ``model``).
    """
    from inferox.core.definition import map_arrays
    from inferox.onnx.ops import OnnxOps

    tracer = Tracer(f"inferox_{plan.schema.name.replace('-', '_')}")
    tracer.builder.reserve(*(s.name for s in plan.output_specs))
    symbolic = {s.name: tracer.input(s.name, s.dtype.to_numpy(), s.shape) for s in plan.input_specs if s.name in inputs}
    params = trace_arrays(tracer, map_arrays(plan.params, _as_f32))
    ops = OnnxOps(tracer.xp, fuse=fuse)
    where = f"the definition of architecture {plan.schema.name!r}"
    try:
        outputs = plan.run(tracer.xp, ops, params, symbolic, np.dtype(np.float32))
    except BackendError as exc:
        raise BackendError(f"{where}: {exc}", backend=BACKEND_NAME, model=model) from exc
    for spec in plan.output_specs:
        if spec.name not in outputs:
            raise BackendError(f"{where} returned no output {spec.name!r} (it returned {', '.join(outputs) or 'none'})", backend=BACKEND_NAME, model=model)
        tracer.output(spec.name, outputs[spec.name])
    return tracer.build()


def _as_f32(array: Any) -> np.ndarray:
    a = np.asarray(array)
    # Parameters are f32 in the graph (the load dtype this backend offers; int8 is a graph option).
    return a.astype(np.float32) if (a.dtype.kind == "f" or a.dtype.name == "bfloat16") and a.dtype != np.float32 else a
