"""Shared fixtures: a tiny randomly initialised BERT and a small labeled dataset."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BANKING77 = SHARED / "datasets" / "banking77"

# Four well-separated intents; the tiny model must learn them from keywords.
TOPICS = {
    "delivery": ["parcel", "courier", "tracking", "delivery", "shipped", "arrive"],
    "refund": ["refund", "money", "reimburse", "card", "credited", "back"],
    "warranty": ["broken", "defect", "warranty", "repair", "faulty", "stopped"],
    "account": ["password", "login", "account", "email", "locked", "reset"],
}
FILLER = ["my", "the", "is", "still", "not", "please", "help", "why", "where", "i", "need", "a", "was", "it", "order"]


def make_texts(label: str, n: int, seed: int) -> list[str]:
    rng = random.Random(f"{label}:{seed}")
    texts = set()
    while len(texts) < n:
        words = rng.sample(TOPICS[label], 3) + rng.sample(FILLER, rng.randint(2, 6))
        rng.shuffle(words)
        texts.add(" ".join(words))
    return sorted(texts)


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file written by the project (a missing file has none)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory) -> str:
    """A 2-layer, 32-wide BERT with a WordPiece vocab of the toy words (random weights)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    words = sorted({w for ws in TOPICS.values() for w in ws} | set(FILLER) | {"weather", "recipe", "football", "poem"})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words + list("abcdefghijklmnopqrstuvwxyz") + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)}, do_lower_case=True)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def toy_annotations(tmp_path_factory) -> Path:
    """160 teach rows per label + 20 check rows per label, JSONL."""
    folder = tmp_path_factory.mktemp("toy-data")
    rows = []
    for label in TOPICS:
        texts = make_texts(label, 180, seed=1)
        for i, text in enumerate(texts):
            rows.append({"id": f"{label}-{i}", "text": text, "label": label, "split": "check" if i % 9 == 0 else "teach"})
    random.Random(0).shuffle(rows)
    return write_jsonl(folder / "annotations.jsonl", rows)


def train_toy_bundle(base_model: str, data: Path, output: Path, *, epochs: int = 2, seed: int = 13) -> Path:
    """A small but real bundle (tiny BERT, toy intents) in a few seconds."""
    from sav_router.training.build import train_bundle
    from sav_router.training.config import TrainConfig

    config = TrainConfig(base_model=base_model, epochs=epochs, seed=seed, progress=False, learning_rate=1e-3, head_learning_rate=1e-2, batch_size=16)
    train_bundle([data], output, config=config, log=lambda message: None)
    return output


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_base_model, toy_annotations) -> Path:
    return train_toy_bundle(tiny_base_model, toy_annotations, tmp_path_factory.mktemp("bundle") / "model")
