"""The ``inferox`` command line: ``backends``, ``pack``, ``inspect``, ``verify``, ``convert``, ``run``,
``serve`` and ``bench``, one module per command. Exit codes are listed in
:mod:`inferox.engine.cli._errors`. This package is the command line only: the library API lives in
``inferox.engine``, ``inferox.engine.server`` and ``inferox.mlpkg``."""

from __future__ import annotations

# Importing the command modules registers their commands on the group.
from inferox.engine.cli import _backends, _bench, _convert, _inspect, _pack, _run, _serve, _verify  # noqa: F401
from inferox.engine.cli._errors import ParityError, exit_code_for
from inferox.engine.cli._group import cli, main

__all__ = ["ParityError", "cli", "exit_code_for", "main"]
