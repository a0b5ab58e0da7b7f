"""OpenAI-compatible ``POST /v1/embeddings`` and ``GET /v1/models``: a thin transport on the data plane.

Served for every model with a text input (a text encoder) and a ``sentence_embedding`` output of a
fixed size. Text goes through the model's own text encoder — the one the V2 ``text`` input uses,
under the same length rule (truncation to the package's ``max_seq_length``, or an error naming the
limit when the server turns truncation off) — so a sentence gets the same embedding on every
protocol. Token-id input is the model's own vocabulary (special tokens as given). ``usage`` counts
the tokens the model really processed (the attention mask's ones, special tokens included).

Auth follows the V2 inference routes: with ``protect_all`` a request needs ``Authorization: Bearer
<token>`` (the ``openai`` client's ``api_key``). Errors use OpenAI's shape (``_openai``).
"""

from __future__ import annotations

import math
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from inferox.core.errors import InferoxError, ModelNotFoundError, QueueFullError
from inferox.engine.server._auth import bearer_ok
from inferox.engine.server._openai import (
    check_dimensions,
    encode_embeddings_response,
    error_body,
    inferox_error_body,
    models_list,
    parse_embeddings_request,
)
from inferox.engine.server._protocol import InferRequest, InputTensor, RequestedOutput

__all__ = ["EMBEDDING_OUTPUT", "OpenAIEmbeddings"]

#: The output the embeddings API returns (sentence-transformers' name, which packages keep).
EMBEDDING_OUTPUT = "sentence_embedding"


def _error(status: int, code: str, message: str, *, param: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, code, message, param=param), status_code=status, headers=headers)


class OpenAIEmbeddings:
    """The routes of the OpenAI embeddings API for one REST server (``server.dataplane``,
    ``server.config``, ``server._read_body``)."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.started = int(time.time())

    @property
    def dp(self) -> Any:
        return self.server.dataplane

    def routes(self) -> list[Route]:
        return [Route("/v1/embeddings", self.embeddings, methods=["POST"]), Route("/v1/models", self.models, methods=["GET"])]

    def _denied(self, request: Request) -> JSONResponse | None:
        config = self.server.config
        if config.token and config.protect_all and not bearer_ok(request.headers.get("authorization"), config.token):
            return _error(401, "UNAUTHORIZED", "missing or invalid bearer token", headers={"www-authenticate": "Bearer"})
        return None

    def embedding_size(self, name: str, version: str | None = None) -> int | None:
        """The embedding size of a served model the API serves, ``None`` for one it does not
        (no text encoder, or no fixed-size ``sentence_embedding`` output)."""
        served = self.dp.served(name, version)
        if served.text_encoder is None:
            return None
        # get_model, not model_info: the latter snapshots live statistics, too dear per request.
        model = self.dp.engine.get_model(name, version=served.version or None)
        for spec in model.output_specs:
            if spec.name == EMBEDDING_OUTPUT and len(spec.shape) == 2 and isinstance(spec.shape[-1], int):
                return int(spec.shape[-1])
        return None

    def _eligible(self) -> list[str]:
        names = []
        for name in sorted(self.dp.models):
            try:
                if self.embedding_size(name) is not None:
                    names.append(name)
            except InferoxError:  # loading or unloading right now
                continue
        return names

    async def models(self, request: Request) -> Response:
        denied = self._denied(request)
        if denied:
            return denied
        return JSONResponse(models_list([(name, self.started) for name in self._eligible()]))

    async def embeddings(self, request: Request) -> Response:
        started = time.perf_counter()
        denied = self._denied(request)
        if denied:
            return denied
        name = None
        try:
            from inferox.engine.server.app import _BodyTooLarge  # app imports this module

            try:
                body = await self.server._read_body(request)
            except _BodyTooLarge:
                limit = self.server.config.max_body_bytes
                return _error(413, "PAYLOAD_TOO_LARGE", f"request body exceeds {limit} bytes", param="input")
            req = parse_embeddings_request(body)
            name = req.model
            size = self.embedding_size(name)
            if size is None:
                raise ModelNotFoundError(name, available=self._eligible())
            check_dimensions(req, size)
            served = self.dp.served(name)
            encoder = served.text_encoder
            encode = (lambda: encoder.encode(req.texts)) if req.texts is not None else (lambda: encoder.encode_ids(req.token_ids))
            # Text bytes decide where it is tokenised (the V2 rule); ids only need padding (4 bytes each, say).
            nbytes = sum(len(t.encode("utf-8")) for t in req.texts) if req.texts is not None else 4 * sum(len(ids) for ids in req.token_ids or ())
            tensors = await self.dp.tokenise(encode, nbytes=nbytes)
            spec_names = {s.name for s in self.dp.engine.get_model(name, version=served.version or None).input_specs}
            v2 = InferRequest(
                id=None,
                inputs=[InputTensor(name=k, datatype="INT64", shape=tuple(v.shape), data=v) for k, v in tensors.items() if k in spec_names],
                outputs=[RequestedOutput(EMBEDDING_OUTPUT)],
            )
            _, result = await self.dp.infer(name, v2)
            payload = encode_embeddings_response(
                model=name, embeddings=result[EMBEDDING_OUTPUT], encoding_format=req.encoding_format, prompt_tokens=int(tensors["attention_mask"].sum())
            )
        except InferoxError as exc:
            if name is not None:
                self.dp.record(name, started=started, code=exc.code)
            status, out = inferox_error_body(exc)
            headers = {"retry-after": str(max(1, math.ceil(exc.retry_after)))} if isinstance(exc, QueueFullError) else None
            return JSONResponse(out, status_code=status, headers=headers)
        self.dp.record(name, started=started, result=result)
        return Response(payload, media_type="application/json")

