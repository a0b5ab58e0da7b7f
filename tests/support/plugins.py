"""Plugins made in a test: a backend spec or an architecture factory registered for one test,
through the same hooks a published plugin implements."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

NUMPY_BACKEND = "inferox_numpy.backend:NumpyBackend"  # the reference backend's loader (tests/plugins/inferox-numpy)


def make_plugin(
    *, backends: Mapping[str, str] | None = None, architectures: Mapping[tuple[str, str], Callable[..., Any] | str] | None = None
) -> object:
    """A plugin object for ``registry.register_plugin(...)``: ``backends`` maps a backend name to its
    loader (``"module:Class"``), ``architectures`` maps (backend, architecture) to a factory."""
    from inferox.core import BackendSpec, hookimpl

    class _Plugin:
        @hookimpl
        def inferox_contract_version(self) -> str:
            return "1.0"

        @hookimpl
        def inferox_register_backends(self, register: Callable[[BackendSpec], None]) -> None:
            for name, loader in (backends or {}).items():
                register(BackendSpec(name, loader=loader))

        @hookimpl
        def inferox_register_architectures(self, register: Callable[..., None]) -> None:
            for (backend, arch), factory in (architectures or {}).items():
                register(backend, arch, factory)

    return _Plugin()
