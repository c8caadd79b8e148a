"""Exposure can only add (issue 23): the outlier-exposure trap on a dev protocol, test never read.

Frozen all-MiniLM-L6-v2 embeddings (mean-pooled, L2-normalised: the router's
encoder before fine-tuning) of Banking77's **train** split and of the packaged
off-topic rows (`sav_router/samples/off_topic.jsonl`) are computed once and
cached; each seed then runs in seconds on 2 cores.

Per seed:
- **annotated intents**: three conversational intents Banking77 lacks, as a
  support desk sees them (70 templated requests each: `contact_agent` "hello,
  is anyone there who can help me?", `follow_up` "hi, any news on my request?",
  `case_resolved` "thanks, that solved it"), whose requests sit next to the
  packaged chit-chat rows as the small-talk intents did in the issue's run; the
  8 Banking77 intents whose requests sit nearest the packaged off-topic rows; a
  seeded draw of 34 of the other intents: 45 annotated topics;
- **off-topic traffic**: 25 other intents nobody annotated (seeded), whose
  requests are off topic;
- the annotated intents' rows are split (seeded, per label) into teach 70 % /
  calibration 15 % / measured 15 %; the classifier is a logistic regression on
  the frozen embeddings of teach rows (`benchmarks/banking77.py`'s frozen
  baseline), the novelty detector is `NearestNeighbourOOD` fitted on them, and
  calibration is `calibrate_on_traffic` on the calibration rows, exactly the
  call `train` makes on rows carved from teach data;
- **with exposure**: the 110 packaged off-topic rows are teach `out_of_scope`
  answers (what reviewers produce after a round or two of chit-chat and spam);
  **without**: none;
- measured traffic: the measured in-scope rows plus off-topic requests up to a
  quarter of the traffic.

Reported, with and without exposure: the share of off-topic requests escalated,
routed precision (a routed off-topic request is an error) and coverage, at
target 0.95 / confidence 0.95, for the current formula and, for comparison,
the previous one (distance + one per out-of-scope neighbour, one quantile
threshold) and a variant that splits one false-alarm budget between the two
tests (not kept).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/exposure_dev.py --cache runs/exposure-dev
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

from benchmarks.banking77 import COLUMNS, DATA, frozen_embedding_features  # noqa: E402

OFF_TOPIC = REPO / "sav_router" / "samples" / "off_topic.jsonl"
NEAR_INTENTS, OTHER_INTENTS, UNSEEN_INTENTS = 8, 34, 25
TARGET = CONFIDENCE = 0.95
OFF_SHARE = 0.25


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# Conversational intents Banking77 lacks, as a support desk sees them: a greeting and a request for a person
# ("hello, anyone there?" next to a contact intent), a follow-up, a thank-you closing a resolved case. Their
# requests sit next to the packaged chit-chat rows, as the small-talk intents did in the run.
GREETINGS = ("hi", "hello", "hey", "good morning", "good afternoon", "hi there", "hello again", "hey there", "morning", "good evening")
CLOSINGS = ("thanks", "thank you", "cheers", "many thanks", "great, thanks", "perfect, thank you", "ok thanks", "brilliant, cheers")
CONVERSATIONAL_TEMPLATES = {
    "contact_agent": [f"{g}, {a}?" for g in GREETINGS for a in (
        "can I speak to a real person", "is anyone there who can help me", "I'd like to talk to an agent",
        "can you put me through to someone", "is there a human I can chat with", "can someone call me back",
        "could I talk to somebody please", "is there anybody I can talk to", "can I get a human on the line")],
    "follow_up": [f"{g}, {a}" for g in GREETINGS for a in (
        "any news on my request?", "just checking whether you got my message", "I'm still waiting for an answer",
        "did anyone look at my case yet?", "following up on what I asked yesterday", "is there an update for me?",
        "nobody has replied to me yet", "I wrote to you last week, any progress?", "still no answer from you")],
    "case_resolved": [f"{c}, {a}" for c in CLOSINGS for a in (
        "it works now", "that solved it", "all sorted now", "the issue is fixed", "everything is fine now",
        "you can close my request", "no need to call me back", "problem solved, bye", "that's all I needed, have a nice day")],
}
CONVERSATIONAL = tuple(CONVERSATIONAL_TEMPLATES)
PER_INTENT = 70


def conversational_rows(seed: int = 0) -> list[tuple[str, str]]:
    """Seeded templated (text, intent) rows of the conversational intents, PER_INTENT each."""
    rng = random.Random(seed)
    return [(text, intent) for intent, texts in CONVERSATIONAL_TEMPLATES.items() for text in sorted(rng.sample(texts, PER_INTENT))]


def embed_cache(cache: Path, data: Path) -> dict[str, np.ndarray]:
    """Frozen embeddings of Banking77 train and of the packaged off-topic rows (computed once)."""
    path = cache / "embeddings.npz"
    if path.is_file():
        arrays = np.load(path)
        arrays = {key: arrays[key] for key in arrays.files}
        texts = [text for text, _ in conversational_rows()]
        if list(arrays.get("conversational_text", ())) != texts:  # a cache from before this intent set
            arrays["conversational"] = frozen_embedding_features(None)(texts).astype(np.float32)
            arrays["conversational_text"] = np.array(texts)
            arrays["conversational_label"] = np.array([intent for _, intent in conversational_rows()])
            np.savez_compressed(path, **arrays)
        return arrays
    from sav_router.data.annotations import load_annotations

    records = load_annotations([data / "train.csv"], columns=COLUMNS).records
    off = [json.loads(line)["text"] for line in OFF_TOPIC.read_text(encoding="utf-8").splitlines() if line.strip()]
    featurize = frozen_embedding_features(None)
    started = time.perf_counter()
    texts = [r.text for r in records]
    chunks = [featurize(texts[i : i + 512]) for i in range(0, len(texts), 512)]
    arrays = {"train": np.concatenate(chunks).astype(np.float32), "train_label": np.array([str(r.label) for r in records]),
              "off_topic": featurize(off).astype(np.float32),
              "conversational": featurize([text for text, _ in conversational_rows()]).astype(np.float32),
              "conversational_text": np.array([text for text, _ in conversational_rows()]),
              "conversational_label": np.array([intent for _, intent in conversational_rows()])}
    log(f"embedded {len(texts)} + {len(off)} texts in {time.perf_counter() - started:.0f} s")
    cache.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return arrays


def near_intents(embeddings: np.ndarray, labels: np.ndarray, off_topic: np.ndarray, count: int) -> list[str]:
    """The intents whose requests are most similar to the packaged off-topic rows (mean of each request's best similarity)."""
    best = (embeddings @ off_topic.T).max(axis=1)
    means = {label: float(best[labels == label].mean()) for label in np.unique(labels)}
    return sorted(means, key=lambda label: -means[label])[:count]


def rows_and_labels(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Banking77 train rows plus the conversational intents' rows."""
    return (np.concatenate([arrays["train"], arrays["conversational"]]), np.concatenate([arrays["train_label"], arrays["conversational_label"]]))


def protocol(arrays: dict[str, np.ndarray], seed: int) -> dict[str, object]:
    """Annotated intents (the conversational one, the Banking77 ones nearest the off-topic rows, a seeded draw),
    unseen ones, and a seeded per-label split of the annotated rows."""
    x, labels = rows_and_labels(arrays)
    near = list(CONVERSATIONAL) + near_intents(arrays["train"], arrays["train_label"], arrays["off_topic"], NEAR_INTENTS)
    rest = sorted(set(np.unique(labels)) - set(near))
    rng = random.Random(seed)
    rng.shuffle(rest)
    annotated, unseen = sorted(near + rest[:OTHER_INTENTS]), rest[OTHER_INTENTS : OTHER_INTENTS + UNSEEN_INTENTS]
    generator = np.random.default_rng(seed)
    part = {"teach": [], "calibration": [], "measured": []}
    for label in annotated:
        rows = generator.permutation(np.where(labels == label)[0])
        cut1, cut2 = round(0.70 * len(rows)), round(0.85 * len(rows))
        part["teach"] += rows[:cut1].tolist()
        part["calibration"] += rows[cut1:cut2].tolist()
        part["measured"] += rows[cut2:].tolist()
    pool = generator.permutation(np.where(np.isin(labels, unseen))[0])
    n_off = round(len(part["measured"]) * OFF_SHARE / (1 - OFF_SHARE))
    off, cal_off = pool[:n_off], pool[n_off : n_off + round(len(part["calibration"]) * OFF_SHARE / (1 - OFF_SHARE))]
    return {"near": near, "annotated": annotated, "unseen": unseen, "off": off.tolist(), "calibration_off": cal_off} | {
        k: np.array(v) for k, v in part.items()}


_CLASSIFIERS: dict = {}


def previous_joint(detector, logits, embeddings, labels, names, outliers, settings):
    """The previous traffic calibration: exposure, one score (distance + votes), Pareto testing on its quantiles."""
    from sav_router.calibration.joint import calibrate_joint, tuning_mask

    tuning = tuning_mask(len(labels), share=settings.tuning_share, seed=settings.seed)
    exemplars = tuning & (labels < 0)
    teach = np.zeros((0, embeddings.shape[1]), np.float32) if outliers is None else outliers
    detector.fit_outliers(np.concatenate([teach, embeddings[exemplars]]))
    novelty = detector.score(embeddings)
    novelty[exemplars] = detector.score(embeddings[exemplars], own_outlier=len(teach) + np.arange(int(exemplars.sum())))
    result = calibrate_joint(logits, labels, names, novelty, tuning=tuning, target_precision=settings.target_precision,
                             confidence=settings.confidence, margins=settings.margins)
    detector.threshold_ = float(result.ood_threshold)
    return result


def run_seed(arrays: dict[str, np.ndarray], seed: int, *, exposure: bool, formula: str, traffic: bool = False) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression

    from sav_router.calibration.joint import calibrate_on_traffic
    from sav_router.calibration.settings import CalibrationSettings
    from sav_router.calibration.thresholds import calibrate, policy_from_calibration
    from sav_router.calibration.temperature import softmax
    from sav_router.core.policy import OUT_OF_DISTRIBUTION, decide
    from sav_router.model.ood import NearestNeighbourOOD

    p = protocol(arrays, seed)
    x, y = rows_and_labels(arrays)
    names = list(p["annotated"])
    index = {label: i for i, label in enumerate(names)}
    teach, cal = p["teach"], p["calibration"]
    key = (seed, tuple(names))
    if key not in _CLASSIFIERS:  # one classifier per seed: exposure and formula change only the detector
        _CLASSIFIERS[key] = LogisticRegression(C=10.0, max_iter=2000).fit(x[teach], [index[label] for label in y[teach]])
    model = _CLASSIFIERS[key]
    if traffic:  # a calibrate sample of traffic: a quarter off topic, answered out of scope
        cal = np.concatenate([cal, p["calibration_off"]])
    cal_labels = np.array([index.get(label, -1) for label in y[cal]])
    outliers = arrays["off_topic"] if exposure else None
    # "split": one budget of 1 % split in halves (distance at 0.995, votes on 0.5 %), the variant tried and not kept
    detector = (NearestNeighbourOOD(quantile=0.995, vote_budget=1.0) if formula == "split" and exposure else NearestNeighbourOOD(quantile=0.99)).fit(x[teach])
    cal_logits = model.decision_function(x[cal])
    settings = CalibrationSettings(target_precision=TARGET, confidence=CONFIDENCE, margins=(0.1,))
    if traffic and formula == "previous":
        result = previous_joint(detector, cal_logits, x[cal], cal_labels, names, outliers, settings)
    elif formula == "previous":  # distance + one per out-of-scope neighbour, one threshold at the 0.99 quantile
        if outliers is not None:
            detector.fit_outliers(outliers)
        detector.threshold_ = float(np.quantile(detector.score(x[cal]), 0.99))
        result = calibrate(cal_logits, cal_labels, names, target_precision=TARGET, confidence=CONFIDENCE, margins=(0.1,),
                           in_distribution=detector.score(x[cal]) <= detector.threshold_)
    else:  # what `train` runs on calibration rows carved from teach data
        result, _ = calibrate_on_traffic(cal_logits, x[cal], cal_labels, names, detector, settings, outlier_embeddings=outliers)
    policy = policy_from_calibration(result, teams={}, ood_threshold=detector.threshold_)
    measured = np.concatenate([p["measured"], p["off"]])
    gold = [label if label in index else None for label in y[measured]]
    probs = softmax(model.decision_function(x[measured]), result.temperature)
    novelty = detector.score(x[measured])
    decisions = [decide(dict(zip(names, row.tolist())), policy, ood_score=float(n)) for row, n in zip(probs, novelty)]
    off = np.array([g is None for g in gold])
    routed = np.array([d.routed for d in decisions])
    right = np.array([d.routed and d.label == g for d, g in zip(decisions, gold)])
    flagged = np.array([OUT_OF_DISTRIBUTION in d.reasons for d in decisions])
    tests = detector.novelty_tests(x[measured]) if hasattr(detector, "novelty_tests") and formula != "previous" else {}
    return {
        "off_escalated": float((~routed[off]).mean()),
        "off_flagged_novel": float(flagged[off].mean()),
        "precision": float(right.sum() / routed.sum()) if routed.any() else float("nan"),
        "coverage": float(routed.mean()),
        "in_scope_flagged_novel": float(flagged[~off].mean()),
        "distance_threshold": float(detector.threshold_),
        "vote_threshold": getattr(detector, "vote_threshold", None) if formula != "previous" else None,
        "off_by_test": {name: int(f[off].sum()) for name, f in tests.items()},
        "n_measured": int(len(measured)),
        "n_off": int(off.sum()),
        "near": p["near"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--traffic", action="store_true",
                        help="also: a calibrate sample of traffic (calibration rows + a quarter off topic), joint calibration now and before")
    args = parser.parse_args()
    arrays = embed_cache(args.cache, args.data)
    started = time.perf_counter()
    rows, results = [], {}
    runs = [(f, e, False) for f in ("two-tests", "split", "previous") for e in ((False, True) if f != "split" else (True,))]
    runs += [(f, e, True) for f in ("two-tests", "previous") for e in (False, True)] if args.traffic else []
    for formula, exposure, traffic in runs:
        cells = [run_seed(arrays, seed, exposure=exposure, formula=formula, traffic=traffic) for seed in args.seeds]
        results[f"{formula}/{'with' if exposure else 'without'}{'/traffic' if traffic else ''}"] = cells
        name = {"two-tests": "two tests, own budgets (kept)", "split": "two tests, one budget split in halves (tried)",
                "previous": "previous formula (distance + votes, one quantile)"}[formula] + (", with exposure" if exposure else ", no exposure")
        name = f"traffic calibration, {'previous' if formula == 'previous' else 'now'}, {'with' if exposure else 'no'} exposure" if traffic else name
        rows.append("| " + name + " | " + " | ".join(
            f"{c['off_escalated']:.3f} / {c['precision']:.4f} / {c['coverage']:.3f}" for c in cells) + " | " + " | ".join(
            f"{np.mean([c[k] for c in cells]):.3f}" for k in ("off_escalated", "precision", "coverage")) + " | " + ", ".join(
            f"{c['distance_threshold']:.3f}" + ("" if c["vote_threshold"] is None else f" / {c['vote_threshold']}") for c in cells) + " |")
    log(f"near intents: {results['two-tests/with'][0]['near']}; {time.perf_counter() - started:.0f} s for the seeds")
    print("| detector | " + " | ".join(f"seed {s}: off-topic escalated / precision / coverage" for s in args.seeds)
          + " | mean off-topic escalated | mean precision | mean coverage | novelty thresholds (distance / votes) |")
    print("|---|" + "---|" * (len(args.seeds) + 4))
    print("\n".join(rows))
    for key in ("two-tests/with",):
        print(f"\noff-topic requests flagged per test ({key}): " + "; ".join(
            f"seed {s}: {c['off_by_test']} of {c['n_off']}" for s, c in zip(args.seeds, results[key])))
    args.cache.mkdir(parents=True, exist_ok=True)
    (args.cache / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
