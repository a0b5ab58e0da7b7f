"""inferox.torch — the PyTorch backend of Inferox.

Public names are listed in ``__all__`` and resolved lazily: ``import inferox.torch`` does not
import torch; the first access to :class:`TorchBackend`, :class:`TorchTensor` … does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inferox.core import distribution_version, lazy_exports
from inferox.torch.plugin import DISTRIBUTION

if TYPE_CHECKING:
    from inferox.torch._errors import torch_errors, wrap_torch_error
    from inferox.torch.backend import TorchBackend, device_id_of, torch_device
    from inferox.torch.model import LOAD_DTYPES, TorchDefinitionModel, TorchModel, load_state_dict, resolve_load_dtype, set_threads
    from inferox.torch.ops import TorchOps
    from inferox.torch.tensor import TorchTensor, TorchTensorBuilder, numpy_to_torch, torch_dtype

__all__ = [
    "LOAD_DTYPES",
    "TorchBackend",
    "TorchDefinitionModel",
    "TorchModel",
    "TorchOps",
    "TorchTensor",
    "TorchTensorBuilder",
    "__version__",
    "device_id_of",
    "load_state_dict",
    "numpy_to_torch",
    "resolve_load_dtype",
    "set_threads",
    "torch_device",
    "torch_dtype",
    "torch_errors",
    "wrap_torch_error",
]

_LAZY: dict[str, str] = {
    "TorchBackend": "inferox.torch.backend",
    "device_id_of": "inferox.torch.backend",
    "torch_device": "inferox.torch.backend",
    "TorchTensor": "inferox.torch.tensor",
    "TorchTensorBuilder": "inferox.torch.tensor",
    "numpy_to_torch": "inferox.torch.tensor",
    "torch_dtype": "inferox.torch.tensor",
    "LOAD_DTYPES": "inferox.torch.model",
    "TorchModel": "inferox.torch.model",
    "TorchDefinitionModel": "inferox.torch.model",
    "TorchOps": "inferox.torch.ops",
    "load_state_dict": "inferox.torch.model",
    "resolve_load_dtype": "inferox.torch.model",
    "set_threads": "inferox.torch.model",
    "torch_errors": "inferox.torch._errors",
    "wrap_torch_error": "inferox.torch._errors",
}


__version__ = distribution_version(DISTRIBUTION)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, eager=["__version__"])
