"""The test suite's shared library: what more than one test folder needs, written once.

Importable as ``tests.support`` because the root ``pyproject.toml`` puts the repository root on
pytest's ``pythonpath``; ``tests/conftest.py`` registers :mod:`tests.support.fixtures` through
``pytest_plugins``. Nothing here imports torch, jax, olah or huggingface_hub at import time (the
nox ``core`` session has none of them): each module imports what it needs where it needs it.

- :mod:`tests.support.fixtures` — the shared fixtures (packages, model folders, the Hub, tmpfs disks).
- :mod:`tests.support.net` — ``free_port`` and ``wait_until``.
- :mod:`tests.support.model_files` — MLP model folders and their files (config.json + safetensors).
- :mod:`tests.support.packages` — real packages built with ``inferox.mlpkg`` (MLP, MiniLM).
- :mod:`tests.support.hub` — olah serving local git repositories, and a fault-injecting proxy.
- :mod:`tests.support.disks` — small tmpfs disks for full-disk tests.
- :mod:`tests.support.engine_models` — tiny real torch / jax models that count their batches.
- :mod:`tests.support.plugins` — plugin objects made in a test (a backend spec, a factory).
"""

from pathlib import Path

#: The repository's root folder (child processes that import ``tests.support`` get it as PYTHONPATH).
REPO_ROOT = Path(__file__).resolve().parents[2]
