"""Class-imbalance help for rare labels: noisy copies and expert-written examples.

Augmented rows go to the training split only, never to calibration or
evaluation data, and never reproduce a text held out elsewhere: a noisy copy
that normalizes to a calibration or check text would be leakage.
"""

from __future__ import annotations

import random
import string
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace

from sav_router.data.annotations import Record, normalize_text

# QWERTY neighbours: typos people actually make.
_NEIGHBOURS = {
    "a": "qwsz", "b": "vghn", "c": "xdfv", "d": "serfcx", "e": "wsdr", "f": "drtgvc", "g": "ftyhbv",
    "h": "gyujnb", "i": "ujko", "j": "huikmn", "k": "jiolm", "l": "kop", "m": "njk", "n": "bhjm",
    "o": "iklp", "p": "ol", "q": "wa", "r": "edft", "s": "awedxz", "t": "rfgy", "u": "yhji",
    "v": "cfgb", "w": "qase", "x": "zsdc", "y": "tghu", "z": "asx",
}


def _typo(word: str, rng: random.Random) -> str:
    letters = [i for i, ch in enumerate(word) if ch.lower() in _NEIGHBOURS]
    if not letters:
        return word
    i = rng.choice(letters)
    return word[:i] + rng.choice(_NEIGHBOURS[word[i].lower()]) + word[i + 1 :]


def _swap(word: str, rng: random.Random) -> str:
    if len(word) < 3:
        return word
    i = rng.randrange(len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def _drop_char(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(len(word))
    return word[:i] + word[i + 1 :]


def noisy_copy(text: str, rng: random.Random, *, edits: int = 2) -> str:
    """A plausible noisy rewrite: character typos, swaps, drops, a dropped word."""
    words = text.split()
    if not words:
        return text
    for _ in range(edits):
        operation = rng.random()
        if operation < 0.2 and len(words) > 3:
            del words[rng.randrange(len(words))]
            continue
        i = rng.randrange(len(words))
        if words[i].strip(string.punctuation) == "":
            continue
        if operation < 0.5:
            words[i] = _typo(words[i], rng)
        elif operation < 0.8:
            words[i] = _swap(words[i], rng)
        else:
            words[i] = _drop_char(words[i], rng)
    return " ".join(words)


@dataclass
class AugmentationReport:
    min_count: int
    noisy_added: Counter[str] = field(default_factory=Counter)
    synthetic_added: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, object]:
        return {
            "min_count": self.min_count,
            "noisy_added": dict(sorted(self.noisy_added.items())),
            "synthetic_added": dict(sorted(self.synthetic_added.items())),
        }

    def summary(self) -> str:
        if not self.noisy_added and not self.synthetic_added:
            return f"augmentation: nothing added (every label has >= {self.min_count} training examples)"
        parts = [f"{label}+{n} noisy" for label, n in sorted(self.noisy_added.items())]
        parts += [f"{label}+{n} synthetic" for label, n in sorted(self.synthetic_added.items())]
        return "augmentation: " + ", ".join(parts)


def augment_training(
    train: Sequence[Record],
    *,
    min_count: int,
    forbidden_texts: Collection[str] = (),
    synthetic: Sequence[Record] = (),
    seed: int = 13,
    max_copies_per_example: int = 4,
) -> tuple[list[Record], AugmentationReport]:
    """Add expert-written examples, then noisy copies until each label has `min_count`.

    `forbidden_texts` are normalized texts of every held-out row (calibration,
    validation, check): nothing added may equal one of them.
    """
    rng = random.Random(seed)
    report = AugmentationReport(min_count=min_count)
    taken = {normalize_text(t) for t in forbidden_texts} | {r.key for r in train}
    out = list(train)
    for record in synthetic:
        if record.key in taken or record.label is None:
            continue
        taken.add(record.key)
        out.append(replace(record, split="teach"))
        report.synthetic_added[record.label] += 1

    counts = Counter(r.label for r in out)
    by_label: dict[str, list[Record]] = {}
    for record in out:
        by_label.setdefault(str(record.label), []).append(record)
    for label in sorted(by_label):
        originals = by_label[label]
        missing = min_count - counts[label]
        budget = len(originals) * max_copies_per_example
        attempts = 0
        while missing > 0 and budget > 0 and attempts < 20 * min_count:
            attempts += 1
            source = rng.choice(originals)
            text = noisy_copy(source.text, rng)
            key = normalize_text(text)
            if key in taken:
                continue
            taken.add(key)
            out.append(replace(source, text=text, id=f"{source.id or 'row'}~aug{report.noisy_added[label] + 1}"))
            report.noisy_added[label] += 1
            missing -= 1
            budget -= 1
    return out, report
