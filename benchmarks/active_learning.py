"""Active-learning simulation on Banking77: sav-router's selection vs random selection.

Start from a small labeled seed (10 per intent) of the train split; each round,
pick N more requests from the rest of the train split (the pool) with a
strategy, "annotate" them with their true labels, retrain, and evaluate on the
official test split: accuracy, and coverage at target precision 0.97 with the
realized precision. Both strategies share the seed model. Prints a Markdown
table and writes a plot.

Calibration data is the same for both strategies: a share of the seed and of
every batch (`--calibration-share`) is drawn at random and annotated as
`calibrate` rows, as `sav-router select --calibration-share` does; only the
teach part of each batch differs (chosen by the strategy, or at random).

    .venv/bin/python benchmarks/active_learning.py [--rounds 4] [--batch 400] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.banking77 import COLUMNS, DATA  # noqa: E402
from sav_router.loop.active_learning import calibration_sample, select_for_annotation  # noqa: E402
from sav_router.training.build import train_bundle  # noqa: E402
from sav_router.training.config import TrainConfig  # noqa: E402
from sav_router.data.annotations import CALIBRATE, TEACH, load_annotations  # noqa: E402
from sav_router.data.splits import stratified_split  # noqa: E402
from sav_router.model.router import Router  # noqa: E402



def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_annotations(labeled: list[tuple[object, str]], path: Path) -> Path:
    """(record, split tag) pairs as an annotation JSONL file."""
    with path.open("w", encoding="utf-8") as handle:
        for record, split in labeled:
            handle.write(json.dumps({"text": record.text, "label": record.label, "split": split}) + "\n")
    return path


def train_and_test(labeled, test, folder: Path, args) -> tuple[Router, dict]:
    config = TrainConfig(**({"epochs": args.epochs} if args.epochs else {}), target_precision=args.target, seed=args.seed, progress=False)
    started = time.perf_counter()
    train_bundle([write_annotations(labeled, folder.with_suffix(".jsonl"))], folder, config=config, log=lambda m: None)
    seconds = time.perf_counter() - started
    router = Router.load(folder)
    decisions, _ = router.predict([r.text for r in test])
    gold = [r.label for r in test]
    routed = [d for d, g in zip(decisions, gold) if d.routed]
    correct = sum(d.label == g for d, g in zip(decisions, gold) if d.routed)
    accuracy = float(np.mean([d.label == g for d, g in zip(decisions, gold)]))
    return router, {
        "labels": len(labeled),
        "accuracy": accuracy,
        "coverage": len(routed) / len(test),
        "precision": correct / len(routed) if routed else None,
        "train_seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--output", type=Path, default=REPO / "runs" / "active_learning")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "images" / "active_learning.png")
    parser.add_argument("--seed-per-label", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch", type=int, default=400)
    parser.add_argument("--epochs", type=int, help="fine-tuning epochs (default: TrainConfig's)")
    parser.add_argument("--target", type=float, default=0.97)
    parser.add_argument("--calibration-share", type=float, default=0.15, help="share of the seed and of each batch drawn at random for calibration")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)

    train = load_annotations([args.data / "train.csv"], columns=COLUMNS).records
    test = load_annotations([args.data / "test.csv"], columns=COLUMNS).records
    rng = random.Random(args.seed)
    by_label = defaultdict(list)
    for record in train:
        by_label[record.label].append(record)
    seed_rows = [r for label in sorted(by_label) for r in rng.sample(by_label[label], args.seed_per_label)]
    seed_ids = {id(r) for r in seed_rows}
    pool0 = [r for r in train if id(r) not in seed_ids]
    carved = stratified_split(seed_rows, calibration=args.calibration_share, validation=0.0, seed=args.seed)
    seed = [(r, TEACH) for r in carved.train] + [(r, CALIBRATE) for r in carved.calibration]
    log(f"seed {len(seed)} labeled, pool {len(pool0)}, test {len(test)}; {args.rounds} rounds of {args.batch}")

    router0, first = train_and_test(seed, test, args.output / "round0", args)
    log(f"round 0: {first}")
    history = {"random": [first], "sav-router": [first]}
    for strategy in ("random", "sav-router"):
        labeled, pool, router = list(seed), list(pool0), router0
        picker = random.Random(args.seed + 1)
        for round_ in range(1, args.rounds + 1):
            n_random = round(args.batch * args.calibration_share)
            if strategy == "random":
                chosen = set(picker.sample(range(len(pool)), args.batch - n_random))
            else:
                scored = router.score([r.text for r in pool])
                selection = select_for_annotation(scored.probabilities, scored.embeddings, args.batch - n_random, ood_scores=scored.ood_scores)
                chosen = set(selection.indices)
            for_calibration = set(calibration_sample(len(pool), n_random, exclude=sorted(chosen), seed=args.seed + round_))
            labeled += [(r, TEACH) for i, r in enumerate(pool) if i in chosen]
            labeled += [(r, CALIBRATE) for i, r in enumerate(pool) if i in for_calibration]
            pool = [r for i, r in enumerate(pool) if i not in chosen and i not in for_calibration]
            router, row = train_and_test(labeled, test, args.output / f"{strategy}-round{round_}", args)
            history[strategy].append(row)
            log(f"{strategy} round {round_}: {row}")

    lines = [
        f"Command: `{' '.join(sys.argv)}`",
        "",
        f"| round | labeled | random: accuracy | random: coverage @{args.target} (precision) | sav-router: accuracy | sav-router: coverage @{args.target} (precision) |",
        "|---|---|---|---|---|---|",
    ]
    for round_, (a, b) in enumerate(zip(history["random"], history["sav-router"])):
        pa = "n/a" if a["precision"] is None else f"{a['precision']:.3f}"
        pb = "n/a" if b["precision"] is None else f"{b['precision']:.3f}"
        lines.append(f"| {round_} | {a['labels']} | {a['accuracy']:.4f} | {a['coverage']:.4f} ({pa}) | {b['accuracy']:.4f} | {b['coverage']:.4f} ({pb}) |")
    final_random = history["random"][-1]["coverage"]
    needed = next((row["labels"] for row in history["sav-router"] if row["coverage"] >= final_random), None)
    lines += [
        "",
        f"Annotations needed to reach the coverage random selection ends with ({final_random:.4f}): "
        f"random {history['random'][-1]['labels']}, sav-router {needed if needed is not None else 'not reached'}.",
    ]
    report = "\n".join(lines)
    print(report)
    (args.output / "results.md").write_text(report + "\n", encoding="utf-8")
    (args.output / "results.json").write_text(json.dumps(history, indent=2) + "\n", encoding="utf-8")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for strategy, rows in history.items():
        x = [row["labels"] for row in rows]
        axes[0].plot(x, [row["accuracy"] for row in rows], marker="o", label=strategy)
        axes[1].plot(x, [row["coverage"] for row in rows], marker="o", label=strategy)
    axes[0].set_title("Test accuracy")
    axes[1].set_title(f"Coverage at target precision {args.target}")
    for ax in axes:
        ax.set_xlabel("labeled requests")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=100)
    log(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
