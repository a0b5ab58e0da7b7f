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
never skip. Capability tests (DLPack, zero-copy with numpy, each accelerator kind) skip only
through :meth:`BackendConformance.require`, when the capability is not declared or the device is
absent from this machine.
"""

from __future__ import annotations

from inferox.core.testing._capabilities import ACCELERATOR_KINDS, Capabilities
from inferox.core.testing._conformance import TINY_IN, TINY_OUT, BackendConformance, NotTheModel
from inferox.core.testing._values import sample_array, to_python_list

__all__ = [
    "ACCELERATOR_KINDS",
    "BackendConformance",
    "Capabilities",
    "NotTheModel",
    "TINY_IN",
    "TINY_OUT",
    "sample_array",
    "to_python_list",
]
