"""What the engine hands back: results, model descriptions and statistics."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from inferox.core.model import ModelMetadata
from inferox.core.spec import TensorSpec

__all__ = ["InferenceResult", "InstanceInfo", "LatencySummary", "ModelInfo", "ModelStats"]


class InferenceResult(Mapping[str, Any]):
    """The outputs of one request: a read-only mapping output name → array.

    Arrays are numpy unless the request asked for native tensors (``return_native=True``).
    Attributes say who served it: ``model``, ``version``, ``backend`` and ``device``; how long it waited in the
    queue (``queue_time_s``) and how long its forward pass took (``compute_time_s``, shared by every
    request of the batch); and how many rows that forward pass carried (``batch_size``).
    ``profile`` holds per-stage seconds when the engine runs with ``profiling=True``.
    """

    __slots__ = ("_outputs", "backend", "batch_size", "compute_time_s", "device", "model", "profile", "queue_time_s", "version")

    def __init__(
        self,
        outputs: dict[str, Any],
        *,
        model: str,
        backend: str,
        device: str,
        queue_time_s: float = 0.0,
        compute_time_s: float = 0.0,
        batch_size: int = 1,
        profile: dict[str, float] | None = None,
        version: str | None = None,
    ) -> None:
        self._outputs = outputs
        self.version = version
        self.model = model
        self.backend = backend
        self.device = device
        self.queue_time_s = queue_time_s
        self.compute_time_s = compute_time_s
        self.batch_size = batch_size
        self.profile = profile

    @property
    def outputs(self) -> dict[str, Any]:
        """The outputs as a plain dict (a copy)."""
        return dict(self._outputs)

    @property
    def queue_time(self) -> float:
        """Alias of :attr:`queue_time_s`."""
        return self.queue_time_s

    @property
    def compute_time(self) -> float:
        """Alias of :attr:`compute_time_s`."""
        return self.compute_time_s

    def __getitem__(self, key: str) -> Any:
        return self._outputs[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._outputs)

    def __len__(self) -> int:
        return len(self._outputs)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {tuple(getattr(v, 'shape', ()))}" for k, v in self._outputs.items())
        return f"InferenceResult({{{shapes}}}, model={self.model!r}, backend={self.backend!r}, batch_size={self.batch_size})"


@dataclass(frozen=True)
class InstanceInfo:
    """One backend instance of a model."""

    backend: str
    device: str
    ready: bool
    memory_bytes: int
    batching: bool = True
    queue_depth: int = 0
    #: The thread pools the instance computes on (``Model.thread_info()``: ``intra_op``,
    #: ``inter_op``, ``spinning``, ``usable_cpus`` …), as the framework reports them now.
    threads: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "device": self.device, "ready": self.ready,
            "memory_bytes": self.memory_bytes, "batching": self.batching, "queue_depth": self.queue_depth,
            "threads": dict(self.threads),
        }


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles of a timing, in seconds (``0.0`` when nothing was measured yet)."""

    count: int = 0
    mean: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    max: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "p50": self.p50, "p95": self.p95, "p99": self.p99, "max": self.max}


@dataclass(frozen=True)
class ModelStats:
    """Live statistics of one model name (all its backend instances, across hot swaps).

    ``requests`` counts finished requests (served or failed); ``errors_by_code`` counts failures by
    ``InferoxError.code``; ``batch_sizes`` maps rows-per-forward → number of forward passes and
    ``batch_compute_s`` → their total compute seconds; ``fallbacks`` counts requests served by
    another backend than the one they named (or, naming none, than the first one tried),
    ``fallback_routes`` them by ``"asked->served"`` (``*`` when none was named).
    ``tokens`` counts the real tokens (items' lengths on paddable axes) the forward passes
    computed and ``padding_tokens`` the pad positions added to batch them (``padding_fraction``:
    the share of computed positions that were padding).
    Timings keep the most recent 10,000 samples.
    """

    model: str
    version: str | None = None
    requests: int = 0
    successes: int = 0
    errors: int = 0
    errors_by_code: Mapping[str, int] = field(default_factory=dict)
    requests_by_backend: Mapping[str, int] = field(default_factory=dict)
    batches: int = 0
    batch_sizes: Mapping[int, int] = field(default_factory=dict)
    fallbacks: int = 0
    fallback_routes: Mapping[str, int] = field(default_factory=dict)
    batch_compute_s: Mapping[int, float] = field(default_factory=dict)
    tokens: int = 0
    padding_tokens: int = 0
    queue_time: LatencySummary = field(default_factory=LatencySummary)
    compute_time: LatencySummary = field(default_factory=LatencySummary)

    @property
    def mean_batch_size(self) -> float:
        total = sum(self.batch_sizes.values())
        return sum(k * v for k, v in self.batch_sizes.items()) / total if total else 0.0

    @property
    def padding_fraction(self) -> float:
        computed = self.tokens + self.padding_tokens
        return self.padding_tokens / computed if computed else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "requests": self.requests,
            "successes": self.successes,
            "errors": self.errors,
            "errors_by_code": dict(self.errors_by_code),
            "requests_by_backend": dict(self.requests_by_backend),
            "batches": self.batches,
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
            "batch_compute_s": {str(k): v for k, v in sorted(self.batch_compute_s.items())},
            "mean_batch_size": self.mean_batch_size,
            "tokens": self.tokens,
            "padding_tokens": self.padding_tokens,
            "padding_fraction": self.padding_fraction,
            "fallbacks": self.fallbacks,
            "fallback_routes": dict(self.fallback_routes),
            "queue_time": self.queue_time.to_dict(),
            "compute_time": self.compute_time.to_dict(),
        }


@dataclass(frozen=True)
class ModelInfo:
    """What :meth:`Engine.model_info` says about a registered model name."""

    name: str
    metadata: ModelMetadata
    instances: list[InstanceInfo]
    input_specs: Sequence[TensorSpec]
    output_specs: Sequence[TensorSpec]
    stats: ModelStats
    has_text_encoder: bool = False
    #: The version these instances serve.
    version: str | None = None
    #: Most rows a forward pass takes (0: the model does not batch).
    max_batch_size: int = 0

    @property
    def backends(self) -> list[str]:
        return [i.backend for i in self.instances]

    @property
    def ready(self) -> bool:
        return any(i.ready for i in self.instances)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "metadata": self.metadata.to_dict(),
            "instances": [i.to_dict() for i in self.instances],
            "inputs": [s.to_dict() for s in self.input_specs],
            "outputs": [s.to_dict() for s in self.output_specs],
            "stats": self.stats.to_dict(),
            "has_text_encoder": self.has_text_encoder,
            "version": self.version,
            "max_batch_size": self.max_batch_size,
        }
