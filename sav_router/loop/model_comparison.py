"""Two bundles on the same requests, compared: the one implementation behind `sav-router compare`
and the console's "compare with production". The report goes where `promote` reads it.

(`comparison.py` holds the statistics and stays pure Python for the shadow-compare Lambda;
this module loads the models.)
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from sav_router.core.jsonio import write_json_atomic, write_text_atomic
from sav_router.core.bundle import read_manifest
from sav_router.loop.comparison import Gate, compare_decisions, label_noise_verdict
from sav_router.loop.comparison_report import comparison_markdown


def monitor_lines(sides, production_dir, candidate_dir) -> dict[str, str | None]:
    """Each model's drift monitor on the compared requests (its calibration sample as the reference)."""
    from sav_router.monitoring.drift import check_drift

    lines: dict[str, str | None] = {}
    for name, folder in (("production", production_dir), ("candidate", candidate_dir)):
        reference = read_manifest(folder).calibration.get("reference")
        lines[name] = check_drift(sides[name][1], reference).line() if reference and reference.get("n") else None
    return lines


def compare_models(production_dir, candidate_dir, rows: list[dict], gold: dict[str, str], *, gate: Gate, workspace, output: Path | None = None) -> tuple[dict, list[Path]]:
    """Both models on the same requests, compared; the report goes where `promote` reads it (and to `output`).

    The one implementation behind `sav-router compare` and the console's "compare with production".
    """
    from sav_router.model.router import Router

    if not rows:
        raise ValueError("no request to compare on")
    requests = [SimpleNamespace(id=row["id"], text=row["text"]) for row in rows]
    sides = {}
    for name, folder in (("production", production_dir), ("candidate", candidate_dir)):
        router = Router.load(folder)
        sides[name] = (router.version, router.decision_records(requests))
    report = compare_decisions(sides["production"][1], sides["candidate"][1], gold, gate=gate)
    report |= {"production_version": sides["production"][0], "candidate_version": sides["candidate"][0]}
    report["monitor"] = monitor_lines(sides, production_dir, candidate_dir)
    report["label_doubts"] = read_manifest(candidate_dir).calibration.get("label_doubts")
    report["gate"] = label_noise_verdict(report["gate"], report["label_doubts"], gate)
    by_id = {row["id"]: row["text"] for row in rows}
    markdown = comparison_markdown(report, by_id, sides["production"][0], sides["candidate"][0])
    outputs = [Path(output)] if output is not None else []
    if workspace.path("models", sides["candidate"][0]).is_dir():
        outputs.append(workspace.comparison_dir(sides["candidate"][0]))  # what `promote` checks
    for folder in outputs:
        write_json_atomic(folder / "comparison.json", report)
        write_text_atomic(folder / "comparison.md", markdown)
    return report, outputs
