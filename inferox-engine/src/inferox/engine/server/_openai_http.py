"""OpenAI-compatible ``POST /v1/embeddings`` and ``GET /v1/models``: a transport of the data plane.

Served for every model with a text input (a text encoder) and a ``sentence_embedding`` output of a
fixed size. The route parses OpenAI's request (``_openai``), calls :meth:`DataPlane.embed` — the
same text rules, limits, splitting, deadline, access log, request id and disconnect watch as every
other protocol — and writes OpenAI's response. Token-id input is the model's own vocabulary
(special tokens as given). ``usage`` counts the tokens the model really processed (the attention
mask's ones, special tokens included).

Auth follows the V2 inference routes: with ``protect_all`` a request needs ``Authorization: Bearer
<token>`` (the ``openai`` client's ``api_key``). Errors use OpenAI's shape (``_openai``) with the
status of the one table.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from inferox.core.errors import InferoxError, ModelNotFoundError
from inferox.engine.server._dataplane import EMBEDDING_OUTPUT
from inferox.engine.server._errors import error_headers, error_status
from inferox.engine.server._openai import check_dimensions, encode_embeddings_response, error_body, models_list, parse_embeddings_request

__all__ = ["EMBEDDING_OUTPUT", "OpenAIEmbeddings"]

PROTOCOL = "openai"


def openai_error(exc: InferoxError, ctx: Any = None) -> JSONResponse:
    """OpenAI's error body for ``exc`` with the status of the one table (``Retry-After`` on overload)."""
    status = error_status(exc).http
    name = exc.details.get("name")
    headers = error_headers(exc, ctx)
    return JSONResponse(error_body(status, exc.code, exc.message, param=name if isinstance(name, str) else None), status_code=status, headers=headers)


class OpenAIEmbeddings:
    """The routes of the OpenAI embeddings API for one REST server (``server.dataplane``, ``server.config``)."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.started = int(time.time())

    @property
    def dp(self) -> Any:
        return self.server.dataplane

    def routes(self) -> list[Route]:
        return [Route("/v1/embeddings", self.embeddings, methods=["POST"]), Route("/v1/models", self.models, methods=["GET"])]

    def embedding_size(self, name: str, version: str | None = None) -> int | None:
        """The embedding size of a served model the API serves, ``None`` for one it does not."""
        size: int | None = self.dp.embedding_size(name, version)
        return size

    def _eligible(self) -> list[str]:
        names: list[str] = []
        for name in self.dp.text_models(EMBEDDING_OUTPUT):
            try:
                if self.embedding_size(name) is not None:
                    names.append(name)
            except InferoxError:  # loading or unloading right now
                continue
        return names

    async def models(self, request: Request) -> Response:
        from inferox.engine.server.app import request_context

        ctx = request_context(request, protocol=PROTOCOL)
        try:
            with self.dp.call(ctx, "models"):
                return JSONResponse(models_list([(name, self.started) for name in self._eligible()]))
        except InferoxError as exc:
            return openai_error(exc, ctx)

    async def embeddings(self, request: Request) -> Response:
        from inferox.engine.server.app import disconnect_watch, read_body, request_context

        dp = self.dp
        ctx = request_context(request, protocol=PROTOCOL)
        try:
            with dp.call(ctx, "embed", inference=True) as call:
                body = await read_body(request, self.server.config.max_body_bytes)
                req = parse_embeddings_request(body)
                del body
                call.model = req.model
                size = self.embedding_size(req.model)
                if size is None:
                    if req.model in dp.text_models() and dp.task(req.model) is not None:
                        dp.require_task(req.model, "embed", op="embed")  # a classifier or reranker: 400 naming its task
                    raise ModelNotFoundError(req.model[:80], available=self._eligible())
                check_dimensions(req, size)
                ctx.disconnected = disconnect_watch(request)
                inputs: Any = req.texts if req.texts is not None else req.token_ids
                result = await dp.embed(req.model, inputs, ctx=ctx)
                with call.traced("encode"):
                    payload = encode_embeddings_response(model=req.model, embeddings=result.embeddings, encoding_format=req.encoding_format, prompt_tokens=result.tokens)
        except InferoxError as exc:
            return openai_error(exc, ctx)
        return Response(payload, media_type="application/json", headers={"x-request-id": ctx.response_id})
