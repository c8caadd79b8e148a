"""Annotation doubts on Banking77: are the top doubts the wrong labels, and does re-reviewing them help?

Reads ../shared/datasets/banking77/ (never copied into the repository). Protocol (issue 22):
- train.csv is split, seeded, into teach (80 %) and calibrate (20 %) rows; test.csv is left for
  the downstream figures only;
- 5 % of teach labels and 3 % of calibrate labels are flipped to a plausible wrong intent: the
  class whose centroid (frozen MiniLM embeddings) is nearest to the row's true class;
- `doubts` (the product's code: k-fold logistic regression on frozen embeddings, confident
  learning, near-duplicate conflicts) ranks every annotated row;
- budget N = the number of flipped rows: precision and recall of the top-N doubts against the
  flipped rows, next to N rows drawn at random;
- downstream: re-review (simulated with the original labels) of the top-N doubts, of N random
  rows, or of none; then a router is trained and calibrated as the product does on frozen
  embeddings (logistic regression head, temperature, Learn-then-Test at 0.97) and routes the
  test split: accuracy, coverage and realized routed precision. A frozen-embedding head stands
  in for fine-tuning (an hour a run on 2 cores); label noise reaches both the same way.

    .venv/bin/python benchmarks/doubts.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sav_router.calibration.thresholds import calibrate  # noqa: E402
from sav_router.calibration.temperature import softmax  # noqa: E402
from sav_router.doubts.find import find_doubts  # noqa: E402
from sav_router.doubts.scores import out_of_fold_probabilities  # noqa: E402
from sav_router.model.frozen import frozen_embeddings  # noqa: E402

DATA = REPO.parent / "shared" / "datasets" / "banking77"
TARGET = 0.97


def read(name):
    with (DATA / name).open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [r["text"] for r in rows], [r["category"] for r in rows]


def nearest_class(embeddings, labels, n_classes):
    centroids = np.stack([embeddings[labels == k].mean(axis=0) for k in range(n_classes)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    sims = centroids @ centroids.T
    np.fill_diagonal(sims, -np.inf)
    return sims.argmax(axis=1)


def downstream(train_x, train_y, cal_x, cal_y, test_x, test_y, n_classes, names):
    from sklearn.linear_model import LogisticRegression

    head = LogisticRegression(C=10.0, max_iter=500).fit(train_x, train_y)
    def logits(x):
        full = np.full((len(x), n_classes), -30.0)
        full[:, head.classes_] = head.decision_function(x)
        return full
    result = calibrate(logits(cal_x), cal_y, names, target_precision=TARGET, confidence=0.95, margins=(0.0, 0.1))
    probs = softmax(logits(test_x), result.temperature)
    top, conf = probs.argmax(axis=1), probs.max(axis=1)
    ordered = np.sort(probs, axis=1)
    routed = (conf >= result.threshold) & (ordered[:, -1] - ordered[:, -2] >= result.margin)
    correct = top == test_y
    return {"accuracy": float(correct.mean()), "coverage": float(routed.mean()),
            "precision": float(correct[routed].mean()) if routed.any() else float("nan")}


def run(seed, texts, labels, test_x, test_y, embeddings, names):
    rng = np.random.default_rng(seed)
    n, n_classes = len(labels), len(names)
    order = rng.permutation(n)
    calibrate_rows = np.zeros(n, bool)
    calibrate_rows[order[: n // 5]] = True
    confusable = nearest_class(embeddings, labels, n_classes)
    given = labels.copy()
    flipped = np.zeros(n, bool)
    for part, share in ((~calibrate_rows, 0.05), (calibrate_rows, 0.03)):
        rows = np.flatnonzero(part)
        chosen = rng.choice(rows, size=round(share * len(rows)), replace=False)
        given[chosen] = confusable[labels[chosen]]
        flipped[chosen] = True
    budget = int(flipped.sum())

    started = time.perf_counter()
    probabilities = out_of_fold_probabilities(embeddings, given, n_classes, folds=5, seed=seed)
    report = find_doubts(probabilities, given, names, embeddings, splits=np.where(calibrate_rows, "calibrate", "teach").tolist())
    seconds = time.perf_counter() - started
    ranked = [d.index for d in report.doubts]
    if len(ranked) < budget:  # fill the budget with the lowest margins among the rest
        margin = probabilities[np.arange(n), given] - np.where(np.eye(n_classes, dtype=bool)[given], -1, probabilities).max(axis=1)
        ranked += [i for i in np.argsort(margin) if i not in set(ranked)][: budget - len(ranked)]
    top = np.array(ranked[:budget])
    randoms = rng.choice(n, size=budget, replace=False)

    def detection(picked):
        hits = int(flipped[picked].sum())
        return hits / budget, hits / int(flipped.sum())

    figures = {"n": n, "flipped": budget, "doubts": len(report.doubts), "seconds": seconds,
               "detect_top": detection(top), "detect_random": detection(randoms),
               "estimate": {s: v for s, v in report.by_split.items()},
               "true_rate": {"teach": float(flipped[~calibrate_rows].mean()), "calibrate": float(flipped[calibrate_rows].mean())}}
    for name, reviewed in (("none", np.array([], int)), ("top doubts", top), ("random", randoms)):
        fixed = given.copy()
        fixed[reviewed] = labels[reviewed]
        teach = ~calibrate_rows
        figures[name] = downstream(embeddings[teach], fixed[teach], embeddings[calibrate_rows], fixed[calibrate_rows],
                                   test_x, test_y, n_classes, names)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cache", type=Path, default=REPO / "runs" / "doubts-embeddings.npz", help="frozen embeddings, computed once")
    args = parser.parse_args()
    train_texts, train_labels = read("train.csv")
    test_texts, test_labels = read("test.csv")
    names = sorted(set(train_labels))
    index = {name: i for i, name in enumerate(names)}
    started = time.perf_counter()
    if args.cache.is_file():
        cached = np.load(args.cache)
        embeddings, test_x = cached["train"], cached["test"]
    else:
        embeddings = frozen_embeddings(None, train_texts)
        test_x = frozen_embeddings(None, test_texts)
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.cache, train=embeddings, test=test_x)
    print(f"frozen embeddings of {len(train_texts) + len(test_texts)} texts: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    labels = np.array([index[label] for label in train_labels])
    test_y = np.array([index[label] for label in test_labels])
    results = [run(seed, train_texts, labels, test_x, test_y, embeddings, names) for seed in args.seeds]

    def values_at(path):
        values = list(results)
        for key in path:
            values = [v[key] for v in values]
        return values

    def mean(path):
        return float(np.mean(values_at(path)))

    print(f"\nBanking77 train ({results[0]['n']} rows), {results[0]['flipped']} labels flipped (5 % teach, 3 % calibrate) "
          f"to the nearest class; budget = {results[0]['flipped']} re-reviews; mean of seeds {args.seeds}\n")
    print("| re-review picked by | precision of the picks | recall of the flipped rows |")
    print("|---|---|---|")
    for name, key in (("top doubts", "detect_top"), ("random", "detect_random")):
        print(f"| {name} | {mean((key, 0)):.3f} | {mean((key, 1)):.3f} |")
    print("\n| split | true flipped share | estimated label-error rate (95 % interval, seed 0) |")
    print("|---|---|---|")
    for split in ("teach", "calibrate"):
        e = results[0]["estimate"][split]
        print(f"| {split} | {mean(('true_rate', split)):.3f} | {e['rate']:.3f} [{e['interval'][0]:.3f}, {e['interval'][1]:.3f}] |")
    print(f"\n| after re-review of | test accuracy | coverage at {TARGET} (per seed) | realized routed precision |")
    print("|---|---|---|---|")
    for name in ("none", "random", "top doubts"):
        precisions = [p for p in values_at((name, "precision")) if not np.isnan(p)]
        shown = f"{np.mean(precisions):.4f}" if precisions else "-"
        coverages = " / ".join(f"{c:.3f}" for c in values_at((name, "coverage")))
        print(f"| {name} | {mean((name, 'accuracy')):.4f} | {mean((name, 'coverage')):.4f} ({coverages}) | {shown} "
              f"({len(precisions)} of {len(results)} seeds route) |")
    print(f"\ndoubts per run (5-fold scoring + ranking, embeddings cached): {mean(('seconds',)):.0f} s on this machine")


if __name__ == "__main__":
    main()
