"""Shadow comparison: a candidate model's decisions against production's.

Both sides are lists of decision records (`{"id", "decision", "label", "team",
...}` as written by `predict`, the server and the routing Lambda) for the
same requests. Pure Python (no numpy): the AWS pipeline runs it in a Lambda.

On requests with a human label (reviewed escalations, audit samples, check
set), it also measures routed precision and coverage of both models, with
paired bootstrap confidence intervals of the differences and an exact McNemar
test on paired misroutes; a configurable gate turns that into a verdict.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sav_router.core.policy import ROUTE


@dataclass(frozen=True)
class Gate:
    """Promotion gate: candidate vs production on labeled requests."""

    precision_tolerance: float = 0.01  # candidate precision may be at most this much lower
    coverage_tolerance: float = 0.0  # candidate coverage may be at most this much lower
    min_labeled: int = 50  # fewer labeled requests: no verdict but "insufficient evidence"
    # the candidate's calibrate rows' estimated label-error rate (`doubts`) may be at most this (None: not checked)
    max_label_error_rate: float | None = None


def _by_id(records: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for record in records:
        if "error" in record or record.get("id") is None:
            continue
        out[str(record["id"])] = record
    return out


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value on discordant pairs b, c."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def _rates(routed: Sequence[bool], correct: Sequence[bool], rows: Sequence[int]) -> tuple[float, float | None]:
    n_routed = sum(routed[i] for i in rows)
    hits = sum(routed[i] and correct[i] for i in rows)
    return n_routed / len(rows), (hits / n_routed if n_routed else None)


def _interval(values: list[float], level: float) -> list[float] | None:
    if not values:
        return None
    values.sort()
    lo = values[int((1 - level) / 2 * (len(values) - 1))]
    hi = values[int((1 + level) / 2 * (len(values) - 1))]
    return [round(lo, 4), round(hi, 4)]


def compare_decisions(
    production: Sequence[Mapping[str, Any]],
    candidate: Sequence[Mapping[str, Any]],
    gold: Mapping[str, str] | None = None,
    *,
    gate: Gate = Gate(),
    examples: int = 5,
    bootstrap: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    prod, cand = _by_id(production), _by_id(candidate)
    ids = sorted(set(prod) & set(cand))
    flips: dict[str, list[str]] = {"route_to_escalate": [], "escalate_to_route": [], "team_change": [], "label_change_escalated": []}
    agree = 0
    for rid in ids:
        p, c = prod[rid], cand[rid]
        p_routed, c_routed = p.get("decision") == ROUTE, c.get("decision") == ROUTE
        if p_routed and not c_routed:
            flips["route_to_escalate"].append(rid)
        elif c_routed and not p_routed:
            flips["escalate_to_route"].append(rid)
        elif p_routed and c_routed and p.get("team") != c.get("team"):
            flips["team_change"].append(rid)
        else:
            agree += 1
            if not p_routed and p.get("label") != c.get("label"):
                flips["label_change_escalated"].append(rid)
    report: dict[str, Any] = {
        "n_production": len(prod),
        "n_candidate": len(cand),
        "n_compared": len(ids),
        "agreement_rate": round(agree / len(ids), 4) if ids else None,
        "flips": {kind: {"count": len(rows), "examples": rows[:examples]} for kind, rows in flips.items()},
        "production_coverage": round(sum(prod[i].get("decision") == ROUTE for i in ids) / len(ids), 4) if ids else None,
        "candidate_coverage": round(sum(cand[i].get("decision") == ROUTE for i in ids) / len(ids), 4) if ids else None,
    }
    labeled = [rid for rid in ids if gold and gold.get(rid)]
    report["labeled"] = _labeled_comparison(labeled, prod, cand, gold or {}, bootstrap=bootstrap, level=level, seed=seed)
    report["gate"] = asdict(gate) | _verdict(report["labeled"], gate)
    return report


def _reserved(label: str) -> bool:
    from sav_router.core.labels import out_of_scope_label

    return label == out_of_scope_label()


def _labeled_comparison(ids, prod, cand, gold, *, bootstrap: int, level: float, seed: int) -> dict[str, Any]:
    n = len(ids)
    if n == 0:
        return {"n": 0}
    truth = [gold[i] for i in ids]
    p_routed = [prod[i].get("decision") == ROUTE for i in ids]
    c_routed = [cand[i].get("decision") == ROUTE for i in ids]
    p_correct = [prod[i].get("label") == t and not _reserved(t) for i, t in zip(ids, truth)]
    c_correct = [cand[i].get("label") == t and not _reserved(t) for i, t in zip(ids, truth)]
    rows = list(range(n))
    p_cov, p_prec = _rates(p_routed, p_correct, rows)
    c_cov, c_prec = _rates(c_routed, c_correct, rows)
    rng = random.Random(seed)
    d_prec: list[float] = []
    d_cov: list[float] = []
    for _ in range(bootstrap):
        sample = [rng.randrange(n) for _ in range(n)]
        pc, pp = _rates(p_routed, p_correct, sample)
        cc, cp = _rates(c_routed, c_correct, sample)
        d_cov.append(cc - pc)
        if pp is not None and cp is not None:
            d_prec.append(cp - pp)
    # Gold labels answered out of scope: no routed label can be right (a misroute when routed).
    from sav_router.core.labels import out_of_scope_label

    reserved = out_of_scope_label()
    oos = [t == reserved for t in truth]
    p_misroute = [r and not ok for r, ok in zip(p_routed, p_correct)]
    c_misroute = [r and not ok for r, ok in zip(c_routed, c_correct)]
    b = sum(p and not c for p, c in zip(p_misroute, c_misroute))
    c = sum(c and not p for p, c in zip(p_misroute, c_misroute))
    b_top1 = sum(not p and c for p, c in zip(p_correct, c_correct))  # production wrong, candidate right
    c_top1 = sum(p and not c for p, c in zip(p_correct, c_correct))
    r4 = lambda x: None if x is None else round(x, 4)  # noqa: E731
    return {
        "n": n,
        "out_of_scope": sum(oos),
        "production": {"coverage": r4(p_cov), "routed_precision": r4(p_prec), "misroutes": sum(p_misroute), "top1_accuracy": r4(sum(p_correct) / n),
                       "out_of_scope_routed": sum(o and r for o, r in zip(oos, p_routed))},
        "candidate": {"coverage": r4(c_cov), "routed_precision": r4(c_prec), "misroutes": sum(c_misroute), "top1_accuracy": r4(sum(c_correct) / n),
                      "out_of_scope_routed": sum(o and r for o, r in zip(oos, c_routed))},
        "difference": {
            "routed_precision": None if p_prec is None or c_prec is None else r4(c_prec - p_prec),
            "routed_precision_ci": _interval(d_prec, level),
            "coverage": r4(c_cov - p_cov),
            "coverage_ci": _interval(d_cov, level),
            "confidence_level": level,
        },
        "mcnemar_misroutes": {"production_only": b, "candidate_only": c, "p_value": round(mcnemar_exact(b, c), 5)},
        "mcnemar_top1": {"candidate_fixes": b_top1, "candidate_breaks": c_top1, "p_value": round(mcnemar_exact(b_top1, c_top1), 5)},
    }


def label_noise_verdict(verdict: Mapping[str, Any], label_doubts: Mapping[str, Any] | None, gate: Gate) -> dict[str, Any]:
    """The verdict, failed when the gate bounds label noise and the candidate's calibrate rows exceed (or lack) the bound."""
    if gate.max_label_error_rate is None:
        return dict(verdict)
    if not label_doubts:
        problem = "no label-error estimate of the candidate's calibrate rows (retrain or recalibrate it with this version)"
    elif label_doubts["rate"] > gate.max_label_error_rate:
        problem = (f"estimated label-error rate of the calibrate rows {label_doubts['rate']:.3f} above {gate.max_label_error_rate} "
                   "(settle the doubts: `sav-router doubts --format review-queue`)")
    else:
        return dict(verdict)
    return {"passed": False, "reason": problem if verdict.get("passed") else f"{verdict.get('reason')}; {problem}"}


def _verdict(labeled: Mapping[str, Any], gate: Gate) -> dict[str, Any]:
    if labeled.get("n", 0) < gate.min_labeled:
        return {"passed": False, "reason": f"insufficient evidence: {labeled.get('n', 0)} labeled requests, gate needs {gate.min_labeled}"}
    prod, cand = labeled["production"], labeled["candidate"]
    problems = []
    if cand["routed_precision"] is None:
        problems.append("candidate routes nothing")
    elif prod["routed_precision"] is not None and cand["routed_precision"] < prod["routed_precision"] - gate.precision_tolerance:
        problems.append(
            f"routed precision {cand['routed_precision']} below production {prod['routed_precision']} - {gate.precision_tolerance}"
        )
    if cand["coverage"] < prod["coverage"] - gate.coverage_tolerance:
        problems.append(f"coverage {cand['coverage']} below production {prod['coverage']} - {gate.coverage_tolerance}")
    if problems:
        return {"passed": False, "reason": "; ".join(problems)}
    return {
        "passed": True,
        "reason": f"routed precision {cand['routed_precision']} vs {prod['routed_precision']}, coverage {cand['coverage']} vs {prod['coverage']}",
    }
