"""Fine-tuning recipe search on Banking77, scored on a dev split carved from train.

The official test split is never read here: the recipe that `TrainConfig`
ships was chosen from these dev figures, and only then measured on test by
`benchmarks/banking77.py`. The training rows are those the core benchmark
trains on (train minus its calibration and validation splits, same seed),
less a stratified dev split of `--dev-share`.

Each recipe is a set of `RouterClassifier` keyword arguments; dev accuracy is
recorded after every epoch (no early stopping), plus the dev accuracy of an
even mix of the final model's probabilities with a TF-IDF baseline's.

    .venv/bin/python benchmarks/recipe_search.py --device cuda --workers 4 --output runs/recipe-search
    .venv/bin/python benchmarks/recipe_search.py --only cosine-lr1e-4 --epochs 2   # one recipe, on CPU

Prints a Markdown table; writes OUTPUT/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.banking77 import COLUMNS, DATA  # noqa: E402

# name -> RouterClassifier keyword arguments (over the defaults given in `--epochs` etc.)
RECIPES: dict[str, dict] = {
    "cosine-lr3e-5": {"head": "cosine", "learning_rate": 3e-5},
    "cosine-lr5e-5": {"head": "cosine", "learning_rate": 5e-5},
    "cosine-lr1e-4": {"head": "cosine", "learning_rate": 1e-4},
    "cosine-lr2e-4": {"head": "cosine", "learning_rate": 2e-4},
    "cosine-lr1e-4-scale10": {"head": "cosine", "learning_rate": 1e-4, "cosine_scale": 10.0},
    "cosine-lr1e-4-scale30": {"head": "cosine", "learning_rate": 1e-4, "cosine_scale": 30.0},
    "cosine-lr1e-4-scale45": {"head": "cosine", "learning_rate": 1e-4, "cosine_scale": 45.0},
    "cosine-lr1e-4-smooth0.1": {"head": "cosine", "learning_rate": 1e-4, "label_smoothing": 0.1},
    "cosine-lr2e-4-layerdecay0.8": {"head": "cosine", "learning_rate": 2e-4, "layer_decay": 0.8},
    "cosine-lr1e-4-layerdecay0.9": {"head": "cosine", "learning_rate": 1e-4, "layer_decay": 0.9},
    "cosine-lr5e-5-batch16": {"head": "cosine", "learning_rate": 5e-5, "batch_size": 16},
    "cosine-lr1e-4-dropout0": {"head": "cosine", "learning_rate": 1e-4, "dropout": 0.0},
    "cosine-lr1e-4-dropout0.2": {"head": "cosine", "learning_rate": 1e-4, "dropout": 0.2},
    "cosine-lr1e-4-wd0.1": {"head": "cosine", "learning_rate": 1e-4, "weight_decay": 0.1},
    "cosine-lr1e-4-headlr5e-3": {"head": "cosine", "learning_rate": 1e-4, "head_learning_rate": 5e-3},
    "cosine-lr1e-4-4epochs": {"head": "cosine", "learning_rate": 1e-4, "epochs": 4},
    "cosine-lr1e-4-6epochs": {"head": "cosine", "learning_rate": 1e-4, "epochs": 6},
    "cosine-lr5e-5-6epochs": {"head": "cosine", "learning_rate": 5e-5, "epochs": 6},
    "cosine-lr1e-4-dropout0-6epochs": {"head": "cosine", "learning_rate": 1e-4, "dropout": 0.0, "epochs": 6},
    "probe-linear-lr5e-5": {"head": "linear", "learning_rate": 5e-5, "head_learning_rate": 5e-4},
    "probe-linear-lr1e-4": {"head": "linear", "learning_rate": 1e-4, "head_learning_rate": 1e-3},
    "probe-linear-lr2e-4": {"head": "linear", "learning_rate": 2e-4, "head_learning_rate": 2e-3},
    "linear-lr5e-5": {"head": "linear", "linear_probe": False, "learning_rate": 5e-5, "head_learning_rate": 5e-4},
    "linear-lr1e-4": {"head": "linear", "linear_probe": False, "learning_rate": 1e-4, "head_learning_rate": 1e-3},
    "linear-lr2e-4": {"head": "linear", "linear_probe": False, "learning_rate": 2e-4, "head_learning_rate": 2e-3},
    "linear-unnormalized-lr1e-4": {"head": "linear", "linear_probe": False, "normalize": False, "learning_rate": 1e-4, "head_learning_rate": 1e-3},
}


def dev_split(args):
    from sav_router.data.annotations import TEACH, load_annotations
    from sav_router.data.splits import stratified_split

    data = load_annotations([args.data / "train.csv"], columns=COLUMNS)
    teach = [r for r in data.records if r.split == TEACH]
    benchmark = stratified_split(teach, calibration=args.calibration_share, validation=args.validation_share, seed=args.seed)
    # dev is carved from the benchmark's training rows; calibration and validation stay untouched
    search = stratified_split(benchmark.train, calibration=args.dev_share, validation=0.0, seed=args.seed + 1)
    return search.train, search.calibration


def tfidf_dev_probabilities(train, dev, labels) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    features = make_union(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
    )
    model = make_pipeline(features, LogisticRegression(C=20.0, max_iter=2000))
    model.fit([r.text for r in train], [r.label for r in train])
    order = [list(model.classes_).index(label) for label in labels]
    return model.predict_proba([r.text for r in dev])[:, order]


def run_recipe(job: tuple[str, dict, dict]) -> dict:
    name, params, shared = job
    import torch

    from sav_router.calibration.temperature import softmax
    from sav_router.training.estimator import RouterClassifier

    torch.set_num_threads(shared["threads"])
    train, dev, labels, tfidf = shared["train"], shared["dev"], shared["labels"], shared["tfidf"]
    kwargs = {"epochs": shared["epochs"], "patience": 10_000, "progress": False, "device": shared["device"], "seed": shared["seed"], "max_steps": shared["max_steps"]} | params
    started = time.perf_counter()
    clf = RouterClassifier(shared["base_model"], num_threads=shared["threads"], **kwargs)
    clf.fit([r.text for r in train], [r.label for r in train], validation=([r.text for r in dev], [r.label for r in dev]), classes=labels)
    # fit() restores the best epoch; the per-epoch curve is in the history
    logits, _ = clf.logits_and_embeddings([r.text for r in dev])
    gold = np.array([labels.index(r.label) for r in dev])
    probs = softmax(logits)
    mixed = 0.5 * probs + 0.5 * tfidf
    history = clf.history_
    return {
        "recipe": name if "seed" not in params else f"{name} (seed {params['seed']})",
        "params": kwargs | {"device": str(clf.device_)},
        "start_accuracy": history.probe_accuracy,
        "epoch_accuracy": [round(e.validation_accuracy, 4) for e in history.epochs],
        "best_epoch": history.best_epoch,
        "best_accuracy": float((probs.argmax(1) == gold).mean()),
        "with_tfidf": float((mixed.argmax(1) == gold).mean()),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--base-model", help="HF folder or id (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--output", type=Path, default=REPO / "runs" / "recipe-search")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads per worker")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--only", nargs="*", help="recipe names to run (default: all)")
    parser.add_argument("--max-steps", type=int, help="stop each recipe after this many steps (smoke runs)")
    parser.add_argument("--calibration-share", type=float, default=0.12)
    parser.add_argument("--validation-share", type=float, default=0.04)
    parser.add_argument("--dev-share", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=13, help="seed of the splits (and of training, unless --train-seeds)")
    parser.add_argument("--train-seeds", type=int, nargs="*", help="run every recipe once per training seed (same splits)")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)

    train, dev = dev_split(args)
    labels = sorted({r.label for r in train})
    started = time.perf_counter()
    tfidf = tfidf_dev_probabilities(train, dev, labels)
    tfidf_accuracy = float((tfidf.argmax(1) == np.array([labels.index(r.label) for r in dev])).mean())
    print(f"train {len(train)}, dev {len(dev)}; TF-IDF dev accuracy {tfidf_accuracy:.4f} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)

    threads = args.threads or max(1, (os.cpu_count() or 2) // max(1, args.workers))
    shared = {
        "train": train, "dev": dev, "labels": labels, "tfidf": tfidf, "epochs": args.epochs, "device": args.device,
        "threads": threads, "seed": args.seed, "base_model": args.base_model, "max_steps": args.max_steps,
    }
    names = args.only or list(RECIPES)
    seeds = args.train_seeds or [args.seed]
    jobs = [(name, RECIPES[name] | {"seed": seed}, shared) for name in names for seed in seeds]
    results = []
    with (args.output / "results.jsonl").open("w", encoding="utf-8") as sink:
        if args.workers > 1:
            context = multiprocessing.get_context("spawn")
            with context.Pool(args.workers) as pool:
                iterator = pool.imap_unordered(run_recipe, jobs)
                for row in iterator:
                    results.append(row)
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
                    print(json.dumps(row), file=sys.stderr, flush=True)
        else:
            for job in jobs:
                row = run_recipe(job)
                results.append(row)
                sink.write(json.dumps(row) + "\n")
                print(json.dumps(row), file=sys.stderr, flush=True)

    print(f"\nTF-IDF baseline dev accuracy: {tfidf_accuracy:.4f} (train {len(train)}, dev {len(dev)})\n")
    print("| recipe | start (epoch 0) | dev accuracy by epoch | best epoch | best | best + TF-IDF (0.5/0.5) | s |")
    print("|---|---|---|---|---|---|---|")
    for row in sorted(results, key=lambda r: -r["best_accuracy"]):
        start = f"{row['start_accuracy']:.4f}" if row["start_accuracy"] is not None else "-"
        curve = " ".join(f"{a:.4f}" for a in row["epoch_accuracy"])
        print(f"| {row['recipe']} | {start} | {curve} | {row['best_epoch']} | {row['best_accuracy']:.4f} | {row['with_tfidf']:.4f} | {row['seconds']} |")


if __name__ == "__main__":
    main()
