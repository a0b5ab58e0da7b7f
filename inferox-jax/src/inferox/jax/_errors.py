"""Turning JAX exceptions into Inferox errors: core's :class:`~inferox.core.FrameworkErrors` for the ``jax`` backend.

XLA reports an allocation failure as ``RESOURCE_EXHAUSTED``, which every backend's rules already
know, so JAX needs no wording of its own: out of memory becomes
:class:`~inferox.core.errors.OutOfMemoryError`, ``OSError`` an IO error and anything else a
:class:`~inferox.core.errors.BackendError`, with the jax exception kept as ``__cause__``. This
module imports no framework.
"""

from __future__ import annotations

from inferox.core.errors import FrameworkErrors
from inferox.jax.plugin import BACKEND_NAME

__all__ = ["JAX_ERRORS", "jax_errors", "wrap_jax_error"]

JAX_ERRORS = FrameworkErrors(BACKEND_NAME)
#: The Inferox error for a jax exception (``exc`` kept as ``__cause__``).
wrap_jax_error = JAX_ERRORS.wrap
#: Re-raise anything jax raises inside the block as an Inferox error (see :func:`wrap_jax_error`).
jax_errors = JAX_ERRORS.context
