"""What the JAX architectures share: reading weights to host arrays and checking them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from inferox.core.errors import ConfigError, PackageFormatError
from inferox.core.weights import load_safetensors
from inferox.jax.model import BucketPolicy

__all__ = ["bucket_policy", "check_float", "read_weights"]


def read_weights(weights: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[dict[str, np.ndarray], str | None]:
    """Weights as host numpy arrays (from a safetensors file or a mapping), and their source path."""
    if isinstance(weights, Mapping):
        return {str(k): np.asarray(v) for k, v in weights.items()}, None
    source = os.fspath(weights)
    return load_safetensors(source, framework="numpy"), source


def check_float(arrays: Mapping[str, np.ndarray], source: str | None) -> dict[str, np.ndarray]:
    """Parameters must be floating point (a :class:`PackageFormatError` naming the first that is not).

    Returns them in one dtype (f32 when the file mixes float types), so every layer agrees.
    """
    for name, a in arrays.items():
        if a.dtype.kind != "f" and a.dtype.name != "bfloat16":
            raise PackageFormatError(f"weight {name!r} has dtype {a.dtype}, expected a float type", path=source, field=name)
    if len({a.dtype for a in arrays.values()}) > 1:
        return {k: v.astype(np.float32) for k, v in arrays.items()}
    return dict(arrays)


def _int_tuple(options: Mapping[str, Any], key: str, default: tuple[int, ...]) -> tuple[int, ...]:
    value = options.get(key)
    if value is None:
        return default
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ConfigError("must be a list of positive integers", field=key, value=value)
    out = tuple(value)
    if not out or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in out):
        raise ConfigError("must be a non-empty list of positive integers", field=key, value=value)
    return tuple(sorted(set(out)))


def bucket_policy(
    options: Mapping[str, Any],
    *,
    max_sequence: int | None,
    sequence: tuple[int, ...] = (16, 32, 64, 128, 256, 512),
    warmup_sequence: tuple[int, ...] = (),
) -> BucketPolicy:
    """The :class:`BucketPolicy` the options ``batch_buckets``, ``seq_buckets``, ``warmup_batch_sizes``
    and ``warmup_seq_lengths`` describe (defaults: powers of two)."""
    seq = _int_tuple(options, "seq_buckets", sequence)
    if max_sequence is not None:
        seq = (*(s for s in seq if s < max_sequence), max_sequence)
    return BucketPolicy(
        batch=_int_tuple(options, "batch_buckets", (1, 2, 4, 8, 16, 32, 64)),
        sequence=seq,
        max_sequence=max_sequence,
        warmup_batch=_int_tuple(options, "warmup_batch_sizes", (1,)),
        # A warm-up length past the position table would compile a shape no request can have.
        warmup_sequence=tuple(sorted({min(s, max_sequence) if max_sequence else s for s in _int_tuple(options, "warmup_seq_lengths", warmup_sequence)})),
    )
