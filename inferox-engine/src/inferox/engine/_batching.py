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
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

from inferox.core.spec import TensorSpec

__all__ = ["Request", "group_requests", "merge_inputs", "request_key", "split_outputs", "to_host"]

#: Key of a request that may not share a forward pass with any other.
ALONE = None


class Request:
    """One caller's request inside the batcher (or one item of ``infer_batch``)."""

    __slots__ = ("deadline", "enqueued", "future", "inputs", "key", "lengths", "return_native", "rows", "squeeze", "started", "timeout")

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
    ) -> None:
        self.inputs = inputs
        self.rows = rows
        self.key = key
        self.lengths = lengths
        self.deadline = deadline
        self.timeout = timeout
        self.return_native = return_native
        self.squeeze = squeeze
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
