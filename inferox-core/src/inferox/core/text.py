"""Text pre-processing shared by every backend: a package's ``tokenizer.json`` turned into model inputs.

Tokenisation happens once, on the host, before the backend sees anything, so that a string gives
exactly the same ``input_ids`` whichever backend runs the model. It uses the Hugging Face
``tokenizers`` library (core's optional extra ``text``), imported only when a :class:`TextEncoder` is
built, so ``inferox.core`` imports without it.

    enc = TextEncoder.from_file("model/tokenizer.json", max_length=256)
    inputs = enc.encode(["a sentence", "another, longer sentence"])
    # {"input_ids": (2, L) i64, "attention_mask": (2, L) i64, "token_type_ids": (2, L) i64}
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inferox.core.errors import BackendUnavailableError, ConfigError, InvalidInputError, PackageNotFoundError

__all__ = ["DEFAULT_MAX_LENGTH", "TextEncoder", "read_max_seq_length"]

#: Used when neither the caller nor the package names a maximum length.
DEFAULT_MAX_LENGTH = 512

#: The three inputs a BERT-style model takes, in the order they are produced.
TEXT_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")

#: Characters one token is taken to cover at most when an over-long text is cut before the
#: tokenizer (see ``TextEncoder._encode_cut``: a wrong guess costs a retry, never a wrong answer).
CHARS_PER_TOKEN = 16
#: A run of this many characters without whitespace where an over-long text is cut is cut where it
#: is (one "word" that long is no text a model reads; tokenising on would undo the cut).
MAX_RUN = 4096
#: Tokenizer copies kept per encoder (one per truncation length asked for; the default always stays).
_MAX_CONFIGURED = 8


def _prefix(text: str, budget: int) -> tuple[str, int]:
    """``text`` cut to at most ``budget`` characters — just before a whitespace when there is one
    in the last quarter — and the end of its last complete word (the cut, or the last whitespace
    before it when the cut falls inside a run)."""
    head = text[:budget]
    space = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"), head.rfind("\r"))
    if space >= len(head) * 3 // 4:
        return head[:space], space
    return head, max(space, 0)


def _covers(encoding: Any, length: int, safe_end: int) -> bool:
    """Whether a cut text's ``encoding`` is the full text's: ``length`` tokens, none past the cut."""
    if len(encoding.ids) < length:
        return False
    special = encoding.special_tokens_mask
    ends = [end for (_, end), s in zip(encoding.offsets, special) if not s]
    return not ends or max(ends) <= safe_end


def _import_tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError as exc:
        raise BackendUnavailableError("text", reason="the 'tokenizers' package is not installed; install inferox-core[text]") from exc
    return tokenizers


def read_max_seq_length(folder: str | os.PathLike[str]) -> int | None:
    """The ``max_seq_length`` of a sentence-transformers folder (``sentence_bert_config.json``), if any."""
    path = Path(folder) / "sentence_bert_config.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path.name}: {exc}", field="max_seq_length", path=str(path)) from exc
    value = data.get("max_seq_length") if isinstance(data, Mapping) else None
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


class TextEncoder:
    """Turns strings into padded, truncated ``input_ids`` / ``attention_mask`` / ``token_type_ids``.

    ``max_length`` is the default truncation length (MiniLM: 256, from ``sentence_bert_config.json``);
    ``limit`` is the most any call may ask for (the model's position table, 512 for BERT): asking for
    more is an :class:`InvalidInputError` naming ``max_length``. A batch is padded to its longest
    item (not to ``max_length``), which is what sentence-transformers does and what keeps short
    requests cheap. With ``truncate=False`` (per encoder, or per call) a longer text is an
    :class:`InvalidInputError` naming the limit and the text's length instead of being cut.
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        max_length: int | None = None,
        limit: int | None = None,
        path: str | None = None,
        truncate: bool = True,
        inputs: Sequence[str] = TEXT_INPUT_NAMES,
    ) -> None:
        self._tokenizer = tokenizer
        self.path = path
        unknown = [n for n in inputs if n not in TEXT_INPUT_NAMES] if not isinstance(inputs, str) else [inputs]
        if unknown or "input_ids" not in inputs:
            raise ConfigError(f"a text encoder fills input_ids and any of {', '.join(TEXT_INPUT_NAMES[1:])}", field="inputs", value=list(inputs), path=path)
        #: The model inputs :meth:`encode` fills (a model without token types takes no ``token_type_ids``).
        self.inputs = tuple(n for n in TEXT_INPUT_NAMES if n in inputs)
        #: Whether text longer than ``max_length`` tokens is cut to it (sentence-transformers' rule,
        #: the default) or refused with an :class:`InvalidInputError` naming the limit.
        self.truncate = bool(truncate)
        self.limit = int(limit) if limit is not None else DEFAULT_MAX_LENGTH
        if self.limit < 2:
            raise ConfigError("the length limit must be at least 2 (room for [CLS] and [SEP])", field="limit", value=limit, path=path)
        self.max_length = self._check_length(max_length if max_length is not None else min(self.limit, DEFAULT_MAX_LENGTH), field="max_length")
        self.pad_id = self._pad_id()
        # The tokenizer's truncation setting is shared state: each (length, truncate) setting gets
        # its own copy, configured once and never changed again, so encodes run concurrently (the
        # Rust tokenizer lets go of the GIL) and a long text never holds up a short one.
        self._lock = threading.Lock()
        self._configured: dict[tuple[int, bool], Any] = {}

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        max_length: int | None = None,
        limit: int | None = None,
        truncate: bool = True,
        inputs: Sequence[str] = TEXT_INPUT_NAMES,
    ) -> TextEncoder:
        """Load a ``tokenizer.json``; ``max_length`` defaults to the folder's ``sentence_bert_config.json``;
        ``inputs`` are the model inputs :meth:`encode` fills (default: all three)."""
        tokenizers = _import_tokenizers()
        path = Path(path)
        if not path.is_file():
            raise PackageNotFoundError(f"no tokenizer file at {path}", path=str(path))
        try:
            tok = tokenizers.Tokenizer.from_file(str(path))
        except Exception as exc:
            raise ConfigError(f"cannot load tokenizer: {exc}", field="tokenizer", path=str(path)) from exc
        if max_length is None:
            max_length = read_max_seq_length(path.parent)
            if max_length is not None and limit is not None:
                max_length = min(max_length, limit)
        return cls(tok, max_length=max_length, limit=limit, path=str(path), truncate=truncate, inputs=inputs)

    # -- helpers ------------------------------------------------------------------------------
    def _check_length(self, value: Any, *, field: str) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
            raise InvalidInputError(f"{field} must be an integer of at least 2", name=field, expected=f"2..{self.limit}", actual=value)
        if value > self.limit:
            raise InvalidInputError(
                f"{field} {value} exceeds the model's {self.limit} positions", name=field, expected=f"<= {self.limit}", actual=int(value)
            )
        return int(value)

    def _pad_id(self) -> int:
        padding = getattr(self._tokenizer, "padding", None)
        if isinstance(padding, Mapping) and isinstance(padding.get("pad_id"), int):
            return int(padding["pad_id"])
        for token in ("[PAD]", "<pad>"):
            tid = self._tokenizer.token_to_id(token)
            if tid is not None:
                return int(tid)
        return 0

    @property
    def vocab_size(self) -> int:
        return int(self._tokenizer.get_vocab_size(with_added_tokens=True))

    # -- encoding -----------------------------------------------------------------------------
    def encode(self, texts: Sequence[str] | str, *, max_length: int | None = None, truncate: bool | None = None) -> dict[str, np.ndarray]:
        """Tokenise ``texts`` (one string or a sequence) into a batch of model inputs (``i64``).

        Each text is truncated to ``max_length`` tokens (special tokens included; default: this
        encoder's) — or, with ``truncate=False`` (default: this encoder's setting), refused when
        longer — and the batch is padded to its longest item with the pad id and mask 0.
        """
        if isinstance(texts, str):
            texts = [texts]
        if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Sequence):
            raise InvalidInputError("text input must be a string or a list of strings", name="text", expected="str | list[str]", actual=type(texts).__name__)
        if len(texts) == 0:
            raise InvalidInputError("empty text batch", name="text", expected="at least one string", actual=0)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidInputError("text items must be strings", name="text", expected="str", actual=type(t).__name__, index=i)
        length = self.max_length if max_length is None else self._check_length(max_length, field="max_length")
        cut = self.truncate if truncate is None else bool(truncate)
        encodings, was_cut = self._encode_cut(list(texts), length, cut)
        if not cut:
            for i, e in enumerate(encodings):
                if len(e.ids) > length:
                    more = "+" if was_cut[i] else ""  # only a prefix was tokenised: at least this many
                    raise InvalidInputError(
                        f"text {i} is {len(e.ids)}{more} tokens long, more than the model's limit of {length} (truncation is off)",
                        name="text", expected=f"at most {length} tokens", actual=len(e.ids), index=i,
                    )
        return self._batch([e.ids for e in encodings], masks=[e.attention_mask for e in encodings], types=[e.type_ids for e in encodings])

    def _configured_tokenizer(self, length: int, cut: bool) -> Any:
        """The tokenizer set up for ``length`` / ``cut`` (a copy made once per setting; at most a
        few kept). A tokenizer that cannot be copied is configured per call under the lock."""
        key = (length, cut)
        tok = self._configured.get(key)
        if tok is not None:
            return tok
        with self._lock:
            tok = self._configured.get(key)
            if tok is None:
                to_str = getattr(self._tokenizer, "to_str", None)
                if to_str is None:
                    return None
                tok = type(self._tokenizer).from_str(to_str())
                if cut:
                    tok.enable_truncation(max_length=length)
                else:
                    tok.no_truncation()  # whole texts: an over-long one is reported with its real length
                tok.no_padding()
                if len(self._configured) >= _MAX_CONFIGURED:
                    self._configured.pop(next(k for k in self._configured if k != (self.max_length, self.truncate)), None)
                self._configured[key] = tok
        return tok

    def _encode_batch(self, texts: Sequence[str | tuple[str, str]], length: int, cut: bool) -> list[Any]:
        tok = self._configured_tokenizer(length, cut)
        if tok is not None:
            return list(tok.encode_batch(texts))
        tok = self._tokenizer
        with self._lock:
            if cut:
                tok.enable_truncation(max_length=length)
            else:
                tok.no_truncation()
            tok.no_padding()
            return list(tok.encode_batch(texts))

    def _encode_cut(self, texts: list[str], length: int, cut: bool) -> tuple[list[Any], list[bool]]:
        """Encode ``texts``, tokenising of each over-long text only about what the length rule
        needs; also says which encodings come from a cut text.

        A text longer than ``length * CHARS_PER_TOKEN`` characters is cut first, just before a
        whitespace (a word boundary for every pre-tokenizer Inferox packages use). The cut text
        gives exactly the full text's tokens when its encoding reaches ``length`` tokens with every
        kept token before the cut (truncating), or more than ``length`` tokens (refusing: the full
        text is over the limit too); otherwise it is tried again with twice as many characters. So
        a 30 MB text costs about what a 4 KB one does, and the answer is the same.
        """
        budget = length * CHARS_PER_TOKEN
        long = [i for i, t in enumerate(texts) if len(t) > budget]
        if not long:
            return self._encode_batch(texts, length, cut), [False] * len(texts)
        work = list(texts)
        safe: dict[int, int] = {}
        for i in long:
            work[i], safe[i] = _prefix(texts[i], budget)
        encodings = self._encode_batch(work, length, cut)
        pending = long
        while pending:
            budget *= 2
            again: list[int] = []
            for i in pending:
                e = encodings[i]
                if work[i] is texts[i] or (len(e.ids) > length if not cut else _covers(e, length, safe[i])):
                    continue
                if len(work[i]) - safe[i] > MAX_RUN:
                    continue  # cut inside a run of MAX_RUN characters without whitespace: cut there
                work[i], safe[i] = _prefix(texts[i], budget) if len(texts[i]) > budget else (texts[i], len(texts[i]))
                again.append(i)
            if again:
                for i, e in zip(again, self._encode_batch([work[i] for i in again], length, cut)):
                    encodings[i] = e
            pending = again
        return encodings, [w is not t for w, t in zip(work, texts)]

    def encode_pairs(
        self, pairs: Sequence[tuple[str, str] | str], *, max_length: int | None = None, truncate: bool | None = None
    ) -> dict[str, np.ndarray]:
        """Tokenise text pairs — ``(query, document)`` for a cross-encoder, ``(premise, hypothesis)``
        for a pair classifier — as one sequence each (``[CLS] a [SEP] b [SEP]``, the second text's
        token type 1, as the tokenizer's pair template says). An item may also be a single string.

        Truncation is sentence-transformers' ``CrossEncoder``'s (the tokenizer's default
        ``longest_first``): tokens are taken off the longer text of the pair until the pair fits
        ``max_length``. With ``truncate=False`` a pair over the limit is refused, naming it.
        """
        if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence) or len(pairs) == 0:
            raise InvalidInputError("text pairs must be a non-empty list of [text, text] pairs", name="text", expected="list[tuple[str, str]]", actual=type(pairs).__name__)
        items: list[str | tuple[str, str]] = []
        for i, p in enumerate(pairs):
            if isinstance(p, str):
                items.append(p)
                continue
            if isinstance(p, (str, bytes)) or not isinstance(p, Sequence) or len(p) != 2 or not all(isinstance(t, str) for t in p):
                raise InvalidInputError("each pair must be two strings", name="text", expected="[str, str]", actual=type(p).__name__, index=i)
            items.append((p[0], p[1]))
        length = self.max_length if max_length is None else self._check_length(max_length, field="max_length")
        cut = self.truncate if truncate is None else bool(truncate)
        # Pairs are not pre-cut like single texts (the longest-first rule depends on both sides'
        # lengths); the server's per-request text limit bounds what reaches the tokenizer.
        encodings = self._encode_batch(items, length, cut)
        if not cut:
            for i, e in enumerate(encodings):
                if len(e.ids) > length:
                    raise InvalidInputError(
                        f"pair {i} is {len(e.ids)} tokens long, more than the model's limit of {length} (truncation is off)",
                        name="text", expected=f"at most {length} tokens", actual=len(e.ids), index=i,
                    )
        return self._batch([e.ids for e in encodings], masks=[e.attention_mask for e in encodings], types=[e.type_ids for e in encodings])

    def encode_ids(self, ids: Sequence[Sequence[int]], *, max_length: int | None = None, truncate: bool | None = None) -> dict[str, np.ndarray]:
        """A batch of token-id sequences (the model's own vocabulary, special tokens as given) into the
        same model inputs :meth:`encode` makes, under the same length rule: each sequence is cut to
        ``max_length`` ids, or refused when longer with ``truncate=False``. Ids outside the
        vocabulary, empty sequences and non-integers are :class:`InvalidInputError` naming the item.
        """
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence) or len(ids) == 0:
            raise InvalidInputError("token ids must be a non-empty list of id lists", name="input_ids", expected="list[list[int]]", actual=type(ids).__name__)
        length = self.max_length if max_length is None else self._check_length(max_length, field="max_length")
        cut = self.truncate if truncate is None else bool(truncate)
        vocab = self.vocab_size
        rows: list[list[int]] = []
        for i, seq in enumerate(ids):
            if isinstance(seq, np.ndarray) and seq.ndim == 1:
                seq = seq.tolist()
            if isinstance(seq, (str, bytes)) or not isinstance(seq, Sequence) or len(seq) == 0:
                raise InvalidInputError("each token-id sequence must be a non-empty list of integers", name="input_ids", expected="list[int]", actual=type(seq).__name__, index=i)
            if not all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) and 0 <= t < vocab for t in seq):
                bad = next(t for t in seq if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < vocab)
                raise InvalidInputError(f"token id {bad!r} is not in the model's vocabulary", name="input_ids", expected=f"integers in [0, {vocab})", actual=bad, index=i)
            if len(seq) > length and not cut:
                raise InvalidInputError(
                    f"token sequence {i} is {len(seq)} tokens long, more than the model's limit of {length} (truncation is off)",
                    name="input_ids", expected=f"at most {length} tokens", actual=len(seq), index=i,
                )
            rows.append([int(t) for t in seq[:length]])
        return self._batch(rows)

    def _batch(self, rows: Sequence[Sequence[int]], *, masks: Sequence[Sequence[int]] | None = None, types: Sequence[Sequence[int]] | None = None) -> dict[str, np.ndarray]:
        """Pad ``rows`` to the longest with the pad id (mask 0); masks default to 1 and type ids to 0."""
        longest = max(len(r) for r in rows)
        n = len(rows)
        ids = np.full((n, longest), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, longest), dtype=np.int64)
        type_ids = np.zeros((n, longest), dtype=np.int64)
        for i, row in enumerate(rows):
            k = len(row)
            ids[i, :k] = row
            mask[i, :k] = masks[i] if masks is not None else 1
            if types is not None:
                type_ids[i, :k] = types[i]
        out = {"input_ids": ids, "attention_mask": mask, "token_type_ids": type_ids}
        return {k: out[k] for k in self.inputs}

    __call__ = encode

    def __repr__(self) -> str:
        return f"TextEncoder({self.path!r}, max_length={self.max_length}, limit={self.limit})"
