"""inferox.core — the contract every Inferox backend, package and engine shares.

The public names are listed in ``__all__``; the modules behind them are implementation detail.
"""

from __future__ import annotations

from inferox.core._cpus import cgroup_cpu_limit, usable_cpus
from inferox.core._lazy import distribution_version, lazy_exports
from inferox.core.arraylib import ArrayBackend, ArrayTensor, ArrayTensorBuilder
from inferox.core.backend import Backend
from inferox.core.constants import CONTRACT_VERSION
from inferox.core.definition import Definition, DefinitionModel, DefinitionPlan, TextSettings
from inferox.core.device import Device, DeviceId, DeviceKind, MemoryInfo, host_memory_info
from inferox.core.dtype import DType, can_cast_safely
from inferox.core.errors import (
    ArchitectureNotFoundError,
    BackendError,
    BackendUnavailableError,
    ConfigError,
    DeviceError,
    DeviceUnavailableError,
    DownloadError,
    DTypeError,
    FrameworkErrors,
    InferoxError,
    InferoxIOError,
    InferoxTimeoutError,
    InvalidInputError,
    ModelNotFoundError,
    NumericMismatchError,
    OutOfMemoryError,
    PackageError,
    PluginError,
    PluginVersionError,
    QueueFullError,
    ServiceUnavailableError,
    TypeMismatchError,
    UnsupportedHeadError,
)
from inferox.core.hookspecs import hookimpl
from inferox.core.model import AnyModel, Model, ModelMetadata
from inferox.core.ops import Ops
from inferox.core.plugins import (
    ArchitectureSpec,
    BackendInfo,
    BackendSpec,
    PluginRegistry,
    get_backend,
    get_registry,
)
from inferox.core.schema import ArchitectureSchema, random_weights
from inferox.core.spec import TensorSpec
from inferox.core.tensor import Tensor, TensorBuilder

__version__ = distribution_version("inferox-core")

__all__ = [
    "CONTRACT_VERSION",
    "AnyModel",
    "ArchitectureNotFoundError",
    "ArchitectureSchema",
    "ArchitectureSpec",
    "ArrayBackend",
    "ArrayTensor",
    "ArrayTensorBuilder",
    "Backend",
    "BackendError",
    "BackendInfo",
    "BackendSpec",
    "BackendUnavailableError",
    "ConfigError",
    "DType",
    "DTypeError",
    "Definition",
    "DefinitionModel",
    "DefinitionPlan",
    "Device",
    "DeviceError",
    "DeviceId",
    "DeviceKind",
    "DeviceUnavailableError",
    "DownloadError",
    "FrameworkErrors",
    "InferoxError",
    "InferoxIOError",
    "InferoxTimeoutError",
    "InvalidInputError",
    "MemoryInfo",
    "Model",
    "ModelMetadata",
    "ModelNotFoundError",
    "NumericMismatchError",
    "Ops",
    "OutOfMemoryError",
    "PackageError",
    "PluginError",
    "PluginRegistry",
    "PluginVersionError",
    "QueueFullError",
    "ServiceUnavailableError",
    "Tensor",
    "TensorBuilder",
    "TensorSpec",
    "TextSettings",
    "TypeMismatchError",
    "UnsupportedHeadError",
    "__version__",
    "can_cast_safely",
    "cgroup_cpu_limit",
    "distribution_version",
    "get_backend",
    "get_registry",
    "hookimpl",
    "host_memory_info",
    "lazy_exports",
    "random_weights",
    "usable_cpus",
]
