"""Issue 11 item 6: bundles that should be refused are refused at load, naming the file, exit 2."""

from __future__ import annotations

import json
import shutil

import pytest

from sav_router.cli import main
from sav_router.core.bundle import BundleError
from sav_router.model.router import Router


@pytest.fixture(scope="module")
def trained(tiny_base_model, toy_annotations, tmp_path_factory):
    from tests.conftest import train_toy_bundle

    return train_toy_bundle(tiny_base_model, toy_annotations, tmp_path_factory.mktemp("bundle-loading") / "bundle", epochs=1)


@pytest.fixture
def bundle(trained, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(trained, copy)
    return copy


def edit_manifest(bundle, **changes):
    path = bundle / "router.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_the_trained_bundle_loads(bundle):
    assert Router.load(bundle).version


def test_max_length_above_the_encoders_positions_is_refused(bundle):
    edit_manifest(bundle, max_length=10_000)  # the tiny encoder has 64 positions
    with pytest.raises(BundleError, match="exceeds the encoder's 64 positions"):
        Router.load(bundle)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-1", "0"])
def test_a_temperature_that_is_not_a_positive_number_is_refused(bundle, value):
    path = bundle / "router.json"
    path.write_text(path.read_text().replace('"temperature": ', f'"temperature": {value}, "old_temperature": ', 1))
    with pytest.raises(BundleError, match="temperature"):
        Router.load(bundle)


def test_a_bundle_without_tokenizer_files_is_refused(bundle):
    for name in ("tokenizer.json", "vocab.txt"):
        (bundle / name).unlink(missing_ok=True)
    with pytest.raises(BundleError, match="no tokenizer vocabulary"):
        Router.load(bundle)


@pytest.mark.parametrize("damage", ["truncate", "pickle"])
@pytest.mark.parametrize("name", ["model.safetensors", "router_head.safetensors", "ood.safetensors"])
def test_truncated_or_foreign_weights_are_a_bundle_error_naming_the_file_exit_2(bundle, name, damage, tmp_path, capsys):
    path = bundle / name
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        import pickle

        path.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))
    with pytest.raises(BundleError, match=name):
        Router.load(bundle)
    requests = tmp_path / "requests.jsonl"
    requests.write_text('{"id": "1", "text": "where is my parcel"}\n')
    assert main(["predict", str(bundle), str(requests), "--output", str(tmp_path / "out.jsonl")]) == 2
    assert name in capsys.readouterr().err


def test_train_refuses_a_max_length_above_the_base_models_positions(tiny_base_model, toy_annotations, tmp_path, capsys):
    code = main(["train", str(toy_annotations), "--base-model", tiny_base_model, "--max-length", "100", "--output", str(tmp_path / "b"), "--quiet"])
    assert code == 2 and "exceeds the base model's 64 positions" in capsys.readouterr().err
    assert not (tmp_path / "b" / "router.json").exists()
