"""Plugins made in a test: a backend spec or an architecture factory registered for one test,
through the same hooks a published plugin implements, in-process (:func:`make_plugin`) or as a REAL
installed distribution that discovery finds through its entry point (:func:`make_distribution`)."""

from __future__ import annotations

import importlib.metadata as md
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
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


def make_distribution(
    site: Path,
    name: str,
    entry_points: Mapping[str, str],
    *,
    version: str = "1.0.0",
    modules: Mapping[str, str] | None = None,
    group: str = "inferox",
) -> md.PathDistribution:
    """A real installed distribution: ``site/<name>-<version>.dist-info`` with METADATA and an
    ``entry_points.txt`` naming ``entry_points`` in ``group``, plus plugin modules written to ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    dist_info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    lines = [f"[{group}]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for module, source in (modules or {}).items():
        path = site / (module.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    return md.PathDistribution(dist_info)
