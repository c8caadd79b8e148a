"""Which novelty signal by default? Measured on the dev protocol (Banking77 train only, test never read).

Needs the cache of `benchmarks/open_traffic_cache.py dev` (the protocol of
`benchmarks/open_set_dev.py`: 44 seen intents trained, 14 annotated intents
set aside as dev-unseen, dev = held-out rows of the seen intents + a third as
many dev-unseen rows). Post-hoc signals from the cached logits and embeddings
(no retraining): max softmax, energy, max logit, the nearest-neighbour cosine
distance (the default), the same with outlier exposure from the generic
off-topic corpus the project ships (`sav_router/samples/off_topic.jsonl`,
embedded by the dev model), and the nearest-neighbour distance plus a share of
(1 - max softmax).

For each: AUROC (seen vs dev-unseen); routed precision / coverage /
dev-unseen escalated at target 0.95 with the novelty threshold at the 0.99 and
0.80 quantiles of the calibration split (no traffic calibration). Calibration
on a traffic sample (outlier exposure from its out-of-scope rows, the joint
choice) is measured by `benchmarks/traffic_calibration_dev.py`.

    .venv/bin/python benchmarks/novelty_dev.py --cache runs/novelty-dev
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.open_set_dev import auroc  # noqa: E402
from benchmarks.open_traffic import figures, route_mask  # noqa: E402
from sav_router.calibration.temperature import softmax  # noqa: E402
from sav_router.calibration.thresholds import calibrate  # noqa: E402
from sav_router.core.bundle import read_manifest  # noqa: E402
from sav_router.model.ood import NearestNeighbourOOD  # noqa: E402

CORPUS = REPO / "sav_router" / "samples" / "off_topic.jsonl"


def logsumexp(x):
    top = x.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(x - top).sum(axis=1, keepdims=True)))[:, 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=REPO / "runs" / "novelty-dev")
    parser.add_argument("--target", type=float, default=0.95)
    args = parser.parse_args()
    cache = np.load(args.cache / "scores.npz")
    manifest = read_manifest(args.cache / "model")
    labels = manifest.labels
    index = {label: i for i, label in enumerate(labels)}
    cal_gold = np.array([index[str(g)] for g in cache["calibration_gold"]])
    dev_gold = np.array([index.get(str(g), -1) for g in cache["dev_gold"]])
    unseen = dev_gold < 0
    T = manifest.temperature

    from sav_router.model.router import Router

    router = Router.load(args.cache / "model")
    corpus = [json.loads(line)["text"] for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    corpus_emb = router.score(corpus).embeddings
    teach_emb = cache["teach_embeddings"]
    knn = NearestNeighbourOOD(k=1).fit(teach_emb)
    knn_oe = NearestNeighbourOOD(k=1).fit(teach_emb).fit_outliers(corpus_emb)

    def signals(part):
        logits, emb = cache[f"{part}_logits"], cache[f"{part}_embeddings"]
        msp = softmax(logits, T).max(axis=1)
        out = {
            "max softmax (1 - p)": 1 - msp,
            "energy (-logsumexp)": -logsumexp(logits / T),
            "max logit (negated)": -logits.max(axis=1),
            "nearest neighbour k=1 (default)": knn.score(emb),
            "nearest neighbour + outlier exposure (shipped corpus)": knn_oe.score(emb),
        }
        for weight in (0.25, 0.5):
            out[f"nearest neighbour + {weight} x (1 - max softmax)"] = knn.score(emb) + weight * (1 - msp)
        return out

    cal_signals, dev_signals = signals("calibration"), signals("dev")
    cal_logits, dev_logits = cache["calibration_logits"], cache["dev_logits"]
    rows = []
    for name in dev_signals:
        cal_s, dev_s = cal_signals[name], dev_signals[name]
        row = {"signal": name, "auroc": auroc(dev_s[~unseen], dev_s[unseen])}
        for q in (0.99, 0.80):
            threshold = float(np.quantile(cal_s, q))
            result = calibrate(cal_logits, cal_gold, labels, target_precision=args.target, in_distribution=cal_s <= threshold)
            probs = softmax(dev_logits, result.temperature)
            routed = route_mask(probs, result.threshold, result.margin, dev_s, threshold, result.label_thresholds, labels)
            row[f"q{q}"] = figures(routed, probs.argmax(axis=1), dev_gold, unseen)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    (args.cache / "novelty_results.json").write_text(json.dumps(rows, indent=2, default=float) + "\n", encoding="utf-8")

    # Where the confident errors come from (default signal): the 300 most confident dev requests
    # under the novelty threshold at several quantiles of all dev scores.
    probs = softmax(dev_logits, T)
    conf, wrong = probs.max(axis=1), ~((dev_gold >= 0) & (probs.argmax(axis=1) == dev_gold))
    default = dev_signals["nearest neighbour k=1 (default)"]
    confident_errors = []
    for q in (1.0, 0.8, 0.65, 0.5):
        eligible = np.where(default <= np.quantile(default, q))[0]
        top = eligible[np.argsort(-conf[eligible], kind="stable")][:300]
        confident_errors.append((q, int(wrong[top].sum()), int((wrong[top] & unseen[top]).sum())))

    f = lambda x: "n/a" if x is None or x != x else f"{x:.3f}"  # noqa: E731
    print(f"Command: `{' '.join(sys.argv)}`\n")
    print(f"dev: {len(dev_gold)} requests, {unseen.mean():.0%} dev-unseen; off-topic corpus {len(corpus)} texts\n")
    print("| novelty signal | AUROC | q=0.99: precision / coverage / unseen escalated | q=0.80: same |")
    print("|---|---|---|---|")
    for row in rows:
        cells = [f"{f(row[k]['precision'])} / {f(row[k]['coverage'])} / {f(row[k]['unseen_escalated'])}" for k in ("q0.99", "q0.8")]
        print(f"| {row['signal']} | {row['auroc']:.4f} | " + " | ".join(cells) + " |")
    print("\nErrors among the 300 most confident dev requests under the default signal's threshold at quantile q (of them dev-unseen): "
          + "; ".join(f"q={q}: {errors} ({of_unseen})" for q, errors, of_unseen in confident_errors))


if __name__ == "__main__":
    main()
