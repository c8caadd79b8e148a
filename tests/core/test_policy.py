"""The route/escalate decision (pure Python)."""

import subprocess
import sys

import pytest

from sav_router.core.policy import (
    AMBIGUOUS,
    LOW_CONFIDENCE,
    NO_TEAM_FOR_LABEL,
    OUT_OF_DISTRIBUTION,
    ROUTING_DISABLED,
    Decision,
    RoutingPolicy,
    decide,
    escalation,
)


def test_confident_request_is_routed_to_its_team():
    policy = RoutingPolicy(threshold=0.8, teams={"refund_status": "returns", "missing_parcel": "delivery"})
    decision = decide({"refund_status": 0.9, "missing_parcel": 0.1}, policy, model_version="v1")
    assert decision.routed
    assert (decision.label, decision.team, decision.reasons, decision.model_version) == ("refund_status", "returns", (), "v1")
    assert decision.top_k[0] == ("refund_status", 0.9)


def test_low_confidence_and_ambiguity_escalate_with_every_reason():
    policy = RoutingPolicy(threshold=0.8, margin=0.2)
    decision = decide({"a": 0.5, "b": 0.45, "c": 0.05}, policy)
    assert decision.decision == "escalate"
    assert set(decision.reasons) == {LOW_CONFIDENCE, AMBIGUOUS}
    assert decision.label == "a"  # best guess kept for the reviewer


def test_out_of_distribution_escalates_even_when_confident():
    policy = RoutingPolicy(threshold=0.5, ood_threshold=10.0)
    assert decide({"a": 0.99, "b": 0.01}, policy, ood_score=9.0).routed
    decision = decide({"a": 0.99, "b": 0.01}, policy, ood_score=12.5)
    assert decision.reasons == (OUT_OF_DISTRIBUTION,)


def test_label_without_team_is_escalated_and_identity_is_default():
    with_table = RoutingPolicy(threshold=0.5, teams={"a": "team-a", "b": None})
    assert decide({"b": 0.9, "a": 0.1}, with_table).reasons == (NO_TEAM_FOR_LABEL,)
    assert decide({"c": 0.9, "a": 0.1}, with_table).reasons == (NO_TEAM_FOR_LABEL,)
    assert decide({"c": 0.9, "a": 0.1}, RoutingPolicy(threshold=0.5)).team == "c"


def test_per_label_threshold_only_tightens():
    policy = RoutingPolicy(threshold=0.6, label_thresholds={"risky": 0.95, "easy": 0.1})
    assert not decide({"risky": 0.9, "x": 0.1}, policy).routed
    assert decide({"easy": 0.7, "x": 0.3}, policy).routed
    assert not decide({"easy": 0.55, "x": 0.45}, policy).routed  # global threshold still applies


def test_policy_that_routes_nothing_says_so():
    decision = decide({"a": 1.0}, RoutingPolicy(threshold=2.0))
    assert not decision.routed and decision.reasons == (ROUTING_DISABLED,)


def test_operator_overrides_can_only_tighten():
    policy = RoutingPolicy(threshold=0.8, margin=0.1, ood_threshold=20.0)
    assert policy.tightened(threshold=0.5, margin=0.0, ood_threshold=30.0) == policy
    tighter = policy.tightened(threshold=0.9, margin=0.2, ood_threshold=15.0)
    assert (tighter.threshold, tighter.margin, tighter.ood_threshold) == (0.9, 0.2, 15.0)


def test_invalid_policy_values_are_refused():
    for kwargs in ({"threshold": -0.1}, {"threshold": float("nan")}, {"threshold": 0.5, "margin": 1.5}, {"threshold": 0.5, "top_k": 0}):
        with pytest.raises(ValueError):
            RoutingPolicy(**kwargs)
    with pytest.raises(ValueError):
        decide({}, RoutingPolicy(threshold=0.5))
    with pytest.raises(ValueError):
        decide({"a": float("nan")}, RoutingPolicy(threshold=0.5))


def test_policy_and_decision_round_trip_through_dicts():
    policy = RoutingPolicy(threshold=0.7, margin=0.1, label_thresholds={"a": 0.9}, ood_threshold=3.5, teams={"a": "t", "b": None}, top_k=2)
    assert RoutingPolicy.from_dict(policy.to_dict()) == policy
    decision = decide({"a": 0.95, "b": 0.05}, policy, ood_score=1.0, model_version="m")
    assert Decision.from_dict(decision.to_dict()) == decision


def test_escalation_without_scores():
    decision = escalation("model_unavailable", model_version="m")
    assert decision.to_dict()["reasons"] == ["model_unavailable"] and decision.label is None
    with pytest.raises(ValueError):
        escalation("because")


@pytest.mark.parametrize("module", ["sav_router", "sav_router.core.policy", "sav_router.core.bundle", "sav_router.loop.comparison", "sav_router.env"])
def test_light_modules_import_no_heavy_dependency(module):
    code = (
        f"import sys, {module}; heavy = [m for m in ('torch', 'transformers', 'numpy') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
