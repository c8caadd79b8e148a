"""Train once, cache scores: the expensive half of the open-traffic benchmarks.

Two trainings, each cached on disk so that every analysis after it
(`benchmarks/open_traffic.py`, `benchmarks/novelty_dev.py`) re-runs in
seconds:

- `open`: the open-set model of `benchmarks/banking77.py` (58 of 77 intents,
  the same seeded choice, calibration 12 % / validation 4 % carved from train,
  seed 13, TrainConfig defaults otherwise). Cached: the bundle, and logits,
  pooled embeddings and OOD scores of its training rows, its carved
  calibration rows and the whole official test split.
- `dev`: the dev protocol of `benchmarks/open_set_dev.py` (inside the train
  split only: 44 seen intents, 14 "dev-unseen"; test never read), trained
  through `train_bundle` with the protocol's calibration rows tagged
  `calibrate`. Cached: the bundle, and scores of train / calibration / dev.

    .venv/bin/python benchmarks/open_traffic_cache.py open --output runs/open-traffic
    .venv/bin/python benchmarks/open_traffic_cache.py dev --output runs/novelty-dev

A stage whose cache exists is skipped (delete the folder to retrain).
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

from benchmarks.banking77 import COLUMNS, DATA, write_banking77_csv  # noqa: E402

CACHE = "scores.npz"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def open_intents(records, seed: int, share: float) -> list[str]:
    """The annotated intents of banking77.py's open-set run (same seeded draw)."""
    labels = sorted({str(r.label) for r in records})
    return sorted(random.Random(seed).sample(labels, round(share * len(labels))))


def dev_protocol(records, seed: int):
    """open_set_dev.py's split: seen / dev-unseen intents inside the annotated ones."""
    from sav_router.data.splits import stratified_split

    annotated = open_intents(records, seed, 0.75)
    unseen = set(random.Random(seed + 100).sample(annotated, round(0.25 * len(annotated))))
    seen = [label for label in annotated if label not in unseen]
    rows = [r for r in records if r.label in seen]
    splits = stratified_split(rows, calibration=0.12, validation=0.04, seed=seed)
    inner = stratified_split(splits.train, calibration=0.15, validation=0.0, seed=seed + 1)
    pool = [r for r in records if r.label in unseen]
    dev_unseen = random.Random(seed + 2).sample(pool, min(len(pool), round(len(inner.calibration) / 3)))
    return {
        "seen": seen,
        "unseen": sorted(unseen),
        "teach": inner.train + splits.validation,
        "calibration": splits.calibration,
        "dev": inner.calibration + dev_unseen,
    }


def score_rows(router, rows) -> dict[str, np.ndarray]:
    scored = router.score([r.text for r in rows])
    return {"logits": scored.logits, "embeddings": scored.embeddings, "ood": scored.ood_scores}


def save_cache(output: Path, parts: dict[str, tuple[list, dict[str, np.ndarray]]], meta: dict) -> None:
    arrays = {}
    for name, (rows, scores) in parts.items():
        arrays[f"{name}_gold"] = np.array([str(r.label) for r in rows])
        for key, value in scores.items():
            arrays[f"{name}_{key}"] = value
    np.savez_compressed(output / CACHE, **arrays)
    (output / "cache.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def run_open(args) -> None:
    from sav_router.data.annotations import TEACH, load_annotations
    from sav_router.data.splits import stratified_split
    from sav_router.model.router import Router
    from sav_router.training.build import train_bundle
    from sav_router.training.config import TrainConfig

    records = load_annotations([args.data / "train.csv"], columns=COLUMNS).records
    test = load_annotations([args.data / "test.csv"], columns=COLUMNS).records
    kept = open_intents(records, args.seed, 0.75)
    rows = [r for r in records if r.label in kept]
    path = write_banking77_csv(rows, args.output / "train_open.csv")
    config = TrainConfig(calibration_share=0.12, validation_share=0.04, seed=args.seed, progress=False, max_steps=args.max_steps)
    log(f"open set: training on {len(rows)} rows, {len(kept)} intents")
    started = time.perf_counter()
    result = train_bundle([path], args.output / "model", config=config, columns=COLUMNS, log=log)
    seconds = time.perf_counter() - started
    router = Router.load(args.output / "model")
    teach = [r for r in result.data.records if r.split == TEACH]
    splits = stratified_split(teach, calibration=config.calibration_share, validation=config.validation_share, seed=config.seed)
    log("scoring train / calibration / test")
    parts = {name: (part, score_rows(router, part)) for name, part in (("train", splits.train), ("calibration", splits.calibration), ("test", test))}
    save_cache(args.output, parts, {"intents": kept, "train_seconds": seconds, "labels": router.labels, "command": " ".join(sys.argv)})


def run_dev(args) -> None:
    from sav_router.data.annotations import load_annotations
    from sav_router.model.router import Router
    from sav_router.training.build import train_bundle
    from sav_router.training.config import TrainConfig

    records = load_annotations([args.data / "train.csv"], columns=COLUMNS).records
    protocol = dev_protocol(records, args.seed)
    path = args.output / "dev_train.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for split, part in (("teach", protocol["teach"]), ("calibrate", protocol["calibration"])):
            for r in part:
                handle.write(json.dumps({"text": r.text, "label": r.label, "split": split}) + "\n")
    config = TrainConfig(validation_share=0.04, seed=args.seed, progress=False, max_steps=args.max_steps)
    log(f"dev protocol: {len(protocol['seen'])} seen intents, {len(protocol['teach'])} teach rows; {len(protocol['unseen'])} dev-unseen")
    started = time.perf_counter()
    train_bundle([path], args.output / "model", config=config, log=log)
    seconds = time.perf_counter() - started
    router = Router.load(args.output / "model")
    log("scoring teach / calibration / dev")
    parts = {name: (protocol[name], score_rows(router, protocol[name])) for name in ("teach", "calibration", "dev")}
    save_cache(args.output, parts, {"seen": protocol["seen"], "unseen": protocol["unseen"], "train_seconds": seconds, "labels": router.labels, "command": " ".join(sys.argv)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=["open", "dev"])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--max-steps", type=int, help="cap fine-tuning steps (smoke runs)")
    args = parser.parse_args()
    if (args.output / CACHE).is_file():
        log(f"{args.output / CACHE} exists: nothing to do")
        return
    args.output.mkdir(parents=True, exist_ok=True)
    (run_open if args.stage == "open" else run_dev)(args)
    log("done")


if __name__ == "__main__":
    main()
