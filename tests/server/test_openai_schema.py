"""OpenAI embeddings request/response shapes (server/_openai.py), checked against the openai client's own types."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from inferox.core.errors import InvalidInputError, ModelNotFoundError, QueueFullError, ServiceUnavailableError
from inferox.engine.server._openai import (
    MAX_INPUTS,
    EmbeddingsRequest,
    check_dimensions,
    encode_embeddings_response,
    error_body,
    inferox_error_body,
    models_list,
    parse_embeddings_request,
)


@pytest.mark.parametrize(
    ("given", "texts", "ids"),
    [
        ("one sentence", ["one sentence"], None),
        ("", [""], None),
        (["a", "b c"], ["a", "b c"], None),
        ([101, 7592, 102], None, [[101, 7592, 102]]),
        ([[101, 102], [101, 7592, 2088, 102]], None, [[101, 102], [101, 7592, 2088, 102]]),
    ],
)
def test_the_four_input_forms(given: Any, texts: list[str] | None, ids: list[list[int]] | None) -> None:
    req = parse_embeddings_request(json.dumps({"input": given, "model": "minilm"}).encode())
    assert (req.model, req.texts, req.token_ids, req.encoding_format, req.dimensions, req.user) == ("minilm", texts, ids, "float", None, None)
    assert len(req) == len(texts or ids or ())


def test_optional_fields_and_a_mapping_body() -> None:
    req = parse_embeddings_request({"input": ["x"], "model": "m", "encoding_format": "base64", "dimensions": 384, "user": "u-1"})
    assert req == EmbeddingsRequest(model="m", texts=["x"], encoding_format="base64", dimensions=384, user="u-1")
    # The openai client sends explicit nulls for fields the caller left out.
    assert parse_embeddings_request(b'{"input": "x", "model": "m", "encoding_format": null, "dimensions": null, "user": null}').encoding_format == "float"


@pytest.mark.parametrize(
    ("body", "param", "expected", "actual"),
    [
        (b"{not json", "body", None, None),
        (b"[" * 100_000, "body", None, None),
        (b"[1, 2]", "body", "object", "list"),
        (b'{"input": "x"}', "model", "a non-empty string", None),
        (b'{"input": "x", "model": 3}', "model", "a non-empty string", 3),
        (b'{"model": "m"}', "input", None, None),
        (b'{"input": [], "model": "m"}', "input", "str | list[str] | list[int] | list[list[int]]", "[]"),
        (b'{"input": {"a": 1}, "model": "m"}', "input", "str | list[str] | list[int] | list[list[int]]", "dict"),
        (b'{"input": ["a", 1], "model": "m"}', "input", "one kind of item", ["int", "str"]),
        (b'{"input": [[1, 2], []], "model": "m"}', "input", "list[int]", []),
        (b'{"input": [[1, "x"]], "model": "m"}', "input", "list[int]", "non-integer items"),
        (b'{"input": [true, 1], "model": "m"}', "input", "one kind of item", ["bool", "int"]),
        (b'{"input": "x", "model": "m", "encoding_format": "int8"}', "encoding_format", ["float", "base64"], "int8"),
        (b'{"input": "x", "model": "m", "dimensions": 0}', "dimensions", "a positive integer", 0),
        (b'{"input": "x", "model": "m", "dimensions": "384"}', "dimensions", "a positive integer", "384"),
        (b'{"input": "x", "model": "m", "user": 5}', "user", "string", "int"),
        (b'{"input": "x", "model": "m", "dimension": 384}', "dimension", ["dimensions", "encoding_format", "input", "model", "user"], "dimension"),
    ],
)
def test_bad_requests_name_the_field(body: bytes, param: str, expected: Any, actual: Any) -> None:
    with pytest.raises(InvalidInputError) as ei:
        parse_embeddings_request(body)
    err = ei.value
    assert (err.code, err.details.get("name"), err.details.get("expected"), err.details.get("actual")) == ("INVALID_INPUT", param, expected, actual)
    status, out = inferox_error_body(err)
    assert status == 400
    assert out == {"error": {"message": err.message, "type": "invalid_request_error", "param": param, "code": "INVALID_INPUT"}}


def test_too_many_inputs_names_the_limit() -> None:
    with pytest.raises(InvalidInputError) as ei:
        parse_embeddings_request({"input": ["a"] * (MAX_INPUTS + 1), "model": "m"})
    assert (ei.value.details["name"], ei.value.details["expected"], ei.value.details["actual"]) == ("input", f"at most {MAX_INPUTS} items", MAX_INPUTS + 1)
    assert len(parse_embeddings_request({"input": ["a"] * MAX_INPUTS, "model": "m"})) == MAX_INPUTS


def test_dimensions_only_when_equal_to_the_model_size() -> None:
    check_dimensions(parse_embeddings_request({"input": "x", "model": "m", "dimensions": 384}), 384)
    check_dimensions(parse_embeddings_request({"input": "x", "model": "m"}), 384)
    with pytest.raises(InvalidInputError) as ei:
        check_dimensions(parse_embeddings_request({"input": "x", "model": "m", "dimensions": 256}), 384)
    assert (ei.value.details["name"], ei.value.details["expected"], ei.value.details["actual"]) == ("dimensions", 384, 256)
    assert "384" in ei.value.message


@pytest.mark.parametrize("fmt", ["float", "base64"])
def test_response_parses_with_the_openai_types(fmt: Any) -> None:
    openai_types = pytest.importorskip("openai.types")
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((3, 5)).astype(np.float32)
    body = encode_embeddings_response(model="minilm", embeddings=emb, encoding_format=fmt, prompt_tokens=17)
    raw = json.loads(body)
    decoded = json.loads(body)
    if fmt == "base64":  # the client decodes base64 itself before validating, as here
        for item in decoded["data"]:
            item["embedding"] = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4").tolist()
    resp = openai_types.CreateEmbeddingResponse.model_validate(decoded)
    assert (resp.object, resp.model, resp.usage.prompt_tokens, resp.usage.total_tokens) == ("list", "minilm", 17, 17)
    assert [d.index for d in resp.data] == [0, 1, 2] and {d.object for d in resp.data} == {"embedding"}
    for i, item in enumerate(raw["data"]):
        got = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") if fmt == "base64" else np.asarray(item["embedding"], dtype=np.float32)
        # base64 carries the float32 bytes exactly; JSON floats round-trip float32 exactly too.
        np.testing.assert_array_equal(got, emb[i])


def test_response_needs_one_row_per_input() -> None:
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        encode_embeddings_response(model="m", embeddings=np.zeros(3, np.float32), encoding_format="float", prompt_tokens=1)


def test_error_bodies_follow_the_status() -> None:
    status, body = inferox_error_body(ModelNotFoundError("nope", available=["minilm"]))
    assert status == 404
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "MODEL_NOT_FOUND"
    assert body["error"]["param"] == "nope" and "minilm" in body["error"]["message"]
    status, body = inferox_error_body(QueueFullError("minilm", max_queue_size=8))
    assert (status, body["error"]["type"], body["error"]["code"]) == (429, "rate_limit_error", "QUEUE_FULL")
    assert inferox_error_body(ServiceUnavailableError("stopping"))[1]["error"] == {"message": "stopping", "type": "server_error", "param": None, "code": "UNAVAILABLE"}
    assert error_body(401, "UNAUTHORIZED", "missing or invalid bearer token")["error"]["type"] == "invalid_request_error"


def test_models_list() -> None:
    out = models_list([("minilm", 1700000000), ("e5", 1700000001)])
    assert out == {
        "object": "list",
        "data": [
            {"id": "minilm", "object": "model", "created": 1700000000, "owned_by": "inferox"},
            {"id": "e5", "object": "model", "created": 1700000001, "owned_by": "inferox"},
        ],
    }


def test_non_finite_embeddings_are_strict_json_not_dropped() -> None:
    """Bare NaN is not JSON (strict parsers refuse the whole body) and orjson would write null:
    non-finite values are the strings V2 uses, which the parsers of OpenAI's clients read as floats."""
    import json

    def refuse(token: str) -> None:
        raise ValueError(f"bare {token} in the body")

    emb = np.array([[np.nan, 1.0, np.inf, -np.inf]], np.float32)
    body = encode_embeddings_response(model="m", embeddings=emb, encoding_format="float", prompt_tokens=2)
    doc = json.loads(body, parse_constant=refuse)
    assert doc["data"][0]["embedding"] == ["NaN", 1.0, "Infinity", "-Infinity"]
    np.testing.assert_array_equal(np.asarray(doc["data"][0]["embedding"], dtype=np.float32), emb[0])
