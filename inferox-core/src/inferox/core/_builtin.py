"""Core's built-in plugin: the standard architectures, ``mlp`` and the encoder families.

Registered by every :class:`~inferox.core.PluginRegistry` under the name ``inferox-core``, through
the same ``inferox_register_schemas`` hook a third-party plugin implements: nothing else in Inferox
knows these names. Their schemas and definitions live in :mod:`inferox.core.architectures`; each
runs on every backend that declares an array namespace, and on NumPy as its own reference.
"""

from __future__ import annotations

from collections.abc import Callable

from inferox.core.architectures import BERT, ENCODER_SCHEMAS, MLP
from inferox.core.constants import CONTRACT_VERSION
from inferox.core.hookspecs import hookimpl
from inferox.core.schema import ArchitectureSchema

__all__ = ["BERT", "MLP", "PLUGIN_NAME", "inferox_contract_version", "inferox_register_schemas"]

#: The name the built-in plugin is registered under.
PLUGIN_NAME = "inferox-core"


@hookimpl
def inferox_contract_version() -> str:
    return CONTRACT_VERSION


@hookimpl
def inferox_register_schemas(register: Callable[[ArchitectureSchema], None]) -> None:
    """The standard architectures, contributed like any plugin's."""
    register(MLP)
    for schema in ENCODER_SCHEMAS.values():
        register(schema)
