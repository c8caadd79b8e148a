"""Leakage-free splits and rare-label augmentation."""

import random
from collections import Counter

from sav_router.data.annotations import Record, normalize_text
from sav_router.data.augment import augment_training, noisy_copy
from sav_router.data.splits import fingerprint, stratified_split


def records(n_per_label: dict[str, int]) -> list[Record]:
    out = []
    for label, n in n_per_label.items():
        out += [Record(text=f"{label} request number {i}", label=label, id=f"{label}{i}") for i in range(n)]
    return out


def test_split_is_stratified_and_every_label_keeps_training_data():
    splits = stratified_split(records({"big": 200, "mid": 40, "tiny": 2}), calibration=0.15, validation=0.05, seed=1)
    cal = Counter(r.label for r in splits.calibration)
    assert cal["big"] == 30 and cal["mid"] == 6
    assert Counter(r.label for r in splits.train)["tiny"] >= 1
    assert sum(splits.sizes().values()) == 242


def test_same_normalized_text_never_lands_in_two_splits():
    rows = records({"a": 60, "b": 60})
    # case/spacing variants of the same request, as found in real annotation drops
    rows += [Record(text=r.text.upper().replace(" ", "  "), label=r.label) for r in rows[:30]]
    splits = stratified_split(rows, seed=3)
    keys = [{r.key for r in part} for part in (splits.train, splits.calibration, splits.validation)]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])


def test_split_is_reproducible_and_seeded():
    rows = records({"a": 50, "b": 50})
    one, two = stratified_split(rows, seed=7), stratified_split(list(reversed(rows)), seed=7)
    assert [r.id for r in sorted(one.calibration, key=lambda r: r.id)] == [r.id for r in sorted(two.calibration, key=lambda r: r.id)]
    assert {r.id for r in stratified_split(rows, seed=8).calibration} != {r.id for r in one.calibration}


def test_fingerprint_ignores_order_but_not_content():
    rows = records({"a": 5})
    assert fingerprint(rows) == fingerprint(list(reversed(rows)))
    assert fingerprint(rows) != fingerprint(rows[:-1])


def test_noisy_copy_changes_text_plausibly():
    rng = random.Random(0)
    text = "my refund is still not showing on my card"
    copies = {noisy_copy(text, rng) for _ in range(20)} - {text}  # an edit can be a no-op (e.g. swapping 'll')
    assert len(copies) > 10 and text not in copies
    assert all(abs(len(c) - len(text)) < 15 for c in copies)


def test_rare_labels_are_topped_up_without_touching_held_out_texts():
    train = records({"common": 50, "rare": 5})
    held_out = [noisy_copy(r.text, random.Random(i)) for i, r in enumerate(train[-5:])]
    synthetic = [Record(text="expert wording about the rare case", label="rare"), Record(text=train[0].text, label="common")]
    out, report = augment_training(train, min_count=20, forbidden_texts=held_out, synthetic=synthetic, seed=1)
    counts = Counter(r.label for r in out)
    assert counts["rare"] == 20 and counts["common"] == 50
    assert report.synthetic_added == {"rare": 1}  # the duplicate synthetic row is skipped
    assert report.noisy_added == {"rare": 14}
    forbidden = {normalize_text(t) for t in held_out}
    assert not any(r.key in forbidden for r in out)
    assert len({r.key for r in out}) == len(out)
    assert "rare+14 noisy" in report.summary()
