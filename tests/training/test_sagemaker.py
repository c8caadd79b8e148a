"""The SageMaker training contract, run as plain Python under a temporary /opt/ml."""

import json

import pytest

from sav_router.training import sagemaker
from sav_router.core.bundle import read_manifest
from sav_router.cli import main


@pytest.fixture
def opt_ml(tmp_path, monkeypatch):
    root = tmp_path / "opt_ml"
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "data" / "train").mkdir(parents=True)
    monkeypatch.setenv("SAV_ROUTER_OPT_ML", str(root))
    for name in ("SM_MODEL_DIR", "SM_HPS", "SM_CHANNEL_TRAIN", "SM_OUTPUT_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    return root


def test_hyperparameters_arrive_as_strings_and_are_decoded(opt_ml):
    (opt_ml / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({"epochs": "2", "target-precision": "0.97", "class_weighted": "true", "margins": "[0.0, 0.1]", "base_model": "/models/x"})
    )
    assert sagemaker.in_training_job()
    config = sagemaker.config_from_hyperparameters(sagemaker.read_hyperparameters())
    assert (config.epochs, config.target_precision, config.class_weighted, config.margins, config.base_model) == (2, 0.97, True, (0.0, 0.1), "/models/x")
    assert config.progress is False


def test_unknown_hyperparameter_is_an_error():
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        sagemaker.config_from_hyperparameters({"epochz": 3})


def test_training_job_reads_channels_and_writes_the_model_dir(opt_ml, tiny_base_model, toy_annotations):
    (opt_ml / "input" / "data" / "train" / "drop1.jsonl").write_bytes(toy_annotations.read_bytes())
    (opt_ml / "input" / "data" / "teams").mkdir()
    (opt_ml / "input" / "data" / "teams" / "teams.json").write_text(json.dumps({"refund": "finance"}))
    (opt_ml / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({"base_model": tiny_base_model, "epochs": "1", "learning_rate": "0.001", "batch_size": "16"})
    )
    assert main(["train"]) == 0  # no DATA: the SageMaker contract takes over
    manifest = read_manifest(opt_ml / "model")
    assert manifest.policy.teams["refund"] == "finance" and manifest.policy.teams["delivery"] is None
    assert not (opt_ml / "output" / "failure").exists()


def test_failure_reason_is_written_for_sagemaker(opt_ml, monkeypatch, tmp_path):
    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path / "model"))
    (opt_ml / "input" / "data" / "train" / "empty.csv").write_text("text,label\n", encoding="utf-8")
    assert sagemaker.run_training_job() == 1
    failure = (opt_ml / "output" / "failure").read_text()
    assert "NoValidDataError" in failure and "empty.csv" in failure


def test_train_without_data_outside_sagemaker_is_a_usage_error(opt_ml, capsys):
    assert main(["train"]) == 2
    assert "needs DATA" in capsys.readouterr().err


def test_the_job_certifies_the_backend_asked_for_by_hyperparameter(opt_ml, tiny_base_model, toy_annotations):
    """Issue 21: the SageMaker job's bundle carries a certified ONNX backend (`serving-backend`, default auto)."""
    from sav_router.model.router import Router

    (opt_ml / "input" / "data" / "train" / "drop1.jsonl").write_bytes(toy_annotations.read_bytes())
    (opt_ml / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({"base_model": tiny_base_model, "epochs": "1", "max_steps": "5", "batch_size": "16", "serving-backend": "onnx"})
    )
    assert main(["train"]) == 0
    manifest = read_manifest(opt_ml / "model")
    assert manifest.serving["certified_backend"] == "onnx" and manifest.serving["certification"]["requested"] == "onnx"
    assert (opt_ml / "model" / manifest.serving["certification"]["file"]).is_file()
    assert Router.load(opt_ml / "model", num_threads=1).certified
