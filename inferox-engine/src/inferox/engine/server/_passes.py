"""Splitting one request into forward passes: bounded by the model's batch limits, grouped by length.

A request bigger than one forward pass of its model — more rows than ``max_batch_size``, more
tokens than ``max_batch_tokens`` — runs as several passes, each within both limits, so its memory
is a pass's, not the whole request's, and other requests interleave with it. A request of texts
(rows with an ``attention_mask``) is also *grouped by length*, as queued requests are: its rows are
sorted by token length and cut into the passes that cost least — each pass padded only to its own
longest row, at the price of a fixed overhead per pass (:data:`PASS_OVERHEAD_TOKENS`) — so a
request of 32 mixed-length sentences is no longer padded to its longest one.

Everything here is pure numpy: :func:`plan_passes` says which rows go together and how far each
pass is padded, :func:`take_rows` cuts a pass's inputs out of the request's, and
:func:`assemble` puts the passes' outputs back in the request's row order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PASS_OVERHEAD_TOKENS", "Pass", "assemble", "plan_passes", "take_rows"]

#: What one more forward pass costs beyond its tokens, in token positions (on CPU a BERT-class
#: encoder's pass has a fixed cost of about 128 positions' compute): splitting a group pays off when
#: it saves more padding than this.
PASS_OVERHEAD_TOKENS = 128


@dataclass(frozen=True)
class Pass:
    """One forward pass of a request: the request's rows it takes, in order, and (for text) the
    padded length its paddable inputs are cut to (``None``: as they are)."""

    rows: np.ndarray
    width: int | None = None


def plan_passes(rows: int, *, max_rows: int, max_tokens: int | None, lengths: np.ndarray | None, width: int | None = None) -> list[Pass] | None:
    """The passes of a request of ``rows`` rows, or ``None`` when it runs as one pass as it is.

    ``lengths`` are the rows' token lengths (the attention mask's sums) when the request is text;
    ``width`` the padded length of its paddable inputs when it has some but no lengths (token ids
    without a mask), so ``max_tokens`` still bounds ``rows * width``.
    """
    if rows <= 1:
        return None
    if lengths is None:
        per_pass = max_rows
        if max_tokens is not None and width:
            per_pass = max(1, min(per_pass, max_tokens // width))
        if rows <= per_pass:
            return None
        return [Pass(np.arange(i, min(i + per_pass, rows))) for i in range(0, rows, per_pass)]
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    s = lengths[order]
    if rows <= max_rows and (max_tokens is None or rows * int(s[-1]) <= max_tokens) and _one_pass_is_best(s):
        return None
    cuts = _optimal_cuts(s, max_rows=max_rows, max_tokens=max_tokens)
    passes = []
    start = 0
    for end in cuts:
        passes.append(Pass(np.sort(order[start:end]), int(s[end - 1])))
        start = end
    return passes


def _one_pass_is_best(s: np.ndarray) -> bool:
    """Whether the sorted lengths ``s`` gain nothing from being split: no cut saves more padding
    than a pass costs (checked for the best single cut; a cheap test before the full search)."""
    n = len(s)
    longest = int(s[-1])
    whole = n * longest
    k = np.arange(1, n)
    # cutting after the k shortest: k rows padded to s[k-1], the rest to the longest
    split = k * s[:-1] + (n - k) * longest + PASS_OVERHEAD_TOKENS
    return bool(split.min() >= whole)


def _optimal_cuts(s: np.ndarray, *, max_rows: int, max_tokens: int | None) -> list[int]:
    """End indices of the cheapest partition of the sorted lengths ``s`` into contiguous groups of
    at most ``max_rows`` rows (and ``max_tokens`` = rows * longest), cost = overhead + rows * longest."""
    n = len(s)
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    back = np.zeros(n + 1, dtype=np.int64)
    for j in range(1, n + 1):
        longest = int(s[j - 1])
        span = max_rows
        if max_tokens is not None:
            span = max(1, min(span, max_tokens // max(longest, 1)))
        lo = max(0, j - span)
        starts = np.arange(lo, j)
        cost = best[lo:j] + PASS_OVERHEAD_TOKENS + (j - starts) * longest
        i = int(np.argmin(cost))
        best[j] = cost[i]
        back[j] = lo + i
    cuts = []
    j = n
    while j > 0:
        cuts.append(j)
        j = int(back[j])
    return cuts[::-1]


def take_rows(inputs: Mapping[str, np.ndarray], p: Pass, paddable: Sequence[str]) -> dict[str, np.ndarray]:
    """The inputs of pass ``p``: its rows, and its ``paddable`` inputs cut to its width (padding is
    at the end of each row, so the cut drops only padding)."""
    out: dict[str, np.ndarray] = {}
    for name, value in inputs.items():
        arr = value[p.rows]
        if p.width is not None and name in paddable and arr.ndim > 1 and arr.shape[1] > p.width:
            arr = arr[:, : p.width]
        out[name] = np.ascontiguousarray(arr)
    return out


def assemble(passes: Sequence[Pass], outputs: Sequence[Mapping[str, np.ndarray]], rows: int, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The request's outputs from its passes' outputs, rows back in the request's order. Outputs
    whose non-batch axes differ between passes (a per-token output of passes padded to different
    lengths) are padded with zeros to the longest: positions past a row's own length are padding."""
    out: dict[str, np.ndarray] = {}
    for name in names:
        parts = [np.asarray(o[name]) for o in outputs]
        first = parts[0]
        shape = [rows, *(max(int(p.shape[ax]) for p in parts) for ax in range(1, first.ndim))]
        result = np.zeros(shape, dtype=first.dtype) if any(tuple(p.shape[1:]) != tuple(shape[1:]) for p in parts) else np.empty(shape, dtype=first.dtype)
        for p, part in zip(passes, parts):
            index: tuple[Any, ...] = (p.rows, *(slice(0, d) for d in part.shape[1:]))
            result[index] = part
        out[name] = result
    return out
