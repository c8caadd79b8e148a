"""Writing an evaluation: report.json, report.md and the PNG plots beside them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sav_router.evaluation.metrics import Evaluation, curves


def _markdown(report: dict[str, Any], images: Sequence[str]) -> str:
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}%"

    oos = report["out_of_scope"]
    lines = [
        f"# Evaluation report: model {report.get('model_version')}",
        "",
        "| metric | value |",
        "|---|---|",
        f"| examples (in scope) | {report['n_examples']} ({report['n_in_scope']}) |",
        f"| accuracy (top-1, in scope) | {pct(report['accuracy'])} |",
        f"| target precision / confidence | {report.get('target_precision')} / {report.get('confidence_level')} |",
        f"| coverage (routed) | {pct(report['coverage'])} ({report['routed']}) |",
        f"| routed precision (lower bound) | {pct(report['routed_precision'])} ({pct(report['routed_precision_lower_bound'])}) |",
        f"| team-level routed precision | {pct(report['team_routed_precision'])} |",
        f"| out of scope: count, escalated | {oos['count']}, {pct(oos['escalated_rate'])} |",
        f"| AURC | {report['aurc']:.4f} |",
        f"| ECE before / after temperature | {report['ece']['before_temperature']} / {report['ece']['after_temperature']} |",
        f"| threshold / margin / OOD | {report['threshold']['confidence']:.4f} / {report['threshold']['margin']} / {report['threshold']['ood']} |",
        "",
        f"Promise: {report.get('promise') or 'n/a'}",
        "",
        f"Monitor: {(report.get('monitor') or {}).get('line') or 'no calibration reference in this bundle'}",
        "",
        f"Label doubts: {label_doubts_line(report.get('label_doubts'), report.get('target_precision'))}",
        "",
        "Escalation reasons: " + (", ".join(f"`{k}` {v}" for k, v in report["escalation_reasons"].items()) or "none"),
        "",
        "Novelty tests (requests flagged: in scope / out of scope / by this test alone): "
        + (", ".join(f"`{k}` {v['flagged']} ({v['in_scope']} / {v['out_of_scope']} / {v['alone']})"
                     for k, v in (report.get("novelty_tests") or {}).items()) or "none"),
        "",
        "Routed per team: " + (", ".join(f"`{k}` {v}" for k, v in report["routed_per_team"].items()) or "none"),
        "",
    ]
    lines += [f"![{Path(image).stem}]({image})" for image in images]
    lines += ["", "## Per label", "", "| label | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for label, m in report["per_label"].items():
        lines.append(f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    return "\n".join(lines) + "\n"


def label_doubts_line(estimate: dict[str, Any] | None, target_precision: float | None) -> str:
    """The estimated label-error rate of the evaluated rows in words, and whether it reaches half the promise's error budget."""
    if not estimate:
        return "not estimated (no embeddings or no in-scope row)"
    low, high = estimate["interval"]
    line = (f"estimated label-error rate of these rows {estimate['rate']:.1%} ({estimate['doubts']} doubts in {estimate['rows']} rows), "
            f"{estimate.get('confidence', 0.95):.0%} interval [{low:.1%}, {high:.1%}]")
    if target_precision is not None:
        from sav_router.doubts.estimate import unreliable_promise

        if unreliable_promise(estimate, float(target_precision)):
            line += (f"; at least half the promise's error budget ({(1 - float(target_precision)) / 2:.1%}): the precision measured on them "
                     "is measured against labels that wrong (`sav-router doubts` to re-check them)")
    return line


def write_report(evaluation: Evaluation, output_dir: str | Path, *, plots: bool = True) -> Path:
    """report.json, report.md, PNG plots and details.json (curves and example requests) in `output_dir`; returns the JSON path."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    images: list[str] = []
    if plots:
        from sav_router.evaluation import plots as plotting  # matplotlib only when plots are asked for

        images = plotting.write_all(evaluation, output_dir)
    path = output_dir / "report.json"
    path.write_text(json.dumps(evaluation.report, indent=2) + "\n", encoding="utf-8")
    (output_dir / "details.json").write_text(json.dumps(curves(evaluation) | {"examples": evaluation.examples}, ensure_ascii=False) + "\n", encoding="utf-8")
    (output_dir / "report.md").write_text(_markdown(evaluation.report, images), encoding="utf-8")
    return path
