"""``python -m inferox.engine.cli``: the ``inferox`` command."""

from inferox.engine.cli import main

main()
