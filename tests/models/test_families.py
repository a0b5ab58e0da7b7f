"""Every encoder family on every backend matches ``transformers``: BERT, DistilBERT, RoBERTa,
XLM-RoBERTa, MPNet (relative position bias) and ELECTRA (embedding projection), each a tiny
random-weight checkpoint made by ``transformers`` in the test, saved with ``save_pretrained``,
packed by ``inferox pack`` and run on core's NumPy reference, torch, jax and onnx — within 1e-4 in fp32, on a batch with padding and token types. Then every
sentence-transformers pooling mode, Dense and Normalize against ``sentence_transformers`` itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.families import FAMILIES, save_checkpoint, save_tokenizer, token_batch

from .conftest import PARITY_BACKENDS, FamilyPackages, run_package

torch = pytest.importorskip("torch")

TOL = 1e-4


def hf_outputs(model: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with torch.inference_mode():
        out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    result = {"last_hidden_state": out.last_hidden_state.numpy()}
    if getattr(out, "pooler_output", None) is not None:
        result["pooler_output"] = out.pooler_output.numpy()
    return result


@pytest.mark.parametrize("backend", PARITY_BACKENDS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_matches_transformers(family_packages: FamilyPackages, family: str, backend: str) -> None:
    package, hf = family_packages[(family, None)]
    inputs = token_batch(family, batch=4, seq=12, seed=1)
    want = hf_outputs(hf, inputs)
    got = run_package(package, backend, inputs)
    assert set(got) == set(want)  # pooler_output exactly where transformers has one
    real = inputs["attention_mask"].astype(bool)  # padded positions are not comparable (transformers lets them attend)
    np.testing.assert_allclose(got["last_hidden_state"][real], want["last_hidden_state"][real], atol=TOL, rtol=0)
    if "pooler_output" in want:
        np.testing.assert_allclose(got["pooler_output"], want["pooler_output"], atol=TOL, rtol=0)
    assert got["last_hidden_state"].dtype == np.float32


@pytest.mark.parametrize("backend", PARITY_BACKENDS)
def test_roberta_positions_start_after_the_padding_index(family_packages: FamilyPackages, backend: str) -> None:
    """RoBERTa numbers real tokens from padding_idx + 1 (= 2): without position_ids, every token reads
    a different row of the position table than a BERT would, and explicit ids give the same result."""
    package, hf = family_packages[("roberta", None)]
    inputs = token_batch("roberta", batch=2, seq=10, seed=3)
    mask = inputs["attention_mask"]
    explicit = dict(inputs, position_ids=(np.cumsum(mask, axis=1) * mask + 1).astype(np.int64))
    implicit = run_package(package, backend, inputs)["last_hidden_state"]
    given = run_package(package, backend, explicit)["last_hidden_state"]
    real = mask.astype(bool)
    np.testing.assert_allclose(implicit[real], given[real], atol=1e-5)
    shifted = run_package(package, backend, dict(inputs, position_ids=np.tile(np.arange(10), (2, 1))))["last_hidden_state"]
    assert np.abs(shifted[real] - implicit[real]).max() > 1e-3  # BERT-style 0..L-1 is not what RoBERTa computes
    want = hf_outputs(hf, dict(inputs, position_ids=np.tile(np.arange(10), (2, 1))))["last_hidden_state"]
    np.testing.assert_allclose(shifted[real], want[real], atol=TOL)


def test_mpnet_relative_bias_buckets_match_transformers() -> None:
    """The bucket of every relative distance a 514-position MPNet can see, including the ones on a
    bucket boundary (where float32 rounding decides), is transformers' own."""
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    from inferox.core.architectures import relative_position_buckets

    p = 514
    rel = torch.arange(-(p - 1), p)
    np.testing.assert_array_equal(relative_position_buckets(p), MPNetEncoder.relative_position_bucket(rel).numpy())


# -- sentence-transformers modules ----------------------------------------------------------------------------
#: (pooling modes, Dense layers, Normalize) per case: every mode alone, two concatenated, Dense stacks.
ST_CASES = {
    "cls": ("cls", [], False),
    "mean": ("mean", [], True),
    "max": ("max", [], False),
    "mean_sqrt_len": ("mean_sqrt_len_tokens", [], False),
    "weightedmean": ("weightedmean", [], True),
    "lasttoken": ("lasttoken", [], False),
    "cls+mean, 2 Dense": (["cls", "mean"], [(64, 24, True, "Tanh"), (24, 8, False, "Identity")], True),
    "mean, Dense with residual": ("mean", [(32, 32, True, "ReLU", True)], True),
}


@pytest.fixture(scope="module")
def st_packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any]]:
    """A sentence-transformers folder per case around one tiny BERT (loaded by sentence-transformers
    itself), packed by inferox."""
    st = pytest.importorskip("sentence_transformers")
    from safetensors.torch import save_file

    from inferox.mlpkg import build_package

    root = tmp_path_factory.mktemp("st")
    base = root / "bert"
    save_checkpoint("bert", base, seed=7)
    save_tokenizer(base)
    out: dict[str, tuple[Path, Any]] = {}
    for case, (pooling, dense, normalize) in ST_CASES.items():
        folder = root / case.replace(" ", "_").replace(",", "").replace("+", "_")
        import shutil

        shutil.copytree(base, folder)
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
        (folder / "1_Pooling").mkdir()
        (folder / "1_Pooling" / "config.json").write_text(json.dumps({"embedding_dimension": 32, "pooling_mode": pooling, "include_prompt": True}))
        torch.manual_seed(len(out))
        for i, layer in enumerate(dense, start=2):
            n_in, n_out, bias, act, *residual = layer
            (folder / f"{i}_Dense").mkdir()
            (folder / f"{i}_Dense" / "config.json").write_text(json.dumps({
                "in_features": n_in, "out_features": n_out, "bias": bias, "activation_function": f"torch.nn.modules.activation.{act}" if act != "Identity" else "torch.nn.modules.linear.Identity",
                "use_residual": bool(residual),
            }))
            weights = {"linear.weight": torch.randn(n_out, n_in) * 0.3}
            if bias:
                weights["linear.bias"] = torch.randn(n_out) * 0.3
            save_file(weights, str(folder / f"{i}_Dense" / "model.safetensors"))
            modules.append({"idx": i, "name": str(i), "path": f"{i}_Dense", "type": "sentence_transformers.models.Dense"})
        if normalize:
            modules.append({"idx": len(modules), "name": str(len(modules)), "path": "", "type": "sentence_transformers.models.Normalize"})
        (folder / "modules.json").write_text(json.dumps(modules))
        (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 20, "do_lower_case": False}))
        model = st.SentenceTransformer(str(folder), device="cpu")
        out[case] = (build_package(folder, output_dir=root / "packages", name=folder.name), model)
    return out


@pytest.mark.parametrize("backend", PARITY_BACKENDS)
@pytest.mark.parametrize("case", list(ST_CASES))
def test_sentence_transformers_modules_match(st_packages: dict[str, tuple[Path, Any]], case: str, backend: str) -> None:
    package, model = st_packages[case]
    inputs = token_batch("bert", batch=4, seq=12, seed=5)
    if case == "lasttoken":  # left padding, as decoder-style embedders use it: the last real token is the last one
        inputs = {k: np.flip(v, axis=1).copy() for k, v in inputs.items()}
    with torch.inference_mode():
        want = model.forward({k: torch.from_numpy(v) for k, v in inputs.items()})["sentence_embedding"].numpy()
    got = run_package(package, backend, inputs)["sentence_embedding"]
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)


def test_max_seq_length_reaches_the_tokenizer(st_packages: dict[str, tuple[Path, Any]]) -> None:
    from inferox.mlpkg import load_model

    package, model = st_packages["mean"]
    loaded = load_model(package, backend="torch").model
    assert loaded.text_encoder is not None and loaded.text_encoder.max_length == 20 == model.max_seq_length
    batch = loaded.text_encoder.encode([" ".join(f"w{i}" for i in range(40))])
    assert batch["input_ids"].shape == (1, 20)
