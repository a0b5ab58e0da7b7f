"""``OnnxModel``: the base class of every ONNX Runtime model in Inferox.

A concrete model (MLP, BERT …) hands :class:`OnnxModel` an ONNX graph — a ``ModelProto``, its
serialised bytes, or a path to a ``.onnx`` file (the graph cache's) — with its tensor specs, and may
override :meth:`OnnxModel.feeds` (inputs to the graph's feed dict) and :meth:`OnnxModel.outputs`
(graph outputs to the model's). The base class takes care of:

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

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnxruntime as ort

from inferox.core import usable_cpus
from inferox.core.backend import Backend
from inferox.core.device import DeviceId
from inferox.core.dtype import DType
from inferox.core.errors import ConfigError, DTypeError, ServiceUnavailableError
from inferox.core.model import Model, ModelMetadata
from inferox.core.spec import TensorSpec
from inferox.onnx._errors import onnx_errors
from inferox.onnx.plugin import BACKEND_NAME

if TYPE_CHECKING:
    from inferox.onnx.backend import OnnxBackend

__all__ = ["LOAD_DTYPES", "OnnxModel", "check_load_dtype", "check_threads", "default_threads", "session_options"]

#: Dtypes a model's floating parameters may be loaded in: the graphs are built in f32 (``int8``
#: is a separate option, see :mod:`inferox.onnx.models.bert`).
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
        if isinstance(graph, onnx.ModelProto):
            source: bytes | str = graph.SerializeToString()
            self._graph_bytes = len(source)
        elif isinstance(graph, (bytes, bytearray)):
            source = bytes(graph)
            self._graph_bytes = len(source)
        else:
            self.graph_path = Path(graph)
            source = str(self.graph_path)
            self._graph_bytes = self.graph_path.stat().st_size if self.graph_path.is_file() else 0
        from inferox.onnx.backend import providers_for

        with onnx_errors(device=str(dev), model=metadata.name):
            self._session: ort.InferenceSession | None = ort.InferenceSession(source, session_options(self.intra_op_threads), providers=providers_for(dev))
        if weight_bytes is not None:
            self._graph_bytes = int(weight_bytes)
        session = self._session
        self._graph_inputs = {i.name for i in session.get_inputs()}
        self._graph_outputs = [o.name for o in session.get_outputs()]

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
