"""Building and running the Inferox Ray Serve application (one deployment: proxy → replica, one hop)."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray import serve

from inferox.core.errors import ConfigError
from inferox.engine._memory import limit_heap_fragmentation, mmap_threshold_from_env
from inferox.engine.ray._replica import InferoxReplica, package_digests
from inferox.engine.server._repository import ModelRepository
from inferox.engine.server.app import ServerConfig

__all__ = [
    "APP_NAME",
    "DEPLOYMENT_NAME",
    "LOCAL_PROXY_READY_TIMEOUT_S",
    "LOCAL_WORKER_NICENESS",
    "build_app",
    "local_cluster_environment",
    "replica_class",
    "replica_config",
    "serve_on_ray",
]

#: The Ray Serve application name ``inferox serve --ray`` deploys under.
APP_NAME = "inferox"
#: The application's one deployment: its replicas are the HTTP ingress and the model servers.
DEPLOYMENT_NAME = "InferoxReplica"
#: How long a local cluster's Ray Serve controller waits for its HTTP proxy to start (Ray Serve's
#: own default is 5 s). The proxy is a fresh worker process importing Ray Serve and its web stack:
#: on a busy 2-core machine that took longer than 5 s, and the controller killed the proxy before it
#: ever ran (``ActorDiedError`` from ``serve.start``).
LOCAL_PROXY_READY_TIMEOUT_S = 60.0
#: The scheduling priority of a local cluster's workers. Ray starts them at niceness 15, meant for
#: batch jobs beside interactive work; here the workers are the server (the controller, the HTTP
#: proxy, the replicas), and at 15 a busy machine starved them: with two CPU-bound processes beside
#: it, the proxy took a minute to start.
LOCAL_WORKER_NICENESS = 0


def local_cluster_environment() -> None:
    """Set, where the user has not, the environment a local cluster started from this process
    inherits: its workers' priority (:data:`LOCAL_WORKER_NICENESS`) and Ray Serve's proxy start-up
    timeout (:data:`LOCAL_PROXY_READY_TIMEOUT_S`). Call before ``ray.init``; a cluster joined by
    address keeps its own settings."""
    os.environ.setdefault("RAY_worker_niceness", str(LOCAL_WORKER_NICENESS))
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", str(LOCAL_PROXY_READY_TIMEOUT_S))


def replica_class(*, max_models_per_replica: int = 3) -> type[InferoxReplica]:
    """:class:`InferoxReplica` with its multiplexing limit set (Ray Serve reads it from the
    decorator, so each setting gets its own subclass)."""

    class Replica(InferoxReplica):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            # The replica's worker process is ours: keep its heap from fragmenting (see _memory).
            limit_heap_fragmentation()
            super().__init__(*args, **kwargs)

        @serve.multiplexed(max_num_models_per_replica=max_models_per_replica)  # type: ignore[untyped-decorator]
        async def get_model(self, model_id: str) -> Any:
            return await self.load(model_id)

    Replica.__name__ = Replica.__qualname__ = DEPLOYMENT_NAME
    return Replica


def build_app(
    repository: str | Path,
    *,
    config: ServerConfig | None = None,
    replicas: int | None = None,
    autoscaling_config: Mapping[str, Any] | None = None,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    max_models_per_replica: int = 3,
    max_ongoing_requests: int = 64,
    health_check_period_s: float = 10.0,
    ray_actor_options: Mapping[str, Any] | None = None,
) -> Any:
    """The Ray Serve application (``serve.Application``) serving ``repository`` over HTTP: one
    deployment, :data:`DEPLOYMENT_NAME`, whose replicas are the ingress (see :class:`InferoxReplica`).

    ``repository`` is a model repository folder that every node can read at the same path (a
    shared file system, or the same packages copied to each node); the digests of its packages are
    taken here, on the driver, and every replica checks its copy against them before loading.
    ``replicas`` (default 1) or ``autoscaling_config`` (Ray Serve's own keys, passed through) size the
    deployment; ``num_cpus``/``num_gpus`` are each replica's resources; ``max_ongoing_requests`` the
    requests Ray Serve hands one replica at once (the engine's batcher gathers them into passes).
    Run it with ``serve.run(build_app(...), route_prefix="/")``.
    """
    if replicas is not None and autoscaling_config is not None:
        raise ConfigError("give either replicas or autoscaling_config, not both", field="replicas", value=replicas)
    if replicas is not None and replicas < 1:
        raise ConfigError("replicas must be at least 1", field="replicas", value=replicas)
    root = ModelRepository(repository).root
    digests = package_digests(root)
    config = replica_config(config or ServerConfig(access_log=False), num_cpus=num_cpus, num_gpus=num_gpus)
    options: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus, **dict(ray_actor_options or {})}
    scale: dict[str, Any] = {"autoscaling_config": dict(autoscaling_config)} if autoscaling_config is not None else {"num_replicas": replicas or 1}
    deployment: Any = serve.deployment(
        serve.ingress()(replica_class(max_models_per_replica=max_models_per_replica)),
        name=DEPLOYMENT_NAME,
        ray_actor_options=options,
        max_ongoing_requests=max_ongoing_requests,
        health_check_period_s=health_check_period_s,
        health_check_timeout_s=max(30.0, health_check_period_s),
        **scale,
    )
    return deployment.bind(str(root), digests=digests, config=config)


def replica_config(config: ServerConfig, *, num_cpus: float, num_gpus: float = 0.0) -> ServerConfig:
    """``config`` for a replica reserving ``num_cpus`` CPUs: unless models set ``threads``
    themselves (``serving.toml``, ``--threads``), their CPU intra-op pools get the CPUs Ray reserved
    for the replica — at least one — not every core of the node, which the node's other replicas
    and Ray's proxy share (Ray sizes ``OMP_NUM_THREADS`` the same way). GPU replicas keep the default."""
    if config.defaults.threads is not None or num_gpus > 0:
        return config
    threads = max(1, math.floor(num_cpus))
    return dataclasses.replace(config, defaults=dataclasses.replace(config.defaults, threads=threads))


def serve_on_ray(
    app: Any,
    *,
    address: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    blocking: bool = True,
    num_cpus: int | None = None,
    keep_alive_s: float = ServerConfig.keep_alive_s,
) -> Any:
    """Connect to (``address``) or start a local Ray cluster, start Ray Serve's HTTP proxy on
    ``host:port`` (idle keep-alive connections stay open ``keep_alive_s``, see
    ``ServerConfig.keep_alive_s``) and deploy ``app`` as application :data:`APP_NAME` at ``/``.
    With ``blocking``, serve until SIGINT or SIGTERM, then delete the application and return;
    otherwise return its handle at once."""
    import ray

    # Replicas of a local cluster inherit this environment and apply INFEROX_MMAP_THRESHOLD in
    # their constructors; a bad value is named here, before anything starts, instead of failing
    # every replica (and Ray's retries of it) in logs the user never sees.
    mmap_threshold_from_env()
    if not ray.is_initialized():
        if address:
            ray.init(address=address)
        else:
            local_cluster_environment()
            ray.init(num_cpus=num_cpus, include_dashboard=False)
    serve.start(http_options={"host": host, "port": port, "keep_alive_timeout_s": int(keep_alive_s)})
    handle = serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    if not blocking:
        return handle
    try:
        _wait_for_stop_signal()
    finally:
        serve.delete(APP_NAME)
    return handle


def _wait_for_stop_signal() -> None:
    """Block until SIGINT (Ctrl-C) or SIGTERM (what Kubernetes and systemd send).

    The handlers only set an event: a KeyboardInterrupt raised wherever the main thread happens to
    be (inside a finalizer of one of Ray's objects, say) can be swallowed there, and the full test
    suite saw Ctrl-C lost that way. Off the main thread no handler can be installed, so there it
    waits for a KeyboardInterrupt as before."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():  # pragma: no cover - serve --ray runs on the main thread
        while True:
            time.sleep(1.0)
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
