"""Which out-of-distribution score, at which quantile? Decided on Banking77 train only.

The open-set benchmark (`benchmarks/banking77.py`) annotates 58 of the 77
intents and measures on test, where the other 19 are out of scope. Choosing
the OOD detector on that test split would tune on it, so this script rebuilds
the same situation inside the train split: of the 58 annotated intents, a
seeded quarter more is set aside as "dev-unseen"; a model is trained on the
rest, calibrated on its calibration split like `train_bundle` does, and
measured on a dev set = held-out rows of the trained intents + every train
row of the dev-unseen intents. Test is never read.

For each detector and quantile: AUROC of the score (seen vs dev-unseen),
then routed precision, coverage and the share of dev-unseen requests
escalated at target precision 0.95 (Learn-then-Test on the calibration split).

    .venv/bin/python benchmarks/open_set_dev.py [--device cuda] [--output runs/open-set-dev]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.banking77 import COLUMNS, DATA  # noqa: E402

DETECTORS = [("mahalanobis", {}), ("knn", {"k": 1}), ("knn", {"k": 2}), ("knn", {"k": 3}), ("knn", {"k": 5}), ("knn", {"k": 10}), ("knn", {"k": 50})]
QUANTILES = (0.99, 0.95, 0.90, 0.85, 0.80, 0.75)


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([negatives, positives]))
    n_pos, n_neg = len(positives), len(negatives)
    return float((ranks[n_neg:].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def main() -> None:
    from sav_router.calibration.temperature import softmax
    from sav_router.calibration.thresholds import calibrate
    from sav_router.data.annotations import load_annotations
    from sav_router.data.splits import stratified_split
    from sav_router.model.ood import make_detector
    from sav_router.core.policy import RoutingPolicy, decide
    from sav_router.training.estimator import RouterClassifier

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--base-model")
    parser.add_argument("--device")
    parser.add_argument("--output", type=Path, default=REPO / "runs" / "open-set-dev")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--open-share", type=float, default=0.75, help="as in banking77.py: share of intents annotated")
    parser.add_argument("--dev-unseen-share", type=float, default=0.25, help="share of the annotated intents set aside as dev-unseen")
    parser.add_argument("--unseen-ratio", type=float, default=1 / 3, help="dev-unseen requests per dev-seen request (1/3: a quarter of dev)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--limit-per-label", type=int, help="keep N rows per intent (smoke runs)")
    parser.add_argument("--target", type=float, default=0.95)
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)

    records = load_annotations([args.data / "train.csv"], columns=COLUMNS).records
    if args.limit_per_label:
        counts: dict[str, int] = {}
        records = [r for r in records if counts.setdefault(r.label, 0) < args.limit_per_label and not counts.update({r.label: counts[r.label] + 1})]
    labels = sorted({r.label for r in records})
    annotated = sorted(random.Random(args.seed).sample(labels, round(args.open_share * len(labels))))  # as banking77.py
    unseen = set(random.Random(args.seed + 100).sample(annotated, round(args.dev_unseen_share * len(annotated))))
    seen = [label for label in annotated if label not in unseen]
    rows = [r for r in records if r.label in seen]
    # calibration 12 % and validation 4 % as the benchmark; dev rows of seen intents: another 15 %
    splits = stratified_split(rows, calibration=0.12, validation=0.04, seed=args.seed)
    inner = stratified_split(splits.train, calibration=0.15, validation=0.0, seed=args.seed + 1)
    train, dev_seen = inner.train, inner.calibration
    # as many dev-unseen requests as the test split's share of out-of-scope ones (about 25 %)
    pool = [r for r in records if r.label in unseen]
    dev_unseen = random.Random(args.seed + 2).sample(pool, min(len(pool), round(len(dev_seen) * args.unseen_ratio)))
    print(f"{len(seen)} seen intents ({len(train)} train, {len(splits.calibration)} calibration, {len(dev_seen)} dev), "
          f"{len(unseen)} dev-unseen intents ({len(dev_unseen)} dev rows)", file=sys.stderr, flush=True)

    started = time.perf_counter()
    kwargs = {"epochs": args.epochs} if args.epochs else {}
    clf = RouterClassifier(args.base_model, device=args.device, progress=False, seed=args.seed, **kwargs)
    clf.fit([r.text for r in train], [r.label for r in train], validation=([r.text for r in splits.validation], [r.label for r in splits.validation]), classes=seen)
    print(f"trained in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    index = {label: i for i, label in enumerate(seen)}
    _, train_emb = clf.logits_and_embeddings([r.text for r in train])
    cal_logits, cal_emb = clf.logits_and_embeddings([r.text for r in splits.calibration])
    dev = dev_seen + dev_unseen
    dev_logits, dev_emb = clf.logits_and_embeddings([r.text for r in dev])
    cal_gold = np.array([index[r.label] for r in splits.calibration])
    dev_gold = [r.label for r in dev]
    is_unseen = np.array([r.label in unseen for r in dev])
    y_train = np.array([index[r.label] for r in train])
    dev_accuracy = float((np.array(seen)[dev_logits[~is_unseen].argmax(1)] == np.array(dev_gold)[~is_unseen]).mean())

    results = []
    msp = softmax(dev_logits).max(axis=1)
    results.append({"detector": "max softmax (no OOD detector)", "auroc": auroc(-msp[~is_unseen], -msp[is_unseen])})
    for name, params in DETECTORS:
        detector = make_detector(name, quantile=0.99, **params).fit(train_emb, y_train)
        cal_scores, dev_scores = detector.score(cal_emb), detector.score(dev_emb)
        row = {"detector": name + "".join(f" k={v}" for v in params.values()), "auroc": auroc(dev_scores[~is_unseen], dev_scores[is_unseen]), "points": []}
        for quantile in QUANTILES:
            threshold = float(np.quantile(cal_scores, quantile))
            result = calibrate(cal_logits, cal_gold, seen, target_precision=args.target, in_distribution=cal_scores <= threshold)
            policy = RoutingPolicy(threshold=result.threshold, margin=result.margin, label_thresholds=result.label_thresholds, ood_threshold=threshold)
            probs = softmax(dev_logits, result.temperature)
            routed = correct = unseen_escalated = 0
            for i in range(len(dev)):
                decision = decide(dict(zip(seen, probs[i].tolist())), policy, ood_score=float(dev_scores[i]))
                if decision.routed:
                    routed += 1
                    correct += decision.label == dev_gold[i]
                elif is_unseen[i]:
                    unseen_escalated += 1
            row["points"].append({
                "quantile": quantile,
                "precision": correct / routed if routed else None,
                "coverage": routed / len(dev),
                "unseen_escalated": unseen_escalated / int(is_unseen.sum()),
            })
        results.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    (args.output / "results.json").write_text(json.dumps({"dev_accuracy_seen": dev_accuracy, "results": results}, indent=2) + "\n")
    share = is_unseen.mean()
    print(f"dev: {len(dev)} requests, {share:.0%} about dev-unseen intents; accuracy on seen intents {dev_accuracy:.4f}\n")
    print("| OOD score | AUROC seen vs unseen | " + " | ".join(f"q={q}: precision / coverage / unseen escalated" for q in QUANTILES) + " |")
    print("|---|---|" + "---|" * len(QUANTILES))
    for row in results:
        cells = []
        for point in row.get("points", []):
            precision = "routes nothing" if point["precision"] is None else f"{point['precision']:.4f}"
            cells.append(f"{precision} / {point['coverage']:.4f} / {point['unseen_escalated']:.4f}")
        cells += ["-"] * (len(QUANTILES) - len(cells))
        print(f"| {row['detector']} | {row['auroc']:.4f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
