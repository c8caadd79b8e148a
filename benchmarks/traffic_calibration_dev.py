"""How to calibrate on a traffic sample: chosen on the dev protocol (Banking77 train only, test never read).

Needs the cache of `benchmarks/open_traffic_cache.py dev` (44 seen intents
trained, 14 annotated intents set aside as dev-unseen). Dev traffic here is
every held-out seen row of that cache (its dev and calibration rows) plus
dev-unseen rows up to a quarter of the traffic, as in the test protocol (the
extra dev-unseen rows are scored once by the dev bundle and cached beside it).

1. **Novelty signal with outlier exposure** (3 draws): half of a random half of
   dev traffic is the tuning part whose out-of-scope rows are exposure; on the
   other half of dev traffic, AUROC (seen vs dev-unseen) and the best coverage
   any (novelty, confidence) threshold pair reaches at realized precision 0.97
   in hindsight (an upper bound, not a calibrated figure) for: no exposure,
   the first formula (distance gained to the nearest out-of-scope example), and
   the neighbour vote (`NearestNeighbourOOD`, the product's).
2. **Procedure** (12 draws of half the dev traffic as the calibrate sample,
   measured on the other half): the previous Bonferroni-over-7-novelty-quantiles
   joint Learn-then-Test on every row, no exposure (baseline, kept here to be
   compared), against Pareto testing with exposure (`calibrate_on_traffic`, what
   `train` does) at tuning shares 0.3 / 0.4 / 0.5.
3. **A sample with no off-topic request** (8 draws of 150 / 300 / 600 in-scope
   dev requests, measured on the other in-scope ones): the single Learn-then-Test
   on every row (what `calibrate_on_traffic` now does then) against the split.

    .venv/bin/python benchmarks/traffic_calibration_dev.py --cache runs/novelty-dev
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.open_set_dev import auroc  # noqa: E402
from sav_router.calibration.settings import CalibrationSettings  # noqa: E402
from sav_router.calibration.joint import calibrate_joint, calibrate_on_traffic, tuning_mask  # noqa: E402
from sav_router.calibration.temperature import fit_temperature, softmax  # noqa: E402
from sav_router.calibration.thresholds import confidence_and_gap, fixed_sequence_threshold  # noqa: E402
from sav_router.core.bundle import read_manifest  # noqa: E402
from sav_router.model.ood import NearestNeighbourOOD  # noqa: E402
from sav_router.training.config import TrainConfig  # noqa: E402

EXTRA = "extra_unseen.npz"
TARGET = 0.95


def dev_traffic(cache_dir: Path):
    """Logits, embeddings, gold index (-1: dev-unseen) of the dev traffic, and the training bank."""
    cache = np.load(cache_dir / "scores.npz")
    labels = read_manifest(cache_dir / "model").labels
    index = {label: i for i, label in enumerate(labels)}
    if not (cache_dir / EXTRA).is_file():
        from benchmarks.banking77 import COLUMNS, DATA
        from benchmarks.open_traffic_cache import dev_protocol
        from sav_router.data.annotations import load_annotations
        from sav_router.model.router import Router

        records = load_annotations([DATA / "train.csv"], columns=COLUMNS).records
        protocol = dev_protocol(records, 13)
        used = {r.text for r in protocol["dev"]}
        pool = [r for r in records if r.label in set(protocol["unseen"]) and r.text not in used]
        seen_rows = len(cache["calibration_gold"]) + int(sum(str(g) in index for g in cache["dev_gold"]))
        unseen_rows = int(sum(str(g) not in index for g in cache["dev_gold"]))
        picked = random.Random(99).sample(pool, min(len(pool), round(seen_rows / 3) - unseen_rows))
        scored = Router.load(cache_dir / "model").score([r.text for r in picked])
        np.savez(cache_dir / EXTRA, logits=scored.logits, embeddings=scored.embeddings)
    extra = np.load(cache_dir / EXTRA)
    logits = np.concatenate([cache["dev_logits"], cache["calibration_logits"], extra["logits"]])
    embeddings = np.concatenate([cache["dev_embeddings"], cache["calibration_embeddings"], extra["embeddings"]])
    gold = np.concatenate([
        [index.get(str(g), -1) for g in cache["dev_gold"]],
        [index[str(g)] for g in cache["calibration_gold"]],
        -np.ones(len(extra["logits"]), dtype=int),
    ]).astype(int)
    return labels, logits, embeddings, gold, cache["teach_embeddings"]


def unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def scores_and_truth(logits, gold, temperature):
    probs = softmax(logits, temperature)
    conf, gap = confidence_and_gap(probs)
    return conf, gap, (gold >= 0) & (probs.argmax(axis=1) == gold)


def best_reachable(conf, gap, novelty, correct, *, precision: float, margin: float = 0.1) -> float:
    """Hindsight: the largest share routed at realized precision >= `precision` by any threshold pair."""
    best = 0.0
    for q in np.linspace(0.3, 1.0, 36):
        eligible = np.where((novelty <= np.quantile(novelty, q)) & (gap >= margin))[0]
        ordered = eligible[np.argsort(-conf[eligible], kind="stable")]
        running = np.cumsum(correct[ordered]) / np.arange(1, len(ordered) + 1)
        passing = np.where(running >= precision)[0]
        if len(passing):
            best = max(best, (passing.max() + 1) / len(conf))
    return best


def bonferroni_baseline(logits, gold, novelty, *, margin=0.1, confidence=0.95, quantiles=(1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)):
    """The previous joint calibration: every row, Bonferroni over 7 novelty quantiles, fixed sequence on confidence."""
    temperature = fit_temperature(logits[gold >= 0], gold[gold >= 0])
    conf, gap, correct = scores_and_truth(logits, gold, temperature)
    level = 1 - (1 - confidence) / len(quantiles)
    best = None
    for t in sorted({float(np.quantile(novelty, q)) for q in quantiles}, reverse=True):
        eligible = (novelty <= t) & (gap >= margin)
        result = fixed_sequence_threshold(conf[eligible], correct[eligible], target=TARGET, confidence=level)
        if result is not None and (best is None or result.routed > best[2].routed):
            best = (t, margin, result)
    return None if best is None else (temperature, best[2].threshold, margin, best[0])


def measured(logits, gold, novelty, policy):
    if policy is None:
        return None, 0.0
    temperature, threshold, margin, novelty_threshold = policy
    conf, gap, correct = scores_and_truth(logits, gold, temperature)
    routed = (conf >= threshold) & (gap >= margin) & (novelty <= novelty_threshold)
    return (float((routed & correct).sum() / routed.sum()) if routed.any() else None), float(routed.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=REPO / "runs" / "novelty-dev")
    parser.add_argument("--draws", type=int, default=12)
    args = parser.parse_args()
    labels, logits, embeddings, gold, bank = dev_traffic(args.cache)
    unseen = gold < 0
    print(f"Command: `{' '.join(sys.argv)}`\n\ndev traffic: {len(gold)} requests, {unseen.mean():.1%} dev-unseen\n")

    # 1. novelty signals with exposure from half of a traffic sample
    print("| draw | exposure rows | signal | AUROC | best reachable coverage at realized 0.97 |\n|---|---|---|---|---|")
    units, bank_units = unit(embeddings), unit(bank)
    for draw in (1, 2, 3):
        order = np.random.default_rng(draw).permutation(len(gold))
        sample, rest = order[: len(order) // 2], order[len(order) // 2 :]
        tuning = sample[tuning_mask(len(sample), share=0.5, seed=draw)]
        exemplars = tuning[gold[tuning] < 0]
        temperature = fit_temperature(logits[tuning][gold[tuning] >= 0], gold[tuning][gold[tuning] >= 0])
        conf, gap, correct = scores_and_truth(logits[rest], gold[rest], temperature)
        to_bank = (units[rest] @ bank_units.T).max(axis=1)
        to_exemplar = (units[rest] @ units[exemplars].T).max(axis=1)
        plain = NearestNeighbourOOD(k=1).fit(bank)
        signals = {
            "nearest neighbour, no exposure": plain.score(embeddings[rest]),
            "+ distance gained to the nearest out-of-scope example (first formula)": 1 - to_bank + np.maximum(0, to_exemplar - to_bank),
            "+ out-of-scope votes among the 10 nearest (kept)": NearestNeighbourOOD(k=1).fit(bank).fit_outliers(embeddings[exemplars]).score(embeddings[rest]),
        }
        for name, novelty in signals.items():
            print(f"| {draw} | {len(exemplars)} | {name} | {auroc(novelty[~unseen[rest]], novelty[unseen[rest]]):.4f} | "
                  f"{best_reachable(conf, gap, novelty, correct, precision=0.97):.4f} |")

    # 2. procedures, over draws of half the dev traffic as the calibrate sample
    defaults = TrainConfig()
    runs: dict[str, list[tuple[float | None, float]]] = {}
    for draw in range(1, args.draws + 1):
        order = np.random.default_rng(draw).permutation(len(gold))
        sample, rest = order[: len(order) // 2], order[len(order) // 2 :]
        plain = NearestNeighbourOOD(k=1).fit(bank)
        policy = bonferroni_baseline(logits[sample], gold[sample], plain.score(embeddings[sample]))
        runs.setdefault("previous: Bonferroni over 7 novelty quantiles, every row, no exposure", []).append(
            measured(logits[rest], gold[rest], plain.score(embeddings[rest]), policy))
        for share in (0.3, 0.4, 0.5):
            detector = NearestNeighbourOOD(k=1).fit(bank)
            result, _ = calibrate_on_traffic(logits[sample], embeddings[sample], gold[sample], labels, detector,
                                             CalibrationSettings(tuning_share=share, seed=draw, target_precision=TARGET, confidence=defaults.confidence,
                                                                 margins=tuple(defaults.margins)))
            policy = (result.temperature, result.threshold, result.margin, result.ood_threshold) if result.guarantee_met else None
            name = f"Pareto testing with exposure, tuning share {share}" + (" (default)" if share == defaults.tuning_share else "")
            runs.setdefault(name, []).append(measured(logits[rest], gold[rest], detector.score(embeddings[rest]), policy))
    print(f"\n{args.draws} draws (target {TARGET}, 95 % confidence):\n")
    print("| procedure | mean coverage | min coverage | draws routing nothing | mean precision | min precision | draws under 0.95 |")
    print("|---|---|---|---|---|---|---|")
    for name, values in runs.items():
        precisions = [p for p, _ in values if p is not None]
        coverages = [c for _, c in values]
        print(f"| {name} | {np.mean(coverages):.4f} | {min(coverages):.4f} | {sum(p is None for p, _ in values)} | "
              f"{np.mean(precisions):.4f} | {min(precisions):.4f} | {sum(p < TARGET for p in precisions)} |")
    in_scope_samples(labels, logits, embeddings, gold, bank)


def in_scope_samples(labels, logits, embeddings, gold, bank, *, draws: int = 8) -> None:
    defaults = TrainConfig()
    in_scope = np.where(gold >= 0)[0]
    print("\nSamples with no off-topic request (8 draws; measured on the other in-scope requests):\n")
    print("| sample | single Learn-then-Test on every row: mean coverage (draws routing nothing) | split, 40 % tuning: same |\n|---|---|---|")
    for size in (150, 300, 600):
        cells = {"single": [], "split": []}
        for draw in range(1, draws + 1):
            order = np.random.default_rng(draw).permutation(in_scope)
            sample, rest = order[:size], order[size:]
            detector = NearestNeighbourOOD(k=1).fit(bank)
            result, _ = calibrate_on_traffic(logits[sample], embeddings[sample], gold[sample], labels, detector,
                                             CalibrationSettings(tuning_share=defaults.tuning_share, seed=draw, target_precision=TARGET,
                                                                 confidence=defaults.confidence, margins=tuple(defaults.margins)))
            assert result.tuning_rows == 0  # the single path
            policy = (result.temperature, result.threshold, result.margin, result.ood_threshold) if result.guarantee_met else None
            cells["single"].append(measured(logits[rest], gold[rest], detector.score(embeddings[rest]), policy))
            plain = NearestNeighbourOOD(k=1).fit(bank)
            split = calibrate_joint(logits[sample], gold[sample], labels, plain.score(embeddings[sample]), target_precision=TARGET,
                                    tuning=tuning_mask(size, share=defaults.tuning_share, seed=draw), margins=defaults.margins)
            policy = (split.temperature, split.threshold, split.margin, split.ood_threshold) if split.guarantee_met else None
            cells["split"].append(measured(logits[rest], gold[rest], plain.score(embeddings[rest]), policy))
        summary = {k: f"{np.mean([c for _, c in v]):.3f} ({sum(p is None for p, _ in v)})" for k, v in cells.items()}
        print(f"| {size} | {summary['single']} | {summary['split']} |")


if __name__ == "__main__":
    main()
