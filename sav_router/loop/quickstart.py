"""`sav-router quickstart`: the whole local loop on the packaged sample data.

Trains on the sample annotations' teach rows, evaluates on their check rows,
calibrates, then routes a stream of new sample requests (some off-topic) and
prints what went where.

The output folder is also a workspace the console opens as it is: the model
registered and in production, the stream logged under `traffic/`, its
escalations and a share of audit samples in the review queue.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from importlib import resources
from pathlib import Path

SAMPLES = "sav_router.samples"
AUDIT_SHARE = 0.15  # of the routed sample requests, also queued (blind) for audit: with the escalations, enough human labels (50) for the promotion gate


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

    log("== 2/3 routing a stream of new requests (logged to the workspace, escalations queued for review)")
    from sav_router.loop.observer import route_stream
    from sav_router.loop.workspace import Workspace
    from sav_router.core.jsonio import write_jsonl_atomic

    workspace = Workspace(output).ensure()
    version = workspace.register(model_dir)
    if workspace.production_version() is None:
        workspace.promote(version)
    elif workspace.production_version() != version:  # a re-run: its new model replaces the last one
        workspace.promote(version, force=True, reason="quickstart re-run: the newly trained sample model")
    router = Router.load(workspace.production_dir())
    records, _ = read_requests(sample_path("requests.jsonl"))
    routed_stream = list(route_stream(records, router, workspace=workspace, audit_share=AUDIT_SHARE, seed=13))
    decisions = [Decision.from_dict(r.production) for r in routed_stream]
    decisions_path = output / "decisions.jsonl"
    write_jsonl_atomic(decisions_path, (item.production | {"gold_label": record.label} for record, item in zip(records, routed_stream)))
    queued = Counter(r.queued_for for r in routed_stream if r.queued_for)

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
        f"workspace: {output} (model {version} in production; review queue: {queued['escalation']} escalations + {queued['audit']} audit samples)",
        f"console: sav-router console --workspace {output}",
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
        "model_version": version,
        "queued": dict(queued),
    }

