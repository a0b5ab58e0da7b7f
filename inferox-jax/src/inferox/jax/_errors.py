"""Turning JAX exceptions into Inferox errors.

:func:`jax_errors` is core's :func:`~inferox.core.errors.backend_errors` for the ``jax`` backend:
XLA's ``RESOURCE_EXHAUSTED`` and host allocation failures become
:class:`~inferox.core.errors.OutOfMemoryError`, ``OSError`` an IO error, and anything else a
:class:`~inferox.core.errors.BackendError`; the jax exception is always kept as ``__cause__``.
This module imports no framework.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from inferox.core.errors import InferoxError, wrap_backend_error
from inferox.jax.plugin import BACKEND_NAME

__all__ = ["jax_errors", "wrap_jax_error"]


def wrap_jax_error(exc: BaseException, *, model: str | None = None) -> InferoxError:
    """The Inferox error for a jax exception (``exc`` kept as ``__cause__``)."""
    return wrap_backend_error(exc, backend=BACKEND_NAME, model=model)


@contextmanager
def jax_errors(*, model: str | None = None) -> Iterator[None]:
    """Re-raise anything jax raises inside the block as an Inferox error (see :func:`wrap_jax_error`)."""
    try:
        yield
    except InferoxError:
        raise
    except Exception as exc:
        raise wrap_jax_error(exc, model=model) from exc
