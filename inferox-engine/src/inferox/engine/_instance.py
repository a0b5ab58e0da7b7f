"""One model on one backend: its queue, its batcher workers, and direct execution.

Each instance owns a bounded FIFO queue and ``num_workers`` worker threads (by default one per CPU
a thread-safe model's intra-op threads leave free, see :func:`~inferox.engine._config.workers_for`). A worker takes the
oldest request, and — while other callers are known to be on their way (they have been routed
here but are still validating their inputs) — waits up to ``max_queue_delay_ms`` for more to
arrive, then takes requests in FIFO order up to ``max_batch_size`` rows — or, with
``max_batch_tokens`` set (a text model has a default), the requests nearest in token length to the oldest one under that token
budget (:func:`~inferox.engine._batching.take_length_aware`). When the instance is
idle, a synchronous caller's request without a deadline runs at once in its own thread
(:meth:`ModelInstance.submit`; one with a deadline is queued, so its caller can give up on time),
so a lone sequential caller pays neither a batching window nor a thread hand-off, while
concurrent callers coalesce: requests that arrive while a forward pass runs are all taken by the
next one.

Requests that can share a forward pass (see :mod:`inferox.engine._batching`) are stacked and run
once; the outputs are split back to each caller's future. When a combined forward pass fails, each
of its requests is re-run on its own, so that only the requests that fail by themselves get an
error and every other caller still gets its result. Requests whose deadline passed while queued
are answered with :class:`InferoxTimeoutError` and never computed.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from inferox.core.errors import (
    BackendError,
    InferoxError,
    InferoxTimeoutError,
    InvalidInputError,
    QueueFullError,
    ServiceUnavailableError,
    backend_errors,
    wrap_backend_error,
)
from inferox.core.model import AnyModel, prepare_inputs
from inferox.engine._batching import (
    Request,
    UnsplittableError,
    group_requests,
    merge_inputs,
    request_key,
    split_outputs,
    take_length_aware,
)
from inferox.engine._config import EngineConfig, batch_tokens_for, workers_for
from inferox.engine._stats import StatsCollector
from inferox.engine._types import InferenceResult, InstanceInfo

__all__ = ["InstanceClosed", "ModelInstance"]


class InstanceClosed(Exception):
    """Internal: the instance was swapped out or unregistered after the caller routed to it."""


class ModelInstance:
    """A registered (model name, backend) pair."""

    def __init__(self, name: str, model: AnyModel, config: EngineConfig, stats: StatsCollector, *, version: str | None = None) -> None:
        self.name = name
        self.version = version
        self.model: AnyModel | None = model
        self.backend_name = model.backend_name
        self.device = str(model.device)
        self.config = config
        self.stats = stats
        self.memory_bytes = int(model.memory_requirements() or 0)
        self._input_spec_list = list(model.input_specs)
        self.input_specs = {s.name: s for s in self._input_spec_list}
        self.output_specs = {s.name: s for s in model.output_specs}
        self.batchable = bool(self.input_specs) and all(s.is_batched for s in self.input_specs.values()) and all(
            s.is_batched for s in self.output_specs.values()
        )
        self.thread_safe = bool(getattr(model.model, "thread_safe", False))
        self.text_encoder = getattr(model.model, "text_encoder", None)
        self.ready = False
        self._forward_lock: contextlib.AbstractContextManager[Any] = contextlib.nullcontext() if self.thread_safe else threading.Lock()
        self._cond = threading.Condition()
        self._queue: collections.deque[Request] = collections.deque()
        self._arriving = 0
        self._queued_rows = 0
        self._seq = 0
        #: Smoothed seconds of one batched forward pass: how long a request left behind waits.
        self._batch_s = 0.0
        self._busy = 0
        self._inflight = 0
        self._closing = False
        self._workers: list[threading.Thread] = []

    @property
    def max_batch_tokens(self) -> int | None:
        """The token budget of one forward pass: ``max_batch_tokens``, or the default for a model
        that takes text (derived, because the engine may attach a text encoder after construction)."""
        return batch_tokens_for(self.config.max_batch_tokens, text=self.text_encoder is not None, device=self.device)

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the batcher workers (when batching is on) and report ready."""
        if self.config.batching:
            # a model that cannot describe its pools gets one worker (workers_for of no threads)
            threads = self._thread_info() if self.config.num_workers is None and self.thread_safe else {}
            for i in range(workers_for(self.config.num_workers, thread_safe=self.thread_safe, threads=threads)):
                t = threading.Thread(target=self._worker, name=f"inferox-{self.name}-{self.backend_name}-{i}", daemon=True)
                t.start()
                self._workers.append(t)
        self.ready = True

    def _thread_info(self) -> dict[str, Any]:
        """The model's ``thread_info()``, or ``{}`` for a released model or one that cannot describe
        its pools (a description must not fail a start or a metadata request)."""
        model = self.model
        if model is None:
            return {}
        with contextlib.suppress(Exception):
            return dict(model.model.thread_info())
        return {}

    def info(self) -> InstanceInfo:
        return InstanceInfo(
            backend=self.backend_name, device=self.device, ready=self.ready and not self._closing,
            memory_bytes=self.memory_bytes, batching=self.config.batching and self.batchable, queue_depth=len(self._queue),
            threads=self._thread_info(),
        )

    def close(self, *, drain: bool = True, timeout: float | None = None) -> None:
        """Stop taking requests; finish (``drain``) or refuse the queued ones; release the model."""
        with self._cond:
            self._closing = True
            self.ready = False
            dropped: list[Request] = []
            if not drain:
                dropped = list(self._queue)
                self._queue.clear()
                self._queued_rows = 0
            self._cond.notify_all()
        for req in dropped:
            if req.future.set_running_or_notify_cancel():
                req.future.set_exception(ServiceUnavailableError(f"engine shut down before request to {self.name!r} ran"))
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._workers:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        with self._cond:
            while self._inflight > 0:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
            # Workers that did not finish within ``timeout`` leave requests behind: answer them.
            dropped = list(self._queue)
            self._queue.clear()
            self._queued_rows = 0
        for req in dropped:
            if req.future.set_running_or_notify_cancel():
                req.future.set_exception(ServiceUnavailableError(f"model {self.name!r} was unloaded before this request ran"))
        model, self.model = self.model, None
        if model is not None:
            with contextlib.suppress(Exception):
                model.model.close()

    # -- building requests ----------------------------------------------------------------------
    @contextlib.contextmanager
    def arriving(self) -> Iterator[list[bool]]:
        """Mark a caller as on its way to this queue, so the batcher may wait for it.

        :meth:`submit` with the yielded token ends the arrival atomically with queueing; a caller
        that fails validation instead ends it on exit.
        """
        token = [False]
        with self._cond:
            self._arriving += 1
        try:
            yield token
        finally:
            if not token[0]:
                with self._cond:
                    self._arriving -= 1
                    if self._arriving == 0:
                        self._cond.notify()

    def make_request(
        self,
        prepared: dict[str, Any],
        *,
        deadline: float | None,
        timeout: float | None,
        return_native: bool,
        squeeze: bool = False,
        outputs: tuple[str, ...] | None = None,
    ) -> Request:
        key, rows, lengths = request_key(self.input_specs, prepared, self.batchable)
        return Request(
            prepared, rows=rows, key=key, lengths=lengths, deadline=deadline, timeout=timeout, return_native=return_native, squeeze=squeeze, outputs=outputs
        )

    def check_outputs(self, outputs: Any) -> tuple[str, ...] | None:
        """The output names a request asks for, checked against this model's (``None``: all).

        Repeats are dropped; an unknown name, or an empty selection, is an
        :class:`InvalidInputError` naming ``outputs`` and listing the model's outputs."""
        if outputs is None:
            return None
        if isinstance(outputs, str):
            outputs = (outputs,)
        names = tuple(dict.fromkeys(outputs)) if isinstance(outputs, (list, tuple)) else None
        if not names or not all(isinstance(n, str) for n in names):
            raise InvalidInputError(
                "outputs must be a non-empty list of output names", name="outputs", expected=list(self.output_specs), actual=repr(outputs)[:80]
            )
        for n in names:
            if n not in self.output_specs:
                raise InvalidInputError(f"model {self.name!r} has no output {n[:80]!r}", name="outputs", expected=list(self.output_specs), actual=n[:80])
        return names

    def prepare(self, inputs: Any, *, index: int | None = None) -> dict[str, Any]:
        """``AnyModel.prepare`` with the specs read once at registration (a model may rebuild its
        spec objects on every access; the engine's hot path should not pay for that)."""
        model = self.live_model()
        prepared = prepare_inputs(self._input_spec_list, inputs, model_name=self.name, index=index)
        model.model.check_inputs(prepared)
        return prepared

    def to_native(self, model: AnyModel, inputs: dict[str, Any]) -> dict[str, Any]:
        """``AnyModel.to_native`` with the cached specs."""
        backend, device, specs = model.backend, model.device, self.input_specs
        with backend_errors(self.backend_name, model=self.name):
            return {k: backend.as_native(v, dtype=specs[k].dtype, device=device) for k, v in inputs.items()}

    def live_model(self) -> AnyModel:
        model = self.model
        if model is None or self._closing:
            raise InstanceClosed(self.name)
        return model

    # -- queued execution (batching on) -------------------------------------------------------------
    def submit(self, req: Request, arrival: list[bool] | None = None, *, inline_ok: bool = True) -> None:
        """Queue ``req``; its ``future`` resolves to an :class:`InferenceResult` or an error.

        When the instance is idle — nothing queued, no forward pass running, nobody else on the
        way — the request runs at once in the caller's thread instead: a lone caller pays no
        thread hand-off, and callers that arrive meanwhile queue and batch as usual. asyncio callers
        pass ``inline_ok=False``: their thread is the event loop's.
        """
        with self._cond:
            if arrival is not None and not arrival[0]:
                arrival[0] = True
                self._arriving -= 1
            if self._closing:
                raise InstanceClosed(self.name)
            if len(self._queue) >= self.config.max_queue_size:
                raise QueueFullError(self.name, max_queue_size=self.config.max_queue_size, retry_after=max(self.config.max_queue_delay_ms / 1000, 0.01))
            req.enqueued = time.perf_counter()
            # A request with a deadline never runs inline: its caller must stay free to give up
            # when the deadline passes, even if the forward pass hangs.
            inline = inline_ok and req.deadline is None and not self._queue and self._busy == 0 and self._arriving == 0
            if inline:
                self._busy += 1
                self._inflight += 1
            else:
                self._seq += 1
                req.seq = self._seq
                self._queue.append(req)
                self._queued_rows += req.rows
                # Wake the worker only when it has something new to decide on: its first request,
                # a full batch, or the last expected caller having arrived.
                if len(self._queue) == 1 or self._queued_rows >= self.config.max_batch_size or self._arriving == 0:
                    self._cond.notify()
        if inline:
            try:
                with self._forward_lock:
                    self.execute([req], locked=True)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._inflight -= 1
                    # Wake sleepers only when they have something to do: waking an idle worker
                    # for nothing costs a GIL round trip, milliseconds on a busy machine.
                    if self._queue or self._closing:
                        self._cond.notify_all()

    def _take(self) -> list[Request] | None:
        """Wait for work; return the next requests to run (``None``: closed and drained)."""
        max_rows = self.config.max_batch_size
        delay = self.config.max_queue_delay_ms / 1000.0
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            window_end = time.perf_counter() + delay
            while self._arriving > 0 and not self._closing and self._queued_rows < max_rows:
                remaining = window_end - time.perf_counter()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            max_tokens = self.max_batch_tokens
            if max_tokens is not None and self.batchable:
                # Twice a batch's time: a request passed over now waits for this batch and its own.
                taken = take_length_aware(self._queue, max_rows=max_rows, max_tokens=max_tokens, now=time.monotonic(), urgent_s=2 * self._batch_s)
                rows = sum(r.rows for r in taken)
            else:
                taken = []
                rows = 0
                while self._queue and (not taken or rows + self._queue[0].rows <= max_rows):
                    req = self._queue.popleft()
                    taken.append(req)
                    rows += req.rows
            self._queued_rows -= rows
            self._busy += 1
            return taken

    def _worker(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            try:
                # Hold the model before checking deadlines, so that time spent waiting for it
                # (behind a caller running inline, or another worker) counts against them.
                with self._forward_lock:
                    self.execute(taken, locked=True)
            finally:
                with self._cond:
                    self._busy -= 1

    # -- direct execution (batching off, infer_batch) -----------------------------------------------
    def run_now(self, requests: Sequence[Request], *, detached: bool = False) -> None:
        """Run ``requests`` directly, without the queue: in the calling thread (each future
        resolved before this returns) or, with ``detached``, in a new daemon thread, so a caller
        with a deadline can stop waiting for its future when the deadline passes even if the
        forward pass (or the wait for the model's lock) never ends."""
        with self._cond:
            if self._closing:
                raise InstanceClosed(self.name)
            self._inflight += 1
        if detached:
            threading.Thread(target=self._run_admitted, args=(requests,), name=f"inferox-{self.name}-{self.backend_name}-direct", daemon=True).start()
        else:
            self._run_admitted(requests)

    def _run_admitted(self, requests: Sequence[Request]) -> None:
        try:
            for req in requests:
                req.enqueued = time.perf_counter()
            # Take the model first, so a deadline that passes while waiting for it is honoured.
            with self._forward_lock:
                self.execute(requests, locked=True, by_length=True)
        except BaseException as exc:
            # Nothing may leave a caller waiting on a future no one will resolve.
            for req in requests:
                if not req.future.done() and (req.future.running() or req.future.set_running_or_notify_cancel()):
                    req.future.set_exception(self._wrap(exc))
            if not isinstance(exc, Exception):
                raise
        finally:
            with self._cond:
                self._inflight -= 1
                if self._closing:
                    self._cond.notify_all()

    # -- running ------------------------------------------------------------------------------------
    def execute(self, requests: Sequence[Request], *, locked: bool = False, by_length: bool = False) -> None:
        """Drop expired and cancelled requests, batch the rest, run, and resolve every future.

        ``by_length`` (``infer_batch``, whose items are all at hand): with ``max_batch_tokens`` set,
        passes are formed by length as the batcher forms them, not in item order.
        """
        now = time.perf_counter()
        live: list[Request] = []
        for req in requests:
            if not req.future.set_running_or_notify_cancel():
                continue  # the caller gave up (its own deadline) before we started
            if req.deadline is not None and time.monotonic() > req.deadline:
                req.future.set_exception(InferoxTimeoutError(f"request to {self.name!r} expired after {req.timeout}s in the queue", timeout=req.timeout, model=self.name))
                continue
            req.started = now
            live.append(req)
        max_rows = self.config.max_batch_size if self.batchable else 1
        max_tokens = self.max_batch_tokens
        if by_length and max_tokens is not None and self.batchable and len(live) > 1:
            pending = collections.deque(live)
            for i, req in enumerate(pending):
                req.seq = i
            while pending:
                # Through group_requests too: it keeps items with ambiguous trims apart.
                for group in group_requests(take_length_aware(pending, max_rows=max_rows, max_tokens=max_tokens, now=time.monotonic()), max_rows):
                    self._run_group(group, locked)
            return
        for group in group_requests(live, max_rows):
            self._run_group(group, locked)

    def _run_group(self, group: list[Request], locked: bool) -> None:
        if len(group) > 1:
            try:
                results = self._forward(group, locked)
            except Exception:  # noqa: BLE001 - a combined pass failed: retry each request alone below
                pass
            else:
                for req, res in zip(group, results):
                    req.future.set_result(res)
                return
        for req in group:
            try:
                res = self._forward([req], locked)[0]
            except Exception as exc:  # noqa: BLE001 - the caller's future carries the (wrapped) error
                req.future.set_exception(self._wrap(exc))
            else:
                req.future.set_result(res)

    def _wrap(self, exc: BaseException) -> BaseException:
        if isinstance(exc, InferoxError):
            return exc
        if isinstance(exc, UnsplittableError):
            return InvalidInputError(str(exc), name=self.name)
        return wrap_backend_error(exc, backend=self.backend_name, model=self.name)

    def _check_outputs(self, outputs: Any, rows: int) -> None:
        """A model's outputs must match its output specs (rank, fixed sizes, one row per input
        row): a wrong shape is the model's error, raised to its callers, never handed on as data
        (in a batch it would shift every other caller's rows)."""
        if not isinstance(outputs, dict):
            raise BackendError(f"model {self.name!r} returned {type(outputs).__name__}, not a dict of outputs", backend=self.backend_name, model=self.name)
        for name, spec in self.output_specs.items():
            value = outputs.get(name)
            if value is None:
                if spec.optional:
                    continue
                raise BackendError(f"model {self.name!r} returned no output {name!r}", backend=self.backend_name, model=self.name)
            shape = tuple(int(d) for d in getattr(value, "shape", ()))
            ok = len(shape) == len(spec.shape) and all(want is None or want == got for want, got in zip(spec.shape, shape))
            if ok and self.batchable and spec.is_batched:
                ok = shape[0] == rows
            if not ok:
                want = ["?" if d is None else d for d in spec.shape]
                raise BackendError(
                    f"model {self.name!r} returned output {name!r} of shape {shape}, expected {want} with {rows} rows",
                    backend=self.backend_name,
                    model=self.name,
                )

    def _forward(self, group: list[Request], locked: bool = False) -> list[InferenceResult]:
        model = self.model
        if model is None:
            raise ServiceUnavailableError(f"model {self.name!r} was unloaded")
        profiling = self.config.profiling
        t0 = time.perf_counter()
        inputs = group[0].inputs if len(group) == 1 else merge_inputs(self.input_specs, group)
        rows = sum(r.rows for r in group)
        with contextlib.nullcontext() if locked else self._forward_lock:
            t1 = time.perf_counter()
            natives = self.to_native(model, inputs)
            t2 = time.perf_counter()
            outputs = model.forward_native(natives)
            if profiling:
                model.backend.synchronize(model.device)
            t3 = time.perf_counter()
        self._check_outputs(outputs, rows)
        wanted = _wanted(group)
        if wanted is not None:
            # Convert and split only what the callers asked for: a pooled embedding is a few KiB,
            # the per-token states it was pooled from are most of the batch's bytes.
            outputs = {k: v for k, v in outputs.items() if k in wanted}
        if len(group) == 1:
            native_split: list[dict[str, Any]] | None = [outputs]
            host_split = [model.outputs_to_numpy(outputs)] if not group[0].return_native else None
        else:
            # One host conversion for the whole batch, then per-caller views of it.
            native_split = split_outputs(self.output_specs, outputs, group) if any(r.return_native for r in group) else None
            host_split = split_outputs(self.output_specs, model.outputs_to_numpy(outputs), group) if not all(r.return_native for r in group) else None
        t4 = time.perf_counter()
        compute = t4 - t1
        self._batch_s = compute if self._batch_s == 0.0 else 0.8 * self._batch_s + 0.2 * compute
        tokens = sum(r.rows * r.tokens for r in group)
        self.stats.record_batch(rows, compute, tokens=tokens, padding=rows * max(r.tokens for r in group) - tokens)
        results: list[InferenceResult] = []
        for i, req in enumerate(group):
            outs = native_split[i] if req.return_native else host_split[i]  # type: ignore[index]
            if req.outputs is not None:  # in the caller's order, without what batch-mates asked for
                outs = {k: outs[k] for k in req.outputs if k in outs}
            if req.squeeze:
                outs = {k: v[0] for k, v in outs.items()}
            profile = None
            if profiling:
                profile = {"merge": t1 - t0, "to_native": t2 - t1, "forward": t3 - t2, "outputs": time.perf_counter() - t3}
            results.append(
                InferenceResult(
                    outs, model=self.name, backend=self.backend_name, device=self.device, version=self.version,
                    queue_time_s=max(0.0, req.started - req.enqueued), compute_time_s=compute, batch_size=rows, profile=profile,
                )
            )
        return results


def _wanted(group: Sequence[Request]) -> frozenset[str] | None:
    """The outputs any request of ``group`` asked for (``None``: someone wants every output)."""
    if len(group) == 1:
        only = group[0].outputs
        return None if only is None else frozenset(only)
    names: set[str] = set()
    for req in group:
        if req.outputs is None:
            return None
        names.update(req.outputs)
    return frozenset(names)
