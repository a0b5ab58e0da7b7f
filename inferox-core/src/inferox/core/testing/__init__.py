"""``inferox.core.testing``: the conformance suite every backend runs against itself.

Install with the ``testing`` extra (``pip install inferox-core[testing]``; it needs pytest). A
backend's test module subclasses :class:`BackendConformance`::

    import numpy as np
    from inferox.core import DType
    from inferox.core.testing import BackendConformance, Capabilities

    class TestMyConformance(BackendConformance):
        backend_name = "mine"
        capabilities = Capabilities(device_kinds=frozenset({"cpu", "cuda"}), dtypes=None, dlpack=True)

        def make_tiny_model(self, backend, weight: np.ndarray, bias: np.ndarray):
            ...  # a Model: input "x" f32 (None, in) → output "y" f32 (None, out) = x @ weight + bias

Mandatory tests (tensor round trip for every declared dtype, constructors, zero-size shapes,
shape and dtype errors, device listing, the ``AnyModel`` round trip, error wrapping, discovery)
never skip. The architecture tests check *numbers*: for every architecture the backend registers a
factory for whose schema has a NumPy reference (``mlp`` and ``bert`` here, in
:mod:`inferox.core.testing._reference`), the schema's golden inputs go through the backend and the
reference, compared per output with the tolerance of the dtype (:data:`TOLERANCES`); a mismatch names
the output and the largest difference (:class:`ArchitectureMismatch`). Capability tests (DLPack, zero-copy with numpy, each accelerator kind) skip only
through :meth:`BackendConformance.require`, when the capability is not declared or the device is
absent from this machine.

Compatibility: a check added in a later contract minor (:func:`since`) only warns
(:class:`ConformanceWarning`) for a plugin declaring an older minor, so a plugin that passed 1.0
keeps passing 1.x.
"""

from __future__ import annotations

import importlib.util

from inferox.core.errors import PluginError

if importlib.util.find_spec("pytest") is None:
    # Say what to install instead of a bare ModuleNotFoundError from deep inside the suite.
    raise PluginError(
        "inferox.core.testing needs pytest, which is not installed: install the testing extra, "
        "pip install 'inferox-core[testing]'"
    )

from inferox.core.testing._capabilities import ACCELERATOR_KINDS, Capabilities
from inferox.core.testing._conformance import TINY_IN, TINY_OUT, BackendConformance, ConformanceWarning, NotTheModel, since
from inferox.core.testing._numbers import (
    TANH_GELU,
    TOLERANCES,
    ArchitectureMismatch,
    NumbersReport,
    Sensitivity,
    check_architecture,
    checked_architectures,
    gelu_sensitivity,
    native_input_outputs,
    refused_dtype_error,
)
from inferox.core.testing._reference import bert_reference, gelu_exact, gelu_tanh, mlp_reference
from inferox.core.testing._values import sample_array, to_python_list

__all__ = [
    "ACCELERATOR_KINDS",
    "TANH_GELU",
    "TINY_IN",
    "TINY_OUT",
    "TOLERANCES",
    "ArchitectureMismatch",
    "BackendConformance",
    "Capabilities",
    "ConformanceWarning",
    "NotTheModel",
    "NumbersReport",
    "Sensitivity",
    "bert_reference",
    "check_architecture",
    "checked_architectures",
    "gelu_exact",
    "gelu_sensitivity",
    "gelu_tanh",
    "mlp_reference",
    "native_input_outputs",
    "refused_dtype_error",
    "sample_array",
    "since",
    "to_python_list",
]
