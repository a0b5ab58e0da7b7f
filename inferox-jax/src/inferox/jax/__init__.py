"""inferox.jax — the JAX backend for Inferox.

Importing this package does **not** import jax: the public names below are resolved lazily (PEP
562), so ``import inferox.jax`` and plugin discovery stay cheap. The first access to
:class:`JaxBackend`, :class:`JaxTensor`, :class:`JaxModel` … imports jax.

Dtype rule (JAX runs without 64-bit mode unless ``JAX_ENABLE_X64`` is set, process-wide):

* without x64, ``i64``, ``u64`` and ``f64`` are *unsupported*: building such a tensor raises
  :class:`~inferox.core.DTypeError` (code ``INVALID_DTYPE``) naming the dtype;
* integer inputs are narrowed by :meth:`JaxBackend.as_native` (``i64`` → ``i32``, ``u64`` →
  ``u32``) with a range check that raises ``DTypeError`` when a value does not fit;
* ``f64`` → ``f32`` happens only when asked for explicitly (``as_native(..., dtype=DType.F32)``,
  ``builder.from_numpy(a, dtype="f32")`` or ``JaxBackend.as_native(..., narrow_floats=True)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inferox.core import distribution_version, lazy_exports
from inferox.jax.plugin import DISTRIBUTION

if TYPE_CHECKING:
    from inferox.jax._errors import jax_errors, wrap_jax_error
    from inferox.jax.backend import JaxBackend, x64_enabled
    from inferox.jax.model import BucketPolicy, JaxDefinitionModel, JaxModel, cast_params, load_params
    from inferox.jax.ops import JaxOps
    from inferox.jax.tensor import JaxTensor, JaxTensorBuilder, aligned_empty, is_zero_copy_eligible, jax_dtype

__all__ = [
    "BucketPolicy",
    "JaxBackend",
    "JaxDefinitionModel",
    "JaxModel",
    "JaxOps",
    "JaxTensor",
    "JaxTensorBuilder",
    "__version__",
    "aligned_empty",
    "cast_params",
    "is_zero_copy_eligible",
    "jax_dtype",
    "jax_errors",
    "load_params",
    "wrap_jax_error",
    "x64_enabled",
]

_LAZY: dict[str, str] = {
    "JaxBackend": "inferox.jax.backend",
    "x64_enabled": "inferox.jax.backend",
    "JaxTensor": "inferox.jax.tensor",
    "JaxTensorBuilder": "inferox.jax.tensor",
    "aligned_empty": "inferox.jax.tensor",
    "is_zero_copy_eligible": "inferox.jax.tensor",
    "jax_dtype": "inferox.jax.tensor",
    "BucketPolicy": "inferox.jax.model",
    "JaxModel": "inferox.jax.model",
    "JaxDefinitionModel": "inferox.jax.model",
    "JaxOps": "inferox.jax.ops",
    "cast_params": "inferox.jax.model",
    "load_params": "inferox.jax.model",
    "jax_errors": "inferox.jax._errors",
    "wrap_jax_error": "inferox.jax._errors",
}


__version__ = distribution_version(DISTRIBUTION)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, eager=["__version__"])
