"""From annotation files to a calibrated model bundle: the `train` job.

load + validate -> leakage-free split -> augmentation (train only) ->
fine-tune -> OOD detector on training embeddings -> temperature and
threshold on the calibration split -> bundle -> report on `check` rows.
The same function runs locally, in the quickstart, and in a SageMaker
training job (see `sav_router.training.sagemaker`).
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sav_router.core.bundle import OOD_FILE, Manifest, staged_bundle, write_manifest
from sav_router.calibration.temperature import softmax
from sav_router.calibration.joint import calibrate_on_traffic
from sav_router.calibration.promise import ANNOTATED_TOPICS, TRAFFIC_SAMPLE, promise
from sav_router.core.labels import out_of_scope_label
from sav_router.data.annotations import CALIBRATE, CHECK, TEACH, Columns, LoadResult, Record, load_annotations, write_rejects, write_superseded
from sav_router.data.augment import augment_training
from sav_router.data.splits import Splits, fingerprint, stratified_split
from sav_router.model.ood import make_detector
from sav_router.core.teams import complete_teams
from sav_router.doubts.estimate import label_error_estimate, unreliable_promise
from sav_router.training.config import TrainConfig
from sav_router.training.manifest import calibrated_fields, version_fields


@dataclass
class TrainResult:
    output_dir: Path
    manifest: Manifest
    data: LoadResult
    splits: dict[str, int]
    augmentation: dict[str, Any]
    check_report: dict[str, Any] | None = None
    seconds: float = 0.0
    messages: list[str] = field(default_factory=list)


def _split(teach: list[Record], calibrate_rows: list[Record], labels: list[str], config: TrainConfig, log) -> tuple[Splits, str]:
    """Train / calibration / validation.

    Rows tagged `calibrate` (a random sample of traffic, annotated) are the
    calibration split when there are any: the precision guarantee holds for
    data like the calibration split, and teach rows picked by active learning
    are harder than traffic, so calibrating on them would escalate far more
    than needed. Otherwise calibration rows are carved from the teach rows.
    A calibrate row whose label the model does not know (the out-of-scope
    answer, or a topic no teach row has) is kept: routing it would be a
    misroute, which is exactly what joint calibration must count.
    """
    if not calibrate_rows:
        splits = stratified_split(teach, calibration=config.calibration_share, validation=config.validation_share, seed=config.seed)
        return splits, "carved from teach rows"
    unknown = [r for r in calibrate_rows if str(r.label) not in labels]
    if unknown:
        log(f"  {len(unknown)} calibrate rows are out of scope (answered out of scope, or a label no teach row has): "
            "routing one counts as a misroute")
    splits = stratified_split(teach, calibration=0.0, validation=config.validation_share, seed=config.seed)
    splits.calibration = list(calibrate_rows)
    return splits, f"{len(calibrate_rows)} rows tagged '{CALIBRATE}' ({len(unknown)} out of scope)"


def train_bundle(
    data_paths: Sequence[str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    *,
    config: TrainConfig | None = None,
    columns: Columns = Columns(),
    teams: dict[str, str | None] | None = None,
    synthetic_paths: Sequence[str | os.PathLike[str]] = (),
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train, calibrate and write a bundle to `output_dir`: written whole into a fresh folder, then put in place."""
    target = Path(output_dir)
    with staged_bundle(target) as staging:
        outcome = _train_into(data_paths, staging, target, config=config or TrainConfig(), columns=columns, teams=teams,
                              synthetic_paths=synthetic_paths, log=log)
    outcome.output_dir = target
    log(f"model {outcome.manifest.model_version} written to {target} in {outcome.seconds:.0f} s")
    return outcome


def _train_into(data_paths, output_dir: Path, shown_dir: Path, *, config: TrainConfig, columns: Columns, teams, synthetic_paths, log) -> TrainResult:
    from sav_router.training.estimator import RouterClassifier

    started = time.perf_counter()

    data = load_annotations(data_paths, columns=columns)
    log(data.summary())
    if data.superseded:
        path = shown_dir / write_superseded(data.superseded, output_dir / "superseded.jsonl").name
        log(f"  {len(data.superseded)} earlier answers superseded by newer ones for the same request (recorded in {path})")
    if data.rejects:
        path = shown_dir / write_rejects(data.rejects, output_dir / "rejects.jsonl").name
        for reject in data.rejects[:5]:
            log(f"  rejected {reject}")
        log(f"  all {len(data.rejects)} rejected rows written to {path}")
    teach, calibrate_rows, check = data.by_split(TEACH), data.by_split(CALIBRATE), data.by_split(CHECK)
    oos_name = out_of_scope_label(config.out_of_scope_label)
    # Teach rows answered out of scope are no class (never routed): they feed the novelty detector.
    outlier_rows = [r for r in teach if r.label == oos_name]
    teach = [r for r in teach if r.label != oos_name]
    if outlier_rows:
        log(f"  {len(outlier_rows)} teach rows answered {oos_name!r}: no class, used as outlier exposure of the novelty detector")
    if not teach:
        raise ValueError("no 'teach' rows to train on (every valid row is tagged 'calibrate' or 'check', or out of scope)")
    labels = sorted({str(r.label) for r in teach})
    if len(labels) < 2:
        raise ValueError(f"need at least 2 labels to train a router, found {labels}")

    splits, calibration_source = _split(teach, calibrate_rows, labels, config, log)
    log(f"splits: {splits.sizes()}, calibration {calibration_source} (+{len(check)} check rows held out for evaluation)")
    synthetic: list[Record] = []
    if synthetic_paths:
        synthetic_data = load_annotations(synthetic_paths, columns=columns)
        unknown = {str(r.label) for r in synthetic_data.records} - set(labels)
        if unknown:
            log(f"  synthetic examples for labels absent from the teach data are ignored: {sorted(unknown)}")
        synthetic = [r for r in synthetic_data.records if r.label in labels]
    held_out = [r.text for r in splits.calibration + splits.validation + check]
    train, augmentation = augment_training(
        splits.train, min_count=config.min_count, forbidden_texts=held_out, synthetic=synthetic, seed=config.seed
    )
    log(augmentation.summary())

    classifier = RouterClassifier(**config.estimator_params(inspect.signature(RouterClassifier).parameters), log=log)
    validation = ([r.text for r in splits.validation], [str(r.label) for r in splits.validation])
    classifier.fit([r.text for r in train], [str(r.label) for r in train], validation=validation, classes=labels)

    # The network goes into the bundle first: the ONNX export and its gate read its tokenizer and config there.
    from sav_router.model.backends.certify import certify_backend
    from sav_router.model.network import save_network

    save_network(classifier.network_, classifier.tokenizer_, output_dir)
    # Certify what serves: export, check against PyTorch on held-out rows, choose; everything below is computed
    # on the chosen backend's scores (the detector's index, temperature, thresholds, promise, reference, check report).
    gate_rows = splits.validation + splits.calibration
    certification = certify_backend(
        output_dir, classifier.network_, classifier.tokenizer_, labels=labels, max_length=config.max_length,
        gate_texts=[r.text for r in gate_rows], gate_labels=[str(r.label) for r in gate_rows],
        reference_forward=classifier.logits_and_embeddings, requested=config.serving_backend, num_threads=config.num_threads, log=log,
    )
    forward = certification.forward
    index = {label: i for i, label in enumerate(labels)}
    _, train_embeddings = forward([r.text for r in train])
    detector = make_detector(config.ood_method, quantile=config.ood_quantile, k=config.ood_k)
    detector.fit(train_embeddings, np.array([index[str(r.label)] for r in train]))
    outlier_embeddings = forward([r.text for r in outlier_rows])[1] if outlier_rows else None
    if certification.backend in certification.outputs:  # the gate scored the calibration rows already (after the validation rows)
        cal_logits, cal_embeddings = (part[len(splits.validation):] for part in certification.outputs[certification.backend])
    else:
        cal_logits, cal_embeddings = forward([r.text for r in splits.calibration])
    cal_labels = np.array([index.get(str(r.label), -1) for r in splits.calibration])  # -1: out of scope
    in_scope = cal_labels >= 0
    # Rows carved from teach data are all in scope, so they take the single Learn-then-Test; a traffic
    # sample with out-of-scope rows is calibrated jointly (exposure + Pareto testing, `calibration.joint`).
    result, cal_novelty = calibrate_on_traffic(cal_logits, cal_embeddings, cal_labels, labels, detector, config.calibration_settings(),
                                               outlier_embeddings=outlier_embeddings)
    if result.tuning_rows:
        log(f"  {result.tuning_rows} calibrate rows tuned ({result.exposure_rows} out-of-scope ones kept as outlier exposure), "
            f"{len(cal_labels) - result.tuning_rows} certified")
    elif calibrate_rows:
        log("  no calibrate row is out of scope: the whole sample certifies (single Learn-then-Test)")
    if calibrate_rows:
        scope = promise(TRAFFIC_SAMPLE, target=config.target_precision, confidence=config.confidence, out_of_scope_rows=result.out_of_scope)
    else:
        scope = promise(ANNOTATED_TOPICS, target=config.target_precision, confidence=config.confidence)
    log(f"calibration: temperature {result.temperature:.3f}; {result.message}")
    log(f"promise: {scope['text']} (computed on the {certification.backend} backend's scores)")
    # the calibrate rows were never trained on: the model's own scores of them are out of sample
    label_doubts = label_error_estimate(softmax(cal_logits, result.temperature), cal_labels, labels, cal_embeddings)
    if label_doubts is not None:
        log(f"  calibrate rows: estimated label-error rate {label_doubts['rate']:.1%} {label_doubts['interval']} "
            f"({label_doubts['doubts']} doubts in {label_doubts['rows']} rows)")
        if unreliable_promise(label_doubts, config.target_precision):
            log(f"  WARNING: that much label noise makes the promise unreliable (it is certified against these labels, error budget "
                f"{1 - config.target_precision:.0%}): run `sav-router doubts --format review-queue` and settle them before trusting it")
    team_table = complete_teams(teams or {}, labels)
    unrouted = sorted(label for label, team in team_table.items() if team is None)
    if unrouted:
        log(f"  labels with no team (always escalated): {unrouted}")
    data_fingerprint = fingerprint(data.records)
    cal_accuracy = float((softmax(cal_logits[in_scope]).argmax(axis=1) == cal_labels[in_scope]).mean()) if in_scope.any() else None
    manifest = Manifest(
        labels=labels,
        base_model=classifier.base_model_,
        max_length=config.max_length,
        architecture={"pooling": "mean", "normalize": config.normalize, "head": "linear"},
        **calibrated_fields(result, detector, scope=scope, logits=cal_logits, novelty=cal_novelty, teams=team_table, label_doubts=label_doubts),
        **version_fields(data_fingerprint),
        ood={"method": detector.METHOD, "params": detector.params(), "quantile": config.ood_quantile, "threshold": detector.threshold_, "file": OOD_FILE},
        training={
            "data_fingerprint": data_fingerprint,
            "sources": [str(p) for p in data_paths],
            "rows": {"valid": len(data.records), "rejected": len(data.rejects), "teach": len(teach), "check": len(check)},
            "splits": splits.sizes() | {"train_after_augmentation": len(train), "calibration_source": calibration_source},
            "augmentation": augmentation.to_dict(),
            "hyperparameters": config.hyperparameters(),
            "estimator": {k: v for k, v in classifier.get_params().items() if k != "progress"},
            "history": classifier.history_.to_dict(),
        },
        metrics={"calibration_accuracy": cal_accuracy, "calibration_coverage": result.coverage, "calibration_precision": result.empirical_precision},
        serving=certification.serving,
    )
    certification.record_decisions(manifest, detector)
    from safetensors.numpy import save_file

    save_file(detector.tensors(), str(output_dir / OOD_FILE))
    outcome = TrainResult(output_dir, manifest, data, splits.sizes(), augmentation.to_dict())

    if check:
        from sav_router.evaluation.metrics import evaluate
        from sav_router.evaluation.report import write_report
        from sav_router.model.router import Router

        write_manifest(output_dir, manifest)
        router = Router.load(output_dir, num_threads=config.num_threads)
        evaluation = evaluate(router, check)
        write_report(evaluation, output_dir / "check_report")
        outcome.check_report = evaluation.report
        manifest.metrics["check"] = {
            key: evaluation.report[key] for key in ("n_examples", "accuracy", "coverage", "routed_precision", "escalation_rate", "aurc")
        }
        log(
            f"check rows: accuracy {evaluation.report['accuracy']}, coverage {evaluation.report['coverage']}, "
            f"routed precision {evaluation.report['routed_precision']} (report in {shown_dir / 'check_report'})"
        )
    write_manifest(output_dir, manifest)
    outcome.seconds = time.perf_counter() - started
    return outcome
