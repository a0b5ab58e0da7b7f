"""``TextEncoder`` tokenises an over-long text only as far as truncation keeps, with the same answer.

A text longer than ``max_length * CHARS_PER_TOKEN`` characters is cut at a whitespace before the
tokenizer sees it, and cut again with more text only when the cut could change the tokens kept.
Checked on the real all-MiniLM-L6-v2 tokenizer against the tokenizer's own truncation of the whole
text, on texts built to defeat a naive cut: runs of whitespace, words longer than the cut, text
without any whitespace, multi-byte characters; and with truncation off, where an over-long text
must still be refused. Encoders set up per length run concurrently without sharing state.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np
import pytest

from inferox.core.errors import InvalidInputError
from inferox.core.text import CHARS_PER_TOKEN, TextEncoder

pytest.importorskip("tokenizers")

WORDS = ["the", "quick", "brown", "fox", "unbelievable", "tokenisation", "Straße", "naïve", "東京", "😀", ",", ".", "well-known", "x" * 120]


@pytest.fixture(scope="module")
def encoder(minilm_dir: Path) -> TextEncoder:
    return TextEncoder.from_file(minilm_dir / "tokenizer.json", limit=512)


def _reference(encoder: TextEncoder, text: str, length: int) -> list[int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(encoder._tokenizer.to_str())
    tok.enable_truncation(max_length=length)
    tok.no_padding()
    return list(tok.encode(text).ids)


def _ids(out: dict[str, np.ndarray], row: int) -> list[int]:
    n = int(out["attention_mask"][row].sum())
    return [int(t) for t in out["input_ids"][row][:n]]


def _texts(seed: int) -> list[str]:
    rng = random.Random(seed)
    plain = " ".join(rng.choice(WORDS) for _ in range(3000))
    return [
        plain,
        plain.replace(" ", " \n\t  "),  # whitespace runs between every word
        "".join(rng.choice(WORDS) for _ in range(2000)),  # words glued together: few cut points
        "a" * 50_000,  # no whitespace at all
        " " * 20_000 + plain,  # leading whitespace past the first cut
        "short text",
    ]


@pytest.mark.parametrize("length", [8, 64, 256])
def test_cut_text_gives_the_tokens_of_the_whole_text(encoder: TextEncoder, length: int) -> None:
    texts = _texts(length)
    assert any(len(t) > length * CHARS_PER_TOKEN for t in texts)
    out = encoder.encode(texts, max_length=length)
    for i, text in enumerate(texts):
        assert _ids(out, i) == _reference(encoder, text, length), i


def test_truncation_off_still_refuses_an_over_long_text(encoder: TextEncoder) -> None:
    long_text = " ".join(["word"] * 100_000)
    with pytest.raises(InvalidInputError) as ei:
        encoder.encode(["fine", long_text], truncate=False)
    assert ei.value.code == "INVALID_INPUT" and ei.value.index == 1 and "more than the model's limit of 256" in ei.value.message
    exact = " ".join(["word"] * 254)  # 254 tokens + [CLS] + [SEP]: exactly the limit, with text left after a cut would not be
    assert int(encoder.encode([exact], truncate=False)["attention_mask"].sum()) == 256


def test_encodes_of_different_lengths_run_concurrently(encoder: TextEncoder) -> None:
    texts = _texts(1)
    expected = {length: [_reference(encoder, t, length) for t in texts] for length in (16, 32, 128)}
    errors: list[BaseException] = []

    def work(length: int) -> None:
        try:
            for _ in range(5):
                out = encoder.encode(texts, max_length=length)
                assert [_ids(out, i) for i in range(len(texts))] == expected[length]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(length,)) for length in (16, 32, 128) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[0]
