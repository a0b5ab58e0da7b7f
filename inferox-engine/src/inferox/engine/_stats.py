"""Thread-safe statistics collection per model name."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict, deque

import numpy as np

from inferox.engine._types import LatencySummary, ModelStats

__all__ = ["StatsCollector"]

#: Timing samples kept per model (a sliding window: percentiles describe recent traffic).
WINDOW = 10_000


def _summary(samples: deque[float]) -> LatencySummary:
    if not samples:
        return LatencySummary()
    arr = np.fromiter(samples, dtype=np.float64, count=len(samples))
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return LatencySummary(count=int(arr.size), mean=float(arr.mean()), p50=float(p50), p95=float(p95), p99=float(p99), max=float(arr.max()))


class StatsCollector:
    """Counts and timing windows of one model name; every method is safe from any thread."""

    def __init__(self, model: str, *, version: str | None = None) -> None:
        self.model = model
        self.version = version
        self._lock = threading.Lock()
        self._requests = 0
        self._successes = 0
        self._errors: Counter[str] = Counter()
        self._by_backend: Counter[str] = Counter()
        self._batch_sizes: Counter[int] = Counter()
        self._fallbacks: Counter[str] = Counter()
        self._batch_compute: defaultdict[int, float] = defaultdict(float)
        self._tokens = 0
        self._padding = 0
        self._queue: deque[float] = deque(maxlen=WINDOW)
        self._compute: deque[float] = deque(maxlen=WINDOW)

    def record_success(self, backend: str, queue_time: float, compute_time: float) -> None:
        with self._lock:
            self._requests += 1
            self._successes += 1
            self._by_backend[backend] += 1
            self._queue.append(queue_time)
            self._compute.append(compute_time)

    def record_error(self, code: str, backend: str | None = None) -> None:
        with self._lock:
            self._requests += 1
            self._errors[code] += 1
            if backend:
                self._by_backend[backend] += 1

    def record_fallback(self, requested: str | None, served: str) -> None:
        """A request served by another backend than the one asked for (or, asked for none, than
        the first one tried, which failed)."""
        with self._lock:
            self._fallbacks[f"{requested or '*'}->{served}"] += 1

    def record_batch(self, rows: int, compute_s: float = 0.0, *, tokens: int = 0, padding: int = 0) -> None:
        """One forward pass of ``rows`` rows taking ``compute_s`` seconds, holding ``tokens`` real tokens and ``padding`` pad ones."""
        with self._lock:
            self._batch_sizes[rows] += 1
            self._batch_compute[rows] += compute_s
            self._tokens += tokens
            self._padding += padding

    def snapshot(self) -> ModelStats:
        with self._lock:
            queue, compute = deque(self._queue), deque(self._compute)
            stats = dict(
                requests=self._requests,
                successes=self._successes,
                errors=sum(self._errors.values()),
                errors_by_code=dict(self._errors),
                requests_by_backend=dict(self._by_backend),
                batches=sum(self._batch_sizes.values()),
                batch_sizes=dict(sorted(self._batch_sizes.items())),
                fallbacks=sum(self._fallbacks.values()),
                fallback_routes=dict(self._fallbacks),
                batch_compute_s=dict(sorted(self._batch_compute.items())),
                tokens=self._tokens,
                padding_tokens=self._padding,
            )
        return ModelStats(model=self.model, version=self.version, queue_time=_summary(queue), compute_time=_summary(compute), **stats)  # type: ignore[arg-type]
