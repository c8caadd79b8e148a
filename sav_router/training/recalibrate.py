"""Recalibrate a bundle on a new traffic sample, without fine-tuning: the monitor's remedy.

When live traffic drifts from the calibration sample (`sav-router monitor`), the
promise needs a new sample, not necessarily a new network. `recalibrate` keeps
the bundle's network, labels and teams, scores the annotated sample (rows tagged
`calibrate`, off-topic ones answered out of scope) and runs exactly what `train`
runs on calibrate rows (`calibration.joint.calibrate_on_traffic`): the tuning
part's out-of-scope answers join the detector's outlier exposure, the novelty
threshold, confidence threshold and margin are chosen and certified again, the
promise and the monitor's reference are rewritten. The result is a new bundle
(new model version, `training.recalibration` naming its parent) to register,
compare and promote like any other; the parent is left untouched. Minutes on
a CPU instead of a training run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from sav_router.calibration.joint import calibrate_on_traffic
from sav_router.calibration.promise import TRAFFIC_SAMPLE, promise
from sav_router.core.bundle import MANIFEST_NAME, OOD_FILE, Manifest, check_bundle_files, read_manifest, staged_bundle, write_manifest
from sav_router.data.annotations import CALIBRATE, Columns, load_annotations, write_rejects
from sav_router.data.splits import fingerprint
from sav_router.calibration.temperature import softmax
from sav_router.doubts.estimate import label_error_estimate
from sav_router.training.config import TrainConfig
from sav_router.training.manifest import calibrated_fields, version_fields

# Not carried over: what this module rewrites, and the parent's check report (it was about the parent's policy).
# The ONNX models are exported and certified again (`model.backends.certify`), like train does.
REWRITTEN = {MANIFEST_NAME, "check_report", "rejects.jsonl", "superseded.jsonl", "onnx"}


def recalibration_config(parent: Manifest, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Settings of a recalibration: `overrides` > the bundle's own training settings > TrainConfig's defaults."""
    recorded = {k: v for k, v in (parent.training.get("hyperparameters") or {}).items() if k in TrainConfig.__dataclass_fields__}
    return TrainConfig.from_mapping(recorded | dict(overrides or {}) | {"progress": False})


class RecalibrationError(ValueError):
    """The sample cannot recalibrate this bundle (no calibrate rows, no detector, same folder...)."""


def recalibrate_bundle(
    bundle_dir: str | os.PathLike[str],
    data_paths: Sequence[str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    *,
    overrides: Mapping[str, Any] | None = None,
    columns: Columns = Columns(),
    log: Callable[[str], None] = print,
) -> Manifest:
    """Write a recalibrated copy of `bundle_dir` to `output_dir`; return its manifest.

    `overrides` (TrainConfig names: target precision, confidence, margins, tuning
    share, seed...) win over the bundle's own training settings, which win over
    TrainConfig's defaults.
    """
    from sav_router.model.backends import TORCH, load_backend
    from sav_router.model.router import load_ood

    bundle_dir, output_dir = Path(bundle_dir), Path(output_dir)
    if output_dir.resolve() == bundle_dir.resolve():
        raise RecalibrationError("recalibrate writes a new bundle: --output must not be the bundle itself")
    if output_dir.exists() and any(output_dir.iterdir()):
        raise RecalibrationError(f"{output_dir} exists and is not empty: choose a new folder")
    parent = read_manifest(bundle_dir)
    config = recalibration_config(parent, overrides)
    data = load_annotations(data_paths, columns=columns)
    sample = data.by_split(CALIBRATE)
    if not sample:
        raise RecalibrationError(
            "no rows tagged 'calibrate' in the data: recalibration needs an annotated random sample of live traffic "
            "(`sav-router import BATCH.json --as calibrate`, or a split column valued calibrate)"
        )
    check_bundle_files(bundle_dir, parent)
    detector = load_ood(bundle_dir, parent)
    if detector is None:
        raise RecalibrationError(f"{bundle_dir} has no novelty detector to recalibrate (an older bundle: retrain it)")
    index = {label: i for i, label in enumerate(parent.labels)}
    labels = np.array([index.get(str(r.label), -1) for r in sample])  # -1: out of scope (the reserved answer is no label)
    log(f"{len(sample)} calibrate rows ({int((labels < 0).sum())} out of scope or on labels the bundle does not know); "
        f"{len(data.rejects)} rejected")
    with staged_bundle(output_dir) as staging:
        manifest = _recalibrate_into(staging, bundle_dir, parent, config, data, sample, labels, detector, data_paths,
                                     load_backend(TORCH, bundle_dir, parent, num_threads=config.num_threads), log)
    log(f"model {manifest.model_version} (recalibrated from {parent.model_version}) written to {output_dir}")
    return manifest


def _recalibrate_into(output_dir: Path, bundle_dir: Path, parent: Manifest, config: TrainConfig, data, sample, labels: np.ndarray,
                      detector, data_paths, reference, log) -> Manifest:
    from safetensors.numpy import save_file

    from sav_router.model.backends.certify import certify_backend

    for entry in bundle_dir.iterdir():
        if entry.name in REWRITTEN or entry.name == parent.ood.get("file", OOD_FILE):
            continue
        if entry.is_symlink():
            raise RecalibrationError(f"{entry}: a link in the bundle; not followed")
        (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, output_dir / entry.name)
    # Certify what serves, as train does: export, check against PyTorch on the sample's texts, choose; then calibrate on its scores.
    texts = [r.text for r in sample]
    certification = certify_backend(
        output_dir, reference.network, reference.tokenizer, labels=parent.labels, max_length=parent.max_length,
        gate_texts=texts, gate_labels=[str(r.label) for r in sample], reference_forward=reference.forward,
        requested=config.serving_backend, num_threads=config.num_threads, log=log,
    )
    logits, embeddings = certification.outputs.get(certification.backend) or certification.forward(texts)
    previous = getattr(detector, "outliers_", None)
    settings = config.calibration_settings()
    result, novelty = calibrate_on_traffic(logits, embeddings, labels, parent.labels, detector, settings,
                                           outlier_embeddings=None if previous is None else np.asarray(previous, dtype=np.float32))
    log(f"calibration: temperature {result.temperature:.3f}; {result.message}")
    scope = promise(TRAFFIC_SAMPLE, target=config.target_precision, confidence=config.confidence, out_of_scope_rows=result.out_of_scope)
    log(f"promise: {scope['text']} (computed on the {certification.backend} backend's scores)")

    sample_fingerprint = fingerprint(sample)
    manifest = replace(
        parent,
        **calibrated_fields(result, detector, scope=scope, logits=logits, novelty=novelty, teams=parent.policy.teams,
                            label_doubts=label_error_estimate(softmax(logits, result.temperature), labels, parent.labels, embeddings)),
        **version_fields(hashlib.sha256(f"{parent.model_version}:{sample_fingerprint}".encode()).hexdigest()),
        ood=parent.ood | {"threshold": detector.threshold_, "params": detector.params()},
        training=parent.training | {"recalibration": {
            "from": parent.model_version,
            "sources": [str(p) for p in data_paths],
            "rows": len(sample),
            "rejected": len(data.rejects),
            "data_fingerprint": sample_fingerprint,
            "settings": settings.to_dict(),
        }},
        metrics={k: v for k, v in parent.metrics.items() if k != "check"} | {
            "calibration_coverage": result.coverage, "calibration_precision": result.empirical_precision,
        },
        serving=certification.serving,
    )
    certification.record_decisions(manifest, detector)
    save_file(detector.tensors(), str(output_dir / manifest.ood.get("file", OOD_FILE)))
    if data.rejects:
        write_rejects(data.rejects, output_dir / "rejects.jsonl")
    write_manifest(output_dir, manifest)
    return manifest
