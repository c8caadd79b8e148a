"""ONNX export, int8 quantization, the equivalence gate and backend selection."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sav_router.model.backends import BACKENDS, load_backend
from sav_router.model.backends.onnx_export import FILES, compare
from sav_router.core.bundle import BundleError, read_manifest, write_manifest
from sav_router.model.router import Router

TEXTS = ["my parcel is still not here", "refund my money please", "", "password reset locked", "weather poem football recipe " * 20]


def test_backend_names_are_registered():
    assert set(BACKENDS) == {"torch", "onnx", "onnx-int8"}


def test_export_records_files_checks_and_the_chosen_backend(onnx_bundle):
    serving = json.loads((onnx_bundle / "router.json").read_text())["serving"]
    for variant, relative in FILES.items():
        assert (onnx_bundle / relative).stat().st_size > 0
        report = serving["onnx"]["equivalence"][variant]
        assert report["examples"] == 720
        assert 0.0 <= report["max_score_difference"] <= 1.0
    assert serving["onnx"]["equivalence"]["onnx"]["passed"] is True
    assert serving["onnx"]["equivalence"]["onnx"]["max_score_difference"] < 1e-4
    expected = "onnx-int8" if serving["onnx"]["equivalence"]["onnx-int8"]["passed"] else "onnx"
    assert serving["backend"] == expected


@pytest.mark.parametrize("variant", ["onnx", "onnx-int8"])
def test_onnx_forward_matches_torch(onnx_bundle, variant):
    manifest = read_manifest(onnx_bundle)
    torch_logits, torch_pooled = load_backend("torch", onnx_bundle, manifest, num_threads=1).forward(TEXTS)
    backend = load_backend(variant, onnx_bundle, manifest, num_threads=1)
    logits, pooled = backend.forward(TEXTS)
    assert logits.shape == torch_logits.shape and pooled.shape == torch_pooled.shape
    assert logits.dtype == np.float32 and pooled.dtype == np.float32
    tolerance = 1e-4 if variant == "onnx" else 0.5
    assert np.abs(logits - torch_logits).max() < tolerance
    assert (logits.argmax(axis=1) == torch_logits.argmax(axis=1)).mean() >= 0.8


def test_rows_do_not_depend_on_batch_composition(onnx_bundle):
    backend = load_backend("onnx", onnx_bundle, read_manifest(onnx_bundle), num_threads=1)
    together, _ = backend.forward(TEXTS)
    alone = np.stack([backend.forward([text])[0][0] for text in TEXTS])
    assert np.abs(together - alone).max() < 1e-4


def test_empty_input_gives_empty_arrays(onnx_bundle):
    logits, pooled = load_backend("onnx", onnx_bundle, read_manifest(onnx_bundle)).forward([])
    assert logits.shape[0] == 0 and pooled.shape[0] == 0


def test_int8_refuses_to_load_without_a_passed_check(onnx_bundle, tmp_path):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(onnx_bundle, bundle)
    manifest = read_manifest(bundle)
    manifest.serving["onnx"]["equivalence"]["onnx-int8"]["passed"] = False
    write_manifest(bundle, manifest)
    with pytest.raises(BundleError, match="equivalence check"):
        Router.load(bundle, backend="onnx-int8")
    Router.load(bundle, backend="onnx")  # fp32 stays available


def test_onnx_backend_needs_an_export(bundle_copy):
    with pytest.raises(BundleError, match="export-onnx"):
        Router.load(bundle_copy, backend="onnx")


def test_compare_detects_a_different_model(onnx_bundle, toy_annotations):
    """The gate can fail: a router whose head is reversed disagrees with PyTorch."""
    from sav_router.data.annotations import load_annotations

    records = load_annotations([toy_annotations]).records[:200]
    reference = Router.load(onnx_bundle, backend="torch", num_threads=1)

    class Reversed:
        name = "reversed"

        def forward(self, texts):
            logits, pooled = reference.backend.forward(texts)
            return logits[:, ::-1].copy(), pooled

    result = compare(reference, Router(reference.manifest, Reversed(), reference.ood), [r.text for r in records], [r.label for r in records])
    assert not result.passed and result.top1_agreement < 0.5
    same = compare(reference, reference, [r.text for r in records], [r.label for r in records])
    assert same.passed and same.top1_agreement == 1.0 and same.max_score_difference == 0.0


def test_the_server_answers_the_same_with_the_onnx_backend(onnx_bundle):
    from fastapi.testclient import TestClient

    from sav_router.serving.app import create_app

    texts = ["refund my money back", "password login locked", "parcel courier tracking", "broken repair warranty"]
    body = {"instances": [{"id": i, "text": t} for i, t in enumerate(texts)]}
    answers = {}
    for backend in ("torch", "onnx"):
        with TestClient(create_app(Router.load(onnx_bundle, backend=backend, num_threads=1))) as client:
            answers[backend] = client.post("/invocations", json=body).json()["predictions"]
    assert [p["label"] for p in answers["onnx"]] == [p["label"] for p in answers["torch"]]
    for onnx_record, torch_record in zip(answers["onnx"], answers["torch"]):
        assert onnx_record["decision"] == torch_record["decision"]
        assert max(abs(onnx_record["scores"][k] - v) for k, v in torch_record["scores"].items()) < 1e-4
