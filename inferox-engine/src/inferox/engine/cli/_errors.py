"""Exit codes of the ``inferox`` command, one per family of errors, so scripts can branch on them.

===== =====================================================================================
code  meaning
===== =====================================================================================
0     success
1     any other Inferox error
2     usage error (bad option or argument; click's own code)
3     invalid input or configuration (``INVALID_INPUT``, ``INVALID_DTYPE``, ``INVALID_CONFIG``)
4     not found (model, package, architecture, Hub repository or revision)
5     invalid package (format, version, integrity)
6     unsafe package refused (pickle weights or package code without the opt-in flag)
7     backend or device error (unavailable backend, device, out of memory, framework failure)
8     download / Hub error (network, authentication, gated repository)
9     plugin error (a plugin failed to load or speaks another contract version)
10    I/O error
11    timeout, full queue or service unavailable
12    ``verify``: golden outputs or a backend's outputs differ from the reference beyond tolerance
70    unexpected internal error (a bug: rerun with ``--debug`` and report the traceback)
130   interrupted (Ctrl-C)
===== =====================================================================================
"""

from __future__ import annotations

from inferox.core.errors import (
    BackendError,
    ConfigError,
    DeviceError,
    DownloadError,
    InferoxError,
    InferoxIOError,
    InferoxTimeoutError,
    InvalidInputError,
    NumericMismatchError,
    PackageError,
    PackageNotFoundError,
    PluginError,
    QueueFullError,
    ServiceUnavailableError,
    UnsafePackageError,
)

__all__ = ["EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_PARITY", "EXIT_USAGE", "ParityError", "exit_code_for"]

EXIT_USAGE = 2
EXIT_PARITY = 12
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


class ParityError(NumericMismatchError):
    """``inferox verify``'s verdict: outputs differ beyond tolerance (every failing row, summarised).

    A :class:`~inferox.core.errors.NumericMismatchError` whose fields are those of ``first``, the
    first failing row's; its own code, ``PARITY_MISMATCH``, is the command's (exit code 12)."""

    code = "PARITY_MISMATCH"

    def __init__(self, message: str, *, first: InferoxError | None = None) -> None:
        if isinstance(first, NumericMismatchError):
            super().__init__(message, subject=first.subject, against=first.against, output=first.output, index=first.index,
                             max_difference=first.max_difference, atol=first.atol, rtol=first.rtol)
        else:
            super().__init__(message)


def exit_code_for(exc: InferoxError) -> int:
    """The exit code of an Inferox error (most specific family first)."""
    if isinstance(exc, NumericMismatchError):
        return EXIT_PARITY
    if isinstance(exc, UnsafePackageError):
        return 6
    if isinstance(exc, PackageNotFoundError) or isinstance(exc, LookupError):
        return 4
    if isinstance(exc, (InvalidInputError, ConfigError)):
        return 3
    if isinstance(exc, PackageError):
        return 5
    if isinstance(exc, (BackendError, DeviceError)):
        return 7
    if isinstance(exc, DownloadError):
        return 8
    if isinstance(exc, PluginError):
        return 9
    if isinstance(exc, InferoxIOError):
        return 10
    if isinstance(exc, (InferoxTimeoutError, QueueFullError, ServiceUnavailableError)):
        return 11
    return 1
