"""The V2 gRPC messages ↔ the data plane's request and result types (no I/O, no engine).

``ModelInferRequest`` becomes the same :class:`~inferox.engine.server._protocol.InferRequest` the
REST transport decodes from JSON, so both protocols share every rule after decoding: inputs come
from ``raw_input_contents`` (one entry per input, in order, as tritonclient sends them) or from each
input's typed ``contents``; BYTES elements are length-prefixed in raw form. Responses always carry
``raw_output_contents`` (one per output), as Triton's own server does. The JSON-shaped answers of
the data plane (metadata, statistics, repository index, model config) become their messages through
protobuf's JSON mapping: Triton's REST JSON is that mapping of these very messages.

Errors: :data:`GRPC_STATUS_FOR_HTTP` maps the HTTP status each Inferox error class carries to the
gRPC status code (Google's HTTP↔gRPC table, AIP-193); the Inferox code travels in the trailing
metadata key :data:`CODE_KEY`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from inferox.core.errors import InvalidInputError
from inferox.engine._proto import grpc_service_pb2 as pb
from inferox.engine.server._auth import bearer_ok as _bearer_ok
from inferox.engine.server._dataplane import InferResponse
from inferox.engine.server._errors import GRPC_STATUS_FOR_HTTP as _GRPC_STATUS_FOR_HTTP
from inferox.engine.server._protocol import (
    BYTES,
    InferRequest,
    InputTensor,
    RequestedOutput,
    _check_shape,
    _decode_binary_data,
    _numpy_dtype,
    check_tensor_name,
    encode_bytes_tensor,
    v2_datatype,
)

__all__ = [
    "CODE_KEY",
    "GRPC_STATUS_FOR_HTTP",
    "bearer_ok",
    "decode_infer_request",
    "encode_infer_response",
    "grpc_status_name",
    "message_from_dict",
]

#: Trailing-metadata key carrying the Inferox error code (``INVALID_INPUT``, ``QUEUE_FULL`` …).
CODE_KEY = "inferox-error-code"

#: HTTP status → gRPC status code name, for error codes not in the one table (``_errors``).
GRPC_STATUS_FOR_HTTP = _GRPC_STATUS_FOR_HTTP

#: Which typed-contents field holds each numeric V2 datatype (FP16 and BF16 have none: raw only).
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    BYTES: "bytes_contents",
}


def grpc_status_name(http_status: int) -> str:
    """The gRPC status code name for an HTTP status (unlisted 4xx: INVALID_ARGUMENT, else INTERNAL);
    errors are answered by code through ``_errors.error_status``, which falls back on this."""
    return GRPC_STATUS_FOR_HTTP.get(http_status, "INVALID_ARGUMENT" if 400 <= http_status < 500 else "INTERNAL")


def bearer_ok(metadata: Iterable[tuple[str, str | bytes]] | None, token: str) -> bool:
    """Whether the call's ``authorization`` metadata is ``Bearer <token>`` (the REST rule)."""
    return any(key.lower() == "authorization" and _bearer_ok(value, token) for key, value in metadata or ())


def _param_value(p: Any) -> Any:
    kind = p.WhichOneof("parameter_choice")
    return None if kind is None else getattr(p, kind)


def _params(m: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _param_value(v) for k, v in m.items()}


def _typed(tensor: Any, datatype: str, np_dtype: np.dtype[Any] | None, shape: tuple[int, ...]) -> np.ndarray:
    name = tensor.name
    field = _CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInputError(f"{datatype} data can only be sent in raw_input_contents", name=name, expected="raw_input_contents", actual="contents")
    values = getattr(tensor.contents, field)
    count = math.prod(shape)
    if len(values) != count:
        raise InvalidInputError("contents length does not match shape", name=name, expected=f"{count} elements for shape {list(shape)}", actual=len(values))
    if np_dtype is None:
        arr = np.empty(count, dtype=object)
        arr[:] = list(values)
        return arr.reshape(shape)
    if np_dtype.kind in "iu" and values:
        info = np.iinfo(np_dtype)
        lo, hi = min(values), max(values)
        if lo < info.min or hi > info.max:
            raise InvalidInputError(f"values out of range for {datatype}", name=name, expected=f"[{info.min}, {info.max}]", actual=f"[{lo}, {hi}]")
    return np.asarray(values, dtype=np_dtype).reshape(shape)


def _has_contents(tensor: Any) -> bool:
    return tensor.HasField("contents") and any(len(getattr(tensor.contents, f)) for f in set(_CONTENTS_FIELD.values()))


def decode_infer_request(msg: Any) -> InferRequest:
    """A ``ModelInferRequest`` as an :class:`InferRequest`; :class:`InvalidInputError` (or
    :class:`~inferox.core.errors.DTypeError`) naming the input at fault, as the REST decoder does."""
    if not msg.inputs:
        raise InvalidInputError("inputs must be a non-empty list", name="inputs", expected="list of tensors", actual=0)
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise InvalidInputError("raw_input_contents must hold one entry per input", name="raw_input_contents", expected=len(msg.inputs), actual=len(raw))
    inputs: list[InputTensor] = []
    seen: set[str] = set()
    for i, tensor in enumerate(msg.inputs):
        name = tensor.name
        if not name:
            raise InvalidInputError("input name must be a non-empty string", name=f"inputs[{i}].name", actual=name)
        check_tensor_name(name, f"inputs[{i}].name")
        if name in seen:
            raise InvalidInputError("input given twice", name=name)
        seen.add(name)
        np_dtype = _numpy_dtype(tensor.datatype, name)
        datatype = tensor.datatype.upper()
        shape = _check_shape(list(tensor.shape), name)
        iparams = _params(tensor.parameters)
        if "shared_memory_region" in iparams:
            raise InvalidInputError("the shared-memory extension is not supported", name=name)
        if raw:
            if _has_contents(tensor):
                raise InvalidInputError("input has both contents and raw_input_contents", name=name)
            data = _decode_binary_data(memoryview(raw[i]), datatype, np_dtype, shape, name)
        else:
            data = _typed(tensor, datatype, np_dtype, shape)
        inputs.append(InputTensor(name=name, datatype=datatype, shape=shape, data=data, parameters=iparams))
    outputs: list[RequestedOutput] | None = None
    if msg.outputs:
        outputs = []
        for j, out in enumerate(msg.outputs):
            check_tensor_name(out.name, f"outputs[{j}].name")
            if _params(out.parameters).get("classification"):
                raise InvalidInputError("the classification extension is not supported", name=out.name)
            outputs.append(RequestedOutput(out.name, True))
    return InferRequest(id=msg.id or None, inputs=inputs, outputs=outputs, parameters=_params(msg.parameters))


def encode_infer_response(response: InferResponse) -> Any:
    """A ``ModelInferResponse`` with every output of ``response`` in ``raw_output_contents``."""
    resp = pb.ModelInferResponse(model_name=response.model_name, model_version=response.model_version or "", id=response.id or "")
    for key, value in response.parameters.items():
        _set_param(resp.parameters[key], value)
    for out in response.outputs:
        arr = np.asarray(out.data)
        datatype = v2_datatype(arr.dtype)
        resp.outputs.add(name=out.name, datatype=datatype, shape=list(arr.shape))
        if datatype == BYTES:
            resp.raw_output_contents.append(encode_bytes_tensor([x if isinstance(x, (bytes, str)) else str(x) for x in arr.reshape(-1)]))
        else:
            # The protocol is little-endian, as is every platform inferox runs on.
            resp.raw_output_contents.append(np.ascontiguousarray(arr).tobytes())
    return resp


def _set_param(p: Any, value: Any) -> None:
    if isinstance(value, bool):
        p.bool_param = value
    elif isinstance(value, int):
        p.int64_param = value
    elif isinstance(value, float):
        p.double_param = value
    else:
        p.string_param = str(value)


def message_from_dict(message_type: Any, data: Mapping[str, Any]) -> Any:
    """A message built from the data plane's JSON-shaped answer (Triton's REST JSON is protobuf's
    JSON mapping of the same messages); fields the message does not have (Inferox extras such as
    ``parameters`` in metadata) are left out."""
    from google.protobuf import json_format

    return json_format.ParseDict(dict(data), message_type(), ignore_unknown_fields=True)

