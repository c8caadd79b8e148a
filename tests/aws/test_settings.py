"""The typed contract between infra/ and lambdas/: one settings object per function."""

from __future__ import annotations

import pytest

from sav_router.aws.settings import SETTINGS, PromotionSettings, RoutingSettings, SettingsError


def test_routing_settings_round_trip_through_the_environment():
    # GIVEN the settings a construct writes
    written = RoutingSettings(
        endpoint_name="ep", artifacts_bucket="b", team_queues={"orders": "https://q/orders"}, review_queue_url="https://q/review",
        intake_dlq_url="https://q/dlq", idempotency_table="t", overrides_parameter="/p", audit_share=0.05,
    )
    # WHEN the handler reads them back
    environment = written.to_environment()
    read = RoutingSettings.from_environ(environment)
    # THEN nothing is lost or re-typed
    assert read == written
    assert environment["TEAM_QUEUES"] == '{"orders": "https://q/orders"}' and environment["AUDIT_SHARE"] == "0.05"


def test_defaults_apply_and_a_missing_required_variable_names_itself():
    settings = PromotionSettings.from_environ({
        "ENDPOINT_NAME": "e", "SAGEMAKER_ROLE_ARN": "r", "KMS_KEY_ARN": "k", "INSTANCE_TYPE": "ml.c5.xlarge",
        "INSTANCE_COUNT": "2", "ROLLBACK_ALARMS": '["a"]', "ARTIFACTS_BUCKET": "b",
    })
    assert settings.instance_count == 2 and settings.baking_seconds == 600 and settings.subnet_ids == []
    with pytest.raises(SettingsError, match="ENDPOINT_NAME is required"):
        RoutingSettings.from_environ({})


def test_a_malformed_value_is_refused_with_its_name():
    with pytest.raises(SettingsError, match="INSTANCE_COUNT='two'"):
        PromotionSettings.from_environ({
            "ENDPOINT_NAME": "e", "SAGEMAKER_ROLE_ARN": "r", "KMS_KEY_ARN": "k", "INSTANCE_TYPE": "t",
            "INSTANCE_COUNT": "two", "ROLLBACK_ALARMS": "[]", "ARTIFACTS_BUCKET": "b",
        })


def test_every_lambda_folder_has_its_settings_and_reads_only_them():
    from tests.conftest import REPO

    folders = {p.name for p in (REPO / "lambdas").iterdir() if (p / "handler.py").is_file()}
    assert folders == set(SETTINGS)
    for name in folders:
        source = (REPO / "lambdas" / name / "handler.py").read_text(encoding="utf-8")
        assert "os.environ" not in source, f"lambdas/{name}/handler.py reads the environment directly"
        assert f"{SETTINGS[name].__name__}.from_environ()" in source
