"""Shadow comparison of production and candidate decisions."""

import pytest

from sav_router.loop.comparison import Gate, compare_decisions, mcnemar_exact


def record(rid, decision, label, team=None):
    return {"id": rid, "decision": decision, "label": label, "team": team or label}


def test_flips_and_agreement_are_counted():
    production = [record("1", "route", "a"), record("2", "route", "a"), record("3", "escalate", "b"), record("4", "route", "a"), record("5", "escalate", "a")]
    candidate = [record("1", "route", "a"), record("2", "escalate", "a"), record("3", "route", "b"), record("4", "route", "c"), record("5", "escalate", "c"), {"id": "6", "error": "bad"}]
    report = compare_decisions(production, candidate)
    assert report["n_compared"] == 5
    assert report["agreement_rate"] == pytest.approx(2 / 5)
    flips = report["flips"]
    assert flips["route_to_escalate"] == {"count": 1, "examples": ["2"]}
    assert flips["escalate_to_route"]["examples"] == ["3"]
    assert flips["team_change"]["examples"] == ["4"]
    assert flips["label_change_escalated"]["examples"] == ["5"]
    assert report["gate"]["passed"] is False and "insufficient evidence" in report["gate"]["reason"]


def test_mcnemar_exact_values():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(5, 5) == 1.0


def labeled_traffic(n, candidate_misroutes, production_misroutes, candidate_escalates=0):
    production, candidate, gold = [], [], {}
    for i in range(n):
        rid = str(i)
        gold[rid] = "a"
        production.append(record(rid, "route", "b" if i < production_misroutes else "a"))
        decision = "escalate" if i >= n - candidate_escalates else "route"
        candidate.append(record(rid, decision, "b" if i < candidate_misroutes else "a"))
    return production, candidate, gold


def test_better_candidate_passes_the_gate_with_a_significant_mcnemar():
    production, candidate, gold = labeled_traffic(200, candidate_misroutes=2, production_misroutes=20)
    report = compare_decisions(production, candidate, gold, bootstrap=300)
    labeled = report["labeled"]
    assert labeled["candidate"]["routed_precision"] == 0.99 and labeled["production"]["routed_precision"] == 0.9
    assert labeled["mcnemar_misroutes"] == {"production_only": 18, "candidate_only": 0, "p_value": pytest.approx(mcnemar_exact(18, 0), abs=1e-5)}
    low, high = labeled["difference"]["routed_precision_ci"]
    assert 0 < low <= 0.09 <= high
    assert report["gate"]["passed"] is True


def test_gate_refuses_lower_precision_or_coverage():
    production, candidate, gold = labeled_traffic(200, candidate_misroutes=20, production_misroutes=2)
    report = compare_decisions(production, candidate, gold, bootstrap=100)
    assert not report["gate"]["passed"] and "routed precision" in report["gate"]["reason"]
    production, candidate, gold = labeled_traffic(200, 0, 0, candidate_escalates=30)
    report = compare_decisions(production, candidate, gold, bootstrap=100, gate=Gate(coverage_tolerance=0.05))
    assert not report["gate"]["passed"] and "coverage" in report["gate"]["reason"]
