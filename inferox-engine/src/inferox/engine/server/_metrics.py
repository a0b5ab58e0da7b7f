"""Prometheus metrics, written in the text exposition format by hand (no extra dependency).

Series are labelled by model, version and protocol (and outcome or error code). The data plane
records only names and versions it serves — a request for an unknown model counts under
:data:`UNKNOWN_MODEL` — and protocols from its own fixed set, so a client cannot grow the number
of series by inventing names.
Thread-safe: the event loop records, and ``/metrics`` renders, under one lock.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence

__all__ = ["BATCH_BUCKETS", "LATENCY_BUCKETS", "UNKNOWN_MODEL", "Metrics"]

#: The model label of requests for names the server does not serve (no model name starts with "_").
UNKNOWN_MODEL = "_unknown"

LATENCY_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _num(v: float) -> str:
    if v == float("inf"):
        return "+Inf"
    return f"{v:g}"


class _Histogram:
    __slots__ = ("buckets", "count", "counts", "sum")

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.counts):
            self.counts[i] += 1
        self.sum += value
        self.count += 1


class Metrics:
    """The server's counters and histograms, labelled by model and version (and error code for failures)."""

    def __init__(self, models_loaded: Callable[[], int] | None = None) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str, str], int] = defaultdict(int)  # (model, version, protocol, outcome)
        self._failures: dict[tuple[str, str, str, str], int] = defaultdict(int)  # (model, version, protocol, code)
        self._hist: dict[tuple[str, str, str, str], _Histogram] = {}
        self._models_loaded = models_loaded
        self._in_flight = 0

    def _histogram(self, metric: str, model: str, version: str, protocol: str) -> _Histogram:
        key = (metric, model, version, protocol)
        h = self._hist.get(key)
        if h is None:
            h = self._hist[key] = _Histogram(BATCH_BUCKETS if metric == "batch_size" else LATENCY_BUCKETS)
        return h

    def request_started(self) -> None:
        with self._lock:
            self._in_flight += 1

    def request_finished(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def record_success(
        self,
        model: str,
        *,
        duration: float,
        queue: float | None,
        compute: float | None,
        batch_size: int | None,
        version: str = "",
        protocol: str = "",
    ) -> None:
        with self._lock:
            self._requests[(model, version, protocol, "success")] += 1
            self._histogram("request_duration", model, version, protocol).observe(duration)
            if queue is not None:
                self._histogram("queue", model, version, protocol).observe(queue)
            if compute is not None:
                self._histogram("compute", model, version, protocol).observe(compute)
            if batch_size is not None:
                self._histogram("batch_size", model, version, protocol).observe(batch_size)

    def record_failure(self, model: str, code: str, *, duration: float, version: str = "", protocol: str = "") -> None:
        with self._lock:
            self._requests[(model, version, protocol, "failure")] += 1
            self._failures[(model, version, protocol, code)] += 1
            self._histogram("request_duration", model, version, protocol).observe(duration)

    def failures(self, model: str, code: str) -> int:
        """Failures of ``model`` (every version and protocol) with ``code``."""
        with self._lock:
            return sum(n for (m, _, _, c), n in self._failures.items() if m == model and c == code)

    def render(self) -> str:
        """The Prometheus text exposition of every metric.

        Only a copy of the numbers is taken under the lock; the text is built outside it, so
        recording (inference requests finishing) never waits for a scrape to be formatted.
        """
        with self._lock:
            requests = sorted(self._requests.items())
            failures = sorted(self._failures.items())
            hists = sorted((key, (h.buckets, list(h.counts), h.sum, h.count)) for key, h in self._hist.items())
            in_flight = self._in_flight
        lines: list[str] = ["# HELP inferox_requests_total Inference requests by model and outcome.", "# TYPE inferox_requests_total counter"]
        for (model, version, protocol, outcome), n in requests:
            lines.append(f"inferox_requests_total{_labels([('model', model), ('version', version), ('protocol', protocol), ('outcome', outcome)])} {n}")
        lines += ["# HELP inferox_request_failures_total Failed inference requests by model and error code.", "# TYPE inferox_request_failures_total counter"]
        for (model, version, protocol, code), n in failures:
            lines.append(f"inferox_request_failures_total{_labels([('model', model), ('version', version), ('protocol', protocol), ('code', code)])} {n}")
        for metric, help_text, unit in (
            ("request_duration", "End-to-end inference request latency.", "_seconds"),
            ("queue", "Time inference requests waited in the engine's queue.", "_seconds"),
            ("compute", "Model compute time of inference requests.", "_seconds"),
            ("batch_size", "Size of the batches the requests ran in.", ""),
        ):
            name = f"inferox_{metric}{unit}"
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
            for (m, model, version, protocol), (buckets, counts, total, count) in hists:
                if m != metric:
                    continue
                base = [("model", model), ("version", version), ("protocol", protocol)]
                cumulative = 0
                for bound, c in zip(buckets, counts):
                    cumulative += c
                    lines.append(f"{name}_bucket{_labels([*base, ('le', _num(bound))])} {cumulative}")
                lines.append(f"{name}_bucket{_labels([*base, ('le', '+Inf')])} {count}")
                lines.append(f"{name}_sum{_labels(base)} {total!r}")
                lines.append(f"{name}_count{_labels(base)} {count}")
        lines += ["# HELP inferox_requests_in_flight Requests being served now.", "# TYPE inferox_requests_in_flight gauge", f"inferox_requests_in_flight {in_flight}"]
        loaded = self._models_loaded() if self._models_loaded else 0
        lines += ["# HELP inferox_models_loaded Models loaded and served.", "# TYPE inferox_models_loaded gauge", f"inferox_models_loaded {loaded}"]
        return "\n".join(lines) + "\n"
