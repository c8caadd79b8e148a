"""The console on the AWS source (`--queue SQS_URL --bucket BUCKET`) against a moto server, in system Chromium.

The same scenarios as on the workspace: the lease is the SQS visibility
timeout, answers are objects under annotations/review/ (what starts the
pipeline), reports, traffic and audit answers come from the bucket.
"""

from __future__ import annotations

import json

import pytest

from tests.console.conftest import ITEMS, ConsoleServer, add_users, free_port, server_env
from tests.console.helpers import csrf_of, current_id, login, press, shot

pytestmark = pytest.mark.browser
BUCKET = "sav-router-artifacts"
REGION = "eu-west-1"


@pytest.fixture(scope="module")
def aws(tmp_path_factory, tiny_bundle):
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = server_env() | {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
    env.pop("AWS_PROFILE", None)
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    s3, sqs = session.client("s3", endpoint_url=endpoint), session.client("sqs", endpoint_url=endpoint)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    queue_url = sqs.create_queue(QueueName="sav-router-review")["QueueUrl"]
    manifest = json.loads((tiny_bundle / "router.json").read_text())
    version = manifest["model_version"]
    s3.put_object(Bucket=BUCKET, Key=f"models/manifests/{version}.json", Body=json.dumps(manifest).encode())
    report = json.loads((tiny_bundle / "check_report" / "report.json").read_text())
    s3.put_object(Bucket=BUCKET, Key="evaluations/run-1/check/report.json", Body=json.dumps(report).encode())
    decisions = [{"id": f"t{i}", "decision": "escalate" if i % 3 == 0 else "route", "reasons": ["low_confidence"] if i % 3 == 0 else [], "model_version": version} for i in range(12)]
    s3.put_object(Bucket=BUCKET, Key="traffic/decisions/dt=2026-11-30/batch-1.jsonl", Body="".join(json.dumps(d) + "\n" for d in decisions).encode())
    for item in ITEMS:  # the routing Lambda's envelope
        decision = {key: value for key, value in item.items() if key not in ("id", "text", "audit", "queued_at")} | {"model_version": version}
        envelope = {"request": {"id": item["id"], "text": item["text"]}, "decision": decision, "audit": item["audit"], "queued_at": item["queued_at"]}
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(envelope))
    state = tmp_path_factory.mktemp("aws-console")
    add_users(state)
    server = ConsoleServer(["--queue", queue_url, "--bucket", BUCKET, "--workspace", str(state), "--lease-seconds", "300"], env=env, log_path=state / "console.log").start()
    yield {"server": server, "s3": s3, "sqs": sqs, "queue_url": queue_url, "version": version, "state": state}
    server.stop()
    moto.stop()


@pytest.fixture(scope="module")
def ana(browser, aws):
    context, page = login(browser, aws["server"], "ana")
    yield page
    context.close()


def stored(aws) -> dict[str, dict]:
    rows = {}
    for obj in aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="annotations/review/").get("Contents", []):
        for line in aws["s3"].get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read().decode().splitlines():
            row = json.loads(line)
            rows[row["id"]] = row | {"_key": obj["Key"]}
    return rows


def waiting(aws) -> int:
    values = aws["sqs"].get_queue_attributes(QueueUrl=aws["queue_url"], AttributeNames=["All"])["Attributes"]
    return int(values["ApproximateNumberOfMessages"]) + int(values["ApproximateNumberOfMessagesNotVisible"])


def test_nothing_is_served_without_logging_in(aws, browser):
    page = browser.new_page()
    for path in ("/queue/escalations", "/dashboard", "/models"):
        page.goto(aws["server"].url + path)
        assert "/login" in page.url and "Log in" in page.content()
    response = page.request.post(aws["server"].url + "/queue/escalations/answer", form={"item_id": "e1", "label": "refund"})
    assert response.status == 401 and stored(aws) == {}
    page.close()


def test_three_escalations_by_keyboard_reload_keeps_the_item_and_answers_land_in_s3(ana, aws, screenshots):
    answered = []
    while len(answered) < 3:
        item = current_id(ana)
        if ana.locator("article.item.audit").count():
            press(ana, "s")  # the audit sample gets its own test
            continue
        first = ana.locator(".choice .label").first.inner_text()
        ana.reload()  # a reload in the middle: the same message, its visibility renewed
        assert current_id(ana) == item
        press(ana, "1")
        answered.append((item, first))
    shot(ana, screenshots, "aws-queue")
    rows = stored(aws)
    for item, label in answered:
        row = rows[item]
        assert row["label"] == label and row["reviewer"] == "ana" and row["model_version"] == aws["version"]
        assert row["split"] == "teach" and row["source"] == "review" and row["_key"].startswith("annotations/review/review-teach-")
    assert waiting(aws) == len(ITEMS) - 3  # answered messages deleted, only after their answer was stored


def test_out_of_scope_then_undo_sends_the_request_back(ana, aws):
    while ana.locator("article.item.audit").count():
        press(ana, "s")
    item = current_id(ana)
    before = waiting(aws)
    press(ana, "o")
    assert stored(aws)[item]["label"] == "out_of_scope" and waiting(aws) == before - 1
    press(ana, "u")
    assert item not in stored(aws) and waiting(aws) == before  # the answer object deleted, the message back


def test_a_blind_audit_sample(ana, aws, screenshots):
    for _ in range(len(ITEMS)):
        if ana.locator("article.item.audit").count():
            break
        press(ana, "s")
    assert current_id(ana) == "a1"
    assert ana.locator(".choice meter").count() == 0 and "0.97" not in ana.content()
    # every label in a fixed order (warranty is not among its scored candidates), then out of scope
    assert ana.locator(".choice .label").all_inner_texts()[:4] == ["account", "delivery", "refund", "warranty"]
    press(ana, "1")
    row = stored(aws)["a1"]
    assert (row["split"], row["source"], row["model_label"], row["label"]) == ("check", "audit", "account", "account")
    assert row["_key"].startswith("annotations/review/audit-check-")


def test_two_reviewers_at_once_get_different_requests(ana, browser, aws):
    context, bob = login(browser, aws["server"], "bob")
    try:
        mine, theirs = current_id(ana), current_id(bob)
        assert mine and theirs and mine != theirs
        response = bob.request.post(aws["server"].url + "/queue/escalations/answer", form={"csrf": csrf_of(bob), "item_id": mine, "label": "refund"}, max_redirects=0)
        assert response.status == 303 and "lease_lost" in response.headers["location"] and mine not in stored(aws)
    finally:
        context.close()


def test_a_form_without_its_csrf_token_is_refused(ana, aws):
    item = current_id(ana)
    ana.evaluate("document.querySelectorAll('#answer-form input[name=csrf]').forEach(e => e.remove())")
    with ana.expect_navigation():
        ana.keyboard.press("1")
    assert "CSRF" in ana.locator(".error").inner_text() and item not in stored(aws)
    ana.goto(aws["server"].url + "/queue/escalations")
    assert current_id(ana) == item


def test_promotion_is_refused_to_a_reviewer_and_left_to_sagemaker_approval_for_an_admin(ana, browser, aws):
    response = ana.request.post(aws["server"].url + f"/models/{aws['version']}/promote", form={"csrf": csrf_of(ana), "reason": "x", "force": "on"})
    assert response.status == 403
    context, root = login(browser, aws["server"], "root", start="/models")
    try:
        assert aws["version"] in root.locator("table.data").inner_text()
        response = root.request.post(aws["server"].url + f"/models/{aws['version']}/promote", form={"csrf": csrf_of(root), "reason": "x"})
        assert response.status == 409 and "approving its model package" in response.text()
    finally:
        context.close()


def test_the_dashboard_reads_reports_audit_answers_and_traffic_from_the_bucket(browser, aws, screenshots):
    context, root = login(browser, aws["server"], "root", start="/dashboard")
    try:
        assert "Routed precision" in root.content() and "re-run" in root.content()  # no curves from the AWS evaluation step
        titles = [chart.get_attribute("aria-label") for chart in root.locator("svg.chart").all()]
        assert {"Live routed precision from audit samples", "Escalations over time"} <= set(titles)
        assert "1 of 1 audited routed requests confirmed" in root.content()
        shot(root, screenshots, "aws-dashboard", full_page=True)
    finally:
        context.close()


def test_server_logs_hold_no_request_text(aws):
    logs = aws["server"].logs()
    assert not any(item["text"] in logs for item in ITEMS)
    audit = (aws["state"] / "console" / "audit.jsonl").read_text()
    assert '"action": "answer"' in audit and not any(item["text"] in audit for item in ITEMS)
