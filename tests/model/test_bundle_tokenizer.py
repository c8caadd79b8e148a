"""The torch-free tokenizer of the ONNX backend gives exactly the ids transformers gives."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sav_router.model.backends.encoding import BundleTokenizer, Encoded, load_tokenizer
from tests.model.test_truncation import PIECES


@pytest.fixture(scope="module")
def tokenizers(tiny_base_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_base_model), BundleTokenizer(tiny_base_model)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(PIECES, min_size=0, max_size=300), max_length=st.sampled_from([4, 16, 64]))
def test_same_ids_as_transformers(tokenizers, pieces, max_length):
    hf, own = tokenizers
    texts = ["".join(pieces), "refund my card " + "".join(pieces[:5])]
    assert Encoded(own, texts, max_length).input_ids == Encoded(hf, texts, max_length).input_ids
    assert own.pad_token_id == hf.pad_token_id


def test_same_ids_on_the_default_base_model():
    from transformers import AutoTokenizer

    from sav_router.model.network import BaseModelError, default_base_model

    try:
        folder = default_base_model()
    except BaseModelError:
        pytest.skip("the packaged base model is not installed")
    texts = ["My card payment was declined twice, why?", "Où est mon colis ? 😀", "x" * 500, "refund " * 300, ""]
    hf = AutoTokenizer.from_pretrained(folder)
    assert Encoded(BundleTokenizer(folder), texts, 64).input_ids == Encoded(hf, texts, 64).input_ids


def test_loading_it_imports_neither_torch_nor_transformers(tiny_base_model):
    code = ("import sys; from sav_router.model.backends.encoding import load_tokenizer, Encoded; "
            f"Encoded(load_tokenizer({tiny_base_model!r}), ['refund my money'], 16); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    assert isinstance(load_tokenizer(tiny_base_model), BundleTokenizer)
