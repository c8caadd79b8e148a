"""The console's parts without a browser: users file, sessions, the CLI, SVG charts."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time

import pytest

from sav_router.console import charts
from sav_router.console.security import decode_session, encode_session, load_secret, new_session
from sav_router.console.users import UsersError, UsersFile, hash_password, verify_password
from tests.conftest import REPO


def test_passwords_are_salted_slow_hashes_and_verify(tmp_path):
    a, b = hash_password("correct horse"), hash_password("correct horse")
    assert a != b and a.startswith("scrypt$32768$8$1$")  # a fresh salt each time, scrypt at N=2^15
    assert verify_password("correct horse", a) and not verify_password("wrong horse", a)
    assert not verify_password("x", "md5$whatever")


def test_the_users_file_is_private_and_refuses_bad_input(tmp_path):
    users = UsersFile(tmp_path / "console" / "users.json")
    users.add("ana", "reviewer", "long enough")
    assert stat.S_IMODE((tmp_path / "console" / "users.json").stat().st_mode) == 0o600
    assert "long enough" not in (tmp_path / "console" / "users.json").read_text()
    assert users.authenticate("ana", "long enough").role == "reviewer"
    assert users.authenticate("ana", "wrong one!") is None and users.authenticate("nobody", "long enough") is None
    for name, role, password in (("ana", "root", "long enough"), ("../x", "admin", "long enough"), ("bob", "admin", "short")):
        with pytest.raises(UsersError):
            users.add(name, role, password)


def test_sessions_are_signed_and_expire(tmp_path):
    key = load_secret(tmp_path)
    assert load_secret(tmp_path) == key and stat.S_IMODE((tmp_path / "secret.key").stat().st_mode) == 0o600
    cookie = encode_session(key, new_session("ana", "fp"))
    assert decode_session(key, cookie)["user"] == "ana"
    payload, signature = cookie.split(".")
    forged = encode_session(b"x" * 32, new_session("root", "fp"))
    assert decode_session(key, forged) is None
    assert decode_session(key, payload[:-2] + "AA." + signature) is None
    assert decode_session(key, cookie, now=time.time() + 13 * 3600) is None


def test_users_add_reads_the_password_from_stdin_and_the_console_refuses_to_start_without_users(tmp_path):
    def run(*args, stdin=""):
        return subprocess.run([sys.executable, "-m", "sav_router.cli", *args], input=stdin, capture_output=True, text=True, cwd=REPO, timeout=60)

    done = run("console", "users", "add", "ana", "--role", "admin", "--workspace", str(tmp_path / "ws"), stdin="a password\n")
    assert done.returncode == 0 and "ana (admin)" in done.stdout
    assert UsersFile(tmp_path / "ws" / "console" / "users.json").authenticate("ana", "a password").is_admin
    other = tmp_path / "elsewhere.json"
    assert run("console", "users", "add", "bob", "--role", "reviewer", "--users", str(other), stdin="b password\n").returncode == 0
    assert json.loads(other.read_text())["users"]["bob"]["role"] == "reviewer"
    (tmp_path / "empty").mkdir()
    refused = run("console", "--workspace", str(tmp_path / "empty"))
    assert refused.returncode == 2 and "console users add" in refused.stderr
    refused = run("console", "--queue", "https://sqs.eu-west-1.amazonaws.com/1/q", "--workspace", str(tmp_path / "ws"))
    assert refused.returncode == 2 and "--bucket is required" in refused.stderr


def test_charts_escape_every_label():
    svg = charts.confusion(["<b>x</b>", "y&z"], [[3, 1], [0, 2]])
    assert "<b>" not in svg and "&lt;b&gt;x&lt;/b&gt;" in svg and "y&amp;z" in svg
    assert svg.startswith("<svg") and "style=" not in svg  # presentation attributes only: CSP style-src 'self' holds


def test_over_tls_the_session_cookie_is_secure(tmp_path):
    import ssl
    import urllib.error
    import urllib.parse
    import urllib.request

    from tests.console.conftest import PASSWORDS, ConsoleServer, server_env

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    (tmp_path / "ws").mkdir()  # an empty workspace is enough to log in
    UsersFile(tmp_path / "ws" / "console" / "users.json").add("ana", "reviewer", PASSWORDS["ana"])
    server = ConsoleServer(["--workspace", str(tmp_path / "ws"), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)], env=server_env(), log_path=tmp_path / "tls.log")
    server.url = server.url.replace("http://", "https://")
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # a throwaway self-signed certificate
    real_urlopen = urllib.request.urlopen
    urllib.request.urlopen = lambda url, timeout=None: real_urlopen(url, timeout=timeout, context=context)  # the readiness probe
    try:
        server.start()
    finally:
        urllib.request.urlopen = real_urlopen
    try:
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
        page = opener.open(server.url + "/login")
        login_cookie = page.headers["set-cookie"]
        assert "Secure" in login_cookie and "HttpOnly" in login_cookie and "SameSite=strict" in login_cookie
        token = login_cookie.split("=", 1)[1].split(";", 1)[0]
        body = urllib.parse.urlencode({"login_token": token, "username": "ana", "password": PASSWORDS["ana"], "next": "/models"}).encode()
        request = urllib.request.Request(server.url + "/login", data=body, headers={"Cookie": f"sav_console_login={token}", "Content-Type": "application/x-www-form-urlencoded"})

        class Keep(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), Keep).open(request)
        cookies = caught.value.headers.get_all("set-cookie")
        session = next(c for c in cookies if c.startswith("sav_console="))
        assert caught.value.code == 303 and "Secure" in session and "HttpOnly" in session and "SameSite=strict" in session
        # AND on an empty workspace (no model, no traffic, no queue) every page still answers
        cookie = session.split(";", 1)[0]
        for path in ("/queue/escalations", "/queue/batch", "/dashboard", "/models"):
            answer = opener.open(urllib.request.Request(server.url + path, headers={"Cookie": cookie}))
            assert answer.status == 200 and "sav-router console" in answer.read().decode()
    finally:
        server.stop()


def test_live_precision_is_cumulative_by_day_with_an_exact_interval():
    from sav_router.console.dashboard import audit_over_time, escalations_over_time

    answers = [
        {"label": "refund", "model_label": "refund", "reviewed_at": "2026-11-01T10:00:00+00:00", "model_version": "v1"},
        {"label": "refund", "model_label": "delivery", "reviewed_at": "2026-11-01T11:00:00+00:00", "model_version": "v1"},
        {"label": "account", "model_label": "account", "reviewed_at": "2026-11-03T09:00:00+00:00", "model_version": "v1"},
        {"label": "account", "model_label": "account", "reviewed_at": "2026-11-03T09:00:00+00:00", "model_version": "v2"},
    ]
    points = audit_over_time(answers, version="v1")
    assert [(p["day"], p["correct"], p["audited"]) for p in points] == [("2026-11-01", 1, 2), ("2026-11-03", 2, 3)]
    assert points[-1]["low"] < 2 / 3 < points[-1]["high"]
    traffic = [{"at": f"2026-11-0{d}T10:00:00+00:00", "decision": "escalate" if i % 2 else "route", "reasons": ["low_confidence"] if i % 2 else []} for d in (1, 2, 3) for i in range(4)]
    over = escalations_over_time(traffic)
    assert over["unit"] == "day" and [b["rate"] for b in over["buckets"]] == [0.5, 0.5, 0.5] and over["reasons"] == ["low_confidence"]
