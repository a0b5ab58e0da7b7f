"""``inferox.core.text.TextEncoder`` on the real MiniLM tokenizer, and core importing without ``tokenizers``."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from inferox.core.errors import ConfigError, InvalidInputError, PackageNotFoundError
from inferox.core.text import TextEncoder, read_max_seq_length


@pytest.fixture(scope="module")
def encoder(minilm_dir: Path) -> TextEncoder:
    return TextEncoder.from_file(minilm_dir / "tokenizer.json", limit=512)


def test_defaults_come_from_sentence_bert_config(encoder: TextEncoder, minilm_dir: Path) -> None:
    assert read_max_seq_length(minilm_dir) == 256
    assert encoder.max_length == 256 and encoder.limit == 512 and encoder.pad_id == 0 and encoder.vocab_size == 30522
    assert "max_length=256" in repr(encoder)


def test_encode_pads_to_longest_with_mask_and_i64(encoder: TextEncoder) -> None:
    out = encoder.encode(["hello world", "a much longer sentence here ok"])
    assert set(out) == {"input_ids", "attention_mask", "token_type_ids"}
    assert all(v.dtype == np.int64 for v in out.values())
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.shape == mask.shape == out["token_type_ids"].shape == (2, 8)
    assert ids[0].tolist() == [101, 7592, 2088, 102, 0, 0, 0, 0]
    assert mask[0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0] and mask[1].all()
    assert not out["token_type_ids"].any()


def test_single_string_is_a_batch_of_one(encoder: TextEncoder) -> None:
    out = encoder("hello world")
    assert out["input_ids"].shape == (1, 4)


def test_truncates_at_configured_length_and_override(encoder: TextEncoder) -> None:
    long_text = "word " * 1000
    assert encoder.encode(long_text)["input_ids"].shape == (1, 256)
    out = encoder.encode([long_text, "short"], max_length=512)
    assert out["input_ids"].shape == (2, 512)
    assert out["input_ids"][0, -1] == 102  # [SEP] is kept when truncating
    assert encoder.encode(long_text, max_length=16)["input_ids"].shape == (1, 16)
    # the override does not stick
    assert encoder.encode(long_text)["input_ids"].shape == (1, 256)


@pytest.mark.parametrize("bad", [513, 1, 0, -3, "64", True, 2.5])
def test_max_length_out_of_range_is_invalid_input(encoder: TextEncoder, bad: object) -> None:
    with pytest.raises(InvalidInputError) as ei:
        encoder.encode("hi", max_length=bad)  # type: ignore[arg-type]
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == "max_length"


def test_constructor_limits(minilm_dir: Path) -> None:
    with pytest.raises(InvalidInputError) as ei:
        TextEncoder.from_file(minilm_dir / "tokenizer.json", max_length=600, limit=512)
    assert ei.value.name == "max_length" and ei.value.actual == 600
    # a package default above a smaller position table is clipped to it
    assert TextEncoder.from_file(minilm_dir / "tokenizer.json", limit=128).max_length == 128
    with pytest.raises(ConfigError) as ei2:
        TextEncoder.from_file(minilm_dir / "tokenizer.json", limit=1)
    assert ei2.value.field == "limit"


@pytest.mark.parametrize(("texts", "index"), [([], None), (["ok", 3], 1), (b"bytes", None), (42, None)])
def test_bad_text_is_invalid_input(encoder: TextEncoder, texts: object, index: int | None) -> None:
    with pytest.raises(InvalidInputError) as ei:
        encoder.encode(texts)  # type: ignore[arg-type]
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == "text" and ei.value.index == index


def test_missing_and_corrupt_tokenizer_files(tmp_path: Path) -> None:
    with pytest.raises(PackageNotFoundError) as ei:
        TextEncoder.from_file(tmp_path / "tokenizer.json")
    assert ei.value.code == "PACKAGE_NOT_FOUND" and ei.value.path == str(tmp_path / "tokenizer.json")
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError) as ei2:
        TextEncoder.from_file(bad)
    assert ei2.value.field == "tokenizer" and ei2.value.path == str(bad)


def test_concurrent_encodes_with_different_lengths(encoder: TextEncoder) -> None:
    long_text = "token " * 600
    errors: list[str] = []

    def work(length: int) -> None:
        for _ in range(20):
            n = encoder.encode(long_text, max_length=length)["input_ids"].shape[1]
            if n != length:
                errors.append(f"{length}: {n}")

    threads = [threading.Thread(target=work, args=(n,)) for n in (32, 300, 512)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_core_imports_and_reports_without_tokenizers(minilm_dir: Path) -> None:
    code = (
        "import sys; sys.modules['tokenizers'] = None\n"
        "import inferox.core, inferox.core.text, inferox.core.architectures\n"
        "from inferox.core.errors import BackendUnavailableError\n"
        "try:\n"
        f"    inferox.core.text.TextEncoder.from_file({str(minilm_dir / 'tokenizer.json')!r})\n"
        "except BackendUnavailableError as e:\n"
        "    print(e.code, e.reason)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.startswith("BACKEND_UNAVAILABLE") and "inferox-core[text]" in out.stdout


def test_missing_tokenizers_is_backend_unavailable_in_process(monkeypatch: pytest.MonkeyPatch, minilm_dir: Path) -> None:
    from inferox.core.errors import BackendUnavailableError

    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(BackendUnavailableError) as ei:
        TextEncoder.from_file(minilm_dir / "tokenizer.json")
    assert ei.value.code == "BACKEND_UNAVAILABLE" and "inferox-core[text]" in ei.value.reason


@pytest.mark.parametrize(("vocab", "pad_id"), [({"w": 0, "x": 1, "[PAD]": 2}, 2), ({"w": 0, "<pad>": 1}, 1), ({"w": 0, "b": 1}, 0)])
def test_pad_id_without_padding_config(vocab: dict[str, int], pad_id: int) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tok = Tokenizer(WordLevel(vocab, unk_token="w"))
    tok.pre_tokenizer = Whitespace()
    enc = TextEncoder(tok, max_length=8, limit=16)
    assert enc.pad_id == pad_id and enc.max_length == 8 and enc.path is None
    out = enc.encode(["w", "w w w"])
    assert out["input_ids"][0].tolist() == [0, pad_id, pad_id] and out["attention_mask"][0].tolist() == [1, 0, 0]


def test_default_max_length_without_package_setting(tmp_path: Path, minilm_dir: Path) -> None:
    import shutil

    shutil.copy(minilm_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    assert TextEncoder.from_file(tmp_path / "tokenizer.json").max_length == 512
    assert TextEncoder.from_file(tmp_path / "tokenizer.json", limit=64).max_length == 64
