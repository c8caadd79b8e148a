"""Stratified, seeded splits of the teach data with no text in two splits.

Records are grouped by normalized text before splitting, so the same request
(up to case and spacing) can never be trained on and calibrated on at once.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sav_router.data.annotations import Record


@dataclass
class Splits:
    train: list[Record]
    calibration: list[Record]
    validation: list[Record]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "calibration": len(self.calibration), "validation": len(self.validation)}


def _allocate(n: int, calibration: float, validation: float) -> tuple[int, int]:
    """How many groups of a label go to calibration and validation.

    Every label keeps at least one training example; labels with 3+ groups give
    at least one to calibration so per-label statistics exist.
    """
    if n < 2:
        return 0, 0
    n_cal = round(n * calibration)
    n_val = round(n * validation)
    if n >= 3 and calibration > 0:
        n_cal = max(n_cal, 1)
    if n >= 4 and validation > 0:
        n_val = max(n_val, 1)
    while n_cal + n_val > n - 1:
        if n_val >= n_cal and n_val > 0:
            n_val -= 1
        else:
            n_cal -= 1
    return n_cal, n_val


def stratified_split(
    records: Sequence[Record],
    *,
    calibration: float = 0.15,
    validation: float = 0.05,
    seed: int = 13,
) -> Splits:
    """Split per label into train / calibration / validation, reproducibly."""
    if not 0 <= calibration < 1 or not 0 <= validation < 1 or calibration + validation >= 1:
        raise ValueError("calibration and validation shares must be in [0, 1) and sum below 1")
    groups: dict[str, dict[str, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        groups[str(record.label)][record.key].append(record)
    splits = Splits([], [], [])
    for label in sorted(groups):
        keys = sorted(groups[label])
        # Seed per label from a stable hash so adding a label leaves the others' splits unchanged.
        label_seed = int.from_bytes(hashlib.sha256(f"{seed}:{label}".encode()).digest()[:8], "big")
        random.Random(label_seed).shuffle(keys)
        n_cal, n_val = _allocate(len(keys), calibration, validation)
        for position, key in enumerate(keys):
            target = splits.calibration if position < n_cal else splits.validation if position < n_cal + n_val else splits.train
            target.extend(groups[label][key])
    return splits


def fingerprint(records: Sequence[Record]) -> str:
    """Order-independent SHA-256 of (normalized text, label, split): the training-data identity."""
    digest = hashlib.sha256()
    for line in sorted(f"{r.key}\t{r.label}\t{r.split}" for r in records):
        digest.update(line.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()
