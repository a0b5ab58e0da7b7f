"""The package format's view of an architecture: the registry's schema, with errors naming the
package file (config.json or preprocessing.json) they come from."""

from __future__ import annotations

import numpy as np
import pytest

from inferox.core.errors import PackageFormatError
from inferox.core.plugins import get_registry
from inferox.mlpkg import PackageArchitecture, architecture_for_config, get_architecture


def test_default_outputs_come_from_the_schema() -> None:
    bert = get_architecture("bert")
    assert isinstance(bert, PackageArchitecture) and bert.schema is get_registry().schema("bert")
    config = dict(bert.schema.example_config)
    assert bert.default_outputs(config, {}) == ["last_hidden_state", "pooler_output"]
    assert bert.default_outputs(config, {"pooling": "cls", "normalize": False}) == ["sentence_embedding"]
    assert architecture_for_config({"model_type": "BERT"}).name == "bert"


def test_errors_name_the_package_file_and_field() -> None:
    bert = get_architecture("bert")
    config = dict(bert.schema.example_config)
    with pytest.raises(PackageFormatError) as ei:
        bert.default_outputs(config, {"pooling": "median"})
    assert ei.value.code == "PACKAGE_FORMAT_ERROR" and ei.value.path == "preprocessing.json" and ei.value.field == "pooling"
    with pytest.raises(PackageFormatError) as ei:
        bert.specs({**config, "hidden_size": 15}, {})
    assert ei.value.path == "config.json" and ei.value.field == "num_attention_heads"
    with pytest.raises(PackageFormatError) as ei:
        get_architecture("mlp").golden({"layer_sizes": "wide"}, {}, np.random.default_rng(0))
    assert ei.value.path == "config.json" and ei.value.field == "layer_sizes"
