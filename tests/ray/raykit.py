"""Helpers for the Ray tests: real packages (inferox.mlpkg builder), a model repository, a local
Ray cluster on loopback, and an in-process stand-in for a deployment handle."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_model(repo: Path, name: str, package: Path, *, backends: tuple[str, ...] = ("torch",), extra: str = "") -> Path:
    """Copy ``package`` into ``repo/name`` with a ``serving.toml`` naming its backends."""
    dest = repo / name
    shutil.copytree(package, dest)
    listed = ", ".join(f'"{b}"' for b in backends)
    (dest / "serving.toml").write_text(f"backends = [{listed}]\n{extra}")
    return dest


def corrupt(package: Path) -> Path:
    """Flip bytes in the middle of a package's weights (size unchanged: only the hash can tell)."""
    weights = package / "model.safetensors"
    data = bytearray(weights.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 8] = bytes(b ^ 0xFF for b in data[mid : mid + 8])
    weights.write_bytes(bytes(data))
    return weights


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


class _Method:
    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


class LocalHandle:
    """Calls a real in-process :class:`InferoxReplica` the way the ingress calls a deployment
    handle (``.options(multiplexed_model_id=...).handle.remote(...)``), so the ingress's code runs
    in the test process where coverage sees it; the cluster tests run the real handle."""

    def __init__(self, replica: Any, model_id: str | None = None, loaded: dict[str, Any] | None = None) -> None:
        self.replica = replica
        self.model_id = model_id
        self.loaded: dict[str, Any] = {} if loaded is None else loaded  # what the multiplexer caches

    def options(self, *, multiplexed_model_id: str) -> LocalHandle:
        return LocalHandle(self.replica, multiplexed_model_id, self.loaded)

    @property
    def handle(self) -> _Method:
        async def call(*args: Any) -> Any:
            from inferox.core.errors import InferoxError
            from inferox.engine.ray import reply_for

            assert self.model_id is not None
            try:
                if self.model_id not in self.loaded:
                    self.loaded[self.model_id] = await self.replica.load(self.model_id)
            except InferoxError as exc:
                return reply_for(exc)
            return await self.replica.dispatch(self.model_id, *args)

        return _Method(call)

    @property
    def is_ready(self) -> _Method:
        return _Method(self.replica.is_ready)
