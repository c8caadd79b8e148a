"""Tokenization for inference, without torch: what the ONNX backend and the torch network share.

Texts are cut to a verified prefix, tokenized, truncated, and grouped by length
into batches padded per batch (numpy arrays). `model.network` re-exports these
names and gives torch tensors; the ONNX backend uses them as they are, with the
bundle's tokenizer read by the `tokenizers` library alone (`load_tokenizer`), so
a process serving an ONNX bundle imports neither torch nor transformers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"

MAX_PADDING = 0.25  # inference: padded tokens allowed per real token in one forward call


def length_sorted_batches(lengths: Sequence[int], batch_size: int, max_padding: float = MAX_PADDING) -> list[list[int]]:
    """Indices grouped by similar length (inference: little padding, order restored later).

    Sorted by length, then cut into runs of at most `batch_size` whose padded size
    (count x longest) stays within `1 + max_padding` of their real token count. A
    server's micro-batch mixes short and long requests: padded as one batch, 50 random
    Banking77 requests ran at 122 requests/s on the fp32 ONNX backend, grouped at 290
    (BENCHMARKS.md, serving).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for i in order:
        # ascending order: lengths[i] is the longest so far, the width the batch would pad to
        if current and (len(current) >= batch_size or (len(current) + 1) * lengths[i] > (1 + max_padding) * (tokens + lengths[i])):
            batches.append(current)
            current, tokens = [], 0
        current.append(i)
        tokens += lengths[i]
    if current:
        batches.append(current)
    return batches


PREFIX_CHARS_PER_TOKEN = 16  # first guess of the characters a text needs for max_length tokens (then verified)
PREFIX_GROWTH = 4


def _unk_word_chars(tokenizer) -> int | None:
    """WordPiece's `max_input_chars_per_word` (a longer word is one [UNK], however long), else None."""
    model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
    return getattr(model, "max_input_chars_per_word", None) if type(model).__name__ == "WordPiece" else None


def model_prefixes(tokenizer, texts: Sequence[str], max_length: int) -> list[str]:
    """Each text cut to a prefix that the tokenizer turns into the same first `max_length` tokens as the whole text.

    Truncation happens before tokenizing, so a 1 MB text costs what its first few thousand
    characters cost, not a tokenization of 1 MB (issue 18, finding 4). The cut never
    removes a token the model would have seen, and this is checked, not assumed: a
    tokenizer splits a text into words (pre-tokens: whitespace, punctuation, its own
    regex) and then each word into tokens independently of the others, so cutting the
    text can change the tokens of the word it cuts through (the prefix's last word) and
    of no word before it. A prefix is kept only when the words before its last one
    already give `max_length` tokens or more (at least the max_length - 2 that truncation
    keeps beside the special tokens). One more case is settled without more text: a
    WordPiece word longer than `max_input_chars_per_word` (100) normalized characters is
    one [UNK] whatever follows, so a prefix whose last word is already that long is exact
    too. Otherwise the prefix grows x4 and is checked again, up to the whole text: a text
    with no word boundary for a long way (a megabyte of spaces, or of one word) costs its
    whole length, as before; ordinary text costs a bounded prefix. The first
    prefix is `max_length * 16` characters: a real vocabulary's token averages 3-5
    characters, so one pass settles ordinary text. A slow (Python) tokenizer reports no
    word boundaries: its texts are tokenized whole.
    """
    out = list(texts)
    if not getattr(tokenizer, "is_fast", False):
        return out
    unk_chars = _unk_word_chars(tokenizer)
    normalizer = getattr(tokenizer.backend_tokenizer, "normalizer", None)
    limit = max(1, max_length) * PREFIX_CHARS_PER_TOKEN
    pending = [i for i, text in enumerate(out) if len(text) > limit]
    while pending:
        prefixes = [out[i][:limit] for i in pending]
        encoded = tokenizer(prefixes, add_special_tokens=False, return_offsets_mapping=True, truncation=False, padding=False)
        still = []
        for row, i in enumerate(pending):
            words = encoded.word_ids(row)
            last = words[-1] if words else None
            settled = sum(1 for word in words if word != last)  # tokens no cut further on can change
            if last is not None and unk_chars is not None and settled < max_length:
                spans = [span for word, span in zip(words, encoded["offset_mapping"][row]) if word == last]
                word = prefixes[row][spans[0][0] : spans[-1][1]]
                if len(normalizer.normalize_str(word) if normalizer is not None else word) > unk_chars:
                    settled = len(words)  # [UNK] now and [UNK] with the rest of the word
            if settled >= max_length:
                out[i] = prefixes[row]
            else:
                still.append(i)
        limit *= PREFIX_GROWTH
        pending = [i for i in still if len(out[i]) > limit]
    return out


class Encoded:
    """Token ids of a list of texts, truncated but not padded (padding is per batch).

    Texts are cut to a verified prefix before tokenizing (`model_prefixes`): the ids are
    those of the whole text truncated to `max_length`, at a bounded cost per text.
    """

    def __init__(self, tokenizer, texts: Sequence[str], max_length: int) -> None:
        texts = model_prefixes(tokenizer, texts, max_length)
        encoded = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
        self.input_ids: list[list[int]] = encoded["input_ids"]
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    def arrays(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask) of these rows as int64 arrays padded to the longest of them."""
        width = max(len(self.input_ids[i]) for i in indices)
        ids = np.full((len(indices), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(indices), width), dtype=np.int64)
        for row, i in enumerate(indices):
            seq = self.input_ids[i]
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        return ids, mask

    batch = arrays


class _Batch:
    """What a Hugging Face fast tokenizer's call returns, as far as `Encoded` and `model_prefixes` read it."""

    def __init__(self, encodings) -> None:
        self._encodings = encodings

    def __getitem__(self, key: str):
        if key == "input_ids":
            return [e.ids for e in self._encodings]
        if key == "offset_mapping":
            return [e.offsets for e in self._encodings]
        raise KeyError(key)

    def word_ids(self, row: int) -> list[int | None]:
        return self._encodings[row].word_ids


class BundleTokenizer:
    """A bundle's fast tokenizer (`tokenizer.json`) through the `tokenizers` library only.

    Gives the ids a Hugging Face `PreTrainedTokenizerFast` loaded from the same folder
    gives (the same Rust tokenizer; truncation and padding set on every call, as
    transformers does), without importing transformers or torch: serving an ONNX
    bundle needs nothing else. Checked against transformers in tests/model.
    """

    is_fast = True

    def __init__(self, folder: str | Path) -> None:
        from tokenizers import Tokenizer

        folder = Path(folder)
        self.backend_tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_JSON))
        config = _read_json(folder / TOKENIZER_CONFIG)
        special = _read_json(folder / SPECIAL_TOKENS_MAP)
        pad = config.get("pad_token", special.get("pad_token"))
        pad = pad.get("content") if isinstance(pad, dict) else pad
        self.pad_token_id = self.backend_tokenizer.token_to_id(pad) if isinstance(pad, str) else None
        self.truncation_side = config.get("truncation_side", "right")

    def __call__(self, texts: Sequence[str], *, add_special_tokens: bool = True, return_offsets_mapping: bool = False,
                 truncation: bool = False, max_length: int | None = None, padding: bool = False) -> _Batch:
        if padding:
            raise ValueError("BundleTokenizer pads per batch (Encoded), never in the call")
        backend = self.backend_tokenizer
        if truncation and max_length is not None:
            backend.enable_truncation(max_length, strategy="longest_first", direction=self.truncation_side)
        else:
            backend.no_truncation()
        backend.no_padding()
        return _Batch(backend.encode_batch(list(texts), add_special_tokens=add_special_tokens))


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_tokenizer(folder: str | Path):
    """The bundle's tokenizer without torch (`BundleTokenizer`) when it has a `tokenizer.json`,
    else transformers' AutoTokenizer (a slow tokenizer: transformers, and torch with it, are imported)."""
    folder = Path(folder)
    if (folder / TOKENIZER_JSON).is_file():
        return BundleTokenizer(folder)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
