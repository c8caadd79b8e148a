"""`train` with an off-topic share: out-of-scope teach rows, calibrate rows with unknown labels, the promise's scope."""

import json
import random

import pytest

from sav_router.core.bundle import read_manifest
from sav_router.core.labels import OUT_OF_SCOPE
from sav_router.model.router import Router
from tests.conftest import TOPICS, make_texts, write_jsonl

OFF_WORDS = ["weather", "recipe", "football", "poem"]


def off_topic(n, seed):
    rng = random.Random(seed)
    texts = set()
    while len(texts) < n:
        texts.add(" ".join(rng.sample(OFF_WORDS, 2) + rng.sample(["my", "the", "a", "please", "why", "i", "need"], 2)))
    return sorted(texts)


@pytest.fixture(scope="module")
def open_bundle(tmp_path_factory, tiny_base_model):
    from sav_router.training.build import train_bundle
    from sav_router.training.config import TrainConfig

    root = tmp_path_factory.mktemp("open")
    rows = []
    for label in TOPICS:
        texts = make_texts(label, 150, seed=21)
        rows += [{"id": f"{label}-{i}", "text": t, "label": label, "split": "calibrate" if i % 3 == 0 else "teach"} for i, t in enumerate(texts)]
    off = off_topic(40, seed=3)
    rows += [{"id": f"off-{i}", "text": t, "label": OUT_OF_SCOPE, "split": "teach" if i < 16 else "calibrate"} for i, t in enumerate(off)]
    rows += [{"id": "new-1", "text": "football poem please my", "label": "sports_desk", "split": "calibrate"}]
    messages = []
    config = TrainConfig(base_model=tiny_base_model, epochs=2, seed=13, progress=False, learning_rate=1e-3, head_learning_rate=1e-2, batch_size=16)
    train_bundle([write_jsonl(root / "data.jsonl", rows)], root / "model", config=config, log=messages.append)
    return root / "model", messages


def test_out_of_scope_is_never_a_class_and_feeds_the_novelty_detector(open_bundle):
    bundle, messages = open_bundle
    manifest = read_manifest(bundle)
    # THEN the reserved answer is no label the router could route to
    assert manifest.labels == sorted(TOPICS) and OUT_OF_SCOPE not in manifest.policy.teams
    # AND the out-of-scope teach rows, with the out-of-scope rows of the calibrate sample's tuning
    # part, are the detector's outlier exposure (stored in the bundle)
    router = Router.load(bundle)
    exposure = manifest.calibration["exposure_rows"]
    assert exposure > 0 and router.ood.tensors()["outliers"].shape[0] == 16 + exposure
    assert any("16 teach rows answered 'out_of_scope'" in m for m in messages)


def test_calibrate_rows_with_unknown_labels_count_as_out_of_scope_in_a_joint_calibration(open_bundle):
    bundle, messages = open_bundle
    calibration = read_manifest(bundle).calibration
    # 24 calibrate rows answered out of scope + 1 with a label no teach row has
    assert calibration["out_of_scope"] == 25 and calibration["method"].startswith("pareto testing")
    # a seeded 40 % of the sample tuned (TrainConfig.tuning_share), the rest certified
    assert calibration["tuning_rows"] == round(0.4 * calibration["n_calibration"])
    assert any("calibrate rows tuned" in m for m in messages)
    assert calibration["promise"]["scope"] == "traffic-sample" and "off-topic share included" in calibration["promise"]["text"]
    assert read_manifest(bundle).policy.ood_threshold == pytest.approx(calibration["ood_threshold"])
    assert calibration["reference"]["n"] == calibration["n_calibration"] > 0
    assert any(m.startswith("promise: ") for m in messages)


def test_without_calibrate_rows_the_bundle_says_its_promise_covers_annotated_topics_only(tiny_bundle):
    promise = read_manifest(tiny_bundle).calibration["promise"]
    assert promise["scope"] == "annotated-topics"
    assert "annotated topics only" in promise["text"] and "--as calibrate" in promise["text"] and "--calibration-share" in promise["text"]
    report = json.loads((tiny_bundle / "check_report" / "report.json").read_text())
    assert "annotated topics only" in report["promise"]
    assert report["monitor"]["line"].startswith("monitor (")
    assert "Promise: routed precision" in (tiny_bundle / "check_report" / "report.md").read_text()


def test_a_calibrate_sample_that_is_all_off_topic_trains_a_bundle_that_routes_nothing_and_says_why(tmp_path, tiny_base_model):
    from sav_router.calibration.thresholds import ROUTE_NOTHING
    from sav_router.training.build import train_bundle
    from sav_router.training.config import TrainConfig

    # GIVEN teach rows for the topics and a calibrate sample in which every request is off topic
    rows = [{"text": t, "label": label, "split": "teach"} for label in TOPICS for t in make_texts(label, 40, seed=5)]
    rows += [{"text": t, "label": OUT_OF_SCOPE, "split": "calibrate"} for t in off_topic(6, seed=9)]
    messages = []
    config = TrainConfig(base_model=tiny_base_model, epochs=1, seed=13, progress=False, batch_size=16)
    # WHEN trained
    train_bundle([write_jsonl(tmp_path / "data.jsonl", rows)], tmp_path / "model", config=config, log=messages.append)
    # THEN the bundle exists, routes nothing, and train said why
    manifest = read_manifest(tmp_path / "model")
    assert manifest.policy.threshold == ROUTE_NOTHING and manifest.calibration["out_of_scope"] == 6
    assert any("routes nothing" in m for m in messages)
