"""Issue 21: train and recalibrate certify the backend that serves, and compute the promise on its scores."""

from __future__ import annotations

import numpy as np
import pytest

from sav_router.core.bundle import read_manifest
from sav_router.model.backends import certified_backend
from sav_router.model.backends.certify import CHOICES, CertificationError, certify_backend, gate
from sav_router.model.router import Router
from sav_router.training.config import SERVING_BACKENDS, TrainConfig
from tests.conftest import write_jsonl


def test_the_knob_lists_the_certifiable_backends():
    assert SERVING_BACKENDS == CHOICES and TrainConfig().serving_backend == "auto"
    flags = {option["flags"][0]: option for option in TrainConfig.cli_options()}
    assert flags["--serving-backend"]["choices"] == list(CHOICES)
    assert TrainConfig.from_mapping({"serving_backend": "onnx"}).serving_backend == "onnx"
    with pytest.raises(ValueError, match="serving_backend"):
        TrainConfig(serving_backend="tensorrt")


def test_the_gate_passes_equal_outputs_and_fails_flipped_ones():
    rng = np.random.default_rng(0)
    logits, pooled = rng.normal(size=(400, 5)).astype(np.float32), rng.normal(size=(400, 8)).astype(np.float32)
    truth = logits.argmax(axis=1)
    assert gate((logits, pooled), (logits, pooled), truth)["passed"]
    flipped = logits.copy()
    flipped[:3] = np.roll(flipped[:3], 1, axis=1)  # 3 of 400 rows change their top label: 99.25 % agreement
    result = gate((logits, pooled), (flipped, pooled), truth)
    assert not result["passed"] and result["top1_agreement"] == pytest.approx(0.9925)


def test_torch_asked_for_exports_nothing(tmp_path):
    forward = lambda texts: (np.zeros((len(texts), 2), np.float32), np.zeros((len(texts), 4), np.float32))  # noqa: E731
    certification = certify_backend(tmp_path, None, None, labels=["a", "b"], max_length=8, gate_texts=["x"], gate_labels=["a"],
                                    reference_forward=forward, requested="torch", log=lambda _: None)
    assert certification.backend == "torch" and certification.forward is forward and not (tmp_path / "onnx").exists()
    assert certification.serving["certified_backend"] == "torch"
    with pytest.raises(CertificationError, match="unknown serving backend"):
        certify_backend(tmp_path, None, None, labels=["a"], max_length=8, gate_texts=[], gate_labels=[], reference_forward=forward,
                        requested="gpu", log=lambda _: None)


def test_the_check_report_and_monitor_reference_come_from_the_certified_backend(tiny_bundle, tmp_path):
    """The bundle's calibration reference is exactly what its certified backend scores; recalibrate certifies again."""
    from sav_router.cli import main
    from sav_router.monitoring.reference import drift_reference
    from tests.training.test_recalibrate import traffic_sample

    sample = traffic_sample(tmp_path)
    assert main(["recalibrate", str(tiny_bundle), str(sample), "--output", str(tmp_path / "new")]) == 0
    child = read_manifest(tmp_path / "new")
    assert child.serving["certified_backend"] == certified_backend(child) != "torch"
    assert child.serving["certification"]["gate_rows"] == child.training["recalibration"]["rows"]
    router = Router.load(tmp_path / "new", num_threads=1)
    assert router.certified
    from sav_router.data.annotations import CALIBRATE, load_annotations

    texts = [r.text for r in load_annotations([sample]).by_split(CALIBRATE)]
    scored = router.score(texts)
    expected = drift_reference(scored.logits / child.temperature, router.ood.score(scored.embeddings), router.policy.ood_threshold)
    assert expected["n"] == child.calibration["reference"]["n"]
    assert np.allclose(expected["confidence"], child.calibration["reference"]["confidence"], atol=1e-6)
    assert np.allclose(expected["novelty"], child.calibration["reference"]["novelty"], atol=1e-6)


def test_a_backend_asked_for_that_fails_the_gate_is_refused(tiny_base_model, tmp_path, monkeypatch):
    from sav_router.model.backends import certify
    from sav_router.training.build import train_bundle

    rows = [{"text": f"refund money card back {i}", "label": "refund"} for i in range(40)]
    rows += [{"text": f"parcel courier tracking late {i}", "label": "delivery"} for i in range(40)]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    monkeypatch.setattr(certify, "gate", lambda reference, candidate, truth: {"passed": False, "top1_agreement": 0.9, "accuracy_delta": -0.1,
                                                                              "min_agreement": 0.995, "max_accuracy_drop": 0.005,
                                                                              "max_score_difference": 1.0, "accuracy": 0.5,
                                                                              "reference_accuracy": 1.0})
    config = TrainConfig(base_model=tiny_base_model, epochs=1, progress=False, max_steps=2, serving_backend="onnx-int8")
    with pytest.raises(CertificationError, match="fails the equivalence gate"):
        train_bundle([data], tmp_path / "model", config=config, log=lambda _: None)
    assert not (tmp_path / "model" / "router.json").exists()
    auto = train_bundle([data], tmp_path / "auto", config=TrainConfig(base_model=tiny_base_model, epochs=1, progress=False, max_steps=2),
                        log=lambda _: None)
    assert auto.manifest.serving["certified_backend"] == "torch"  # nothing passed: torch, whose promise it then is
    assert auto.manifest.serving["certification"]["reason"] == "no ONNX model passed the gate"


def test_onnx_auto_never_falls_back_to_torch(tiny_base_model, tmp_path, monkeypatch):
    """The SageMaker pipeline's choice (the serving image has no torch): the fastest ONNX that passes, else a loud failure."""
    from sav_router.model.backends import certify
    from sav_router.training.build import train_bundle

    rows = [{"text": f"refund money card back {i}", "label": "refund"} for i in range(40)]
    rows += [{"text": f"parcel courier tracking late {i}", "label": "delivery"} for i in range(40)]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    config = TrainConfig(base_model=tiny_base_model, epochs=1, progress=False, max_steps=2, serving_backend="onnx-auto")
    real_gate, calls = certify.gate, []

    def int8_fails(reference, candidate, truth):  # variants are gated in the order onnx, onnx-int8
        calls.append(1)
        return real_gate(reference, candidate, truth) | ({"passed": False} if len(calls) % 2 == 0 else {"passed": True})

    monkeypatch.setattr(certify, "gate", int8_fails)
    bundle = train_bundle([data], tmp_path / "model", config=config, log=lambda _: None)
    assert bundle.manifest.serving["certified_backend"] == "onnx"
    assert bundle.manifest.serving["certification"]["requested"] == "onnx-auto"
    # nothing passes: an error naming the export defect, no bundle
    monkeypatch.setattr(certify, "gate", lambda reference, candidate, truth: real_gate(reference, candidate, truth) | {"passed": False})
    with pytest.raises(CertificationError, match="no ONNX model passes the equivalence gate.*export defect"):
        train_bundle([data], tmp_path / "failed", config=config, log=lambda _: None)
    assert not (tmp_path / "failed" / "router.json").exists()
