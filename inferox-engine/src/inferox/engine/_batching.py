"""Stacking, padding and splitting of requests: the pure half of the batcher.

How requests are combined into one forward pass (the rule, documented in the package README):

* Every input and every output spec must have a dynamic first (batch) axis; otherwise the model's
  requests each run alone. Requests are concatenated along axis 0, and each caller gets back the
  rows it sent.
* Two requests batch together when they have the same input names and, for each input, the same
  rank and the same sizes on every non-batch axis — except on axes that the spec declares
  dynamic (``None``) *and* paddable (``pad_value`` not ``None``): there, shorter items are padded up
  to the longest with that input's own ``pad_value`` (0 for an attention mask, the pad token for
  ids).
* Trimming outputs back: after the forward pass, an output axis ``j > 0`` that its spec declares
  dynamic, whose size equals a padded length ``P`` of the batch, is cut back to the length the
  item had on the input axis that was padded to ``P``. For BERT, ``input_ids`` (B, S) padded to
  S=P makes ``last_hidden_state`` (B, P, H) come back (1, S_i, H) per item, while a pooled
  ``sentence_embedding`` (B, H) is left alone. When one item would need two different trims for
  the same ``P`` (two padded axes of equal padded length but different item lengths) the rule is
  ambiguous, so such items are not padded together: they run with items of their exact shape.

Length-aware batching (``max_batch_tokens`` set): a request's *token length* is its longest
paddable axis (``input_ids``' sequence length for BERT), known once its text is tokenised and
before it is queued. :func:`take_length_aware` forms each batch around the oldest queued request
from the compatible requests closest to it in length, under both ``max_batch_size`` rows and
``max_batch_tokens`` = rows * padded length, so short requests are no longer padded to the longest
one in the queue. No request starves: one left behind by two batches that took younger requests
(or whose deadline would pass while another batch runs) is taken first by the next batch.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

from inferox.core.spec import TensorSpec

__all__ = ["OVERTAKE_LIMIT", "Request", "group_requests", "merge_inputs", "request_key", "split_outputs", "take_length_aware", "to_host"]

#: Key of a request that may not share a forward pass with any other.
ALONE = None


class Request:
    """One caller's request inside the batcher (or one item of ``infer_batch``)."""

    __slots__ = (
        "deadline",
        "enqueued",
        "future",
        "inputs",
        "key",
        "lengths",
        "outputs",
        "passed",
        "return_native",
        "rows",
        "seq",
        "squeeze",
        "started",
        "timeout",
        "tokens",
    )

    def __init__(
        self,
        inputs: dict[str, Any],
        *,
        rows: int,
        key: Any,
        lengths: dict[tuple[str, int], int],
        deadline: float | None = None,
        timeout: float | None = None,
        return_native: bool = False,
        squeeze: bool = False,
        outputs: tuple[str, ...] | None = None,
    ) -> None:
        self.inputs = inputs
        self.rows = rows
        self.key = key
        self.lengths = lengths
        #: Token length: the longest paddable axis (0 for a request with none).
        self.tokens = max(lengths.values(), default=0)
        #: Queue order (set when queued) and how many batches took younger requests past this one.
        self.seq = 0
        self.passed = 0
        self.deadline = deadline
        self.timeout = timeout
        self.return_native = return_native
        self.squeeze = squeeze
        #: The outputs the caller asked for, in its order (``None``: every output).
        self.outputs = outputs
        self.future: Future[Any] = Future()
        self.enqueued = time.perf_counter()
        self.started = self.enqueued


def request_key(specs: Mapping[str, TensorSpec], inputs: Mapping[str, Any], batchable: bool) -> tuple[Any, int, dict[tuple[str, int], int]]:
    """``(key, rows, lengths)``: which requests ``inputs`` may share a forward pass with, how many
    rows it has, and its lengths on paddable axes (``(name, axis) → size``)."""
    rows = -1
    parts = []
    lengths: dict[tuple[str, int], int] = {}
    for name in sorted(inputs):
        shape = tuple(int(s) for s in inputs[name].shape)
        if not shape:
            return ALONE, 1, {}
        if rows == -1:
            rows = shape[0]
        elif shape[0] != rows:
            return ALONE, max(rows, 1), {}
        spec = specs[name]
        dims: list[int] = []
        for ax in range(1, len(shape)):
            if spec.shape[ax] is None and spec.pad_value is not None:
                dims.append(-1)
                lengths[(name, ax)] = shape[ax]
            else:
                dims.append(shape[ax])
        parts.append((name, tuple(dims)))
    if rows == 0:
        # An empty batch runs alone and is checked for zero output rows, not one.
        return ALONE, 0, lengths
    if not batchable or rows < 0:
        return ALONE, max(rows, 1), lengths
    return tuple(parts), rows, lengths


def _trim_map(req: Request, padded: Mapping[tuple[str, int], int]) -> dict[int, int] | None:
    """Padded length → this item's length, or ``None`` when that is ambiguous."""
    out: dict[int, int] = {}
    for axis_key, length in req.lengths.items():
        p = padded[axis_key]
        if p in out and out[p] != length:
            return None
        out[p] = length
    return out


def group_requests(requests: Sequence[Request], max_rows: int) -> list[list[Request]]:
    """Partition ``requests`` (FIFO order kept within a group) into forward passes of at most
    ``max_rows`` rows; requests of different keys, or of key ``ALONE``, never share one."""
    groups: list[list[Request]] = []
    open_groups: dict[Any, tuple[list[Request], int]] = {}
    for req in requests:
        if req.key is ALONE:
            groups.append([req])
            continue
        current = open_groups.get(req.key)
        if current is not None and current[1] + req.rows <= max_rows:
            current[0].append(req)
            open_groups[req.key] = (current[0], current[1] + req.rows)
            continue
        group = [req]
        groups.append(group)
        open_groups[req.key] = (group, req.rows)
    out: list[list[Request]] = []
    for group in groups:
        out.extend(_split_ambiguous(group))
    return out


def padded_lengths(group: Sequence[Request]) -> dict[tuple[str, int], int]:
    padded: dict[tuple[str, int], int] = {}
    for req in group:
        for k, v in req.lengths.items():
            if v > padded.get(k, -1):
                padded[k] = v
    return padded


def _split_ambiguous(group: list[Request]) -> list[list[Request]]:
    if len(group) == 1:
        return [group]
    padded = padded_lengths(group)
    if all(_trim_map(r, padded) is not None for r in group):
        return [group]
    # Ambiguous trims: fall back to exact-shape groups, which need no padding at all.
    exact: dict[tuple[Any, ...], list[Request]] = {}
    for r in group:
        exact.setdefault(tuple(sorted(r.lengths.items())), []).append(r)
    return list(exact.values())


#: A queued request may be passed over by at most this many batches that take younger requests.
OVERTAKE_LIMIT = 2
#: A request joins a length-aware batch by choice only when the positions it adds — its own row
#: padded to the batch, plus the padding a longer request forces on the rows already there — are
#: at most ``WASTE_FACTOR`` * its own tokens + ``WASTE_SLACK`` (about what a forward pass of its
#: own costs in fixed overhead); otherwise it waits for a batch of its own length.
WASTE_FACTOR = 2
WASTE_SLACK = 16


def take_length_aware(queue: deque[Request], *, max_rows: int, max_tokens: int, now: float, urgent_s: float = 0.0) -> list[Request]:
    """Remove the next batch from ``queue`` (FIFO order, not empty) and return it.

    The batch is built around the oldest request (so the head of the queue never waits): first
    every compatible request that must not be passed over again — already passed over
    ``OVERTAKE_LIMIT`` times, or whose deadline (``time.monotonic()`` seconds) is less than
    ``urgent_s`` after ``now`` — oldest first, then the compatible requests nearest in token length
    to the oldest one, while the batch holds at most ``max_rows`` rows and ``rows * longest``
    stays within ``max_tokens``, skipping those that would add too much padding (see
    ``WASTE_FACTOR``). A request bigger than the budget by itself still runs (alone).
    Every request left behind that is older than the youngest one taken has been passed over once
    more.
    """
    head = queue[0]
    chosen = [head]
    if head.key is not ALONE:
        rows, longest = head.rows, head.tokens
        compat = [r for r in queue if r is not head and r.key == head.key]

        def fits(r: Request) -> bool:
            return rows + r.rows <= max_rows and (rows + r.rows) * max(longest, r.tokens) <= max_tokens

        def worth_it(r: Request) -> bool:
            added = (rows + r.rows) * max(longest, r.tokens) - rows * longest
            return added <= r.rows * (WASTE_FACTOR * r.tokens + WASTE_SLACK)

        must = [r for r in compat if r.passed >= OVERTAKE_LIMIT or (r.deadline is not None and r.deadline - now < urgent_s)]
        blocked = False
        for r in must:  # oldest first: a must-run request that does not fit stops the batch here
            if not fits(r):
                blocked = True
                break
            chosen.append(r)
            rows, longest = rows + r.rows, max(longest, r.tokens)
        if not blocked:
            taken = {id(r) for r in chosen}
            # Nearest in length to the head first; on a tie the older one.
            for r in sorted((r for r in compat if id(r) not in taken), key=lambda r: (abs(r.tokens - head.tokens), r.seq)):
                if rows >= max_rows:
                    break
                if fits(r) and worth_it(r):
                    chosen.append(r)
                    rows, longest = rows + r.rows, max(longest, r.tokens)
    taken_ids = {id(r) for r in chosen}
    youngest = max(r.seq for r in chosen)
    kept = [r for r in queue if id(r) not in taken_ids]
    for r in kept:
        if r.seq < youngest:
            r.passed += 1
    queue.clear()
    queue.extend(kept)
    chosen.sort(key=lambda r: r.seq)
    return chosen


def to_host(value: Any) -> np.ndarray:
    """A numpy view or copy of any prepared input (numpy, torch, jax, DLPack producer)."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):  # torch: leave autograd and the device behind
        return value.detach().cpu().numpy()  # type: ignore[no-any-return]
    return np.asarray(value)


def merge_inputs(specs: Mapping[str, TensorSpec], group: Sequence[Request]) -> dict[str, np.ndarray]:
    """The group's inputs concatenated along axis 0, padded where the key allows (host numpy)."""
    padded = padded_lengths(group)
    total = sum(r.rows for r in group)
    merged: dict[str, np.ndarray] = {}
    for name in group[0].inputs:
        spec = specs[name]
        dtype = spec.dtype.to_numpy()
        arrays = [to_host(r.inputs[name]) for r in group]
        first = arrays[0]
        shape: list[int] = [total, *(padded[(name, ax)] if (name, ax) in padded else int(first.shape[ax]) for ax in range(1, first.ndim))]
        if all(tuple(a.shape[1:]) == tuple(shape[1:]) for a in arrays):
            merged[name] = np.concatenate([a.astype(dtype, copy=False) for a in arrays], axis=0)
            continue
        out = np.full(shape, spec.pad_value, dtype=dtype)
        offset = 0
        for a in arrays:
            index = (slice(offset, offset + a.shape[0]), *(slice(0, d) for d in a.shape[1:]))
            out[index] = a
            offset += a.shape[0]
        merged[name] = out
    return merged


class UnsplittableError(Exception):
    """A batched output's first axis is not the batch's row count: run the items one by one."""


def split_outputs(
    output_specs: Mapping[str, TensorSpec],
    outputs: Mapping[str, Any],
    group: Sequence[Request],
) -> list[dict[str, Any]]:
    """Each request's rows of ``outputs``, trimmed back on padded axes (see the module docstring)."""
    total = sum(r.rows for r in group)
    for name, value in outputs.items():
        shape = tuple(int(s) for s in value.shape)
        if not shape or shape[0] != total:
            raise UnsplittableError(f"output {name!r} has shape {shape}, not {total} rows")
    padded = padded_lengths(group)
    result: list[dict[str, Any]] = []
    offset = 0
    for req in group:
        trims = _trim_map(req, padded) or {}
        mine: dict[str, Any] = {}
        for name, value in outputs.items():
            spec = output_specs.get(name)
            index: list[slice] = [slice(offset, offset + req.rows)]
            shape = value.shape
            for ax in range(1, len(shape)):
                size = int(shape[ax])
                dynamic = spec is None or (ax < len(spec.shape) and spec.shape[ax] is None)
                if dynamic and size in trims and trims[size] != size:
                    index.append(slice(0, trims[size]))
                else:
                    index.append(slice(None))
            mine[name] = value[tuple(index)]
        result.append(mine)
        offset += req.rows
    return result
