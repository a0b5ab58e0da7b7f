"""The text APIs beside V2, as HTTP routes: a transport of the data plane (Starlette).

- ``POST /v1/rerank`` and ``POST /v1/classify`` (Cohere / Jina / infinity shapes; errors in OpenAI's
  shape, protocol label ``openai``, like ``/v1/embeddings``);
- TEI's routes ``POST /embed``, ``POST /rerank``, ``POST /predict``, ``GET /info``, ``GET /health``
  and ``POST /`` (TEI's route by model type), protocol label ``tei``, errors in TEI's shape.

Each handler only reads the request (``_heads`` parses it), calls the data plane
(:meth:`~inferox.engine.server.DataPlane.rerank`, ``classify``, ``embed`` — admission, limits,
passes, token counts, access log, metrics) and writes the answer. :func:`text_routes` lists every
route of the text APIs (OpenAI's included) in one place, for any ASGI app that serves a data plane
(the REST server, a Ray ingress): ``server`` only needs ``.dataplane`` and ``.config``.

**Which model.** ``/v1/rerank`` and ``/v1/classify`` take ``model`` in the body; the TEI routes,
whose requests name no model, take it from ``model`` in the body or ``?model=`` in the URL. Without
one, a request goes to *the* served model of the route's task (``embed`` for ``/embed``, ``rerank``
for ``/rerank``, ``classify`` for ``/predict``); when several models of that task are served the
request is refused (400 naming ``model`` and the candidates), and a model of another task is a 400
naming its task.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from inferox.core.errors import InferoxError, InvalidInputError
from inferox.engine.server._dataplane import CLASSIFY, EMBED, EMBEDDING_OUTPUT, RERANK, TOKENISE_THREADS
from inferox.engine.server._errors import error_headers, error_status
from inferox.engine.server._heads import (
    classify_body,
    parse_classify_request,
    parse_rerank_request,
    parse_tei_embed,
    parse_tei_predict,
    parse_tei_rerank,
    rerank_body,
    tei_embed_body,
    tei_error_body,
    tei_predict_body,
    tei_rerank_body,
)
from inferox.engine.server._openai_http import OpenAIEmbeddings, openai_error

__all__ = ["HeadRoutes", "TeiRoutes", "text_routes"]

TEI = "tei"
OPENAI = "openai"


def tei_error(exc: InferoxError, ctx: Any = None) -> JSONResponse:
    """TEI's error body with the status of the one table (``Retry-After`` on overload)."""
    return JSONResponse(tei_error_body(exc), status_code=error_status(exc).http, headers=error_headers(exc, ctx))


class _Routes:
    def __init__(self, server: Any) -> None:
        self.server = server

    @property
    def dp(self) -> Any:
        return self.server.dataplane

    async def _body(self, request: Request) -> bytes:
        from inferox.engine.server.app import read_body

        return await read_body(request, self.server.config.max_body_bytes)

    async def _answer(
        self, request: Request, op: str, protocol: str, work: Callable[[Any, Any], Awaitable[bytes]], on_error: Callable[[InferoxError, Any], Response]
    ) -> Response:
        """One inference request of a text API: its record opened (``op``, ``protocol``), ``work(ctx,
        call)`` — which reads the body, chooses the model and calls the data plane — answered as
        JSON, or its typed error in the API's shape."""
        from inferox.engine.server.app import disconnect_watch, request_context

        ctx = request_context(request, protocol=protocol)
        ctx.disconnected = disconnect_watch(request)
        try:
            with self.dp.call(ctx, op, inference=True) as call:
                payload = await work(ctx, call)
        except InferoxError as exc:
            return on_error(exc, ctx)
        return Response(payload, media_type="application/json", headers={"x-request-id": ctx.response_id})


class HeadRoutes(_Routes):
    """``POST /v1/rerank`` and ``POST /v1/classify``."""

    def routes(self) -> list[Route]:
        return [Route("/v1/rerank", self.rerank, methods=["POST"]), Route("/v1/classify", self.classify, methods=["POST"])]

    async def rerank(self, request: Request) -> Response:
        async def work(ctx: Any, call: Any) -> bytes:
            req = parse_rerank_request(await self._body(request))
            call.model = name = self.dp.choose_model(RERANK, req.model, op="rerank")
            r = await self.dp.rerank(name, req.query, req.documents, raw_scores=req.raw_scores, ctx=ctx)
            return rerank_body(req, model=name, scores=r.scores, tokens=r.tokens)

        return await self._answer(request, "rerank", OPENAI, work, openai_error)

    async def classify(self, request: Request) -> Response:
        async def work(ctx: Any, call: Any) -> bytes:
            req = parse_classify_request(await self._body(request))
            call.model = name = self.dp.choose_model(CLASSIFY, req.model, op="classify")
            r = await self.dp.classify(name, req.inputs, raw_scores=req.raw_scores, ctx=ctx)
            return classify_body(model=name, scores=r.scores, labels=r.labels, tokens=r.tokens)

        return await self._answer(request, "classify", OPENAI, work, openai_error)


class TeiRoutes(_Routes):
    """Hugging Face text-embeddings-inference's routes (see ``_heads`` for the shapes)."""

    def routes(self) -> list[Route]:
        return [
            Route("/embed", self.embed, methods=["POST"]),
            Route("/rerank", self.rerank, methods=["POST"]),
            Route("/predict", self.predict, methods=["POST"]),
            Route("/info", self.info, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/", self.root, methods=["POST"]),
        ]

    async def health(self, request: Request) -> Response:
        """TEI's ``GET /health``: 200 once the server is ready (``/v2/health/ready``), else 503."""
        from inferox.core.errors import ServiceUnavailableError
        from inferox.engine.server.app import request_context

        ctx = request_context(request, protocol=TEI)
        try:
            if not self.dp.readiness(ctx=ctx):
                raise ServiceUnavailableError("the server is not ready")
        except InferoxError as exc:
            body = tei_error_body(exc)
            body["error_type"] = "unhealthy"
            return JSONResponse(body, status_code=503, headers={"x-request-id": ctx.response_id})
        return Response(b"", headers={"x-request-id": ctx.response_id})

    @staticmethod
    def _asked(request: Request, in_body: str | None) -> str | None:
        return in_body if in_body is not None else request.query_params.get("model") or None

    async def embed(self, request: Request, body: bytes | None = None) -> Response:
        async def work(ctx: Any, call: Any) -> bytes:
            req = parse_tei_embed(body if body is not None else await self._body(request))
            call.model = name = self.dp.choose_model(EMBED, self._asked(request, req.model), op="embed")
            size = self.dp.embedding_size(name)
            if req.dimensions is not None and req.dimensions != size:
                raise InvalidInputError(f"model {name!r} makes {size}-dimensional embeddings; 'dimensions' may only be {size}", name="dimensions", expected=size, actual=req.dimensions)
            r = await self.dp.embed(name, req.inputs, ctx=ctx, truncate=req.truncate)
            return tei_embed_body(r.embeddings, normalize=req.normalize)

        return await self._answer(request, "embed", TEI, work, tei_error)

    async def rerank(self, request: Request, body: bytes | None = None) -> Response:
        async def work(ctx: Any, call: Any) -> bytes:
            req = parse_tei_rerank(body if body is not None else await self._body(request))
            call.model = name = self.dp.choose_model(RERANK, self._asked(request, req.model), op="rerank")
            r = await self.dp.rerank(name, req.query, req.texts, raw_scores=req.raw_scores, ctx=ctx, truncate=req.truncate)
            return tei_rerank_body(req, r.scores)

        return await self._answer(request, "rerank", TEI, work, tei_error)

    async def predict(self, request: Request, body: bytes | None = None) -> Response:
        async def work(ctx: Any, call: Any) -> bytes:
            req = parse_tei_predict(body if body is not None else await self._body(request))
            call.model = name = self.dp.choose_model(CLASSIFY, self._asked(request, req.model), op="predict")
            r = await self.dp.classify(name, req.inputs, raw_scores=req.raw_scores, ctx=ctx, truncate=req.truncate)
            return tei_predict_body(req, r.scores, r.labels)

        return await self._answer(request, "predict", TEI, work, tei_error)

    def _the_model(self, request: Request, op: str) -> str:
        """The model of a route that serves any task (``/info``, ``POST /``): named, or the one served."""
        dp = self.dp
        asked = request.query_params.get("model") or None
        if asked is not None:
            dp.served(asked)
            return asked
        names: list[str] = dp.text_models()
        if len(names) == 1:
            return names[0]
        if not names:
            raise InvalidInputError(f"no text model is served; {op} describes one", name="model", expected="a served text model", actual=None)
        raise InvalidInputError(f"{len(names)} text models are served ({', '.join(names)}); name one with ?model=", name="model", expected=names, actual=None)

    async def root(self, request: Request) -> Response:
        """TEI's ``POST /``: the route of the model's type (``/embed``, ``/rerank`` or ``/predict``)."""
        from inferox.engine.server._heads import parse_body
        from inferox.engine.server.app import request_context

        dp = self.dp
        ctx = request_context(request, protocol=TEI)
        try:
            with dp.call(ctx, "route"):
                body = await self._body(request)
                asked = parse_body(body).get("model")
                task = dp.task(asked if isinstance(asked, str) and asked else self._the_model(request, "POST /"))
        except InferoxError as exc:
            return tei_error(exc, ctx)
        handler = {RERANK: self.rerank, CLASSIFY: self.predict}.get(task or "", self.embed)
        return await handler(request, body)

    async def info(self, request: Request) -> Response:
        from inferox.engine.server.app import request_context

        dp = self.dp
        ctx = request_context(request, protocol=TEI)
        try:
            with dp.call(ctx, "info") as call:
                name = self._the_model(request, "GET /info")
                call.model = name
                payload = tei_info(dp, name)
        except InferoxError as exc:
            return tei_error(exc, ctx)
        return JSONResponse(payload, headers={"x-request-id": ctx.response_id})


def tei_info(dp: Any, name: str) -> dict[str, Any]:
    """TEI's ``GET /info`` for served model ``name``: the model, its type, the router's limits."""
    from inferox.engine.server._dataplane import _server_version

    served = dp.served(name)
    model = dp.engine.get_model(name, version=served.version or None)
    task = dp.task(name)
    meta = model.metadata
    info = meta.extra.get("model_info") if isinstance(meta.extra.get("model_info"), dict) else {}
    head = served.task or {}
    labels = list(head.get("labels") or [])
    if task == EMBED:
        pre = meta.extra.get("preprocessing")
        pooling = pre.get("pooling") if isinstance(pre, dict) else None
        if isinstance(pooling, (list, tuple)):
            pooling = "+".join(str(m) for m in pooling)  # several modes, concatenated
        model_type: dict[str, Any] = {"embedding": {"pooling": str(pooling or "mean")}}
    else:
        if not labels:
            labels = ["LABEL_0"] if task == RERANK else []
        kind = "reranker" if task == RERANK else "classifier"
        model_type = {kind: {"id2label": {str(i): label for i, label in enumerate(labels)}, "label2id": {label: i for i, label in enumerate(labels)}}}
    dtypes = {s.dtype.value for s in model.output_specs if s.name in (EMBEDDING_OUTPUT, "logits", "score")}
    dtype = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}.get(next(iter(dtypes), "f32"), "float32")
    encoder = served.text_encoder
    cfg = dp.config
    engine_cfg = dp.engine.config
    return {
        "model_id": str(meta.extra.get("source_repo_id") or meta.name or name),
        "model_sha": meta.extra.get("revision"),
        "model_dtype": dtype,
        "served_model_name": name,
        "model_type": model_type,
        "max_concurrent_requests": int(engine_cfg.max_queue_size) if getattr(engine_cfg, "max_queue_size", None) else 0,
        "max_input_length": int(getattr(encoder, "max_length", 0) or 0),
        "max_batch_tokens": int(cfg.max_request_tokens),
        "max_batch_requests": int(engine_cfg.max_batch_size),
        "max_client_batch_size": int(cfg.max_request_rows),
        "auto_truncate": bool(getattr(encoder, "truncate", True)),
        "tokenization_workers": TOKENISE_THREADS,
        "version": _server_version(),
        "sha": None,
        "docker_label": None,
        "inferox": {"task": task, "architecture": meta.architecture, "model_type": info.get("model_type"), "backend": model.backend_name},
    }


def text_routes(server: Any) -> list[Route]:
    """Every route of the text APIs beside V2: OpenAI's embeddings, rerank/classify, TEI's."""
    return [*OpenAIEmbeddings(server).routes(), *HeadRoutes(server).routes(), *TeiRoutes(server).routes()]
