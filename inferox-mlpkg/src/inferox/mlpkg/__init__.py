"""inferox.mlpkg — the Inferox model package: build once (from a ``model.toml``, a local folder or
the Hugging Face Hub), verify, cache, and load on any installed backend.

The format is described in ``docs/package-format.md``; :data:`FORMAT_VERSION` is the version this
release writes.
"""

from __future__ import annotations

from inferox.mlpkg._architectures import PackageArchitecture, architecture_for_config, get_architecture, known_architectures
from inferox.mlpkg._build import build_from_folder, build_from_hub, build_from_toml, build_package
from inferox.mlpkg._cache import CacheEntry, PackageCache
from inferox.mlpkg._format import FORMAT_VERSION
from inferox.mlpkg._fs import clean_debris
from inferox.mlpkg._hub import DownloadPolicy, HubSource
from inferox.mlpkg._loading import VerifyReport, as_backend, load_model, verify_package
from inferox.mlpkg._package import Package, load_package
from inferox.mlpkg._source import SOURCE_KINDS, ResolvedSource, is_model_repository, resolve_source, source_kind
from inferox.mlpkg._toml import ModelToml, parse_model_toml
from inferox.mlpkg._weights import convert_pickle_to_safetensors

__all__ = [
    "FORMAT_VERSION",
    "CacheEntry",
    "DownloadPolicy",
    "HubSource",
    "ModelToml",
    "Package",
    "PackageArchitecture",
    "PackageCache",
    "ResolvedSource",
    "SOURCE_KINDS",
    "VerifyReport",
    "architecture_for_config",
    "as_backend",
    "build_from_folder",
    "build_from_hub",
    "build_from_toml",
    "build_package",
    "clean_debris",
    "convert_pickle_to_safetensors",
    "get_architecture",
    "is_model_repository",
    "known_architectures",
    "load_model",
    "load_package",
    "parse_model_toml",
    "resolve_source",
    "source_kind",
    "verify_package",
]
