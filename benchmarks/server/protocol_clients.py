"""Load-generator clients for the other two ways into ``inferox serve``: V2 over gRPC and OpenAI embeddings.

Each client sends the same one-sentence request the V2 REST cells send and asks for the same
``sentence_embedding``, so the rows compare transports, not work:

* ``grpc``: ``tritonclient.grpc`` (one channel per client thread), the sentence as a BYTES input
  in ``raw_input_contents``, the embedding back in ``raw_output_contents``;
* ``openai``: ``http.client`` (one kept-alive connection per thread) posting
  ``{"model", "input": SENTENCE, "encoding_format": "float"}`` to ``/v1/embeddings`` — JSON floats
  back, as the V2 JSON cells get;
* ``openai-base64``: the same with ``encoding_format: "base64"`` (what the ``openai`` client asks for).

``make_protocol_caller(kind, port)`` returns ``(call, close)`` like the REST harness's callers;
``port`` is the gRPC port for ``grpc``, the HTTP port otherwise.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable

__all__ = ["PROTOCOL_KINDS", "make_protocol_caller"]

PROTOCOL_KINDS = ("grpc", "openai", "openai-base64")


def make_protocol_caller(kind: str, port: int, *, model: str, output: str, sentence: str) -> tuple[Callable[[], None], Callable[[], None]]:
    if kind == "grpc":
        import numpy as np
        import tritonclient.grpc as tc

        client = tc.InferenceServerClient(f"127.0.0.1:{port}")
        text = tc.InferInput("text", [1], "BYTES")
        text.set_data_from_numpy(np.array([sentence.encode()], dtype=object))
        wanted = [tc.InferRequestedOutput(output)]

        def call() -> None:
            result = client.infer(model, [text], outputs=wanted, client_timeout=120)
            if result.as_numpy(output) is None:
                raise RuntimeError(f"no {output} in the gRPC response")

        return call, client.close
    if kind in ("openai", "openai-base64"):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        payload = json.dumps({"model": model, "input": sentence, "encoding_format": "base64" if kind == "openai-base64" else "float"}).encode()
        headers = {"content-type": "application/json"}

        def call() -> None:
            conn.request("POST", "/v1/embeddings", body=payload, headers=headers)
            r = conn.getresponse()
            body = r.read()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}: {body[:300]!r}")

        return call, conn.close
    raise ValueError(kind)
