"""Open Inference Protocol (KServe V2) request and response (de)serialisation.

Implements the JSON tensor form (``datatype``, ``shape``, ``data`` flattened row-major, BYTES as
strings) and Triton's binary tensor data extension: a request or response body is a JSON header
of ``Inference-Header-Content-Length`` bytes followed by the raw bytes of every tensor whose
``parameters.binary_data_size`` is set, in order. BYTES elements in binary form are each a 4-byte
little-endian length followed by the bytes. Everything here is pure (no I/O, no engine), so it is
tested on its own and reused by the server and the benchmark.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferox.core.dtype import DType
from inferox.core.errors import DTypeError, InferoxError, InvalidInputError

__all__ = [
    "BYTES",
    "HEADER_LENGTH",
    "InferRequest",
    "InputTensor",
    "RequestedOutput",
    "decode_bytes_tensor",
    "encode_bytes_tensor",
    "encode_infer_response",
    "error_response_parts",
    "parse_infer_request",
    "v2_datatype",
]

#: The header naming the length of the JSON part of a binary-extension body.
HEADER_LENGTH = "Inference-Header-Content-Length"
#: The V2 datatype of variable-length byte strings.
BYTES = "BYTES"


try:  # orjson (the ``serve`` extra) parses and writes JSON several times faster than the stdlib
    import orjson as _orjson
except ImportError:  # pragma: no cover - the stdlib path below is the fallback, and the reference
    _orjson = None  # type: ignore[assignment]

#: Float dtypes orjson writes straight from numpy (shortest round-trip form of each element;
#: integer arrays go straight too).
_ORJSON_FLOATS = frozenset({"float16", "float32", "float64"})


def _loads(data: bytes | memoryview) -> Any:
    """``json.loads``, through orjson when it accepts the text. orjson refuses some of what the
    stdlib accepts (``NaN``/``Infinity`` literals, numbers beyond double range) and words errors
    differently: anything it refuses goes through the stdlib, which decides and phrases the error.
    (Integers beyond 64 bits orjson reads as floats: an integer input refuses them either way.)"""
    if _orjson is not None:
        try:
            return _orjson.loads(data)
        except _orjson.JSONDecodeError:
            pass
    return json.loads(bytes(data) if isinstance(data, memoryview) else data)


def _dumps(obj: Any) -> bytes:
    """Compact, strict JSON of a response (numpy arrays allowed as ``data``): a non-finite float
    must already be one of the :data:`NONFINITE_JSON` strings — bare ``NaN`` is not JSON."""
    if _orjson is not None:
        try:
            return _orjson.dumps(obj, option=_orjson.OPT_SERIALIZE_NUMPY)
        except TypeError:
            pass  # an array orjson does not take (e.g. not native-endian): the stdlib path below
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=_ndarray_default).encode("utf-8")


def _ndarray_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


@dataclass
class InputTensor:
    """One decoded request input. ``data`` is a numpy array of the request's datatype and shape
    (BYTES inputs: an object array of ``bytes``)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)

    def texts(self) -> list[str]:
        """A BYTES input's elements decoded as UTF-8 (row-major)."""
        try:
            return [b.decode("utf-8") if isinstance(b, bytes) else str(b) for b in self.data.reshape(-1)]
        except UnicodeDecodeError as exc:
            raise InvalidInputError("BYTES input is not valid UTF-8 text", name=self.name, expected="UTF-8", actual=str(exc)) from exc


@dataclass
class RequestedOutput:
    """An output the client asked for, and whether it wants it as binary data."""

    name: str
    binary_data: bool | None = None


@dataclass
class InferRequest:
    """A decoded V2 inference request."""

    id: str | None
    inputs: list[InputTensor]
    outputs: list[RequestedOutput] | None
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def binary_data_output(self) -> bool:
        """The request-wide default for returning outputs as binary data."""
        return bool(self.parameters.get("binary_data_output", False))

    @property
    def timeout_s(self) -> float | None:
        """The client's ``parameters.timeout`` (microseconds, as Triton's clients send it) in seconds."""
        value = self.parameters.get("timeout")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise InvalidInputError("parameters.timeout must be a positive, finite number of microseconds", name="timeout", actual=value)
        return float(value) / 1e6


def v2_datatype(dtype: np.dtype[Any]) -> str:
    """The V2 datatype of a numpy array (object / string arrays are BYTES)."""
    if dtype.kind in "OSU":
        return BYTES
    return DType.from_numpy(dtype).v2_name


def _numpy_dtype(datatype: Any, name: str) -> np.dtype[Any] | None:
    """The numpy dtype of a V2 datatype (``None`` for BYTES); :class:`DTypeError` naming the input otherwise."""
    if not isinstance(datatype, str):
        raise DTypeError("datatype must be a string", name=name, expected="a V2 datatype such as FP32", actual=repr(datatype)[:80])
    if datatype.upper() == BYTES:
        return None
    try:
        return DType.from_v2(datatype).to_numpy()
    except DTypeError as exc:
        raise DTypeError(f"unknown datatype {datatype[:40]!r}", name=name, expected=exc.expected, actual=datatype[:40]) from exc


#: numpy refuses to build (even an empty) array whose non-zero dimensions multiply past this.
_MAX_ELEMENTS = 2**59


def _check_shape(shape: Any, name: str) -> tuple[int, ...]:
    if not isinstance(shape, list) or any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape):
        raise InvalidInputError("shape must be a list of non-negative integers", name=name, expected="[int, ...]", actual=shape)
    if len(shape) > _MAX_RANK:
        raise InvalidInputError(f"shape has {len(shape)} dimensions", name=name, expected=f"at most {_MAX_RANK} dimensions", actual=len(shape))
    if math.prod(d for d in shape if d) > _MAX_ELEMENTS:
        raise InvalidInputError("shape is too large", name=name, expected=f"at most {_MAX_ELEMENTS} elements", actual=shape)
    return tuple(shape)


#: numpy's limit on the number of dimensions (``numpy.MAXDIMS`` / 64 in numpy 2).
_MAX_RANK = 64


def decode_bytes_tensor(raw: bytes | memoryview, *, name: str = "") -> list[bytes]:
    """Split a binary BYTES tensor (4-byte little-endian length + bytes per element)."""
    out: list[bytes] = []
    view = memoryview(raw)
    pos = 0
    while pos < len(view):
        if pos + 4 > len(view):
            raise InvalidInputError("truncated BYTES element length", name=name, expected="4 bytes", actual=len(view) - pos)
        (n,) = struct.unpack_from("<I", view, pos)
        pos += 4
        if pos + n > len(view):
            raise InvalidInputError("truncated BYTES element", name=name, expected=n, actual=len(view) - pos)
        out.append(bytes(view[pos : pos + n]))
        pos += n
    return out


def encode_bytes_tensor(items: Sequence[bytes | str]) -> bytes:
    """The binary form of BYTES elements (4-byte little-endian length + bytes each)."""
    parts: list[bytes] = []
    for item in items:
        b = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        parts.append(struct.pack("<I", len(b)))
        parts.append(b)
    return b"".join(parts)


def _flatten(data: Any) -> list[Any]:
    """Row-major flattening of V2 ``data``, which may be flat or nested lists."""
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(x, list) for x in data):
        return data
    out: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _check_nesting(data: Any, shape: tuple[int, ...], name: str) -> None:
    """Nested ``data`` must have exactly ``shape`` (flat data is checked by its length): a ragged
    list whose element count happens to match would otherwise be silently re-shaped."""
    level: list[Any] = [data]
    for depth, size in enumerate(shape):
        nxt: list[Any] = []
        for item in level:
            if not isinstance(item, list) or len(item) != size:
                got = f"a list of {len(item)}" if isinstance(item, list) else type(item).__name__
                raise InvalidInputError(
                    f"nested data does not have the shape {list(shape)}: {got} at depth {depth}", name=name, expected=f"{size} items at depth {depth}", actual=got
                )
            nxt.extend(item)
        level = nxt
    for item in level:
        if isinstance(item, list):
            raise InvalidInputError(f"nested data is deeper than the shape {list(shape)}", name=name, expected=f"{len(shape)} levels", actual="more")


def _decode_json_data(data: Any, datatype: str, np_dtype: np.dtype[Any] | None, shape: tuple[int, ...], name: str) -> np.ndarray:
    if isinstance(data, list) and any(isinstance(x, list) for x in data):
        _check_nesting(data, shape, name)
    flat = _flatten(data)
    count = math.prod(shape)
    if len(flat) != count:
        raise InvalidInputError("data length does not match shape", name=name, expected=f"{count} elements for shape {list(shape)}", actual=len(flat))
    if np_dtype is None:
        if not all(isinstance(x, str) for x in flat):
            raise InvalidInputError("BYTES data must be strings", name=name, expected="strings", actual=sorted({type(x).__name__ for x in flat}))
        arr = np.empty(count, dtype=object)
        try:
            arr[:] = [x.encode("utf-8") for x in flat]
        except UnicodeEncodeError as exc:  # a lone surrogate ("\ud800") is valid JSON but no text
            raise InvalidInputError(f"BYTES data is not valid Unicode text: {exc.reason} at position {exc.start}", name=name, expected="UTF-8 text", actual=repr(exc.object[exc.start : exc.end])) from None
        return arr.reshape(shape)
    kind = np_dtype.kind
    for x in flat:
        ok = (
            isinstance(x, bool)
            if kind == "b"
            else (isinstance(x, int) and not isinstance(x, bool))
            if kind in "iu"
            else (isinstance(x, (int, float)) and not isinstance(x, bool))
        )
        if not ok:
            raise DTypeError(f"value {x!r} is not a valid {datatype}", name=name, expected=datatype, actual=type(x).__name__)
    if kind in "iu" and flat:
        info = np.iinfo(np_dtype)
        lo, hi = min(flat), max(flat)
        if lo < info.min or hi > info.max:
            raise InvalidInputError(f"values out of range for {datatype}", name=name, expected=f"[{info.min}, {info.max}]", actual=f"[{lo}, {hi}]")
    try:
        return np.asarray(flat, dtype=np_dtype).reshape(shape)
    except (OverflowError, ValueError) as exc:  # e.g. an integer beyond float range for FP32
        raise InvalidInputError(f"values out of range for {datatype}: {exc}", name=name, expected=datatype, actual="out of range") from exc


def _decode_binary_data(raw: memoryview, datatype: str, np_dtype: np.dtype[Any] | None, shape: tuple[int, ...], name: str) -> np.ndarray:
    count = math.prod(shape)
    if np_dtype is None:
        items = decode_bytes_tensor(raw, name=name)
        if len(items) != count:
            raise InvalidInputError("BYTES element count does not match shape", name=name, expected=count, actual=len(items))
        arr = np.empty(count, dtype=object)
        arr[:] = items
        return arr.reshape(shape)
    expected = count * np_dtype.itemsize
    if len(raw) != expected:
        raise InvalidInputError(
            "binary data size does not match shape and datatype", name=name, expected=f"{expected} bytes ({datatype} {list(shape)})", actual=len(raw)
        )
    # A copy: the request body buffer is released after decoding, and models may write in place.
    # (The protocol is little-endian, as is every platform inferox runs on.)
    arr = np.frombuffer(raw, dtype=np_dtype).copy()
    if np_dtype.kind == "b" and arr.size and not np.all(np.frombuffer(raw, dtype=np.uint8) <= 1):
        raise DTypeError("BOOL binary data must be 0 or 1 bytes", name=name, expected="0/1", actual="other byte values")
    return arr.reshape(shape)


#: Longest tensor (input or output) name a request may use: names are identifiers, and a name
#: from the wire is repeated in errors.
MAX_TENSOR_NAME = 256


def check_tensor_name(name: str, where: str) -> None:
    """Refuse a tensor name longer than :data:`MAX_TENSOR_NAME` (echoed cut short)."""
    if len(name) > MAX_TENSOR_NAME:
        raise InvalidInputError(
            f"tensor name of {len(name)} characters; at most {MAX_TENSOR_NAME} are allowed", name=where, expected=f"at most {MAX_TENSOR_NAME} characters", actual=name[:80] + "…"
        )


def _as_dict(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} must be an object", name=what, expected="object", actual=type(value).__name__)
    return value


def parse_infer_request(body: bytes, header_length: str | int | None = None) -> InferRequest:
    """Decode a V2 inference request body (JSON, or JSON header + binary tensor data).

    Every problem — malformed JSON, a missing field, an unknown datatype, data that does not fill
    the shape, binary sizes that do not add up — raises :class:`InvalidInputError` (or
    :class:`DTypeError`) naming the input at fault.
    """
    if header_length is not None:
        try:
            hlen = int(header_length)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"{HEADER_LENGTH} must be an integer", name=HEADER_LENGTH, actual=header_length) from exc
        if hlen < 0 or hlen > len(body):
            raise InvalidInputError(f"{HEADER_LENGTH} is out of range", name=HEADER_LENGTH, expected=f"0..{len(body)}", actual=hlen)
    else:
        hlen = len(body)
    try:
        header = _loads(memoryview(body)[:hlen])
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, and ints beyond Python's digit limit
        raise InvalidInputError(f"request body is not valid JSON: {exc}", name="body") from exc
    except RecursionError:
        raise InvalidInputError("request body is not valid JSON: nested too deeply", name="body") from None
    if not isinstance(header, dict):
        raise InvalidInputError("request body must be a JSON object", name="body", expected="object", actual=type(header).__name__)
    binary = memoryview(body)[hlen:]
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInputError("id must be a string", name="id", expected="string", actual=type(request_id).__name__)
    params = _as_dict(header.get("parameters"), "parameters")
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInputError("inputs must be a non-empty list", name="inputs", expected="list of tensors", actual=type(raw_inputs).__name__)
    inputs: list[InputTensor] = []
    seen: set[str] = set()
    offset = 0
    for i, item in enumerate(raw_inputs):
        if not isinstance(item, dict):
            raise InvalidInputError("each input must be an object", name=f"inputs[{i}]", actual=type(item).__name__)
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidInputError("input name must be a non-empty string", name=f"inputs[{i}].name", actual=repr(name)[:80])
        check_tensor_name(name, f"inputs[{i}].name")
        if name in seen:
            raise InvalidInputError("input given twice", name=name)
        seen.add(name)
        raw_datatype = item.get("datatype")
        np_dtype = _numpy_dtype(raw_datatype, name)
        datatype = str(raw_datatype).upper()
        shape = _check_shape(item.get("shape"), name)
        iparams = _as_dict(item.get("parameters"), f"{name}.parameters")
        if "shared_memory_region" in iparams:
            raise InvalidInputError("the shared-memory extension is not supported", name=name)
        size = iparams.get("binary_data_size")
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise InvalidInputError("binary_data_size must be a non-negative integer", name=name, actual=size)
            if offset + size > len(binary):
                raise InvalidInputError("binary data is shorter than binary_data_size", name=name, expected=offset + size, actual=len(binary))
            data = _decode_binary_data(binary[offset : offset + size], datatype, np_dtype, shape, name)
            offset += size
        else:
            if "data" not in item:
                raise InvalidInputError("input has neither data nor binary_data_size", name=name)
            data = _decode_json_data(item["data"], datatype, np_dtype, shape, name)
        inputs.append(InputTensor(name=name, datatype=datatype, shape=shape, data=data, parameters=iparams))
    if offset != len(binary):
        raise InvalidInputError("binary data left over after the last input", name="body", expected=offset, actual=len(binary))
    outputs: list[RequestedOutput] | None = None
    raw_outputs = header.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise InvalidInputError("outputs must be a list", name="outputs", actual=type(raw_outputs).__name__)
        outputs = []
        for j, out in enumerate(raw_outputs):
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise InvalidInputError("each output must be an object with a name", name=f"outputs[{j}]", actual=repr(out)[:80])
            check_tensor_name(out["name"], f"outputs[{j}].name")
            oparams = _as_dict(out.get("parameters"), f"{out['name']}.parameters")
            if oparams.get("classification"):
                raise InvalidInputError("the classification extension is not supported", name=out["name"])
            bd = oparams.get("binary_data")
            if bd is not None and not isinstance(bd, bool):
                # "false" (a string) is truthy: read leniently it would turn binary output on.
                raise InvalidInputError("binary_data must be true or false", name=f"{out['name']}.parameters.binary_data", expected="boolean", actual=repr(bd)[:40])
            outputs.append(RequestedOutput(out["name"], bd))
    return InferRequest(id=request_id, inputs=inputs, outputs=outputs, parameters=params)


#: How non-finite floats are written in JSON data: strings, since bare ``NaN`` / ``Infinity`` are
#: not JSON (strict parsers refuse the whole body). numpy, and so tritonclient's ``as_numpy``,
#: reads these strings back as the floats; the binary extension carries the values exactly.
NONFINITE_JSON = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _json_data(arr: np.ndarray) -> list[Any] | np.ndarray:
    if arr.dtype.kind in "OSU":
        return [x.decode("utf-8", errors="replace") if isinstance(x, bytes) else str(x) for x in arr.reshape(-1)]
    if arr.dtype.name == "bfloat16":
        arr = arr.astype(np.float32)
    flat = arr.reshape(-1)
    # Integers and finite floats go to orjson as the array itself (no Python object per element);
    # anything else (bools; NaN/Infinity, written as strings) as a list.
    if _orjson is not None and (flat.dtype.kind in "iu" or (flat.dtype.name in _ORJSON_FLOATS and np.isfinite(flat).all())):
        return np.ascontiguousarray(flat)
    values: list[Any] = flat.tolist()
    if flat.dtype.kind == "f":
        for i in np.flatnonzero(~np.isfinite(flat)).tolist():
            values[i] = NONFINITE_JSON[repr(float(values[i]))]
    return values


def _binary_data(arr: np.ndarray) -> bytes:
    if arr.dtype.kind in "OSU":
        return encode_bytes_tensor([x if isinstance(x, (bytes, str)) else str(x) for x in arr.reshape(-1)])
    # The protocol is little-endian, as is every platform inferox runs on.
    return np.ascontiguousarray(arr).tobytes()


def encode_infer_response(
    *,
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: Mapping[str, np.ndarray],
    requested: Sequence[RequestedOutput] | None,
    binary_default: bool,
    parameters: Mapping[str, Any] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body and extra headers of a V2 inference response.

    ``requested`` selects and orders outputs (all of them when ``None``); each output is binary when
    its own ``binary_data`` says so, else when ``binary_default`` does. An unknown requested output
    raises :class:`InvalidInputError` naming it.
    """
    if requested is None:
        selected = [(name, outputs[name], binary_default) for name in outputs]
    else:
        selected = []
        for req in requested:
            if req.name not in outputs:
                raise InvalidInputError(f"unknown output {req.name!r}", name=req.name, expected=sorted(outputs), actual=req.name)
            selected.append((req.name, outputs[req.name], binary_default if req.binary_data is None else req.binary_data))
    return encode_outputs(model_name=model_name, model_version=model_version, request_id=request_id, outputs=selected, parameters=parameters)


def encode_outputs(
    *,
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: Sequence[tuple[str, Any, bool]],
    parameters: Mapping[str, Any] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body and extra headers of a V2 inference response of outputs already selected:
    ``(name, array, binary)`` each, in order."""
    header: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        header["model_version"] = model_version
    if request_id is not None:
        header["id"] = request_id
    if parameters:
        header["parameters"] = dict(parameters)
    out_list: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, value, binary in outputs:
        arr = np.asarray(value)
        entry: dict[str, Any] = {"name": name, "datatype": v2_datatype(arr.dtype), "shape": list(arr.shape)}
        if binary:
            raw = _binary_data(arr)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _json_data(arr)
        out_list.append(entry)
    header["outputs"] = out_list
    head = _dumps(header)
    if not chunks:
        return head, {"content-type": "application/json"}
    return head + b"".join(chunks), {"content-type": "application/octet-stream", HEADER_LENGTH.lower(): str(len(head))}


def error_response_parts(exc: InferoxError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, body and extra headers for an Inferox error: ``{"error": msg, "code": CODE}`` with
    the status of the one table (``_errors.ERROR_STATUS``); ``Retry-After`` (whole seconds, at
    least 1) on overload."""
    from inferox.engine.server._errors import error_status, retry_after_s, v2_error_body

    headers: dict[str, str] = {}
    retry = retry_after_s(exc)
    if retry is not None:
        headers["retry-after"] = str(retry)
    return error_status(exc).http, v2_error_body(exc), headers
