"""Operations stack: alarms on DLQs, escalation rate, pipeline failures, functions; the dashboard."""

from __future__ import annotations

from template_helpers import render, resources


def alarms(synthesized) -> list[dict]:
    return [a["Properties"] for a in resources(synthesized.raw["operations"], "AWS::CloudWatch::Alarm").values()]


def test_every_dead_letter_queue_is_alarmed(synthesized):
    dlq_alarms = [a for a in alarms(synthesized) if a.get("MetricName") == "ApproximateNumberOfMessagesVisible"]
    assert len(dlq_alarms) == 7 and all(a["Threshold"] == 1 and a["Statistic"] == "Maximum" for a in dlq_alarms)
    assert all("dead-letter" in a["AlarmDescription"] for a in dlq_alarms)


def test_escalation_rate_spike_alarm_uses_the_routing_metrics(synthesized):
    (rate,) = [a for a in alarms(synthesized) if "Metrics" in a]
    expression = next(m for m in rate["Metrics"] if "Expression" in m)["Expression"]
    assert expression == "IF(routed + escalated >= 20, escalated / (routed + escalated), 0)"
    inputs = {m["Id"]: m["MetricStat"]["Metric"] for m in rate["Metrics"] if "MetricStat" in m}
    assert inputs["routed"]["MetricName"] == "Routed" and inputs["escalated"]["MetricName"] == "Escalated"
    assert inputs["routed"]["Namespace"] == "SavRouter" and rate["Threshold"] == 0.6


def test_pipeline_failures_and_function_errors_alarm_to_the_topic(synthesized):
    props = alarms(synthesized)
    names = {a["MetricName"] for a in props if "MetricName" in a}
    assert {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted", "Errors", "ModelUnavailable", "ApproximateAgeOfOldestMessage"} <= names
    assert all(render(a["AlarmActions"][0]) == "sav-router-alarm-topic-arn" for a in props)


def test_a_refused_operator_override_alarms_on_the_metric_the_routing_function_emits(synthesized):
    from sav_router.aws import metrics

    (refused,) = [a for a in alarms(synthesized) if a.get("MetricName") == metrics.OVERRIDES_REFUSED]
    assert refused["Namespace"] == metrics.NAMESPACE and refused["Threshold"] == 1
    assert {"Name": metrics.SERVICE_DIMENSION, "Value": "routing"} in refused["Dimensions"]
    assert "override" in refused["AlarmDescription"]


def test_endpoint_alarms_notify_and_dashboard_exists(synthesized):
    serving_alarms = [a["Properties"] for a in resources(synthesized.raw["serving"], "AWS::CloudWatch::Alarm").values()]
    assert all(a.get("AlarmActions") for a in serving_alarms)
    (dashboard,) = resources(synthesized.raw["operations"], "AWS::CloudWatch::Dashboard").values()
    body = render(dashboard["Properties"]["DashboardBody"])
    assert dashboard["Properties"]["DashboardName"] == "sav-router-operations"
    assert "Escalation reasons" in body and "Training pipeline" in body and "Endpoint 5xx" in body


def test_each_function_environment_is_exactly_its_settings_contract(synthesized):
    """The construct writes what the handler's settings object reads: same names, nothing extra."""
    from dataclasses import MISSING, fields

    from sav_router.aws.settings import SETTINGS

    powertools = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}
    seen = set()
    for raw in synthesized.raw.values():
        for resource in raw["Resources"].values():
            if resource["Type"] != "AWS::Lambda::Function" or "Environment" not in resource["Properties"]:
                continue
            variables = resource["Properties"]["Environment"]["Variables"]
            service = variables.get("POWERTOOLS_SERVICE_NAME")
            if service not in SETTINGS:
                continue
            seen.add(service)
            spec = SETTINGS[service]
            required = {f.metadata["env"] for f in fields(spec) if f.default is MISSING and f.default_factory is MISSING}
            allowed = {f.metadata["env"] for f in fields(spec)}
            names = set(variables) - powertools
            assert required <= names <= allowed, (service, sorted(names ^ allowed))
    assert seen == set(SETTINGS)


def test_the_dashboard_charts_every_escalation_reason(synthesized):
    import json

    from sav_router.aws.metrics import ESCALATION_METRICS
    from sav_router.core.policy import REASONS

    body = json.dumps(synthesized.raw["operations"])
    assert len(ESCALATION_METRICS) == len(REASONS)
    for name in ESCALATION_METRICS:
        assert name in body, name
