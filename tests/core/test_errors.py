"""The error hierarchy: codes, builtin bases, HTTP statuses, messages, pickling, wrapping, IO conversion."""

from __future__ import annotations

import errno
import importlib.util
import pickle
from pathlib import Path
from typing import Any

import pytest

from inferox.core import errors as E

# class → (code, http status, builtin bases it must also be, an instance, {field: value it must carry})
CASES: list[tuple[type[E.InferoxError], str, int, tuple[type[BaseException], ...], E.InferoxError, dict[str, Any]]] = [
    (E.InferoxError, "INFEROX_ERROR", 500, (Exception,), E.InferoxError("generic", extra=1), {"details": {"extra": 1}}),
    (E.ModelNotFoundError, "MODEL_NOT_FOUND", 404, (LookupError,), E.ModelNotFoundError("bert", backend="jax", available=["mlp"]), {"name": "bert", "backend": "jax", "available": ["mlp"]}),
    (E.InvalidInputError, "INVALID_INPUT", 400, (ValueError,), E.InvalidInputError("bad", name="x", expected=(1, 2), actual=(1, 3), index=2), {"name": "x", "expected": (1, 2), "actual": (1, 3), "index": 2}),
    (E.DTypeError, "INVALID_DTYPE", 400, (ValueError, TypeError), E.DTypeError("bad dtype", name="x", expected="f32", actual="f64"), {"name": "x", "expected": "f32", "actual": "f64", "index": None}),
    (E.TypeMismatchError, "TYPE_MISMATCH", 500, (TypeError,), E.TypeMismatchError("nope", expected="A", actual="B"), {"expected": "A", "actual": "B"}),
    (E.StateTypeError, "STATE_TYPE_MISMATCH", 500, (TypeError,), E.StateTypeError("state", expected="int", actual="str"), {"expected": "int", "actual": "str"}),
    (E.BackendError, "BACKEND_ERROR", 500, (RuntimeError,), E.BackendError("failed", backend="torch", model="m"), {"backend": "torch", "model": "m"}),
    (E.BackendUnavailableError, "BACKEND_UNAVAILABLE", 503, (RuntimeError,), E.BackendUnavailableError("jax", reason="not installed", available=["torch"]), {"backend": "jax", "reason": "not installed", "available": ["torch"]}),
    (E.OutOfMemoryError, "OUT_OF_MEMORY", 507, (RuntimeError, MemoryError), E.OutOfMemoryError("oom", backend="torch", model="m"), {"backend": "torch", "model": "m"}),
    (E.DeviceError, "DEVICE_ERROR", 400, (RuntimeError,), E.DeviceError("bad device", device="cuda:x", backend="torch"), {"device": "cuda:x", "backend": "torch"}),
    (E.DeviceUnavailableError, "DEVICE_UNAVAILABLE", 503, (RuntimeError,), E.DeviceUnavailableError("absent", device="cuda:3"), {"device": "cuda:3", "backend": None}),
    (E.ArchitectureNotFoundError, "ARCHITECTURE_NOT_FOUND", 404, (LookupError,), E.ArchitectureNotFoundError("gpt", backend="jax", available=["torch"]), {"architecture": "gpt", "backend": "jax", "available": ["torch"]}),
    (E.NumericMismatchError, "NUMERIC_MISMATCH", 500, (AssertionError,),
     E.NumericMismatchError("differs", subject="torch", against="reference", output="y", index=(0, 1), max_difference=1.5e-3, atol=1e-5, rtol=1e-4),
     {"subject": "torch", "against": "reference", "output": "y", "index": (0, 1), "max_difference": 1.5e-3, "atol": 1e-5, "rtol": 1e-4}),
    (E.InferoxTimeoutError, "TIMEOUT", 504, (TimeoutError,), E.InferoxTimeoutError("late", timeout=1.5, model="m"), {"timeout": 1.5, "model": "m"}),
    (E.QueueFullError, "QUEUE_FULL", 429, (RuntimeError,), E.QueueFullError("m", max_queue_size=8, retry_after=0.25), {"model": "m", "max_queue_size": 8, "retry_after": 0.25}),
    (E.ServiceUnavailableError, "UNAVAILABLE", 503, (RuntimeError,), E.ServiceUnavailableError("shutting down"), {}),
    (E.SessionExpiredError, "SESSION_EXPIRED", 410, (LookupError,), E.SessionExpiredError("gone", session="s1", ttl=60.0), {"session": "s1", "ttl": 60.0}),
    (E.ConfigError, "INVALID_CONFIG", 400, (ValueError,), E.ConfigError("must be positive", field="max_batch_size", value=-1, path="cfg.toml"), {"field": "max_batch_size", "value": -1, "path": "cfg.toml"}),
    (E.PluginError, "PLUGIN_ERROR", 500, (ImportError,), E.PluginError("broken", plugin="p"), {"plugin": "p"}),
    (E.PluginVersionError, "PLUGIN_VERSION_MISMATCH", 500, (ImportError,), E.PluginVersionError("old", plugin="p"), {"plugin": "p"}),
    (E.InferoxIOError, "IO_ERROR", 500, (OSError,), E.InferoxIOError("disk", path="/tmp/x", errno_=errno.ENOSPC), {"path": "/tmp/x", "errno": errno.ENOSPC, "filename": "/tmp/x"}),
    (E.PackageError, "PACKAGE_ERROR", 422, (ValueError,), E.PackageError("bad", path="metadata.json", field="version"), {"path": "metadata.json", "field": "version"}),
    (E.PackageNotFoundError, "PACKAGE_NOT_FOUND", 404, (ValueError, FileNotFoundError), E.PackageNotFoundError("missing", path="/pkg"), {"path": "/pkg", "field": None}),
    (E.PackageFormatError, "PACKAGE_FORMAT_ERROR", 422, (ValueError,), E.PackageFormatError("bad json", path="model_info.json", field="inputs"), {"path": "model_info.json", "field": "inputs"}),
    (E.WeightShapeError, "WEIGHT_SHAPE_MISMATCH", 422, (ValueError,), E.WeightShapeError("wrong shape", weight="layers.0.weight", expected=(8, 4), actual=(8, 5), path="model.safetensors"),
     {"weight": "layers.0.weight", "expected": (8, 4), "actual": (8, 5), "field": "layers.0.weight", "path": "model.safetensors"}),
    (E.PackageVersionError, "PACKAGE_VERSION_UNSUPPORTED", 422, (ValueError,), E.PackageVersionError("too new", path="metadata.json", field="format_version"), {"field": "format_version"}),
    (E.PackageIntegrityError, "INTEGRITY_ERROR", 422, (ValueError,), E.PackageIntegrityError("sha mismatch", path="weights.safetensors"), {"path": "weights.safetensors"}),
    (E.UnsafePackageError, "UNSAFE_PACKAGE", 403, (ValueError, PermissionError), E.UnsafePackageError("code inside", path="model.py"), {"path": "model.py"}),
    (E.UnsupportedHeadError, "UNSUPPORTED_HEAD", 400, (ValueError,), E.UnsupportedHeadError("BertForMaskedLM", supported=["BertModel", "BertForSequenceClassification"], architecture="bert"),
     {"head": "BertForMaskedLM", "supported": ["BertModel", "BertForSequenceClassification"], "architecture": "bert", "field": "architectures"}),
    (E.DownloadError, "DOWNLOAD_ERROR", 502, (ConnectionError,), E.DownloadError("failed", repo_id="org/m", revision="main", filename="a.bin"), {"repo_id": "org/m", "revision": "main", "filename": "a.bin"}),
    (E.RepositoryNotFoundError, "REPOSITORY_NOT_FOUND", 404, (ConnectionError, LookupError), E.RepositoryNotFoundError("no repo", repo_id="org/x"), {"repo_id": "org/x", "revision": None}),
    (E.RevisionNotFoundError, "REVISION_NOT_FOUND", 404, (ConnectionError, LookupError), E.RevisionNotFoundError("no rev", repo_id="org/m", revision="v9"), {"revision": "v9"}),
    (E.HubAuthError, "UNAUTHORIZED", 401, (ConnectionError, PermissionError), E.HubAuthError("token", repo_id="org/private"), {"repo_id": "org/private"}),
    (E.GatedRepoError, "GATED_REPOSITORY", 403, (ConnectionError, PermissionError), E.GatedRepoError("gated", repo_id="org/gated"), {"repo_id": "org/gated"}),
]
IDS = [c[0].__name__ for c in CASES]


def _all_subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        if sub.__module__ == E.__name__:
            out |= {sub} | _all_subclasses(sub)
    return out


def test_every_error_class_is_covered_and_codes_are_unique() -> None:
    assert {c[0] for c in CASES} == {E.InferoxError} | _all_subclasses(E.InferoxError)
    assert set(E._ALL_ERRORS) == {c[0] for c in CASES}
    codes = [c[1] for c in CASES]
    assert len(set(codes)) == len(codes)
    assert {name for name in E.__all__ if name.endswith("Error")} == {c[0].__name__ for c in CASES}


@pytest.mark.parametrize(("cls", "code", "status", "bases", "err", "fields"), CASES, ids=IDS)
def test_error_class(cls: type[E.InferoxError], code: str, status: int, bases: tuple[type[BaseException], ...], err: E.InferoxError, fields: dict[str, Any]) -> None:
    assert type(err) is cls
    assert err.code == cls.code == code
    assert err.http_status == status
    assert isinstance(err, E.InferoxError)
    for base in bases:
        assert isinstance(err, base), f"{cls.__name__} must also be a {base.__name__}"
    for name, value in fields.items():
        assert getattr(err, name) == value, name
    assert err.to_dict() == {"error": str(err), "code": code}
    assert str(err) == err.message and err.message
    assert E.error_from_code(code) is cls


@pytest.mark.parametrize(("cls", "code", "status", "bases", "err", "fields"), CASES, ids=IDS)
def test_pickle_round_trip(cls: type[E.InferoxError], code: str, status: int, bases: tuple[type[BaseException], ...], err: E.InferoxError, fields: dict[str, Any]) -> None:
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert str(back) == str(err) and back.code == code
    assert back.details == err.details
    assert back.to_dict() == err.to_dict()
    for name, value in fields.items():
        assert getattr(back, name) == value, name


def test_error_from_unknown_code() -> None:
    assert E.error_from_code("NOPE") is E.InferoxError


def test_display_messages() -> None:
    assert str(E.ModelNotFoundError("bert")) == "model 'bert' not found"
    assert str(E.ModelNotFoundError("bert", backend="jax", available=[])) == "model 'bert' not found on backend 'jax'; registered: (none)"
    assert str(E.ModelNotFoundError("bert", available=["b", "a"])) == "model 'bert' not found; registered: a, b"
    assert str(E.InvalidInputError("shape mismatch", name="x", expected="(?, 3)", actual=(1, 4), index=0)) == "item 0: input 'x': shape mismatch (expected (?, 3), got (1, 4))"
    assert str(E.InvalidInputError("input 'x' is bad", name="x")) == "input 'x' is bad"  # no duplicate prefix
    assert str(E.BackendUnavailableError("jax", reason="blocked")) == "backend 'jax' unavailable: blocked"
    assert str(E.BackendUnavailableError("jax", reason="x", available=[])) == "backend 'jax' unavailable: x; available: (none)"
    assert str(E.ArchitectureNotFoundError("gpt")) == "no installed backend implements architecture 'gpt'"
    assert str(E.ArchitectureNotFoundError("gpt", backend="jax", available=["torch"])) == "backend 'jax' does not implement architecture 'gpt'; backends that do: torch"
    assert "8 requests waiting" in str(E.QueueFullError("m", max_queue_size=8))
    assert str(E.ConfigError("must be positive", field="n", path="c.toml")) == "c.toml: n: must be positive"
    assert str(E.ConfigError("n must be positive", field="n")) == "n must be positive"
    assert str(E.PackageError("bad", path="p/metadata.json")) == "p/metadata.json: bad"
    assert str(E.PackageError("p/metadata.json is bad", path="p/metadata.json")) == "p/metadata.json is bad"


# ------------------------------------------------------------------------------------------- from_os_error
def test_from_os_error_enoent(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError) as ei:
        missing.read_text()
    err = E.from_os_error(ei.value)
    assert type(err) is E.PackageNotFoundError
    assert err.code == "PACKAGE_NOT_FOUND"
    assert err.path == str(missing) and str(missing) in str(err)
    assert err.__cause__ is ei.value
    assert isinstance(err, FileNotFoundError)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full to produce a real ENOSPC")
def test_from_os_error_enospc() -> None:
    with pytest.raises(OSError) as ei, open("/dev/full", "wb", buffering=0) as f:
        f.write(b"x")
    assert ei.value.errno == errno.ENOSPC
    err = E.from_os_error(ei.value, path="/dev/full")
    assert type(err) is E.InferoxIOError
    assert (err.code, err.path, err.errno) == ("IO_ERROR", "/dev/full", errno.ENOSPC)
    assert "no space left" in str(err)
    assert err.__cause__ is ei.value


def test_from_os_error_eacces(tmp_path: Path) -> None:
    exc = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "locked"))
    err = E.from_os_error(exc)
    assert type(err) is E.InferoxIOError
    assert (err.code, err.path, err.errno) == ("IO_ERROR", str(tmp_path / "locked"), errno.EACCES)
    assert "Permission denied" in str(err)
    assert err.__cause__ is exc


def test_from_os_error_without_a_filename() -> None:
    err = E.from_os_error(OSError("bare"))
    assert type(err) is E.InferoxIOError and err.path is None and "bare" in str(err)


# -------------------------------------------------------------------------------------- wrap_backend_error
class OutOfMemoryError(RuntimeError):
    """Named like torch.OutOfMemoryError (recognised by name, without importing torch)."""


@pytest.mark.parametrize(
    "exc",
    [MemoryError("host"), OutOfMemoryError("CUDA"), RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate"), RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")],
    ids=["MemoryError", "by-class-name", "xla", "by-message"],
)
def test_wrap_detects_out_of_memory(exc: BaseException) -> None:
    err = E.wrap_backend_error(exc, backend="torch", model="m")
    assert type(err) is E.OutOfMemoryError
    assert (err.code, err.backend, err.model) == ("OUT_OF_MEMORY", "torch", "m")
    assert err.__cause__ is exc


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed in this environment")
def test_wrap_detects_torch_out_of_memory() -> None:
    import torch

    exc = torch.OutOfMemoryError("CUDA error: out of memory")
    err = E.wrap_backend_error(exc, backend="torch")
    assert type(err) is E.OutOfMemoryError and err.__cause__ is exc


def test_wrap_other_errors() -> None:
    exc = ValueError("shapes (2,5) and (3,2) not aligned")
    err = E.wrap_backend_error(exc, backend="numpy", model="lin")
    assert type(err) is E.BackendError
    assert (err.code, err.backend, err.model) == ("BACKEND_ERROR", "numpy", "lin")
    assert str(err) == "numpy raised ValueError in model 'lin': shapes (2,5) and (3,2) not aligned"
    assert err.__cause__ is exc
    assert str(E.wrap_backend_error(KeyError("k"), backend="jax")) == "jax raised KeyError: 'k'"
    inferox = E.InvalidInputError("x")
    assert E.wrap_backend_error(inferox, backend="jax") is inferox
    io = E.wrap_backend_error(FileNotFoundError(errno.ENOENT, "No such file", "/w.safetensors"), backend="jax")
    assert type(io) is E.PackageNotFoundError and io.path == "/w.safetensors"


def test_backend_errors_context_manager() -> None:
    with pytest.raises(E.BackendError) as ei, E.backend_errors("jax", model="m"):
        raise ZeroDivisionError("division by zero")
    assert ei.value.backend == "jax" and isinstance(ei.value.__cause__, ZeroDivisionError)
    original = E.DeviceError("bad", device="x")
    with pytest.raises(E.DeviceError) as ei2, E.backend_errors("jax"):
        raise original
    assert ei2.value is original
    with E.backend_errors("jax"):
        pass


# ------------------------------------------------------------------------------------------- FrameworkErrors
TABLE = E.FrameworkErrors("fw", out_of_memory=("can't allocate memory",), device_missing=("not compiled with cuda",))


def test_framework_errors_read_the_backends_tables() -> None:
    oom = TABLE.wrap(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 9 GB"), device="cpu", model="m")
    assert type(oom) is E.OutOfMemoryError and (oom.code, oom.backend, oom.model) == ("OUT_OF_MEMORY", "fw", "m")
    assert str(oom).startswith("fw: out of memory on cpu:")
    missing = TABLE.wrap(AssertionError("Torch not compiled with CUDA enabled"), device="cuda:0")
    assert type(missing) is E.DeviceUnavailableError and (missing.code, missing.device, missing.backend) == ("DEVICE_UNAVAILABLE", "cuda:0", "fw")
    assert "cuda:0 is not available to backend 'fw'" in str(missing)
    other = TABLE.wrap(ValueError("bad shape"), model="m")
    assert type(other) is E.BackendError and str(other) == "fw raised ValueError in model 'm': bad shape"
    for err, exc in ((oom, "DefaultCPUAllocator"), (missing, "Torch not compiled"), (other, "bad shape")):
        assert err.__cause__ is not None and exc in str(err.__cause__)
    # The tables are the backend's: core's own wrapping does not know those words.
    assert type(E.wrap_backend_error(RuntimeError("can't allocate memory"), backend="fw")) is E.BackendError
    assert type(E.wrap_backend_error(AssertionError("not compiled with CUDA"), backend="fw")) is E.BackendError


def test_framework_errors_shared_rules() -> None:
    # Every framework's out-of-memory words, an OSError, and Inferox errors passing through.
    assert type(E.FrameworkErrors("jx").wrap(RuntimeError("RESOURCE_EXHAUSTED: while allocating"))) is E.OutOfMemoryError
    enomem = TABLE.wrap(OSError(errno.ENOMEM, "can't allocate memory"))
    assert type(enomem) is E.OutOfMemoryError  # an allocator's OSError is out of memory, not an IO error
    io = TABLE.wrap(PermissionError(errno.EACCES, "Permission denied", "/w.bin"))
    assert type(io) is E.InferoxIOError and io.path == "/w.bin"
    inferox = E.DTypeError("x", name="dtype")
    assert TABLE.wrap(inferox) is inferox
    with pytest.raises(E.DeviceUnavailableError) as ei, TABLE.context(device="cuda:1", model="m"):
        raise RuntimeError("Torch not compiled with CUDA enabled")
    assert ei.value.device == "cuda:1" and isinstance(ei.value.__cause__, RuntimeError)
    with pytest.raises(E.DTypeError), TABLE.context():
        raise inferox
    with TABLE.context():
        pass
