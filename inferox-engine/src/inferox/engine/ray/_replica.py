"""The Ray Serve replica: one :class:`~inferox.engine.server.InferoxServer` per replica, its models
loaded on demand through Ray Serve model multiplexing.

A replica answers the per-model part of the V2 API (``/v2/models/{name}/...``) by running the
request through the very same Starlette app ``inferox serve`` runs, called in-process over ASGI —
so errors, text encoding, request ids, timeouts and dynamic batching behave exactly as they do
without Ray. Packages are checked before anything loads: the digest of each package's
``metadata.json`` must be the one the driver saw, and every file's sha256 must match it
(``load_package(verify=True)``); a missing or corrupt package makes :meth:`check_health` raise
with the reason, so Ray Serve replaces the replica instead of letting it serve wrong answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import serve

from inferox.core.errors import InferoxError, ModelNotFoundError, PackageIntegrityError, PackageNotFoundError
from inferox.engine.server._dataplane import InferResponse, OutputTensor
from inferox.engine.server._protocol import HEADER_LENGTH, error_response_parts
from inferox.engine.server._repository import PACKAGE_MARKER, ModelRepository, check_model_name
from inferox.engine.server.app import InferoxServer, ServerConfig

__all__ = ["BATCHING_MODES", "HttpReply", "InferoxReplica", "metadata_digest", "package_digests", "reply_for"]

log = logging.getLogger("inferox.ray")

#: ``engine``: the engine's own dynamic batcher (default); ``serve``: Ray Serve's ``@serve.batch``.
BATCHING_MODES = ("engine", "serve")


@dataclass(frozen=True)
class HttpReply:
    """An HTTP response as it crosses from a replica back to the ingress."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def metadata_digest(package: Path) -> str:
    """sha256 of a package's ``metadata.json`` (which itself records every file's sha256)."""
    return hashlib.sha256((package / PACKAGE_MARKER).read_bytes()).hexdigest()


def package_digests(repository: str | Path) -> dict[str, str]:
    """``{model name: metadata digest}`` of the served version of every model in ``repository``."""
    repo = ModelRepository(repository)
    out: dict[str, str] = {}
    for name in repo.names():
        entry = repo.entry(name)
        out[name] = metadata_digest(entry.versions[entry.latest])
    return out


def _reason(exc: BaseException) -> str:
    return f"{exc.code}: {exc.message}" if isinstance(exc, InferoxError) else f"{type(exc).__name__}: {exc}"


def reply_for(exc: InferoxError, request_id: str | None = None) -> HttpReply:
    """The V2 error reply of ``exc`` (the same body and status the REST transport sends)."""
    import json

    status, body, headers = error_response_parts(exc)
    out = [(k, v) for k, v in headers.items()] + [("content-type", "application/json")]
    if request_id:
        out.append(("x-request-id", request_id))
    return HttpReply(status, out, json.dumps(body).encode("utf-8"))


class _LoadedModel:
    """What the multiplexer caches per model; Ray Serve calls ``__del__`` when it evicts one
    (least recently used), which unloads the model from this replica's server."""

    def __init__(self, replica: InferoxReplica, name: str) -> None:
        self.replica = replica
        self.name = name
        self.closed = False

    def __del__(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.replica._evict(self.name)


class InferoxReplica:
    """A Ray Serve replica serving the models of a repository every node can read.

    ``digests`` (name → sha256 of ``metadata.json``, see :func:`package_digests`) are what the
    driver saw; a model missing here or differing from them makes the replica unhealthy.
    ``batching`` picks the batcher (:data:`BATCHING_MODES`). The class is a plain Python class:
    :func:`~inferox.engine.ray.build_app` wraps it in ``serve.deployment``.
    """

    def __init__(
        self,
        repository: str | Path,
        *,
        digests: Mapping[str, str] | None = None,
        config: ServerConfig | None = None,
        batching: str = "engine",
        verify_on_start: bool = True,
    ) -> None:
        if batching not in BATCHING_MODES:
            from inferox.core.errors import ConfigError

            raise ConfigError(f"batching must be one of {BATCHING_MODES}", field="batching", value=batching)
        self.batching = batching
        self.digests = dict(digests or {})
        self.config = config or ServerConfig(access_log=False)
        #: Why this replica must not serve (``None`` while healthy); :meth:`check_health` raises it.
        self.problem: InferoxError | None = None
        self.server: InferoxServer | None = None
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        try:
            self.repository = ModelRepository(repository)
        except InferoxError as exc:
            self.problem = PackageNotFoundError(f"model repository not readable on this node: {_reason(exc)}", path=str(repository))
            return
        self.server = InferoxServer(repository=self.repository, config=self.config, load_repository=False)
        if verify_on_start:
            for name in sorted(set(self.digests) | set(self.repository.names())):
                try:
                    self.verify(name)
                except InferoxError as exc:
                    self.problem = exc
                    log.error("replica unhealthy: %s", _reason(exc))
                    break

    # -- packages ----------------------------------------------------------------------------------
    def verify(self, name: str) -> Path:
        """The package path of ``name`` once its digest and every file's sha256 check out;
        :class:`PackageNotFoundError` / :class:`PackageIntegrityError` naming the path otherwise."""
        from inferox.mlpkg import load_package

        check_model_name(name)
        try:
            entry = self.repository.entry(name)
        except ModelNotFoundError as exc:
            if name in self.digests:
                raise PackageNotFoundError(f"package of model {name!r} is missing on this node", path=str(self.repository.root / name)) from exc
            raise
        path = entry.versions[entry.latest]
        expected = self.digests.get(name)
        if expected is not None and metadata_digest(path) != expected:
            raise PackageIntegrityError(
                f"package of model {name!r} differs from the one the deployment was built from (metadata.json digest)", path=str(path), field="sha256"
            )
        load_package(path, verify=True)
        return path

    # -- health -----------------------------------------------------------------------------------------
    def check_health(self) -> None:
        """Ray Serve's health check: raises the reason this replica must not serve."""
        if self.problem is not None:
            raise self.problem

    async def is_ready(self) -> bool:
        """Whether this replica can serve (for the ingress's ``/v2/health/ready``)."""
        return self.problem is None

    async def _start(self) -> InferoxServer:
        if self.problem is not None:
            raise self.problem
        assert self.server is not None
        if not self._started:
            self._loop = asyncio.get_running_loop()
            await self.server.startup()  # nothing configured to preload: marks startup done
            self._started = True
        return self.server

    # -- multiplexing -----------------------------------------------------------------------------------
    async def load(self, name: str) -> _LoadedModel:
        """Verify and load ``name`` into this replica's server (the multiplexed loader calls this)."""
        server = await self._start()
        try:
            await asyncio.to_thread(self.verify, name)
        except (PackageIntegrityError, PackageNotFoundError) as exc:
            # The package on this node is not the one we were deployed with: stop serving here.
            self.problem = exc
            raise
        await server.load_from_repository(name)
        return _LoadedModel(self, name)

    async def get_model(self, model_id: str) -> _LoadedModel:
        """The multiplexed loader (replica_class() wraps it in ``@serve.multiplexed``)."""
        return await self.load(model_id)

    def _evict(self, name: str) -> None:
        """Unload ``name`` (called from a worker thread by the multiplexer, or on garbage collection)."""
        server, loop = self.server, self._loop
        if server is None or loop is None or loop.is_closed() or name not in server.models:
            return
        fut = asyncio.run_coroutine_threadsafe(server.unload(name), loop)
        with contextlib.suppress(RuntimeError):
            if asyncio.get_running_loop() is loop:
                return  # on the loop itself: the unload runs once we yield; never block here
        with contextlib.suppress(Exception):
            fut.result(timeout=self.config.graceful_timeout_s + 5)

    # -- requests -------------------------------------------------------------------------------------
    async def handle(self, method: str, path: str, query: bytes, headers: Sequence[tuple[str, str]], body: bytes) -> HttpReply:
        """Answer one HTTP request for the multiplexed model named by the caller."""
        name = serve.get_multiplexed_model_id()
        try:
            await self.get_model(name)
        except InferoxError as exc:
            return reply_for(exc)
        return await self.dispatch(name, method, path, query, headers, body)

    async def dispatch(self, name: str, method: str, path: str, query: bytes, headers: Sequence[tuple[str, str]], body: bytes) -> HttpReply:
        """Run a request for loaded model ``name`` through the server's app (or ``@serve.batch``)."""
        server = await self._start()
        if self.batching == "serve" and method == "POST" and path.endswith("/infer"):
            return await self._infer_serve_batched(server, name, path, headers, body)
        return await call_asgi(server.app, method, path, query, headers, body)

    async def _infer_serve_batched(self, server: InferoxServer, name: str, path: str, headers: Sequence[tuple[str, str]], body: bytes) -> HttpReply:
        lower = {k.lower(): v for k, v in headers}
        request_id = lower.get("x-request-id")
        dp = server.dataplane
        try:
            req = dp.decode(body, lower.get(HEADER_LENGTH.lower()))
            version = path.split("/versions/")[1].split("/")[0] if "/versions/" in path else None
            served = dp.served(name, version)
            inputs = dp.build_inputs(served, req)
            selected = dp.select_outputs(served, req.outputs)
            result = await self._batched(dp.engine, name, inputs)
            if isinstance(result, InferoxError):
                raise result
            answer = InferResponse(
                model_name=served.name,
                model_version=served.version,
                id=req.id,
                outputs=[OutputTensor(o.name, result[o.name], o.binary_data) for o in selected],
                parameters={"backend": result.backend} if result.backend else {},
                binary_default=req.binary_data_output,
            )
            payload, extra = dp.encode(answer)
        except InferoxError as exc:
            return reply_for(exc, request_id)
        out = list(extra.items())
        if request_id or req.id:
            out.append(("x-request-id", str(req.id or request_id)))
        return HttpReply(200, out, payload)

    async def _batched(self, engine: Any, name: str, inputs: dict[str, Any]) -> Any:
        # One request at a time here; replica_class() overrides this with the @serve.batch
        # version, whose calls Ray Serve gathers into lists (it needs a running replica).
        return (await self.run_batch([engine], [name], [inputs]))[0]

    async def run_batch(self, engines: Sequence[Any], names: Sequence[str], inputs: Sequence[dict[str, Any]]) -> list[Any]:
        """What ``@serve.batch`` hands over: requests gathered by Ray Serve run as
        ``engine.infer_batch`` passes, one per model; each slot holds a result or the error of that item."""
        results: list[Any] = [None] * len(names)
        groups: dict[str, list[int]] = {}
        for i, n in enumerate(names):
            groups.setdefault(n, []).append(i)
        for n, idx in groups.items():
            engine = engines[idx[0]]
            try:
                outs = await asyncio.to_thread(engine.infer_batch, n, [inputs[i] for i in idx])
            except InferoxError as exc:
                # One bad item must not fail its neighbours: rerun each on its own to find it.
                if len(idx) == 1:
                    results[idx[0]] = exc
                    continue
                outs = []
                for i in idx:
                    try:
                        outs.append((await asyncio.to_thread(engine.infer_batch, n, [inputs[i]]))[0])
                    except InferoxError as item_exc:
                        outs.append(item_exc)
            for i, out in zip(idx, outs, strict=True):
                results[i] = out
        return results

    async def shutdown(self) -> None:
        """Shut down every engine of this replica (Ray Serve calls ``__del__`` on teardown)."""
        if self.server is not None and self._started:
            await self.server.shutdown()


async def call_asgi(app: Any, method: str, path: str, query: bytes, headers: Sequence[tuple[str, str]], body: bytes) -> HttpReply:
    """Call an ASGI app in-process with one HTTP request; the client never disconnects early."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("latin-1"),
        "query_string": query,
        "root_path": "",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 80),
    }
    sent = False
    forever = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await forever.wait()  # the server watches for a disconnect; the ingress handles real ones
        return {"type": "http.disconnect"}

    status = 500
    out_headers: list[tuple[str, str]] = []
    chunks: list[bytes] = []

    async def send(message: Mapping[str, Any]) -> None:
        nonlocal status, out_headers
        if message["type"] == "http.response.start":
            status = int(message["status"])
            out_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))

    await app(scope, receive, send)
    return HttpReply(status, out_headers, b"".join(chunks))
