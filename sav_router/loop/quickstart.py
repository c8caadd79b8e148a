"""`sav-router quickstart`: the whole local loop on the packaged sample data.

Trains on the sample annotations' teach rows, evaluates on their check rows,
calibrates, then routes a stream of new sample requests (some off-topic) and
prints what went where.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from importlib import resources
from pathlib import Path

SAMPLES = "sav_router.samples"


def sample_path(name: str) -> Path:
    return Path(str(resources.files(SAMPLES).joinpath(name)))


def run_quickstart(
    output: Path,
    *,
    epochs: int = 4,
    base_model: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    from sav_router.training.build import train_bundle
    from sav_router.training.config import TrainConfig
    from sav_router.data.annotations import read_requests
    from sav_router.core.policy import Decision
    from sav_router.model.router import Router
    from sav_router.core.teams import load_teams

    output.mkdir(parents=True, exist_ok=True)
    model_dir = output / "model"
    log(f"== 1/3 training on the packaged sample annotations -> {model_dir}")
    result = train_bundle(
        [sample_path("annotations.jsonl")],
        model_dir,
        config=TrainConfig(base_model=base_model, epochs=epochs, progress=progress),
        teams=load_teams(sample_path("teams.json")),
        synthetic_paths=[sample_path("synthetic.jsonl")],
        log=log,
    )

    log("== 2/3 routing a stream of new requests")
    router = Router.load(model_dir)
    records, _ = read_requests(sample_path("requests.jsonl"))
    rows = router.decision_records(records)
    decisions = [Decision.from_dict(row) for row in rows]
    decisions_path = output / "decisions.jsonl"
    with decisions_path.open("w", encoding="utf-8") as handle:
        for record, row in zip(records, rows):
            handle.write(json.dumps(row | {"gold_label": record.label}, ensure_ascii=False) + "\n")

    routed = [(r, d) for r, d in zip(records, decisions) if d.routed]
    escalated = [(r, d) for r, d in zip(records, decisions) if not d.routed]
    correct = sum(1 for r, d in routed if d.label == r.label)
    off_topic = [(r, d) for r, d in zip(records, decisions) if r.label not in router.labels]
    per_team = Counter(d.team for _, d in routed)
    reasons = Counter(reason for _, d in escalated for reason in d.reasons)
    check = result.check_report or {}

    lines = [
        "",
        "== 3/3 summary",
        f"model {router.version}: threshold {router.policy.threshold:.3f}, margin {router.policy.margin}, "
        f"target precision {result.manifest.calibration['target_precision']} at {result.manifest.calibration['confidence']:.0%} confidence",
        f"held-out check rows: accuracy {check.get('accuracy')}, coverage {check.get('coverage')}, routed precision {check.get('routed_precision')}",
        f"stream of {len(records)} requests: {len(routed)} routed, {len(escalated)} escalated to human review",
        "  routed per team: " + ", ".join(f"{team} {n}" for team, n in sorted(per_team.items())),
        "  escalations by reason: " + ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items())),
        f"  realized routed precision: {correct}/{len(routed)} = {correct / len(routed):.3f}" if routed else "  nothing routed",
        f"  off-topic requests: {len(off_topic)}, escalated {sum(1 for _, d in off_topic if not d.routed)}",
        "  examples of escalations:",
    ]
    for record, decision in escalated[:5]:
        text = record.text if len(record.text) < 70 else record.text[:67] + "..."
        lines.append(f"    [{', '.join(decision.reasons)}] {text!r} (best guess {decision.label} {decision.confidence:.2f})")
    lines += [
        f"report: {model_dir / 'check_report' / 'report.md'}",
        f"decisions: {decisions_path}",
    ]
    print("\n".join(lines))
    return {
        "routed": len(routed),
        "escalated": len(escalated),
        "routed_correct": correct,
        "off_topic": len(off_topic),
        "off_topic_escalated": sum(1 for _, d in off_topic if not d.routed),
        "per_team": dict(per_team),
        "reasons": dict(reasons),
    }
