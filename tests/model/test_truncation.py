"""Issue 18, finding 4: a text is cut before it is tokenized, and the cut never changes what the model sees."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sav_router.model.network import Encoded, model_prefixes
from tests.conftest import FILLER, TOPICS

WORDS = sorted({w for ws in TOPICS.values() for w in ws} | set(FILLER)) + ["zzqx", "unknownword", "weatherish", "é", "北京", "😀"]
PIECES = st.sampled_from(WORDS + [" ", "  ", "\n", "\t", ",", ".", "!?", "e\u0301", "\x00", "\u3000", "\u2028", "x" * 120, " " * 700])


@pytest.fixture(scope="module")
def tokenizer(tiny_base_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_base_model)


def whole(tokenizer, texts, max_length):
    return tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)["input_ids"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(PIECES, min_size=0, max_size=800), max_length=st.sampled_from([4, 8, 16, 64]))
def test_the_cut_gives_the_ids_of_the_whole_text(tokenizer, pieces, max_length):
    text = "".join(pieces)
    assert Encoded(tokenizer, [text], max_length).input_ids == whole(tokenizer, [text], max_length)


@pytest.mark.parametrize(
    "text",
    [
        "refund " * 20_000,  # ordinary words: one pass
        "x" * 50_000 + " refund",  # one huge word: [UNK] whatever follows
        "a" + " " * 30_000 + " refund money" * 100,  # no word to count for a long way: grown until there is
        "refund" + "\x00" * 20_000 + " money" * 200,  # characters the normalizer drops
        "e\u0301" * 60 + "x" * 2_000,  # accents stripped: the word is shorter once normalized
        "money." * 10_000,
    ],
)
def test_pathological_texts_keep_the_ids_of_the_whole_text(tokenizer, text):
    assert Encoded(tokenizer, [text], 64).input_ids == whole(tokenizer, [text], 64)
    assert len(model_prefixes(tokenizer, [text], 64)[0]) <= len(text)


def test_long_texts_cost_their_prefix_not_their_length(tokenizer):
    # GIVEN five texts of 1 MB of words (the request)
    rng = random.Random(0)
    words = " ".join(rng.choice(WORDS) for _ in range(200_000))[:1_000_000]
    texts = [words] * 5
    # WHEN they are encoded for a 64-token model
    start = time.perf_counter()
    encoded = Encoded(tokenizer, texts, 64)
    seconds = time.perf_counter() - start
    # THEN only a prefix of each was tokenized (whole, the five took 19 s on 2 busy cores)
    assert encoded.input_ids == whole(tokenizer, texts[:1], 64) * 5
    assert max(len(p) for p in model_prefixes(tokenizer, texts, 64)) <= 64 * 16
    assert seconds < 1.0, seconds
