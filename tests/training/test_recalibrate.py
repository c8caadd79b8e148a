"""`sav-router recalibrate`: a new traffic sample, a new promise, the same network."""

import hashlib
import json

import pytest

from sav_router.cli import main
from sav_router.core.bundle import read_manifest
from sav_router.core.labels import OUT_OF_SCOPE
from sav_router.model.router import Router
from tests.conftest import TOPICS, make_texts, write_jsonl
from tests.training.test_open_traffic import off_topic


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def traffic_sample(tmp_path, *, with_off_topic=True):
    rows = [{"id": f"{label}-{i}", "text": t, "label": label, "split": "calibrate"}
            for label in TOPICS for i, t in enumerate(make_texts(label, 60, seed=77))]
    if with_off_topic:
        rows += [{"id": f"off-{i}", "text": t, "label": OUT_OF_SCOPE, "split": "calibrate"} for i, t in enumerate(off_topic(40, seed=5))]
    rows += [{"id": "teach-1", "text": "my parcel is late", "label": "delivery", "split": "teach"}]  # not part of the sample
    return write_jsonl(tmp_path / "sample.jsonl", rows)


def test_recalibrate_writes_a_new_bundle_with_a_traffic_promise_and_leaves_the_parent_untouched(tiny_bundle, tmp_path, capsys):
    parent = read_manifest(tiny_bundle)
    before = {p.name: digest(p) for p in tiny_bundle.iterdir() if p.is_file()}
    # WHEN a traffic sample with an off-topic share recalibrates the bundle
    code = main(["recalibrate", str(tiny_bundle), str(traffic_sample(tmp_path)), "--output", str(tmp_path / "new")])
    # THEN a new bundle exists, loads and routes, with the same network and labels
    assert code == 0
    child = read_manifest(tmp_path / "new")
    assert child.model_version != parent.model_version and child.labels == parent.labels
    assert child.training["recalibration"]["from"] == parent.model_version and child.training["recalibration"]["rows"] == 280
    network = [name for name in before if name.endswith(".safetensors") and name != parent.ood.get("file")]
    assert network and all(digest(tmp_path / "new" / name) == before[name] for name in network)
    # AND its promise covers the traffic sample, off-topic share included, chosen jointly
    assert child.calibration["promise"]["scope"] == "traffic-sample" and child.calibration["out_of_scope"] == 40
    assert child.calibration["method"].startswith("pareto testing") and child.calibration["exposure_rows"] > 0
    assert child.calibration["reference"]["n"] == 280
    router = Router.load(tmp_path / "new")
    assert router.ood.tensors()["outliers"].shape[0] >= child.calibration["exposure_rows"]
    assert router.policy.ood_threshold == pytest.approx(child.calibration["ood_threshold"])
    assert "check_report" not in {p.name for p in (tmp_path / "new").iterdir()}
    # AND the parent is as it was
    assert {p.name: digest(p) for p in tiny_bundle.iterdir() if p.is_file()} == before
    assert "recalibrated from" in capsys.readouterr().err


def test_recalibrate_refuses_a_sample_without_calibrate_rows_and_an_output_in_place(tiny_bundle, tmp_path, capsys):
    teach_only = write_jsonl(tmp_path / "teach.jsonl", [{"text": "my parcel is late", "label": "delivery"}])
    assert main(["recalibrate", str(tiny_bundle), str(teach_only), "--output", str(tmp_path / "new")]) == 2
    assert "no rows tagged 'calibrate'" in capsys.readouterr().err
    assert main(["recalibrate", str(tiny_bundle), str(traffic_sample(tmp_path)), "--output", str(tiny_bundle)]) == 2
    assert "must not be the bundle itself" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_recalibrate_takes_the_bundles_own_settings_unless_told(tiny_bundle, tmp_path):
    main(["recalibrate", str(tiny_bundle), str(traffic_sample(tmp_path, with_off_topic=False)), "--output", str(tmp_path / "a"),
          "--target-precision", "0.9"])
    settings = read_manifest(tmp_path / "a").training["recalibration"]["settings"]
    parent = read_manifest(tiny_bundle).training["hyperparameters"]
    assert settings["target_precision"] == 0.9 and settings["confidence"] == parent["confidence"]
    assert settings["seed"] == parent["seed"]
    # a sample with nothing off topic certifies whole (single Learn-then-Test), as in train
    assert read_manifest(tmp_path / "a").calibration["tuning_rows"] == 0
    json.dumps(settings)  # JSON-ready in the manifest
