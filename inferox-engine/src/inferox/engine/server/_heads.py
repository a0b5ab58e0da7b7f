"""The task-head APIs as data: request parsing and response bodies (no I/O, no engine).

Two families of wire formats over the same data-plane calls (:meth:`DataPlane.rerank`,
:meth:`DataPlane.classify`, :meth:`DataPlane.embed`):

- **Cohere / Jina / infinity** (``POST /v1/rerank``, ``POST /v1/classify``):

  - rerank: ``{"model", "query", "documents": [str], "top_n"?, "return_documents"?, "raw_scores"?}``
    → ``{"object": "rerank", "results": [{"index", "relevance_score", "document"?}], "model",
    "usage": {"prompt_tokens", "total_tokens"}}``, results sorted by score, best first, cut to
    ``top_n``; ``document`` (the text, as infinity returns it) only with ``return_documents``;
  - classify: ``{"model", "input": str | [str], "raw_scores"?}`` → ``{"object": "classify",
    "data": [[{"label", "score"}, …] per input, best first], "model", "usage"}``.

- **Hugging Face text-embeddings-inference** (TEI's router, ``router/src/http/types.rs``):

  - ``POST /embed``: ``{"inputs": str | [str], "normalize": true, "truncate": false}`` → ``[[float]]``;
  - ``POST /rerank``: ``{"query", "texts", "raw_scores": false, "return_text": false, "truncate"}``
    → ``[{"index", "score", "text"?}]`` best first;
  - ``POST /predict``: ``{"inputs", "raw_scores": false, "truncate"}`` where ``inputs`` is a text, a
    pair ``[a, b]``, or a batch ``[[a], [a, b], …]`` → ``[{"label", "score"}]`` (best first) for one
    input, a list of those for a batch;
  - ``GET /info``: the model and the router's limits;
  - errors: ``{"error": message, "error_type": …, "code": CODE}`` (TEI's two fields, and Inferox's code).

Requests may name the model (``model`` in the body, a TEI extension) — see ``_text_http``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from inferox.core.errors import InferoxError, InvalidInputError
from inferox.engine.server._openai import json_object
from inferox.engine.server._protocol import _dumps, _json_data

__all__ = [
    "ClassifyRequest",
    "RerankRequest",
    "TeiEmbedRequest",
    "TeiPredictRequest",
    "TeiRerankRequest",
    "classify_body",
    "parse_body",
    "parse_classify_request",
    "parse_rerank_request",
    "parse_tei_embed",
    "parse_tei_predict",
    "parse_tei_rerank",
    "rerank_body",
    "tei_embed_body",
    "tei_error_body",
    "tei_predict_body",
    "tei_rerank_body",
    "usage",
]

#: The most documents (rerank) or inputs (classify) one request may carry before the server's own
#: row limit; infinity and Cohere document 1,000 documents per request.
MAX_ITEMS = 2048


#: A request body as a JSON object (OpenAI's parser's, shared by every text API).
parse_body = json_object


def _unknown(data: Mapping[str, Any], fields: frozenset[str]) -> None:
    unknown = sorted(set(data) - fields)
    if unknown:
        name = str(unknown[0])[:80]
        raise InvalidInputError(f"unrecognized request field: {name}", name=name, expected=sorted(fields), actual=name)


def _flag(data: Mapping[str, Any], name: str, default: bool) -> bool:
    value = data.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidInputError(f"'{name}' must be true or false", name=name, expected="boolean", actual=type(value).__name__)
    return value


def _optional_flag(data: Mapping[str, Any], name: str) -> bool | None:
    return None if data.get(name) is None else _flag(data, name, False)


def _model(data: Mapping[str, Any], *, required: bool) -> str | None:
    model = data.get("model")
    if model is None and not required:
        return None
    if not isinstance(model, str) or not model:
        raise InvalidInputError("'model' must name a served model", name="model", expected="a non-empty string", actual=model)
    return model


def _texts(value: Any, name: str, *, single: bool = True) -> list[str]:
    """A non-empty list of strings (``single``: a lone string counts as a list of one)."""
    if single and isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise InvalidInputError(f"'{name}' must be a non-empty list of strings", name=name, expected="list[str]", actual=type(value).__name__ if not isinstance(value, list) else "[]")
    if len(value) > MAX_ITEMS:
        raise InvalidInputError(f"'{name}' has {len(value)} items; at most {MAX_ITEMS} are allowed per request", name=name, expected=f"at most {MAX_ITEMS} items", actual=len(value))
    for i, x in enumerate(value):
        if not isinstance(x, str):
            raise InvalidInputError(f"'{name}'[{i}] must be a string", name=name, expected="str", actual=type(x).__name__, index=i)
    return list(value)


def usage(tokens: int) -> dict[str, int]:
    return {"prompt_tokens": int(tokens), "total_tokens": int(tokens)}


def _score(x: float) -> Any:
    """A float for JSON; NaN / Infinity (not JSON) as the strings V2 uses."""
    return float(x) if np.isfinite(x) else _json_data(np.asarray([x]))[0]


def ranking(scores: np.ndarray, top_n: int | None = None) -> list[int]:
    """Indices of ``scores`` best first (ties keep the input order), at most ``top_n``."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]) if np.isfinite(scores[i]) else float("inf"), i))
    return order if top_n is None else order[:top_n]


# -- Cohere / Jina / infinity ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RerankRequest:
    model: str | None
    query: str
    documents: list[str]
    top_n: int | None = None
    return_documents: bool = False
    raw_scores: bool = False


_RERANK_FIELDS = frozenset({"model", "query", "documents", "top_n", "return_documents", "raw_scores", "max_chunks_per_doc", "rank_fields"})


def parse_rerank_request(body: bytes | str | Mapping[str, Any]) -> RerankRequest:
    """``POST /v1/rerank``'s body; :class:`InvalidInputError` naming the field at fault."""
    data = parse_body(body)
    _unknown(data, _RERANK_FIELDS)
    query = data.get("query")
    if not isinstance(query, str):
        raise InvalidInputError("'query' must be a string", name="query", expected="str", actual=type(query).__name__)
    documents = data.get("documents")
    if isinstance(documents, list):
        # Cohere and Jina also take documents as {"text": …} objects.
        documents = [d["text"] if isinstance(d, Mapping) and isinstance(d.get("text"), str) else d for d in documents]
    docs = _texts(documents, "documents", single=False)
    top_n = data.get("top_n")
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise InvalidInputError("'top_n' must be a positive integer", name="top_n", expected="a positive integer", actual=top_n)
    return RerankRequest(
        model=_model(data, required=False),
        query=query,
        documents=docs,
        top_n=top_n,
        return_documents=_flag(data, "return_documents", False),
        raw_scores=_flag(data, "raw_scores", False),
    )


def rerank_body(request: RerankRequest, *, model: str, scores: np.ndarray, tokens: int) -> bytes:
    """``POST /v1/rerank``'s answer: results best first, cut to ``top_n``."""
    results: list[dict[str, Any]] = []
    for i in ranking(scores, request.top_n):
        item: dict[str, Any] = {"index": i, "relevance_score": _score(scores[i])}
        if request.return_documents:
            item["document"] = request.documents[i]
        results.append(item)
    return _dumps({"object": "rerank", "results": results, "model": model, "usage": usage(tokens)})


@dataclass(frozen=True)
class ClassifyRequest:
    model: str | None
    inputs: list[str]
    raw_scores: bool = False


def parse_classify_request(body: bytes | str | Mapping[str, Any]) -> ClassifyRequest:
    """``POST /v1/classify``'s body (infinity's): ``model``, ``input`` (a text or a list), ``raw_scores``."""
    data = parse_body(body)
    _unknown(data, frozenset({"model", "input", "raw_scores"}))
    if "input" not in data:
        raise InvalidInputError("'input' is required", name="input")
    return ClassifyRequest(model=_model(data, required=False), inputs=_texts(data["input"], "input"), raw_scores=_flag(data, "raw_scores", False))


def _predictions(scores: np.ndarray, labels: Sequence[str]) -> list[dict[str, Any]]:
    return [{"label": labels[j], "score": _score(scores[j])} for j in ranking(scores)]


def classify_body(*, model: str, scores: np.ndarray, labels: Sequence[str], tokens: int) -> bytes:
    """``POST /v1/classify``'s answer: per input, every label with its score, best first."""
    data = [_predictions(row, labels) for row in scores]
    return _dumps({"object": "classify", "data": data, "model": model, "usage": usage(tokens)})


# -- TEI -------------------------------------------------------------------------------------------------
#: TEI's ``truncation_direction`` and ``prompt_name`` are accepted at their defaults only.
_TEI_COMMON = frozenset({"model", "truncate", "truncation_direction", "prompt_name"})


def _tei_common(data: Mapping[str, Any], fields: frozenset[str]) -> tuple[str | None, bool | None]:
    _unknown(data, fields | _TEI_COMMON)
    direction = data.get("truncation_direction")
    if direction is not None and (not isinstance(direction, str) or direction.lower() != "right"):
        raise InvalidInputError("only truncation_direction 'right' is supported", name="truncation_direction", expected="right", actual=direction)
    if data.get("prompt_name") is not None:
        raise InvalidInputError("prompts are not supported", name="prompt_name", expected=None, actual=data.get("prompt_name"))
    return _model(data, required=False), _optional_flag(data, "truncate")


@dataclass(frozen=True)
class TeiEmbedRequest:
    model: str | None
    inputs: list[str]
    normalize: bool = True
    truncate: bool | None = None
    dimensions: int | None = None


def parse_tei_embed(body: bytes | str | Mapping[str, Any]) -> TeiEmbedRequest:
    data = parse_body(body)
    model, truncate = _tei_common(data, frozenset({"inputs", "normalize", "dimensions"}))
    if "inputs" not in data:
        raise InvalidInputError("'inputs' is required", name="inputs")
    dims = data.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
        raise InvalidInputError("'dimensions' must be a positive integer", name="dimensions", expected="a positive integer", actual=dims)
    return TeiEmbedRequest(model=model, inputs=_texts(data["inputs"], "inputs"), normalize=_flag(data, "normalize", True), truncate=truncate, dimensions=dims)


@dataclass(frozen=True)
class TeiRerankRequest:
    model: str | None
    query: str
    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool | None = None


def parse_tei_rerank(body: bytes | str | Mapping[str, Any]) -> TeiRerankRequest:
    data = parse_body(body)
    model, truncate = _tei_common(data, frozenset({"query", "texts", "raw_scores", "return_text"}))
    query = data.get("query")
    if not isinstance(query, str):
        raise InvalidInputError("'query' must be a string", name="query", expected="str", actual=type(query).__name__)
    return TeiRerankRequest(
        model=model, query=query, texts=_texts(data.get("texts"), "texts", single=False),
        raw_scores=_flag(data, "raw_scores", False), return_text=_flag(data, "return_text", False), truncate=truncate,
    )


def tei_embed_body(embeddings: np.ndarray, *, normalize: bool) -> bytes:
    """``POST /embed``'s answer: one row per input, L2-normalised with ``normalize`` (TEI's default)."""
    rows = np.asarray(embeddings, dtype=np.float32)
    if normalize:
        norms = np.linalg.norm(rows.astype(np.float64), axis=1, keepdims=True)
        rows = (rows / np.maximum(norms, 1e-12)).astype(np.float32)
    if np.isfinite(rows).all():
        return _dumps(list(rows))  # float32 rows as they are: orjson writes each element's shortest form
    return _dumps([_json_data(row) for row in rows])


def tei_rerank_body(request: TeiRerankRequest, scores: np.ndarray) -> bytes:
    out: list[dict[str, Any]] = []
    for i in ranking(scores):
        item: dict[str, Any] = {"index": i, "score": _score(scores[i])}
        if request.return_text:
            item["text"] = request.texts[i]
        out.append(item)
    return _dumps(out)


@dataclass(frozen=True)
class TeiPredictRequest:
    model: str | None
    #: Each input: a text or a pair of texts.
    inputs: list[str | tuple[str, str]]
    #: Whether ``inputs`` was one input (the answer is then one list of predictions).
    single: bool
    raw_scores: bool = False
    truncate: bool | None = None


def _sequence(value: Any, index: int | None) -> str | tuple[str, str]:
    """TEI's sequence: ``[a]`` is a text, ``[a, b]`` a pair; anything else is refused."""
    if isinstance(value, list) and len(value) in (1, 2) and all(isinstance(x, str) for x in value):
        return value[0] if len(value) == 1 else (value[0], value[1])
    raise InvalidInputError(
        "each batch item must be [text] or [text, text_pair]", name="inputs", expected="[str] | [str, str]",
        actual=f"a list of {len(value)}" if isinstance(value, list) else type(value).__name__, index=index,
    )


def parse_tei_predict(body: bytes | str | Mapping[str, Any]) -> TeiPredictRequest:
    """TEI's ``inputs``: a string; ``[a]`` or ``[a, b]`` (one input, a text or a pair); a batch ``[[a], [a, b], …]``."""
    data = parse_body(body)
    model, truncate = _tei_common(data, frozenset({"inputs", "raw_scores"}))
    value = data.get("inputs")
    if isinstance(value, str):
        inputs: list[str | tuple[str, str]] = [value]
        single = True
    elif isinstance(value, list) and value and all(isinstance(x, str) for x in value):
        inputs, single = [_sequence(value, None)], True
    elif isinstance(value, list) and value and all(isinstance(x, list) for x in value):
        if len(value) > MAX_ITEMS:
            raise InvalidInputError(f"'inputs' has {len(value)} items; at most {MAX_ITEMS} are allowed per request", name="inputs", expected=f"at most {MAX_ITEMS} items", actual=len(value))
        inputs, single = [_sequence(x, i) for i, x in enumerate(value)], False
    else:
        raise InvalidInputError(
            "'inputs' must be a string, a pair of strings [a, b], or a batch [[a], [a, b], ...]", name="inputs",
            expected="str | [str, str] | list[list[str]]", actual=type(value).__name__ if not isinstance(value, list) else "a mixed or empty list",
        )
    return TeiPredictRequest(model=model, inputs=inputs, single=single, raw_scores=_flag(data, "raw_scores", False), truncate=truncate)


def tei_predict_body(request: TeiPredictRequest, scores: np.ndarray, labels: Sequence[str]) -> bytes:
    rows = [_predictions(row, labels) for row in scores]
    return _dumps(rows[0] if request.single else rows)


def _tei_error_type(exc: InferoxError) -> str:
    # TEI's error_type: what its clients switch on besides the status.
    if exc.code in ("QUEUE_FULL", "TOO_MANY_CONNECTIONS", "OUT_OF_MEMORY"):
        return "overloaded"
    if exc.code in ("UNAVAILABLE",):
        return "unhealthy"
    if exc.http_status >= 500:
        return "backend"
    return "validation"


def tei_error_body(exc: InferoxError) -> dict[str, Any]:
    """``{"error", "error_type", "code"}``: TEI's error body, with Inferox's stable code."""
    return {"error": exc.message, "error_type": _tei_error_type(exc), "code": exc.code}
