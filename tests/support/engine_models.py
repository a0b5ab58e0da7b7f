"""Tiny real models for the engine tests: real torch (nn.Linear, nn.Embedding) and real jax.numpy.

Each model counts its forward calls and the rows of each call, so tests can prove that the
batcher really formed batches larger than one. A row whose first feature equals ``POISON``
makes the model raise (inside the framework call), so tests can send failing items.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from inferox.core import DeviceId, DType, Model, ModelMetadata, TensorSpec, get_registry

POISON = 666.0
IN, OUT = 4, 3


def make_weights(seed: int = 0, n_in: int = IN, n_out: int = OUT) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_in, n_out)).astype(np.float32), rng.standard_normal(n_out).astype(np.float32)


def expected_linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32) @ weight + bias


class _Counting:
    """Forward-call bookkeeping shared by the test models."""

    def _init_counting(self, delay: float) -> None:
        self.delay = delay
        self.calls = 0
        self.rows: list[int] = []
        self.closed = False
        self._count_lock = threading.Lock()

    def _count(self, rows: int) -> None:
        with self._count_lock:
            self.calls += 1
            self.rows.append(rows)
        if self.delay:
            time.sleep(self.delay)


class _LinearSpecs:
    """``x`` f32 (batch, n_in) → ``y`` f32 (batch, n_out): the specs of both linear models."""

    n_in: int
    n_out: int

    @property
    def input_specs(self) -> Sequence[TensorSpec]:
        return [TensorSpec("x", DType.F32, (None, self.n_in))]

    @property
    def output_specs(self) -> Sequence[TensorSpec]:
        return [TensorSpec("y", DType.F32, (None, self.n_out))]


class TorchLinear(_LinearSpecs, Model, _Counting):
    """y = x @ weight + bias with a real ``torch.nn.Linear``."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, *, name: str = "lin", delay: float = 0.0, version: str = "1") -> None:
        import torch

        super().__init__(backend=get_registry().get_backend("torch"), metadata=ModelMetadata(name, architecture="linear", version=version), device=DeviceId.cpu())
        self._init_counting(delay)
        self.linear = torch.nn.Linear(weight.shape[0], weight.shape[1])
        with torch.no_grad():
            self.linear.weight.copy_(torch.from_numpy(weight.T.copy()))
            self.linear.bias.copy_(torch.from_numpy(bias.copy()))
        self.n_in, self.n_out = weight.shape

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        import torch

        x = inputs["x"]
        self._count(int(x.shape[0]))
        if bool((x[:, 0] == POISON).any()):
            raise RuntimeError("poisoned row")
        with torch.no_grad():
            return {"y": self.linear(x)}

    def memory_requirements(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.linear.parameters())

    def close(self) -> None:
        self.closed = True
        self.linear = None  # type: ignore[assignment]


class JaxLinear(_LinearSpecs, Model, _Counting):
    """y = x @ weight + bias with ``jax.numpy`` under ``jax.jit``."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, *, name: str = "lin", delay: float = 0.0) -> None:
        import jax
        import jax.numpy as jnp

        super().__init__(backend=get_registry().get_backend("jax"), metadata=ModelMetadata(name, architecture="linear"), device=DeviceId.cpu())
        self._init_counting(delay)
        self.w = jnp.asarray(weight)
        self.b = jnp.asarray(bias)
        self.n_in, self.n_out = weight.shape
        self._fn = jax.jit(lambda x, w, b: x @ w + b)

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        x = inputs["x"]
        self._count(int(x.shape[0]))
        if bool((np.asarray(x[:, 0]) == POISON).any()):
            raise ValueError("poisoned row")
        return {"y": self._fn(x, self.w, self.b)}

    def memory_requirements(self) -> int:
        return int(self.w.nbytes + self.b.nbytes)

    def warmup(self) -> None:
        self._fn(self.w[None, :, 0] * 0, self.w, self.b).block_until_ready()

    def close(self) -> None:
        self.closed = True


class TorchSeq(Model, _Counting):
    """A BERT-shaped toy: ids (B, S) + mask (B, S) → hidden (B, S, H) and mean-pooled (B, H)."""

    def __init__(self, *, vocab: int = 50, hidden: int = 6, name: str = "seq", seed: int = 0) -> None:
        import torch

        super().__init__(backend=get_registry().get_backend("torch"), metadata=ModelMetadata(name, architecture="seq"), device=DeviceId.cpu())
        self._init_counting(0.0)
        torch.manual_seed(seed)
        self.emb = torch.nn.Embedding(vocab, hidden)
        self.proj = torch.nn.Linear(hidden, hidden)
        self.hidden = hidden

    @property
    def input_specs(self) -> Sequence[TensorSpec]:
        return [
            TensorSpec("input_ids", DType.I64, (None, None), pad_value=0),
            TensorSpec("attention_mask", DType.I64, (None, None), pad_value=0),
        ]

    @property
    def output_specs(self) -> Sequence[TensorSpec]:
        return [TensorSpec("hidden", DType.F32, (None, None, self.hidden)), TensorSpec("pooled", DType.F32, (None, self.hidden))]

    def forward(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        import torch

        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        self._count(int(ids.shape[0]))
        with torch.no_grad():
            h = torch.tanh(self.proj(self.emb(ids))) * mask[..., None]
            pooled = h.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return {"hidden": h, "pooled": pooled}


class ToyTextEncoder:
    """Splits on spaces; ids are word lengths + 1 (a deterministic stand-in for a tokenizer)."""

    def encode(self, texts: Sequence[str], *, max_length: int | None = None) -> dict[str, np.ndarray]:
        words = [t.split() or [""] for t in texts]
        longest = max(len(w) for w in words)
        ids = np.zeros((len(texts), longest), dtype=np.int64)
        mask = np.zeros((len(texts), longest), dtype=np.int64)
        for i, ws in enumerate(words):
            ids[i, : len(ws)] = [min(len(w) + 1, 49) for w in ws]
            mask[i, : len(ws)] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
