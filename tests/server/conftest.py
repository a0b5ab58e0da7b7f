"""Real torch test models and a real server on loopback, driven by the real tritonclient.http."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from inferox.core import DType, ModelMetadata, TensorSpec, get_backend
from inferox.core.model import Model

#: Every V2 numeric datatype the echo model round-trips (BYTES is covered by text models).
ECHO_DTYPES = (
    DType.BOOL, DType.U8, DType.U16, DType.U32, DType.U64, DType.I8, DType.I16, DType.I32, DType.I64,
    DType.F16, DType.BF16, DType.F32, DType.F64,
)


class EchoModel(Model):
    """Identity over one input per dtype: ``IN_<V2>`` → ``OUT_<V2>`` (a real torch clone)."""

    def __init__(self, dtypes: Sequence[DType] = ECHO_DTYPES) -> None:
        super().__init__(backend=get_backend("torch"), metadata=ModelMetadata(name="echo", architecture="echo"))
        self.dtypes = tuple(dtypes)

    @property
    def input_specs(self) -> Sequence[TensorSpec]:
        return [TensorSpec(f"IN_{d.v2_name}", d, (None, None)) for d in self.dtypes]

    @property
    def output_specs(self) -> Sequence[TensorSpec]:
        return [TensorSpec(f"OUT_{d.v2_name}", d, (None, None)) for d in self.dtypes]

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        return {"OUT_" + k[3:]: v.clone() for k, v in inputs.items()}


class AffineModel(Model):
    """``y = 2x + 1`` on ``x: f32 (batch, 4)``; ``delay`` seconds of sleep per forward; raises a
    real torch error when ``x`` holds a value of 666 (a failure inside the model)."""

    def __init__(self, name: str = "affine", *, delay: float = 0.0, width: int = 4) -> None:
        super().__init__(backend=get_backend("torch"), metadata=ModelMetadata(name=name, architecture="affine"))
        self.delay = delay
        self.width = width
        self.batch_sizes: list[int] = []

    @property
    def input_specs(self) -> Sequence[TensorSpec]:
        return [TensorSpec("x", DType.F32, (None, self.width))]

    @property
    def output_specs(self) -> Sequence[TensorSpec]:
        return [TensorSpec("y", DType.F32, (None, self.width))]

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        import torch

        x = inputs["x"]
        self.batch_sizes.append(int(x.shape[0]))
        if self.delay:
            time.sleep(self.delay)
        if bool((x == 666).any()):
            # A genuine framework failure: shapes that cannot be multiplied.
            torch.matmul(x, torch.ones(self.width + 1, 2))
        return {"y": x * 2 + 1}


@pytest.fixture(scope="module")
def triton() -> Iterator[Any]:
    """A factory for tritonclient.http clients (closed at module end)."""
    import tritonclient.http as httpclient

    clients: list[Any] = []

    def make(address: str, **kwargs: Any) -> Any:
        c = httpclient.InferenceServerClient(url=address, **kwargs)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()

