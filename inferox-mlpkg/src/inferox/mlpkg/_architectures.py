"""Where the package format finds architectures: the plugin registry, and nowhere else.

An architecture is contributed by a plugin as an :class:`~inferox.core.ArchitectureSchema` (the
standard ``mlp`` and ``bert`` by core's built-in plugin). :class:`PackageArchitecture` is that schema
seen from a package: the same callables, with a bad ``config.json`` or ``preprocessing.json``
reported as a :class:`~inferox.core.errors.PackageFormatError` naming the file and the field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from inferox.core.errors import ConfigError, PackageFormatError, UnsupportedHeadError
from inferox.core.plugins import get_registry
from inferox.core.schema import ArchitectureSchema
from inferox.core.spec import TensorSpec
from inferox.mlpkg._format import CONFIG_FILE, PREPROCESSING_FILE

__all__ = ["PackageArchitecture", "architecture_for_config", "get_architecture", "known_architectures"]

T = TypeVar("T")


def _as_package_error(fn: Callable[[], T], path: str) -> T:
    try:
        return fn()
    except UnsupportedHeadError:
        raise  # already names the head and what is supported
    except ConfigError as exc:
        raise PackageFormatError(f"{path}: {exc.message}", path=path, field=exc.field) from exc


@dataclass(frozen=True)
class PackageArchitecture:
    """An architecture's schema, with its errors naming the package file they come from."""

    schema: ArchitectureSchema

    @property
    def name(self) -> str:
        return self.schema.name

    @property
    def family(self) -> str:
        return self.schema.family

    def check_config(self, config: Mapping[str, Any]) -> None:
        _as_package_error(lambda: self.schema.parse(config), CONFIG_FILE)

    def specs(self, config: Mapping[str, Any], pre: Mapping[str, Any]) -> tuple[list[TensorSpec], list[TensorSpec]]:
        """(inputs, outputs); config.json is checked first, so a later error is preprocessing.json's."""
        self.check_config(config)
        return _as_package_error(lambda: self.schema.specs(config, pre), PREPROCESSING_FILE)

    def default_outputs(self, config: Mapping[str, Any], pre: Mapping[str, Any]) -> list[str]:
        self.check_config(config)
        return _as_package_error(lambda: self.schema.outputs_by_default(config, pre), PREPROCESSING_FILE)

    def describe(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return _as_package_error(lambda: self.schema.describe(config), CONFIG_FILE)

    def golden(self, config: Mapping[str, Any], pre: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        return _as_package_error(lambda: self.schema.golden(config, pre, rng), CONFIG_FILE)

    def resolve(self, config: Mapping[str, Any], pre: Mapping[str, Any], *, weight_names: Sequence[str], encoder_only: bool = False) -> dict[str, Any]:
        """The pre-processing settings the package records (the task head, optional weights found).

        A head the architecture does not support is an :class:`UnsupportedHeadError` naming it and
        the supported ones, unless ``encoder_only``; a schema without ``resolve`` keeps ``pre``.
        """
        if self.schema.resolve is None:
            return {k: v for k, v in pre.items() if k != "activation_fn"}
        resolve = self.schema.resolve
        return _as_package_error(lambda: dict(resolve(config, pre, weight_names=list(weight_names), encoder_only=encoder_only)), CONFIG_FILE)

    def task(self, config: Mapping[str, Any], pre: Mapping[str, Any]) -> dict[str, Any] | None:
        """What a server needs to serve the package (``model_info.json``'s ``task``), or ``None``."""
        if self.schema.task is None:
            return None
        task = self.schema.task
        return _as_package_error(lambda: task(config, pre), PREPROCESSING_FILE)


def known_architectures() -> list[str]:
    """Every architecture an installed plugin defines."""
    return get_registry().schema_names()


def get_architecture(name: str) -> PackageArchitecture:
    """The architecture ``name`` (or a ``model_type`` one claims); :class:`ArchitectureNotFoundError` lists the known ones."""
    return PackageArchitecture(get_registry().schema(name))


def architecture_for_config(config: Mapping[str, Any], *, path: str = CONFIG_FILE) -> PackageArchitecture:
    """The architecture whose schema claims ``config.json``'s ``model_type``.

    A missing ``model_type`` or one no installed plugin claims is a :class:`PackageFormatError`
    naming the file and the field (and the architectures that are known).
    """
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise PackageFormatError(
            f"{path} has no model_type; pass architecture= explicitly (known: {', '.join(known_architectures())})",
            path=path,
            field="model_type",
        )
    schema = get_registry().schema_for_model_type(model_type)
    if schema is None:
        raise PackageFormatError(
            f"{path}: unknown model_type {model_type!r}; known architectures: {', '.join(known_architectures())}",
            path=path,
            field="model_type",
        )
    return PackageArchitecture(schema)
