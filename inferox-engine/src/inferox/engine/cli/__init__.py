"""The ``inferox`` command line: ``backends``, ``pack``, ``inspect``, ``verify``, ``convert``, ``run``,
``serve`` and ``bench``. Exit codes are listed in :mod:`inferox.engine.cli._errors`."""

from __future__ import annotations

from inferox.engine.cli._errors import ParityError, exit_code_for
from inferox.engine.cli._main import build_server, cli, main, synthetic_inputs

__all__ = ["ParityError", "build_server", "cli", "exit_code_for", "main", "synthetic_inputs"]
