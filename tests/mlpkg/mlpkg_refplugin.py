"""A tiny in-process plugin for the mlpkg tests: a numpy backend ``mlpkgref`` and an ``mlp``
architecture computed in numpy (the reference the real torch/jax MLPs are compared with).

Registered with ``get_registry().register_plugin(mlpkg_refplugin, name="mlpkg-ref")``. Setting
``MLPKG_TEST_STALL_MARKER`` makes the factory write that file and then hang (used to SIGKILL a
build in the middle of assembly).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inferox.core import Backend, BackendSpec, Device, DeviceId, DType, Model, ModelMetadata, Tensor, TensorBuilder, TensorSpec, hookimpl

BACKEND = "mlpkgref"


class RefTensor(Tensor):
    __slots__ = ("_backend",)
    backend_name = BACKEND

    def __init__(self, native: np.ndarray, backend: RefBackend) -> None:
        super().__init__(native)
        self._backend = backend

    @property
    def backend(self) -> RefBackend:
        return self._backend

    @property
    def device(self) -> DeviceId:
        return DeviceId.cpu()

    def numpy(self) -> np.ndarray:
        return np.asarray(self._native)


class RefBuilder(TensorBuilder):
    def _from_numpy(self, array: np.ndarray) -> np.ndarray:
        return array

    def _from_dlpack(self, obj: Any) -> np.ndarray:
        return np.from_dlpack(obj)


class RefBackend(Backend):
    name = BACKEND

    @property
    def version(self) -> str:
        return np.__version__

    def devices(self) -> list[Device]:
        return [Device(DeviceId.cpu(), self.name, name="host", available=True)]

    def supported_dtypes(self, device: DeviceId | str | None = None) -> frozenset[DType]:
        return frozenset(DType)

    def tensor_builder(self, device: DeviceId | str | None = None) -> RefBuilder:
        return RefBuilder(self, self.check_device(device))

    def is_native(self, obj: Any) -> bool:
        return isinstance(obj, np.ndarray)

    def wrap(self, native: Any) -> RefTensor:
        return RefTensor(np.asarray(native), self)

    def to_device(self, tensor: Tensor, device: DeviceId) -> RefTensor:
        return self.wrap(tensor.numpy())

    def cast(self, tensor: Tensor, dtype: DType) -> RefTensor:
        return self.wrap(tensor.numpy().astype(dtype.to_numpy()))

    def to_numpy(self, native: Any) -> np.ndarray:
        return np.asarray(native)


_ACT = {
    "relu": lambda x: np.maximum(x, 0),
    "tanh": np.tanh,
    "identity": lambda x: x,
    "gelu": lambda x: 0.5 * x * (1 + np.vectorize(__import__("math").erf)(x / np.sqrt(2))),
}


class RefMLP(Model):
    def __init__(self, *, backend: Backend, metadata: ModelMetadata, layers: list[tuple[np.ndarray, np.ndarray]], activation: str, device: DeviceId | None) -> None:
        super().__init__(backend=backend, metadata=metadata, device=device)
        self.layers = layers
        self.activation = activation

    @property
    def input_specs(self) -> Sequence[TensorSpec]:
        return [TensorSpec("input", DType.F32, (None, self.layers[0][0].shape[1]))]

    @property
    def output_specs(self) -> Sequence[TensorSpec]:
        return [TensorSpec("output", DType.F32, (None, self.layers[-1][0].shape[0]))]

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        x = np.asarray(inputs["input"], np.float32)
        for i, (w, b) in enumerate(self.layers):
            x = x @ w.T + b
            if i < len(self.layers) - 1:
                x = _ACT[self.activation](x).astype(np.float32)
        return {"output": x}


def reference_mlp(config: Mapping[str, Any], tensors: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The MLP schema's definition, for checking any backend's numbers."""
    layers = [(tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"]) for i in range(len(config["layer_sizes"]) - 1)]
    model = RefMLP(backend=RefBackend(), metadata=ModelMetadata("ref"), layers=layers, activation=config.get("activation", "relu"), device=None)
    return model.forward({"input": x})["output"]


def create_mlp(*, backend: Backend, config: Mapping[str, Any], weights: str | Path | Mapping[str, np.ndarray], metadata: ModelMetadata,
               device: DeviceId | str | None = None, dtype: DType | None = None, **options: Any) -> RefMLP:
    marker = os.environ.get("MLPKG_TEST_STALL_MARKER")
    if marker:
        Path(marker).write_text(str(os.getpid()))
        time.sleep(120)
    if options.get("fail"):
        raise RuntimeError("factory failed on purpose")
    if isinstance(weights, Mapping):
        tensors = dict(weights)
    else:
        from safetensors.numpy import load_file

        tensors = load_file(str(weights))
    n = len(config["layer_sizes"]) - 1
    layers = [(tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"]) for i in range(n)]
    return RefMLP(backend=backend, metadata=metadata, layers=layers, activation=config.get("activation", "relu"), device=DeviceId.parse(device) if device else None)


@hookimpl
def inferox_contract_version() -> str:
    return "1.0"


@hookimpl
def inferox_register_backends(register: Any) -> None:
    register(BackendSpec(BACKEND, loader="tests.mlpkg.mlpkg_refplugin:RefBackend", requires=("numpy",), description="mlpkg test reference"))


@hookimpl
def inferox_register_architectures(register: Any) -> None:
    register(BACKEND, "mlp", create_mlp)
