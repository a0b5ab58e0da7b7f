"""Default outputs: which outputs a request that names none gets, recorded at build time.

``model_info.json``'s ``default_outputs`` lists them. At build time it comes from the source:
a sentence-transformers folder defaults to ``sentence_embedding`` (the others are there on
request), an architecture may declare its own default (a ``default_outputs`` attribute), and
otherwise the field is left out. A package without the field — every package built before it
existed — gives every output, as it always did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from inferox.core.errors import PackageFormatError
from inferox.core.spec import TensorSpec

__all__ = ["DEFAULT_OUTPUTS_FIELD", "build_default_outputs", "read_default_outputs"]

#: The ``model_info.json`` field.
DEFAULT_OUTPUTS_FIELD = "default_outputs"
#: What a sentence-transformers model is for.
_SENTENCE_EMBEDDING = "sentence_embedding"


def build_default_outputs(architecture: Any, outputs: Sequence[TensorSpec], preprocessing: Mapping[str, Any]) -> list[str] | None:
    """The default outputs to record for a package being built (``None``: every output)."""
    names = [s.name for s in outputs]
    if preprocessing.get("source") == "sentence-transformers" and _SENTENCE_EMBEDDING in names:
        return [_SENTENCE_EMBEDDING]
    declared = getattr(architecture, "default_outputs", None)
    if declared:
        chosen = [n for n in declared if n in names]
        return chosen or None
    return None


def read_default_outputs(info: Mapping[str, Any], outputs: Sequence[TensorSpec], *, rel: str) -> tuple[str, ...] | None:
    """``model_info.json``'s default outputs, checked against its outputs (``None`` when absent)."""
    value = info.get(DEFAULT_OUTPUTS_FIELD)
    if value is None:
        return None
    names = {s.name for s in outputs}
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v in names for v in value):
        raise PackageFormatError(f"{rel}: {DEFAULT_OUTPUTS_FIELD} must be a non-empty list of output names {sorted(names)}", path=rel, field=DEFAULT_OUTPUTS_FIELD)
    return tuple(value)
