"""inferox.engine — the model registry, dispatch, dynamic batching and sessions.

    from inferox.engine import Engine, EngineConfig

    with Engine(EngineConfig(max_batch_size=16)) as engine:
        engine.load("packages/minilm", backend="torch")
        result = engine.infer("minilm", "a sentence")
        result["sentence_embedding"], result.backend, result.batch_size

The public names are listed in ``__all__``; the modules behind them are implementation detail.
"""

from __future__ import annotations

from inferox.engine._compose import BackendChoice, ComposedModel, choose_backend, compose_model
from inferox.engine._config import EngineConfig, ModelOptions
from inferox.engine._engine import Engine
from inferox.engine._memory import limit_heap_fragmentation, release_memory
from inferox.engine._session import Session
from inferox.engine._types import InferenceResult, InstanceInfo, LatencySummary, ModelInfo, ModelStats

__all__ = [
    "BackendChoice",
    "ComposedModel",
    "Engine",
    "EngineConfig",
    "InferenceResult",
    "InstanceInfo",
    "LatencySummary",
    "ModelInfo",
    "ModelOptions",
    "ModelStats",
    "Session",
    "choose_backend",
    "compose_model",
    "limit_heap_fragmentation",
    "release_memory",
]
