"""The comparison report in Markdown: what `compare` and the console write next to comparison.json."""

from __future__ import annotations


def comparison_markdown(report: dict, texts: dict[str, str], production: str, candidate: str) -> str:
    labeled = report["labeled"]
    gate = report["gate"]
    lines = [
        f"# Candidate {candidate} vs production {production}",
        "",
        f"**Verdict: {'PASS' if gate['passed'] else 'FAIL'}** — {gate['reason']}",
        "",
        f"Compared {report['n_compared']} requests; agreement {report['agreement_rate']}; coverage {report['production_coverage']} -> {report['candidate_coverage']}.",
        "",
    ]
    if labeled.get("n"):
        d = labeled["difference"]
        lines += [
            f"## On {labeled['n']} labeled requests",
            "",
            "| | production | candidate | difference (95% bootstrap CI) |",
            "|---|---|---|---|",
            f"| routed precision | {labeled['production']['routed_precision']} | {labeled['candidate']['routed_precision']} | {d['routed_precision']} {d['routed_precision_ci']} |",
            f"| coverage | {labeled['production']['coverage']} | {labeled['candidate']['coverage']} | {d['coverage']} {d['coverage_ci']} |",
            f"| misroutes | {labeled['production']['misroutes']} | {labeled['candidate']['misroutes']} | McNemar p = {labeled['mcnemar_misroutes']['p_value']} |",
            f"| top-1 accuracy | {labeled['production']['top1_accuracy']} | {labeled['candidate']['top1_accuracy']} | McNemar p = {labeled['mcnemar_top1']['p_value']} |",
            f"| out-of-scope requests routed (of {labeled.get('out_of_scope', 0)}) | {labeled['production'].get('out_of_scope_routed')} | {labeled['candidate'].get('out_of_scope_routed')} | misroutes |",
            "",
        ]
    for side in ("production", "candidate"):
        if report.get("monitor", {}).get(side):
            lines += [f"Monitor ({side} calibration sample vs these requests): {report['monitor'][side]}", ""]
    lines += ["## Decision flips", ""]
    for kind, flip in report["flips"].items():
        lines.append(f"- **{kind}**: {flip['count']}")
        for rid in flip["examples"]:
            lines.append(f"  - `{rid}`: {texts.get(rid, '')[:120]!r}")
    return "\n".join(lines) + "\n"
