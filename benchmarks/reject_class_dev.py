"""A reject class, measured on the dev protocol (Banking77 train only, test never read).

Does the encoder separate unannotated topics better when it is fine-tuned with
the out-of-scope answers as one more class? For one draw of the dev traffic of
`benchmarks/traffic_calibration_dev.py` (half of it the calibrate sample, 40 %
of that tuning), the dev protocol's model is retrained with the tuning part's
out-of-scope rows as an extra class `zz_reject` (everything else as the dev
cache's run: same teach rows, calibrate rows, seed, defaults); its reject column
is then dropped, and the same traffic calibration (`calibrate_on_traffic`,
neighbour-vote exposure) runs on both models. Printed per model: AUROC of the
novelty score (seen vs dev-unseen), the best coverage any threshold pair reaches
at realized 0.97 in hindsight, the certified (precision, coverage) on the
measured half, in-scope accuracy.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/reject_class_dev.py --cache runs/novelty-dev --output runs/reject-dev [--draw 1]

One training run per draw (about 7 minutes on 2 cores).
"""
import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.banking77 import COLUMNS, DATA  # noqa: E402
from benchmarks.open_traffic_cache import dev_protocol  # noqa: E402
from benchmarks.traffic_calibration_dev import dev_traffic, scores_and_truth, best_reachable, measured  # noqa: E402
from benchmarks.open_set_dev import auroc  # noqa: E402
from sav_router.calibration.settings import CalibrationSettings  # noqa: E402
from sav_router.calibration.joint import calibrate_on_traffic, tuning_mask  # noqa: E402
from sav_router.data.annotations import load_annotations  # noqa: E402
from sav_router.model.ood import NearestNeighbourOOD  # noqa: E402
from sav_router.model.router import Router  # noqa: E402
from sav_router.training.build import train_bundle  # noqa: E402
from sav_router.training.config import TrainConfig  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--cache", type=Path, default=REPO / "runs" / "novelty-dev")
parser.add_argument("--output", type=Path, default=REPO / "runs" / "reject-dev")
parser.add_argument("--draw", type=int, default=1)
args = parser.parse_args()
out, draw = args.output, args.draw
out.mkdir(parents=True, exist_ok=True)
records = load_annotations([DATA / "train.csv"], columns=COLUMNS).records
proto = dev_protocol(records, 13)
labels0, L0, E0, gold, bank0 = dev_traffic(args.cache)
index = {l: i for i, l in enumerate(labels0)}
used = {r.text for r in proto["dev"]}
pool = [r for r in records if r.label in set(proto["unseen"]) and r.text not in used]
seen_rows = len(proto["calibration"]) + sum(r.label in index for r in proto["dev"])
unseen_rows = sum(r.label not in index for r in proto["dev"])
picked = random.Random(99).sample(pool, min(len(pool), round(seen_rows / 3) - unseen_rows))
texts = [r.text for r in proto["dev"]] + [r.text for r in proto["calibration"]] + [r.text for r in picked]
check = np.array([index.get(r.label, -1) for r in proto["dev"] + proto["calibration"] + picked])
assert (check == gold).all(), "order mismatch"
order = np.random.default_rng(draw).permutation(len(gold)); sample, rest = order[: len(order) // 2], order[len(order) // 2 :]
tun = sample[tuning_mask(len(sample), share=0.4, seed=draw)]
oos_tun = tun[gold[tun] < 0]
print(f"Command: `{' '.join(sys.argv)}`\n\ndraw {draw}: {len(sample)} calibrate rows, {len(tun)} tuning, {len(oos_tun)} of them out of scope (the reject class)\n")
model = out / f"model{draw}"
if not (model / "router.json").is_file():
    path = out / f"train{draw}.jsonl"
    with path.open("w") as h:
        for r in proto["teach"]:
            h.write(json.dumps({"text": r.text, "label": r.label, "split": "teach"}) + "\n")
        for i in oos_tun:
            h.write(json.dumps({"text": texts[i], "label": "zz_reject", "split": "teach"}) + "\n")
        for r in proto["calibration"]:
            h.write(json.dumps({"text": r.text, "label": r.label, "split": "calibrate"}) + "\n")
    train_bundle([path], model, config=TrainConfig(validation_share=0.04, seed=13, progress=False), log=lambda m: print(m, flush=True) if "epoch" in m else None)
router = Router.load(model)
lab = router.labels; keep = [i for i, l in enumerate(lab) if l != "zz_reject"]
assert [lab[i] for i in keep] == list(labels0)
sc = router.score(texts); L = sc.logits[:, keep]; E = sc.embeddings
bank = router.score([r.text for r in proto["teach"]]).embeddings
for name, (LL, EE, BB) in {"cache model": (L0, E0, bank0), "reject-class model": (L, E, bank)}.items():
    det = NearestNeighbourOOD(k=1).fit(BB)
    res, _ = calibrate_on_traffic(LL[sample], EE[sample], gold[sample], labels0, det, CalibrationSettings(tuning_share=0.4, seed=draw, target_precision=0.95, confidence=0.95, margins=(0.1,)))
    pol = (res.temperature, res.threshold, res.margin, res.ood_threshold) if res.guarantee_met else None
    nov = det.score(EE[rest])
    conf, gap, corr = scores_and_truth(LL[rest], gold[rest], res.temperature)
    u = gold[rest] < 0
    print(f"- {name}: AUROC {auroc(nov[~u], nov[u]):.4f} hindsight@0.97 {best_reachable(conf, gap, nov, corr, precision=0.97):.4f} certified (precision, coverage) {measured(LL[rest], gold[rest], nov, pol)} in-scope acc {(LL[rest].argmax(1) == gold[rest])[~u].mean():.4f}")
