"""The Inferox error hierarchy.

Every error raised by Inferox subclasses :class:`InferoxError` *and* the closest builtin exception
(as ``huggingface_hub.errors`` does), so ``except LookupError`` keeps working for callers who do not
know about Inferox. Each class carries a stable, machine-readable :attr:`InferoxError.code` that the
HTTP server returns unchanged as ``{"error": message, "code": CODE}``.

Arguments after the message are keyword-only, so call sites read as what they say::

    raise InvalidInputError("wrong shape", name="input_ids", expected=(1, 8), actual=(1, 9))
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "ArchitectureNotFoundError",
    "BackendError",
    "BackendUnavailableError",
    "ConfigError",
    "DTypeError",
    "DeviceError",
    "DeviceUnavailableError",
    "DownloadError",
    "FrameworkErrors",
    "GatedRepoError",
    "HubAuthError",
    "InferoxError",
    "InferoxIOError",
    "InferoxTimeoutError",
    "InvalidInputError",
    "ModelNotFoundError",
    "NumericMismatchError",
    "OutOfMemoryError",
    "PackageError",
    "PackageFormatError",
    "PackageIntegrityError",
    "PackageNotFoundError",
    "PackageVersionError",
    "PluginError",
    "PluginVersionError",
    "QueueFullError",
    "RepositoryNotFoundError",
    "RevisionNotFoundError",
    "ServiceUnavailableError",
    "SessionExpiredError",
    "StateTypeError",
    "TypeMismatchError",
    "UnsafePackageError",
    "UnsupportedHeadError",
    "WeightShapeError",
    "backend_errors",
    "error_from_code",
    "from_os_error",
    "wrap_backend_error",
]


class InferoxError(Exception):
    """Base of every Inferox error.

    ``code`` is stable across releases: clients may switch on it. ``details`` holds the named fields
    (``name``, ``expected``, ``actual``, ``path`` …) that a subclass was given, for logs and for the
    HTTP error body.
    """

    code: ClassVar[str] = "INFEROX_ERROR"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = {k: v for k, v in details.items() if v is not None}

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """The error as the V2 HTTP error body, ``{"error": ..., "code": ...}``."""
        return {"error": self.message, "code": self.code}

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep errors picklable (they cross process boundaries in Ray and multiprocessing). The
        # instance dict travels too: fields left None (absent from ``details``) and fields kept
        # out of ``details`` (``available``, ``retry_after``) must survive the round trip.
        state = dict(self.__dict__)
        if isinstance(self, OSError):  # errno and filename live in OSError's slots, not in __dict__
            state.update(errno=self.errno, filename=self.filename)
        return (_rebuild_error, (type(self), self.message, self.details), state)


def _rebuild_error(cls: type[InferoxError], message: str, details: dict[str, Any]) -> InferoxError:
    # Classes that mix ValueError and an OSError subclass (PackageNotFoundError) resolve __new__ to
    # ValueError's, which refuses OSError's memory layout; OSError.__new__ builds them correctly.
    err = OSError.__new__(cls) if issubclass(cls, OSError) else cls.__new__(cls)
    Exception.__init__(err, message)
    err.message = message
    err.details = details
    for key, value in details.items():
        setattr(err, key, value)
    return err


class ModelNotFoundError(InferoxError, LookupError):
    """No model (or no instance of it on the requested backend) is registered under that name."""

    code = "MODEL_NOT_FOUND"
    http_status = 404

    def __init__(self, name: str, *, backend: str | None = None, available: list[str] | None = None) -> None:
        where = f" on backend {backend!r}" if backend else ""
        msg = f"model {name!r} not found{where}"
        if available is not None:
            msg += f"; registered: {', '.join(sorted(available)) or '(none)'}"
        super().__init__(msg, name=name, backend=backend)
        self.name = name
        self.backend = backend
        self.available = available


class InvalidInputError(InferoxError, ValueError):
    """An input does not match what the model or builder expects; names the input and both sides."""

    code = "INVALID_INPUT"
    http_status = 400

    def __init__(
        self,
        message: str,
        *,
        name: str | None = None,
        expected: Any = None,
        actual: Any = None,
        index: int | None = None,
    ) -> None:
        parts = [message]
        if name is not None and name not in message:
            parts.insert(0, f"input {name!r}:")
        if index is not None:
            parts.insert(0, f"item {index}:")
        if expected is not None or actual is not None:
            parts.append(f"(expected {expected}, got {actual})")
        super().__init__(" ".join(parts), name=name, expected=expected, actual=actual, index=index)
        self.name = name
        self.expected = expected
        self.actual = actual
        self.index = index


class DTypeError(InvalidInputError, TypeError):
    """A dtype is unknown, unsupported by a backend, or not safely castable to what is expected."""

    code = "INVALID_DTYPE"


class TypeMismatchError(InferoxError, TypeError):
    """A type-erased model was downcast to a type it is not."""

    code = "TYPE_MISMATCH"

    def __init__(self, message: str, *, expected: Any = None, actual: Any = None) -> None:
        super().__init__(message, expected=expected, actual=actual)
        self.expected = expected
        self.actual = actual


class StateTypeError(TypeMismatchError):
    """A session state value was read back as a type other than the one stored."""

    code = "STATE_TYPE_MISMATCH"


class BackendError(InferoxError, RuntimeError):
    """A backend framework raised; the framework's exception is kept as ``__cause__``."""

    code = "BACKEND_ERROR"
    http_status = 500

    def __init__(self, message: str, *, backend: str | None = None, model: str | None = None) -> None:
        super().__init__(message, backend=backend, model=model)
        self.backend = backend
        self.model = model


class BackendUnavailableError(BackendError):
    """A backend is not installed, is blocked, or its framework failed to import; ``reason`` says why."""

    code = "BACKEND_UNAVAILABLE"
    http_status = 503

    def __init__(self, backend: str, *, reason: str, available: list[str] | None = None) -> None:
        msg = f"backend {backend!r} unavailable: {reason}"
        if available is not None:
            msg += f"; available: {', '.join(sorted(available)) or '(none)'}"
        super().__init__(msg, backend=backend)
        self.reason = reason
        self.available = available
        self.details["reason"] = reason


class OutOfMemoryError(BackendError, MemoryError):
    """A backend ran out of host or device memory."""

    code = "OUT_OF_MEMORY"
    http_status = 507


class DeviceError(InferoxError, RuntimeError):
    """A device string is malformed, or a device cannot be used."""

    code = "DEVICE_ERROR"
    http_status = 400

    def __init__(self, message: str, *, device: str | None = None, backend: str | None = None) -> None:
        super().__init__(message, device=device, backend=backend)
        self.device = device
        self.backend = backend


class DeviceUnavailableError(DeviceError):
    """A well-formed device that this machine or backend does not have."""

    code = "DEVICE_UNAVAILABLE"
    http_status = 503


class ArchitectureNotFoundError(InferoxError, LookupError):
    """No installed backend (or not the requested one) implements an architecture, or no plugin defines it.

    ``plugin`` names the plugin that registered ``backend``, ``defined_by`` the plugin that defines
    the architecture, and ``install`` says what to install (``"install inferox-torch, …"``); the
    registry fills them in so the message says who is involved and what to do.
    """

    code = "ARCHITECTURE_NOT_FOUND"
    http_status = 404

    def __init__(
        self,
        architecture: str,
        *,
        backend: str | None = None,
        available: list[str] | None = None,
        known: list[str] | None = None,
        plugin: str | None = None,
        defined_by: str | None = None,
        install: str | None = None,
    ) -> None:
        arch = f"architecture {architecture!r}" + (f" (defined by plugin {defined_by!r})" if defined_by else "")
        if known is not None:
            # No plugin contributes the architecture's schema at all (``known``: the architectures that are).
            msg = f"no installed plugin defines architecture {architecture!r}; known architectures: {', '.join(sorted(known)) or '(none)'}"
        elif backend:
            msg = f"backend {backend!r}" + (f" (plugin {plugin!r})" if plugin else "") + f" does not implement {arch}"
        else:
            msg = f"no installed backend implements {arch}"
        if available is not None:
            msg += f"; backends that do: {', '.join(sorted(available)) or '(none)'}"
        if install:
            msg += f"; {install}"
        super().__init__(msg, architecture=architecture, backend=backend, plugin=plugin, defined_by=defined_by)
        self.architecture = architecture
        self.backend = backend
        self.available = available
        self.known = known
        self.plugin = plugin
        self.defined_by = defined_by
        self.install = install


class NumericMismatchError(InferoxError, AssertionError):
    """Numbers differ beyond a tolerance: a backend's outputs, or a package's golden outputs, against
    the architecture's reference (or the golden outputs where there is no reference).

    Not a :class:`PackageIntegrityError`: the package's files may be intact while a backend computes
    something else (a tanh GELU for the exact one, a transposed weight). ``subject`` names what was
    checked (a backend's name, or ``"golden"`` for the package's stored outputs) and ``against`` what
    it was compared with (``"reference"`` or ``"golden"``); ``output``, ``index`` and
    ``max_difference`` say where the largest difference is, ``atol`` / ``rtol`` the tolerance.
    """

    code = "NUMERIC_MISMATCH"
    http_status = 500

    def __init__(
        self,
        message: str,
        *,
        subject: str | None = None,
        against: str | None = None,
        output: str | None = None,
        index: tuple[int, ...] | None = None,
        max_difference: float | None = None,
        atol: float | None = None,
        rtol: float | None = None,
    ) -> None:
        super().__init__(message, subject=subject, against=against, output=output, index=index, max_difference=max_difference, atol=atol, rtol=rtol)
        self.subject = subject
        self.against = against
        self.output = output
        self.index = index
        self.max_difference = max_difference
        self.atol = atol
        self.rtol = rtol


class InferoxTimeoutError(InferoxError, TimeoutError):
    """A request's deadline passed before it was served."""

    code = "TIMEOUT"
    http_status = 504

    def __init__(self, message: str, *, timeout: float | None = None, model: str | None = None) -> None:
        super().__init__(message, timeout=timeout, model=model)
        self.timeout = timeout
        self.model = model


class QueueFullError(InferoxError, RuntimeError):
    """A model's request queue is at its configured bound; retry later."""

    code = "QUEUE_FULL"
    http_status = 429

    def __init__(self, model: str, *, max_queue_size: int, retry_after: float = 1.0) -> None:
        super().__init__(
            f"queue for model {model!r} is full ({max_queue_size} requests waiting); retry later",
            model=model,
            max_queue_size=max_queue_size,
        )
        self.model = model
        self.max_queue_size = max_queue_size
        self.retry_after = retry_after


class ServiceUnavailableError(InferoxError, RuntimeError):
    """The engine or server is shutting down, or a model is not ready yet."""

    code = "UNAVAILABLE"
    http_status = 503


class SessionExpiredError(InferoxError, LookupError):
    """An engine session was closed, or sat idle past its time-to-live; its state is gone."""

    code = "SESSION_EXPIRED"
    http_status = 410

    def __init__(self, message: str, *, session: str | None = None, ttl: float | None = None) -> None:
        super().__init__(message, session=session, ttl=ttl)
        self.session = session
        self.ttl = ttl


class ConfigError(InferoxError, ValueError):
    """A configuration value is invalid; names the field and the value."""

    code = "INVALID_CONFIG"
    http_status = 400

    def __init__(self, message: str, *, field: str | None = None, value: Any = None, path: str | None = None) -> None:
        prefix = f"{path}: " if path else ""
        where = f"{field}: " if field and field not in message else ""
        super().__init__(f"{prefix}{where}{message}", field=field, value=value, path=path)
        self.field = field
        self.value = value
        self.path = path


class UnsupportedHeadError(ConfigError):
    """A checkpoint's task head (``config.json``'s ``architectures``) is not one Inferox computes.

    Raised when a package is built rather than dropping the head silently; names the head and the
    ones the architecture supports. ``encoder_only=True`` (``inferox pack --encoder-only``) packages
    the encoder alone instead.
    """

    code = "UNSUPPORTED_HEAD"

    def __init__(self, head: str, *, supported: list[str], architecture: str | None = None, reason: str | None = None) -> None:
        what = f"{architecture} checkpoint" if architecture else "checkpoint"
        why = f" ({reason})" if reason else ""
        message = (
            f"the {what}'s head {head} is not supported{why}; supported: {', '.join(supported)}. "
            "Pass --encoder-only (encoder_only=True) to package the encoder alone"
        )
        InferoxError.__init__(self, message, field="architectures", value=head, head=head, supported=list(supported), architecture=architecture)
        self.field: str | None = "architectures"
        self.value = head
        self.path: str | None = None
        self.head = head
        self.supported = list(supported)
        self.architecture = architecture


class PluginError(InferoxError, ImportError):
    """A plugin failed to load or registered something invalid; names the plugin."""

    code = "PLUGIN_ERROR"

    def __init__(self, message: str, *, plugin: str | None = None) -> None:
        InferoxError.__init__(self, message, plugin=plugin)
        self.plugin = plugin


class PluginVersionError(PluginError):
    """A plugin was built for a contract version this core does not speak."""

    code = "PLUGIN_VERSION_MISMATCH"


class InferoxIOError(InferoxError, OSError):
    """A filesystem operation failed; ``path`` names the file."""

    code = "IO_ERROR"

    def __init__(self, message: str, *, path: str | None = None, errno_: int | None = None) -> None:
        InferoxError.__init__(self, message, path=path, errno=errno_)
        self.path = path
        self.errno = errno_
        self.filename = path


class PackageError(InferoxError, ValueError):
    """A model package is invalid; ``path`` names the offending file, ``field`` the field."""

    code = "PACKAGE_ERROR"
    http_status = 422

    def __init__(self, message: str, *, path: str | None = None, field: str | None = None) -> None:
        where = f"{path}: " if path and path not in message else ""
        super().__init__(f"{where}{message}", path=path, field=field)
        self.path = path
        self.field = field


class PackageNotFoundError(PackageError, FileNotFoundError):
    """A package, or a file a package needs, does not exist."""

    code = "PACKAGE_NOT_FOUND"
    http_status = 404


class PackageFormatError(PackageError):
    """A package file is malformed (bad JSON, missing field, wrong type)."""

    code = "PACKAGE_FORMAT_ERROR"


class WeightShapeError(PackageFormatError):
    """A weight's shape is not the one the architecture's schema expects for the config (``inferox pack``
    refuses such a source): names the weight, its shape and the expected shape."""

    code = "WEIGHT_SHAPE_MISMATCH"

    def __init__(self, message: str, *, weight: str, expected: tuple[int, ...], actual: tuple[int, ...], path: str | None = None) -> None:
        super().__init__(message, path=path, field=weight)
        self.weight = weight
        self.expected = expected
        self.actual = actual
        self.details.update(weight=weight, expected=expected, actual=actual)


class PackageVersionError(PackageError):
    """A package was written in a newer major format version than this inferox reads."""

    code = "PACKAGE_VERSION_UNSUPPORTED"


class PackageIntegrityError(PackageError):
    """A file's size or sha256 does not match what ``metadata.json`` records."""

    code = "INTEGRITY_ERROR"


class UnsafePackageError(PackageError, PermissionError):
    """Loading would run untrusted code or unpickle untrusted weights without an explicit opt-in."""

    code = "UNSAFE_PACKAGE"
    http_status = 403


class DownloadError(InferoxError, ConnectionError):
    """Downloading from a Hub failed after retries."""

    code = "DOWNLOAD_ERROR"
    http_status = 502

    def __init__(self, message: str, *, repo_id: str | None = None, revision: str | None = None, filename: str | None = None) -> None:
        super().__init__(message, repo_id=repo_id, revision=revision, filename=filename)
        self.repo_id = repo_id
        self.revision = revision
        self.filename = filename


class RepositoryNotFoundError(DownloadError, LookupError):
    """The Hub has no repository with that id (or hides it from this token)."""

    code = "REPOSITORY_NOT_FOUND"
    http_status = 404


class RevisionNotFoundError(DownloadError, LookupError):
    """The repository exists but the branch, tag or commit does not."""

    code = "REVISION_NOT_FOUND"
    http_status = 404


class HubAuthError(DownloadError, PermissionError):
    """The Hub refused the request: a token is missing or invalid."""

    code = "UNAUTHORIZED"
    http_status = 401


class GatedRepoError(HubAuthError):
    """The repository is gated and this token has not been granted access."""

    code = "GATED_REPOSITORY"
    http_status = 403


_ALL_ERRORS: tuple[type[InferoxError], ...] = (
    InferoxError, ModelNotFoundError, InvalidInputError, DTypeError, TypeMismatchError, StateTypeError,
    BackendError, BackendUnavailableError, OutOfMemoryError, DeviceError, DeviceUnavailableError,
    ArchitectureNotFoundError, NumericMismatchError, InferoxTimeoutError, QueueFullError, ServiceUnavailableError, SessionExpiredError, ConfigError,
    PluginError, PluginVersionError, InferoxIOError, PackageError, PackageNotFoundError,
    PackageFormatError, WeightShapeError, PackageVersionError, PackageIntegrityError, UnsafePackageError,
    UnsupportedHeadError, DownloadError,
    RepositoryNotFoundError, RevisionNotFoundError, HubAuthError, GatedRepoError,
)
ERROR_CODES: dict[str, type[InferoxError]] = {cls.code: cls for cls in _ALL_ERRORS}


def error_from_code(code: str) -> type[InferoxError]:
    """The error class for a stable code (``"QUEUE_FULL"`` → :class:`QueueFullError`)."""
    return ERROR_CODES.get(code, InferoxError)


def from_os_error(exc: OSError, *, path: str | None = None) -> InferoxError:
    """Convert an ``OSError`` into the Inferox error a caller expects, keeping it as the cause."""
    filename = path or (str(exc.filename) if exc.filename is not None else None)
    reason = exc.strerror or str(exc)
    err: InferoxError
    if isinstance(exc, FileNotFoundError):
        err = PackageNotFoundError(f"no such file: {filename}", path=filename)
    elif exc.errno == errno.ENOSPC:
        err = InferoxIOError(f"no space left on device while writing {filename}", path=filename, errno_=exc.errno)
    else:
        err = InferoxIOError(f"I/O error on {filename}: {reason}", path=filename, errno_=exc.errno)
    err.__cause__ = exc
    return err


#: Lower-cased message fragments that mean "out of memory" in any framework (XLA's status name,
#: CUDA's and most allocators' wording); a backend adds its own through :class:`FrameworkErrors`.
_OUT_OF_MEMORY = ("resource_exhausted", "out of memory")


def _is_out_of_memory(exc: BaseException, fragments: tuple[str, ...] = ()) -> bool:
    if isinstance(exc, MemoryError):
        return True
    # torch.OutOfMemoryError / jaxlib's RESOURCE_EXHAUSTED, recognised without importing either.
    text = str(exc).lower()
    return type(exc).__name__ == "OutOfMemoryError" or any(f in text for f in (*_OUT_OF_MEMORY, *fragments))


def wrap_backend_error(
    exc: BaseException,
    *,
    backend: str,
    model: str | None = None,
    device: str | None = None,
    out_of_memory: tuple[str, ...] = (),
    device_missing: tuple[str, ...] = (),
) -> InferoxError:
    """Turn a framework exception into an Inferox one, keeping the original as ``__cause__``.

    Inferox errors pass through unchanged, ``OSError`` becomes an IO error and out-of-memory
    conditions become :class:`OutOfMemoryError`; a message containing one of ``device_missing``
    (lower-cased fragments: "not compiled with cuda") is a :class:`DeviceUnavailableError` naming
    ``device``; anything else is a :class:`BackendError`. ``out_of_memory`` adds a framework's own
    fragments to the ones every framework shares. A backend keeps its tables in a
    :class:`FrameworkErrors` rather than calling this with them each time.
    """
    if isinstance(exc, InferoxError):
        return exc
    err: InferoxError
    on = f" on {device}" if device else ""
    # Out of memory first: an allocator may say so through an OSError (ENOMEM) or a plain RuntimeError.
    if _is_out_of_memory(exc, out_of_memory):
        err = OutOfMemoryError(f"{backend}: out of memory{on}: {exc}", backend=backend, model=model)
    elif isinstance(exc, OSError):
        err = from_os_error(exc)
    elif device_missing and any(f in str(exc).lower() for f in device_missing):
        where = device or "the requested device"
        err = DeviceUnavailableError(f"{where} is not available to backend {backend!r}: {exc}", device=device, backend=backend)
    else:
        where = f" in model {model!r}" if model else ""
        err = BackendError(f"{backend} raised {type(exc).__name__}{where}: {exc}", backend=backend, model=model)
    err.__cause__ = exc
    return err


@contextmanager
def backend_errors(
    backend: str,
    *,
    model: str | None = None,
    device: str | None = None,
    out_of_memory: tuple[str, ...] = (),
    device_missing: tuple[str, ...] = (),
) -> Iterator[None]:
    """Context manager that re-raises framework exceptions as Inferox errors (see :func:`wrap_backend_error`)."""
    try:
        yield
    except InferoxError:
        raise
    except Exception as exc:
        raise wrap_backend_error(exc, backend=backend, model=model, device=device, out_of_memory=out_of_memory, device_missing=device_missing) from exc


@dataclass(frozen=True)
class FrameworkErrors:
    """How one backend's framework reports what Inferox has a typed error for: the only part of
    error wrapping that differs between backends, as two tables of lower-cased message fragments.

    Every backend distribution builds one and derives its ``wrap_<x>_error`` / ``<x>_errors``
    from it, so the wrapping rules (pass Inferox errors through, keep the framework's exception as
    ``__cause__``, out of memory before a missing device before anything else) live here only::

        TORCH_ERRORS = FrameworkErrors("torch", out_of_memory=("can't allocate memory",), device_missing=("not compiled with cuda",))
        wrap_torch_error = TORCH_ERRORS.wrap
        torch_errors = TORCH_ERRORS.context

    ``out_of_memory``: fragments of the framework's messages that mean an allocation failed (added
    to those every framework shares: ``RESOURCE_EXHAUSTED``, "out of memory", a ``MemoryError``, an
    exception class named ``OutOfMemoryError``). ``device_missing``: fragments that mean the
    requested device does not exist on this machine or in this build.
    """

    backend: str
    out_of_memory: tuple[str, ...] = ()
    device_missing: tuple[str, ...] = ()

    def wrap(self, exc: BaseException, *, device: str | None = None, model: str | None = None) -> InferoxError:
        """The Inferox error for a framework exception (``exc`` kept as ``__cause__``)."""
        return wrap_backend_error(exc, backend=self.backend, model=model, device=device, out_of_memory=self.out_of_memory, device_missing=self.device_missing)

    def context(self, *, device: str | None = None, model: str | None = None) -> AbstractContextManager[None]:
        """A context manager re-raising anything the framework raises inside it as an Inferox error."""
        return backend_errors(self.backend, model=model, device=device, out_of_memory=self.out_of_memory, device_missing=self.device_missing)
