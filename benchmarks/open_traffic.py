"""Banking77 open set with and without traffic calibration, and the drift monitor. Cheap: reads a cache.

Needs the cache of `benchmarks/open_traffic_cache.py open` (one trained model:
58 of 77 intents annotated, TrainConfig defaults). Then, from cached logits and
novelty scores only:

1. **Without traffic calibration** (the bundle as trained, default settings):
   routed precision, coverage and unseen-intent escalation on the whole
   official test split, and the promise the bundle states.
2. **With traffic calibration**: for each seed, a random third of the test
   traffic is the annotated `calibrate` sample (requests about the 19
   never-annotated intents labeled out of scope) and the novelty threshold,
   confidence threshold and margin are chosen jointly on it
   (`sav_router.calibration.joint`, what `train` does with calibrate rows);
   figures are measured on the other two thirds only.
3. **The monitor** (`sav_router.monitoring.drift`, alpha 0.01): false alarms
   on windows of in-distribution traffic, and the delay (requests after the
   change) until it fires when a quarter of the traffic turns unseen.

    .venv/bin/python benchmarks/open_traffic.py --cache runs/open-traffic [--seeds 1 2 3]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sav_router.calibration.joint import calibrate_on_traffic  # noqa: E402
from sav_router.calibration.settings import CalibrationSettings  # noqa: E402
from sav_router.calibration.promise import promise_text  # noqa: E402
from sav_router.calibration.temperature import softmax  # noqa: E402
from sav_router.calibration.thresholds import confidence_and_gap  # noqa: E402
from sav_router.core.bundle import read_manifest  # noqa: E402
from sav_router.monitoring.drift import ALPHA, check_drift  # noqa: E402
from sav_router.monitoring.reference import drift_reference  # noqa: E402
from sav_router.model.router import load_ood  # noqa: E402
from sav_router.training.config import TrainConfig  # noqa: E402
from benchmarks.traffic_calibration_dev import best_reachable, scores_and_truth  # noqa: E402


def route_mask(probs, threshold, margin, ood, ood_threshold, label_thresholds=None, labels=None):
    """Vectorized `decide`: routed rows (confidence, margin, per-label thresholds, novelty)."""
    conf, gap = confidence_and_gap(probs)
    needed = np.full(len(probs), threshold)
    if label_thresholds:
        per_label = np.array([label_thresholds.get(label, 0.0) for label in labels])
        needed = np.maximum(needed, per_label[probs.argmax(axis=1)])
    return (conf >= needed) & (gap >= margin) & (ood <= ood_threshold)


def figures(routed, predicted, gold, unseen) -> dict:
    right = routed & ~unseen & (predicted == gold)
    n_routed = int(routed.sum())
    return {
        "n": int(len(gold)),
        "routed": n_routed,
        "precision": float(right.sum() / n_routed) if n_routed else None,
        "coverage": float(n_routed / len(gold)),
        "unseen_escalated": float((~routed[unseen]).mean()) if unseen.any() else None,
        "unseen_routed": int((routed & unseen).sum()),
    }


def decision_rows(probs, ood, ood_threshold, routed):
    conf = probs.max(axis=1)
    return [
        {"decision": "route" if r else "escalate", "confidence": float(c), "ood_score": float(o), "scores": {},
         "reasons": ["out_of_distribution"] if o > ood_threshold else []}
        for c, o, r in zip(conf, ood, routed)
    ]


def monitor_runs(rows_in, rows_unseen, reference, *, window, step, checks, delay_runs, horizon, seed) -> dict:
    """False alarms on in-distribution windows; detection delay after a quarter turns unseen."""
    rng = np.random.default_rng(seed)
    alarms = 0
    for _ in range(checks):
        picked = rng.choice(len(rows_in), size=window, replace=True)
        alarms += check_drift([rows_in[i] for i in picked], reference, alpha=ALPHA).alarm
    delays = []
    for _ in range(delay_runs):
        before = [rows_in[i] for i in rng.choice(len(rows_in), size=window, replace=True)]
        after = []
        for _ in range(horizon):
            source = rows_unseen if rng.uniform() < 0.25 else rows_in
            after.append(source[rng.integers(len(source))])
        delay = None
        for seen in range(step, horizon + 1, step):
            stream = (before + after[:seen])[-window:]
            if check_drift(stream, reference, alpha=ALPHA).alarm:
                delay = seen
                break
        delays.append(delay)
    found = [d for d in delays if d is not None]
    return {
        "alpha": ALPHA,
        "window": window,
        "checks": checks,
        "false_alarms": alarms,
        "false_alarm_rate": alarms / checks,
        "delay_runs": delay_runs,
        "detected": len(found),
        "delay_median": float(np.median(found)) if found else None,
        "delay_max": max(found) if found else None,
        "step": step,
        "horizon": horizon,
    }


def write_draw(folder: Path, seed: int, share: float) -> None:
    """The test split's draw as annotation files, rows in the order the benchmark draws them."""
    from benchmarks.banking77 import COLUMNS, DATA
    from sav_router.data.annotations import load_annotations

    test = load_annotations([DATA / "test.csv"], columns=COLUMNS).records
    order = np.random.default_rng(seed).permutation(len(test))
    cut = round(share * len(test))
    folder.mkdir(parents=True, exist_ok=True)
    for name, split, rows in (("calibrate.jsonl", "calibrate", order[:cut]), ("check.jsonl", "check", order[cut:])):
        with (folder / name).open("w", encoding="utf-8") as handle:
            for i in rows:  # labels as annotated: the 19 intents the model does not know count as out of scope
                handle.write(json.dumps({"id": f"test-{i}", "text": test[i].text, "label": test[i].label, "split": split}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=REPO / "runs" / "open-traffic")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--calibrate-share", type=float, default=1 / 3)
    parser.add_argument("--tuning-share", type=float, default=TrainConfig().tuning_share)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--checks", type=int, default=500)
    parser.add_argument("--write-draw", type=Path, metavar="DIR",
                        help="also write the first seed's draw as DIR/calibrate.jsonl and DIR/check.jsonl, to replay it "
                             "through the CLI (`sav-router recalibrate ... --seed SEED`, `sav-router evaluate`)")
    args = parser.parse_args()

    cache = np.load(args.cache / "scores.npz")
    manifest = read_manifest(args.cache / "model")
    labels = manifest.labels
    index = {label: i for i, label in enumerate(labels)}
    policy = manifest.policy
    test_gold_names = cache["test_gold"]
    gold = np.array([index.get(str(g), -1) for g in test_gold_names])
    unseen = gold < 0
    logits, ood = cache["test_logits"], cache["test_ood"]
    probs = softmax(logits, manifest.temperature)
    predicted = probs.argmax(axis=1)
    results: dict = {"test_rows": int(len(gold)), "unseen_share": float(unseen.mean())}

    # 1. the bundle as trained: calibrated on teach rows only, default novelty quantile
    routed = route_mask(probs, policy.threshold, policy.margin, ood, policy.ood_threshold, policy.label_thresholds, labels)
    results["without"] = figures(routed, predicted, gold, unseen) | {
        "promise": promise_text(manifest.calibration),  # what train writes for a bundle without calibrate rows
        "ood_quantile": manifest.ood.get("quantile"),
        "ood_threshold": policy.ood_threshold,
        "threshold": policy.threshold,
    }

    # 2. a random third of test traffic annotated as calibrate rows: what `train` does with them
    #    (`calibrate_on_traffic`: a seeded tuning part, whose out-of-scope rows become outlier
    #    exposure, ranks the settings; the rest certifies), measured on the other two thirds
    embeddings = cache["test_embeddings"]
    defaults = TrainConfig()
    results["with"] = []
    for seed in args.seeds:
        order = np.random.default_rng(seed).permutation(len(gold))
        cut = round(args.calibrate_share * len(gold))
        cal, rest = order[:cut], order[cut:]
        detector = load_ood(args.cache / "model", manifest)  # the bundle's detector, as `train` fitted it
        result, cal_novelty = calibrate_on_traffic(
            logits[cal], embeddings[cal], gold[cal], labels, detector,
            CalibrationSettings(tuning_share=args.tuning_share, seed=seed, target_precision=args.target, confidence=defaults.confidence,
                                margins=tuple(manifest.calibration.get("margins_tried") or [policy.margin])),
        )
        rest_probs = softmax(logits[rest], result.temperature)
        rest_novelty = detector.score(embeddings[rest])
        rest_routed = route_mask(rest_probs, result.threshold, result.margin, rest_novelty, result.ood_threshold)
        conf, gap, right = scores_and_truth(logits[rest], gold[rest], result.temperature)
        hindsight = {p: best_reachable(conf, gap, rest_novelty, right, precision=p, margin=result.margin) for p in (0.95, 0.97)}
        row = figures(rest_routed, rest_probs.argmax(axis=1), gold[rest], unseen[rest]) | {
            "seed": seed, "calibrate_rows": int(len(cal)), "calibrate_out_of_scope": result.out_of_scope,
            "tuning_rows": result.tuning_rows, "exposure_rows": result.exposure_rows,
            "threshold": result.threshold, "margin": result.margin, "ood_threshold": result.ood_threshold,
            "calibration_routed": result.routed, "lower_bound": result.lower_bound, "guarantee_met": result.guarantee_met,
            "best_reachable_in_hindsight": hindsight,
        }
        results["with"].append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        if seed == args.seeds[0]:  # the monitor's traffic reference below: what `train` would store
            first = (cal, rest, result, detector, cal_novelty)

    # 3. the monitor, on the bundle's own reference (its carved calibration split) and policy
    reference = manifest.calibration.get("reference")
    if not reference:
        cal_logits = cache["calibration_logits"]
        reference = drift_reference(cal_logits / manifest.temperature, cache["calibration_ood"], policy.ood_threshold)
    rows = decision_rows(probs, ood, policy.ood_threshold, routed)
    rows_in = [r for r, u in zip(rows, unseen) if not u]
    rows_unseen = [r for r, u in zip(rows, unseen) if u]
    results["monitor"] = monitor_runs(rows_in, rows_unseen, reference, window=args.window, step=50, checks=args.checks,
                                      delay_runs=50, horizon=2000, seed=7)
    # and with a traffic reference: the calibrate draw of the first seed vs windows of the other two thirds
    cal, rest, result, detector, cal_novelty = first
    traffic_ref = drift_reference(logits[cal] / result.temperature, cal_novelty, result.ood_threshold)
    traffic_probs = softmax(logits[rest], result.temperature)
    traffic_rows = decision_rows(traffic_probs, detector.score(embeddings[rest]), result.ood_threshold, np.zeros(len(rest), bool))
    rng = np.random.default_rng(8)
    alarms = sum(check_drift([traffic_rows[i] for i in rng.choice(len(traffic_rows), args.window)], traffic_ref).alarm for _ in range(args.checks))
    results["monitor_traffic_reference"] = {"checks": args.checks, "false_alarms": int(alarms), "false_alarm_rate": alarms / args.checks}

    if args.write_draw:
        write_draw(args.write_draw, args.seeds[0], args.calibrate_share)

    out = args.cache / "open_traffic_results.json"
    out.write_text(json.dumps(results, indent=2, default=float) + "\n", encoding="utf-8")
    w = results["without"]
    f = lambda x: "n/a" if x is None else f"{x:.4f}"  # noqa: E731
    print(f"Command: `{' '.join(sys.argv)}`\n")
    print(f"Test: {results['test_rows']} requests, {results['unseen_share']:.1%} about the 19 never-annotated intents.\n")
    print("| calibration | routed precision @0.95 | coverage | unseen-intent escalated | unseen routed | novelty threshold |")
    print("|---|---|---|---|---|---|")
    print(f"| none (bundle defaults, ood quantile {w['ood_quantile']}; all test) | {f(w['precision'])} | {f(w['coverage'])} | {f(w['unseen_escalated'])} | {w['unseen_routed']} | {w['ood_threshold']:.4f} |")
    for row in results["with"]:
        print(f"| traffic third, seed {row['seed']} ({row['calibrate_rows']} rows, {row['calibrate_out_of_scope']} out of scope; other {row['n']}) | "
              f"{f(row['precision'])} | {f(row['coverage'])} | {f(row['unseen_escalated'])} | {row['unseen_routed']} | {row['ood_threshold']:.4f} |")
    print("\nBest coverage any (novelty, confidence) threshold pair reaches on the measured part in hindsight "
          "(an upper bound, not a calibrated figure), at realized precision 0.95 / 0.97: "
          + "; ".join(f"seed {r['seed']}: {r['best_reachable_in_hindsight'][0.95]:.4f} / {r['best_reachable_in_hindsight'][0.97]:.4f}" for r in results["with"]))
    print(f"\nBundle promise without calibrate rows: {w['promise']}\n")
    m = results["monitor"]
    print(f"Monitor (alpha {m['alpha']}, window {m['window']}): {m['false_alarms']}/{m['checks']} false alarms on in-scope test traffic "
          f"against the bundle's calibration split; a quarter turning unseen detected in {m['detected']}/{m['delay_runs']} runs, "
          f"median delay {m['delay_median']} requests (max {m['delay_max']}, checked every {m['step']}).")
    t = results["monitor_traffic_reference"]
    print(f"With the calibrate draw (seed {args.seeds[0]}) as reference: {t['false_alarms']}/{t['checks']} false alarms on windows of the other two thirds.")


if __name__ == "__main__":
    main()
