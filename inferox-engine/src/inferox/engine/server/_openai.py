"""OpenAI's embeddings API, as data: request parsing, response and error bodies (no I/O, no engine).

What ``POST /v1/embeddings`` and ``GET /v1/models`` exchange, following OpenAI's API reference:

- request: ``input`` (a string, a list of strings, a list of token ids, or a list of such lists),
  ``model``, ``encoding_format`` (``"float"``, the default, or ``"base64"``: little-endian float32
  bytes, which the official Python client asks for by default), ``dimensions`` and ``user``;
- response: ``{"object": "list", "data": [{"object": "embedding", "index": i, "embedding": ...}],
  "model": ..., "usage": {"prompt_tokens": n, "total_tokens": n}}``;
- errors: ``{"error": {"message", "type", "param", "code"}}`` with the HTTP status of the Inferox
  error class; ``code`` is Inferox's stable code, the same one V2 REST and gRPC report.

The transport (``server/app.py``) reads the body, calls the data plane and writes what this module
builds, so the shapes are tested here on their own.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from inferox.core.errors import InferoxError, InvalidInputError
from inferox.engine.server._protocol import _dumps, _json_data, _loads

__all__ = [
    "MAX_INPUTS",
    "EmbeddingsRequest",
    "check_dimensions",
    "encode_embeddings_response",
    "error_body",
    "inferox_error_body",
    "json_object",
    "models_list",
    "parse_embeddings_request",
]

#: OpenAI's own bound on the items of one request; more is refused naming ``input``.
MAX_INPUTS = 2048
_FIELDS = frozenset({"input", "model", "encoding_format", "dimensions", "user"})
EncodingFormat = Literal["float", "base64"]


@dataclass(frozen=True)
class EmbeddingsRequest:
    """A decoded embeddings request: exactly one of ``texts`` / ``token_ids`` is set."""

    model: str
    texts: list[str] | None = None
    token_ids: list[list[int]] | None = None
    encoding_format: EncodingFormat = "float"
    dimensions: int | None = None
    user: str | None = None

    def __len__(self) -> int:
        return len(self.texts if self.texts is not None else self.token_ids or ())


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _input(value: Any) -> tuple[list[str] | None, list[list[int]] | None]:
    """``input`` as texts or as token-id lists (OpenAI's four accepted forms)."""
    if isinstance(value, str):
        return [value], None
    if not isinstance(value, list) or not value:
        raise InvalidInputError(
            "'input' must be a string, a non-empty list of strings, a list of token ids or a list of token-id lists",
            name="input", expected="str | list[str] | list[int] | list[list[int]]", actual=type(value).__name__ if not isinstance(value, list) else "[]",
        )
    if len(value) > MAX_INPUTS:
        raise InvalidInputError(f"'input' has {len(value)} items; at most {MAX_INPUTS} are allowed per request", name="input", expected=f"at most {MAX_INPUTS} items", actual=len(value))
    if all(isinstance(x, str) for x in value):
        return list(value), None
    if all(_is_int(x) for x in value):
        return None, [list(value)]
    if all(isinstance(x, list) for x in value):
        for i, seq in enumerate(value):
            if not seq or not all(_is_int(t) for t in seq):
                raise InvalidInputError(f"'input'[{i}] must be a non-empty list of token ids (integers)", name="input", expected="list[int]", actual=seq if not seq else "non-integer items", index=i)
        return None, [list(seq) for seq in value]
    kinds = sorted({type(x).__name__ for x in value})
    raise InvalidInputError("'input' mixes item types; give all strings, all token ids, or all token-id lists", name="input", expected="one kind of item", actual=kinds)


def json_object(body: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    """A request body as a JSON object (the text APIs' bodies), or :class:`InvalidInputError` naming ``body``."""
    if isinstance(body, Mapping):
        data: Any = body
    else:
        try:
            data = _loads(body.encode("utf-8") if isinstance(body, str) else body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidInputError(f"request body is not valid JSON: {exc}", name="body") from exc
        except RecursionError:
            raise InvalidInputError("request body is not valid JSON: nested too deeply", name="body") from None
    if not isinstance(data, Mapping):
        raise InvalidInputError("request body must be a JSON object", name="body", expected="object", actual=type(data).__name__)
    return data


def parse_embeddings_request(body: bytes | str | Mapping[str, Any]) -> EmbeddingsRequest:
    """Decode and check a request body; :class:`InvalidInputError` naming the field at fault
    (``name`` becomes the error body's ``param``). Unknown fields are refused, as OpenAI does."""
    data = json_object(body)
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise InvalidInputError(f"unrecognized request argument supplied: {unknown[0][:80]}", name=unknown[0][:80], expected=sorted(_FIELDS), actual=unknown[0][:80])
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidInputError("'model' must name a served model", name="model", expected="a non-empty string", actual=model)
    if "input" not in data:
        raise InvalidInputError("'input' is required", name="input")
    texts, ids = _input(data["input"])
    fmt = data.get("encoding_format")
    if fmt is None:
        fmt = "float"
    if fmt not in ("float", "base64"):
        raise InvalidInputError("'encoding_format' must be 'float' or 'base64'", name="encoding_format", expected=["float", "base64"], actual=fmt)
    dims = data.get("dimensions")
    if dims is not None and (not _is_int(dims) or dims < 1):
        raise InvalidInputError("'dimensions' must be a positive integer", name="dimensions", expected="a positive integer", actual=dims)
    user = data.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidInputError("'user' must be a string", name="user", expected="string", actual=type(user).__name__)
    return EmbeddingsRequest(model=model, texts=texts, token_ids=ids, encoding_format="base64" if fmt == "base64" else "float", dimensions=dims, user=user)


def check_dimensions(request: EmbeddingsRequest, size: int) -> None:
    """``dimensions`` is accepted only when it is the model's own size (nothing is cut or projected)."""
    if request.dimensions is not None and request.dimensions != size:
        raise InvalidInputError(
            f"model {request.model!r} makes {size}-dimensional embeddings; 'dimensions' may only be {size} (or left out)",
            name="dimensions", expected=size, actual=request.dimensions,
        )


def encode_embeddings_response(*, model: str, embeddings: np.ndarray, encoding_format: EncodingFormat, prompt_tokens: int) -> bytes:
    """The response body for ``embeddings`` (one row per input, in order)."""
    rows = np.asarray(embeddings, dtype=np.float32)
    if rows.ndim != 2:
        raise ValueError(f"embeddings must be (n, d), got shape {rows.shape}")
    if encoding_format == "base64":
        little = rows.astype("<f4", copy=False)
        data = [{"object": "embedding", "index": i, "embedding": base64.b64encode(little[i].tobytes()).decode("ascii")} for i in range(len(little))]
    elif np.isfinite(rows).all():
        # float32 rows as they are: orjson writes each element's shortest round-trip form.
        data = [{"object": "embedding", "index": i, "embedding": rows[i]} for i in range(len(rows))]
    else:
        # Bare NaN / Infinity are not JSON (strict parsers refuse the whole body): the strings V2 uses.
        data = [{"object": "embedding", "index": i, "embedding": _json_data(rows[i])} for i in range(len(rows))]
    body = {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": int(prompt_tokens), "total_tokens": int(prompt_tokens)}}
    return _dumps(body)


def _error_type(status: int) -> str:
    # OpenAI reports client errors (bad field, unknown model, bad key) as "invalid_request_error"
    # and its own failures as "server_error"; clients switch on the HTTP status, which is exact.
    if status >= 500:
        return "server_error"
    if status == 429:
        return "rate_limit_error"
    return "invalid_request_error"


def error_body(status: int, code: str, message: str, *, param: str | None = None) -> dict[str, Any]:
    """``{"error": {...}}`` in OpenAI's shape for an HTTP status and an Inferox code."""
    return {"error": {"message": message, "type": _error_type(status), "param": param, "code": code}}


def inferox_error_body(exc: InferoxError) -> tuple[int, dict[str, Any]]:
    """The status and OpenAI-shaped body of an Inferox error (``param``: the field it names)."""
    name = exc.details.get("name")
    return exc.http_status, error_body(exc.http_status, exc.code, exc.message, param=name if isinstance(name, str) else None)


def models_list(models: Sequence[tuple[str, int]]) -> dict[str, Any]:
    """``GET /v1/models``: ``(name, created unix time)`` of every model the embeddings API serves."""
    return {"object": "list", "data": [{"id": name, "object": "model", "created": int(created), "owned_by": "inferox"} for name, created in models]}
