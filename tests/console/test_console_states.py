"""Every page for every state the loop produces, and the HTTP side of issue 20 (in-process, no browser).

States: models without check metrics (a recalibrate output), an empty
registry, a report without curves, an empty queue, a queue changed by another
reviewer, a malformed users file or registry. Security: login throttling,
logout ending the session on the server, body limits before reading, allowed
Host names, HSTS, weak passwords, answers checked against production's labels,
0600 files with request text.
"""

from __future__ import annotations

import json
import shutil
import stat

import pytest
from fastapi.testclient import TestClient

from tests.console.conftest import ITEMS, PASSWORDS, ROLES

PAGES = ("/queue/escalations", "/queue/batch", "/dashboard", "/models")
BASE = "http://127.0.0.1"


def make_app(root, *, lease_seconds=900, tls=False):
    from sav_router.console.app import ConsoleSettings, create_app
    from sav_router.console.sources import LocalSource
    from sav_router.console.users import UsersFile
    from sav_router.loop.workspace import Workspace

    users = root / "console" / "users.json"
    if not users.is_file():
        for name, role in ROLES.items():
            UsersFile(users).add(name, role, PASSWORDS[name])
    source = LocalSource(Workspace(root), lease_seconds=lease_seconds)
    return create_app(source, ConsoleSettings(state_dir=root / "console", users_file=users, lease_seconds=lease_seconds, tls=tls))


def client(app, **kwargs) -> TestClient:
    return TestClient(app, base_url=BASE, follow_redirects=False, raise_server_exceptions=False, **kwargs)


def login(app, name="ana", password=None, *, web=None):
    web = web or client(app)
    page = web.get("/login")
    token = page.cookies.get("sav_console_login") or web.cookies.get("sav_console_login")
    answer = web.post("/login", data={"login_token": token, "username": name, "password": password or PASSWORDS[name], "next": "/"})
    return web, answer


def csrf(web, path="/queue/escalations") -> str:
    html = web.get(path).text
    return html.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def render_all(app, *, extra=()):
    web, answer = login(app, "root")
    assert answer.status_code == 303, answer.text
    for path in (*PAGES, *extra):
        page = web.get(path, follow_redirects=True)
        assert page.status_code == 200, (path, page.text[-2000:])
        assert "Content-Security-Policy" in page.headers and "Traceback" not in page.text
    return web


@pytest.fixture()
def workspace(tmp_path, tiny_bundle):
    from sav_router.core.bundle import read_manifest
    from sav_router.core.jsonio import append_jsonl
    from sav_router.loop.workspace import Workspace

    ws = Workspace(tmp_path / "ws").ensure()
    version = ws.register(tiny_bundle)
    ws.promote(version)
    model_version = read_manifest(tiny_bundle).model_version
    append_jsonl(ws.path("review", "queue.jsonl"), [dict(item, model_version=model_version) for item in ITEMS[:3]])
    return ws


def strip_check_metrics(ws, tmp_path, tiny_bundle, *, name="v-recal"):
    """A registered model as `recalibrate` writes it: no check metrics, no check report."""
    copy = tmp_path / name
    shutil.copytree(tiny_bundle, copy)
    manifest = json.loads((copy / "router.json").read_text())
    manifest["model_version"] = manifest["model_version"] + "-recal"
    manifest["metrics"] = {key: value for key, value in (manifest.get("metrics") or {}).items() if key != "check"}
    (copy / "router.json").write_text(json.dumps(manifest))
    shutil.rmtree(copy / "check_report", ignore_errors=True)
    return ws.register(copy)


def test_models_without_check_metrics_render_every_page(workspace, tmp_path, tiny_bundle):
    # GIVEN a registered model without check metrics (every recalibrate output): the 500
    version = strip_check_metrics(workspace, tmp_path, tiny_bundle)
    app = make_app(workspace.root)
    # THEN every page renders, its own included, and it can still be promoted
    web = render_all(app, extra=(f"/models/{version}", f"/dashboard?version={version}"))
    page = web.get(f"/models/{version}").text
    assert "Promote" in page and "–" in page
    # AND once in production (forced: no comparison), every page still renders, rollback named
    token = csrf(web, f"/models/{version}")
    done = web.post(f"/models/{version}/promote", data={"csrf": token, "reason": "recalibrated", "force": "on"})
    assert done.status_code == 303 and workspace.production_version() == version
    render_all(app, extra=(f"/models/{version}",))
    assert "Roll back to" in web.get("/models").text


def test_an_empty_registry_and_an_empty_queue_render(tmp_path):
    (tmp_path / "ws").mkdir()
    app = make_app(tmp_path / "ws")
    web = render_all(app)
    page = web.get("/queue/escalations").text
    assert "Nothing waiting for you" in page and "1 waiting" not in page
    assert "Nothing to roll back to" in web.get("/models").text and "sav-router register" not in web.get("/models").text


def test_a_report_without_curves_and_a_partial_details_file(workspace):
    version = workspace.production_version()
    report = workspace.path("models", version, "check_report")
    (report / "details.json").unlink(missing_ok=True)
    app = make_app(workspace.root)
    web = render_all(app)
    assert "no curves" in web.get("/dashboard").text
    (report / "details.json").write_text(json.dumps({"risk_coverage": {"coverage": [], "risk": []}}))
    render_all(app)
    (report / "report.json").write_text("[1, 2]")  # not a report
    render_all(app)


def test_a_queue_changed_by_another_reviewer(workspace):
    app = make_app(workspace.root)
    ana, _ = login(app, "ana")
    bob, _ = login(app, "bob")
    assert "e1" in ana.get("/queue/escalations").text
    bob_page = bob.get("/queue/escalations").text
    assert 'data-item="e2"' in bob_page
    # WHEN bob answers his and ana's, and the queue file is rewritten under them
    (workspace.path("review", "queue.jsonl")).write_text("")
    for web in (ana, bob):
        assert web.get("/queue/escalations").status_code == 200
    render_all(app)


def test_a_malformed_users_file_or_registry_is_a_page_with_headers_and_what_to_do(workspace):
    app = make_app(workspace.root)
    web, _ = login(app, "ana")
    (workspace.root / "registry.json").write_text("{not json")
    page = web.get("/models")
    assert page.status_code == 500 and "restore registry.json" in page.text and "Content-Security-Policy" in page.headers
    assert str(workspace.root) not in page.text.split("<footer")[0]  # the error says what to do, not where files are
    (workspace.root / "console" / "users.json").write_text("{broken")
    page = web.get("/queue/escalations")
    assert page.status_code == 500 and "users file" in page.text and page.headers["X-Frame-Options"] == "DENY"


def test_answers_are_checked_against_production_labels_not_the_item(workspace):
    from sav_router.core.jsonio import append_jsonl

    crafted = dict(ITEMS[0], id="x1", label="evil_label", top_k=[{"label": "evil_label", "score": 0.9}])
    path = workspace.path("review", "queue.jsonl")
    path.write_text("")
    append_jsonl(path, [crafted])
    app = make_app(workspace.root)
    web, _ = login(app, "ana")
    page = web.get("/queue/escalations").text
    assert 'data-item="x1"' in page
    refused = web.post("/queue/escalations/answer", data={"csrf": csrf(web), "item_id": "x1", "label": "evil_label"})
    assert refused.status_code == 400
    assert not list(workspace.path("annotations").glob("*.jsonl")) or "evil_label" not in "".join(p.read_text() for p in workspace.path("annotations").glob("*.jsonl"))


def test_the_notice_names_the_label_and_the_request_and_undo_is_a_stack(workspace):
    app = make_app(workspace.root)
    web, _ = login(app, "ana")
    for expected in ("e1", "e2", "e3"):
        page = web.get("/queue/escalations").text
        assert f'data-item="{expected}"' in page
        done = web.post("/queue/escalations/answer", data={"csrf": csrf(web), "item_id": expected, "label": "refund"}, follow_redirects=True)
        assert f"Answer saved: “refund” for request {expected}" in done.text
    # the queue is empty now: three undos take back e3, e2, e1, each shown in turn
    for expected in ("e3", "e2", "e1"):
        done = web.post("/queue/escalations/undo", data={"csrf": csrf(web)}, follow_redirects=True)
        assert f'data-item="{expected}"' in done.text and f"to request {expected} taken back" in done.text and "“refund”" in done.text
    leases = json.loads(workspace.path("review", "queue.leases.json").read_text())
    assert [key for key, lease in leases.items() if lease["holder"] == "console:ana"] == ["e1"]  # only the one on screen


def test_skipping_the_last_item_does_not_show_it_again_at_once(workspace):
    app = make_app(workspace.root)
    web, _ = login(app, "ana")
    for item in ("e1", "e2"):
        web.post("/queue/escalations/answer", data={"csrf": csrf(web), "item_id": item, "label": "refund"})
    assert 'data-item="e3"' in web.get("/queue/escalations").text
    after = web.post("/queue/escalations/skip", data={"csrf": csrf(web), "item_id": "e3"}, follow_redirects=True).text
    assert 'data-item="e3"' not in after and "show it again" in after and "Skipped request e3" in after
    assert 'data-item="e3"' in web.get("/queue/escalations?again=1").text


def test_a_lease_is_renewed_while_shown_and_an_expired_one_nobody_took_is_still_answerable(workspace):
    import time

    app = make_app(workspace.root, lease_seconds=2)
    ana, _ = login(app, "ana")
    bob, _ = login(app, "bob")
    assert 'data-item="e1"' in ana.get("/queue/escalations").text
    token = csrf(ana)
    for _ in range(3):  # the page's script renews at a third of the lease
        time.sleep(0.8)
        assert ana.post("/queue/escalations/renew", data={"csrf": token, "item_id": "e1"}).json() == {"held": True}
    assert 'data-item="e1"' not in bob.get("/queue/escalations").text  # 2.4 s > 2 s lease: still ana's
    assert bob.post("/queue/escalations/renew", data={"csrf": csrf(bob), "item_id": "e1"}).json() == {"held": False}
    time.sleep(2.2)  # lapsed, but nobody took it: her answer is kept
    done = ana.post("/queue/escalations/answer", data={"csrf": token, "item_id": "e1", "label": "refund"})
    assert "lease_lost" not in done.headers["location"]
    # AND the status the empty page polls
    assert set(ana.get("/queue/escalations/status").json()) >= {"waiting", "held", "held_by_others"}


def test_login_is_throttled_per_user_and_per_address_and_audited(workspace):
    app = make_app(workspace.root)
    web = client(app)
    for _ in range(5):
        _, answer = login(app, "ana", "wrong password!", web=web)
        assert answer.status_code == 401
    _, answer = login(app, "ana", web=web)  # the right password, too late
    assert answer.status_code == 429 and "try again" in answer.text and int(answer.headers["Retry-After"]) > 0
    _, other = login(app, "bob")  # another user is not locked out by ana's guesses (below the address limit)
    assert other.status_code == 303
    audit = [json.loads(line) for line in (workspace.root / "console" / "audit.jsonl").read_text().splitlines()]
    assert [row["action"] for row in audit].count("login_failed") == 5 and any(row["action"] == "login_throttled" for row in audit)
    from sav_router.console.security import Throttle

    throttle = Throttle(per_user=5, per_address=20)
    for i in range(20):
        throttle.failed(f"user{i}", "10.0.0.9")
    assert throttle.retry_after("someone-new", "10.0.0.9") > 0 and throttle.retry_after("someone-new", "10.0.0.8") == 0


def test_logout_ends_the_session_on_the_server(workspace):
    app = make_app(workspace.root)
    web, _ = login(app, "ana")
    cookie = web.cookies.get("sav_console")
    assert web.post("/logout", data={"csrf": csrf(web)}).status_code == 303
    replay = client(app)
    replay.cookies.set("sav_console", cookie)
    assert replay.get("/queue/escalations").status_code == 303  # the old cookie leads to the login page
    app2 = make_app(workspace.root)  # a restart keeps it ended
    replay2 = client(app2)
    replay2.cookies.set("sav_console", cookie)
    assert replay2.get("/queue/escalations").status_code == 303


def test_a_password_change_ends_old_sessions(workspace):
    from sav_router.console.users import UsersFile

    app = make_app(workspace.root)
    web, _ = login(app, "ana")
    assert web.get("/queue/escalations").status_code == 200
    UsersFile(workspace.root / "console" / "users.json").add("ana", "reviewer", "a new long passphrase")
    assert web.get("/queue/escalations").status_code == 303


def test_body_limits_apply_before_reading(workspace):
    app = make_app(workspace.root)
    web = client(app)
    big = web.post("/login", content=b"x" * 100, headers={"Content-Length": str(300 * 1024 * 1024), "Content-Type": "application/x-www-form-urlencoded"})
    assert big.status_code == 413 and "Content-Security-Policy" in big.headers

    def chunks():
        for _ in range(64):
            yield b"a" * 1024

    streamed = web.post("/login", content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert streamed.status_code == 413


def test_only_allowed_host_names_and_hsts_over_tls(workspace):
    app = make_app(workspace.root)
    assert TestClient(app, base_url="http://evil.example").get("/login").status_code == 400
    assert TestClient(app, base_url="http://localhost:8070").get("/login").status_code == 200
    assert "Strict-Transport-Security" not in client(app).get("/login").headers
    tls = make_app(workspace.root, tls=True)
    assert "max-age=" in client(tls).get("/login").headers["Strict-Transport-Security"]


def test_weak_passwords_are_refused(tmp_path):
    from sav_router.console.users import UsersError, UsersFile

    users = UsersFile(tmp_path / "users.json")
    for weak in ("password", "12345678", "password123", "aaaaaaaaaaaa", "qwertyuiop", "carla-carla"[:5] * 2):
        with pytest.raises(UsersError):
            users.add("carla", "reviewer", weak)
    users.add("carla", "reviewer", "plum orchard at dusk")


def test_files_with_request_text_are_owner_only_and_the_login_page_hides_the_workspace(workspace):
    app = make_app(workspace.root)
    login_page = client(app).get("/login").text
    assert str(workspace.root) not in login_page and "sav-router console users add" not in login_page
    web, _ = login(app, "ana")
    web.post("/queue/escalations/answer", data={"csrf": csrf(web), "item_id": "e1", "label": "refund"})
    files = [workspace.root / "console" / "audit.jsonl", *workspace.path("annotations").glob("*.jsonl")]
    assert len(files) >= 2
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    web.post("/queue/escalations/undo", data={"csrf": csrf(web)})
    for path in workspace.path("annotations").glob("*.jsonl"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_refusals_redirect_in_a_browser_and_admin_messages_use_page_words(workspace, tmp_path, tiny_bundle):
    version = strip_check_metrics(workspace, tmp_path, tiny_bundle)
    app = make_app(workspace.root)
    web, _ = login(app, "root")
    token = csrf(web, f"/models/{version}")
    navigate = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    refused = web.post(f"/models/{version}/promote", data={"csrf": token, "reason": ""}, headers=navigate)
    assert refused.status_code == 303 and refused.headers["location"] == f"/models/{version}"
    page = web.get(f"/models/{version}").text
    assert "Compare with production" in page and "--force" not in page and "--reason" not in page
    forced = web.post(f"/models/{version}/promote", data={"csrf": token, "force": "on"}, headers=navigate)
    assert forced.status_code == 303 and "needs a reason" in web.get(f"/models/{version}").text
    # a script gets the status itself
    assert web.post(f"/models/{version}/promote", data={"csrf": token}).status_code == 409
    # a batch size that is not a number
    bad = web.post("/queue/batch/start", data={"csrf": token, "k": "abc"}, headers=navigate)
    assert bad.status_code == 303 and "whole number from 1 to 1000" in web.get("/queue/batch").text
    assert "int()" not in web.get("/queue/batch").text


def test_shortcuts_can_be_switched_off_per_user(workspace):
    app = make_app(workspace.root)
    web, _ = login(app, "ana")
    assert 'data-shortcuts="on"' in web.get("/queue/escalations").text
    web.post("/preferences/shortcuts", data={"csrf": csrf(web), "shortcuts": "off", "back": "/queue/escalations"})
    assert 'data-shortcuts="off"' in web.get("/queue/escalations").text
    bob, _ = login(app, "bob")
    assert 'data-shortcuts="on"' in bob.get("/queue/escalations").text


def test_the_escalation_chart_counts_each_request_once():
    from sav_router.console.dashboard import escalations_over_time

    traffic = [{"at": "2026-11-01T10:00:00+00:00", "decision": "escalate", "reasons": ["low_confidence", "ambiguous", "out_of_distribution"]} for _ in range(3)]
    bucket = escalations_over_time(traffic)["buckets"][0]
    assert bucket["escalated"] == 3 and sum(bucket["primary"].values()) == 3 and sum(bucket["reasons"].values()) == 9
