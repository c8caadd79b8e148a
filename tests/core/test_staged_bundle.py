"""A bundle is written whole or not at all (issue 18, finding 9)."""

from __future__ import annotations

import pytest

from sav_router.core.bundle import MANIFEST_NAME, BundleError, staged_bundle


def write_bundle(folder, version):
    (folder / "model.safetensors").write_text(f"weights {version}")
    (folder / "ood.safetensors").write_text(f"ood {version}")
    (folder / MANIFEST_NAME).write_text(f'{{"model_version": "{version}"}}')


def test_a_new_bundle_replaces_the_old_one_whole(tmp_path):
    target = tmp_path / "bundle"
    target.mkdir()
    write_bundle(target, "v1")
    (target / "check_report").mkdir()
    with staged_bundle(target) as staging:
        write_bundle(staging, "v2")
    assert (target / "model.safetensors").read_text() == "weights v2" and "v2" in (target / MANIFEST_NAME).read_text()
    assert not (target / "check_report").exists()  # nothing of the old bundle stays beside the new one
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no staging folder left


def test_a_crash_while_training_leaves_the_old_bundle_untouched(tmp_path):
    # GIVEN a bundle, retrained into the same folder, killed after the new weights were written
    target = tmp_path / "bundle"
    target.mkdir()
    write_bundle(target, "v1")
    with pytest.raises(RuntimeError), staged_bundle(target) as staging:
        (staging / "model.safetensors").write_text("weights v2")
        raise RuntimeError("killed")
    # THEN the folder is the old bundle, whole: no new weights beside the old manifest
    assert (target / "model.safetensors").read_text() == "weights v1" and "v1" in (target / MANIFEST_NAME).read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_a_folder_that_is_not_a_bundle_is_never_replaced(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(BundleError, match="not a model bundle"), staged_bundle(tmp_path):
        pass
    assert (tmp_path / "notes.txt").read_text() == "mine"
