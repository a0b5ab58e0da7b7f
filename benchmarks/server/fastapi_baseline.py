"""The baseline for ``bench_server.py``: a minimal FastAPI endpoint that calls the model directly.

It accepts the same V2 JSON body as ``inferox serve`` (so the client is identical), decodes it the
shortest way (``np.asarray(data).reshape(shape)``, or the tokenizer for BYTES text), calls
``AnyModel.forward_any`` with no engine, queue or batching in between, and returns V2 JSON.
Configured by ``BENCH_PACKAGE`` and ``BENCH_BACKEND``; run with
``uvicorn fastapi_baseline:app --app-dir benchmarks/server``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI

from inferox.engine import compose_model

PACKAGE = Path(os.environ["BENCH_PACKAGE"])
# The same composition (model + text encoder with the package's truncation) as inferox serve.
composed = compose_model(PACKAGE, backends=(os.environ.get("BENCH_BACKEND", "torch"),))
model, encoder = composed.instances[0], composed.text_encoder
input_names = {s.name for s in model.input_specs}
#: Return only this output (as the inferox client asks for), or every output when unset.
OUTPUT = os.environ.get("BENCH_OUTPUT")
app = FastAPI()

_DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}


@app.post("/infer")
def infer(body: dict[str, Any]) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for t in body["inputs"]:
        if t["datatype"] == "BYTES":
            inputs.update({k: v for k, v in encoder.encode(t["data"]).items() if k in input_names})
        else:
            inputs[t["name"]] = np.asarray(t["data"], dtype=_DTYPES[t["datatype"]]).reshape(t["shape"])
    outputs = model.forward_any(inputs)
    if OUTPUT:
        outputs = {OUTPUT: outputs[OUTPUT]}
    return {
        "model_name": PACKAGE.name,
        "outputs": [{"name": k, "datatype": "FP32", "shape": list(v.shape), "data": v.reshape(-1).tolist()} for k, v in outputs.items()],
    }


@app.get("/ready")
def ready() -> dict[str, bool]:
    return {"ready": True}
