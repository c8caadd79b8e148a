"""The versioned bundle manifest."""

import json

import pytest

from sav_router.core.bundle import PROTOCOL, BundleError, Manifest, read_manifest, write_manifest
from sav_router.core.policy import RoutingPolicy


def manifest(**overrides) -> Manifest:
    values = dict(
        labels=["a", "b"],
        policy=RoutingPolicy(threshold=0.8, teams={"a": "ta", "b": None}),
        base_model="tiny",
        model_version="20260101T000000Z-abcdef12",
        created_at="2026-01-01T00:00:00+00:00",
        temperature=1.5,
        calibration={"target_precision": 0.95, "confidence": 0.95},
    )
    values.update(overrides)
    return Manifest(**values)


def test_manifest_round_trips(tmp_path):
    write_manifest(tmp_path, manifest())
    loaded = read_manifest(tmp_path)
    assert loaded.to_dict() == manifest().to_dict()
    assert json.loads((tmp_path / "router.json").read_text())["protocol"] == PROTOCOL


def test_newer_protocol_is_refused_with_an_upgrade_hint(tmp_path):
    data = manifest().to_dict() | {"protocol": PROTOCOL + 1}
    (tmp_path / "router.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=f"protocol {PROTOCOL + 1} is not supported.*upgrade sav-router"):
        read_manifest(tmp_path)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("format"), "not a sav-router bundle"),
        (lambda d: d.update(protocol="1"), "protocol must be an integer"),
        (lambda d: d.update(protocol=0), "predates"),
        (lambda d: d.update(labels=["a", "a"]), "without duplicates"),
        (lambda d: d.update(temperature=0), "temperature"),
        (lambda d: d.pop("policy"), "invalid manifest field"),
        (lambda d: d["policy"].update(threshold=-1), "invalid manifest field"),
    ],
)
def test_untrusted_manifests_are_refused(tmp_path, mutate, message):
    data = manifest().to_dict()
    mutate(data)
    (tmp_path / "router.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=message):
        read_manifest(tmp_path)


def test_missing_or_unreadable_manifest(tmp_path):
    with pytest.raises(BundleError, match="not a sav-router model bundle"):
        read_manifest(tmp_path)
    (tmp_path / "router.json").write_text("{oops")
    with pytest.raises(BundleError, match="unreadable manifest"):
        read_manifest(tmp_path)
