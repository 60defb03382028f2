"""The web console of a real worker over plain HTTP (no browser): login and sessions, CSRF and
same-origin checks, the security headers, escaping of attacker-controlled text, and the bounds."""
from __future__ import annotations

import html
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from stream.cli.define import read_definition
from stream.kafka.definitions_feed import publish
from stream.kafka.embedded_broker import free_port
from stream.runtime.http import MAX_BODY_BYTES
from stream.rules.bounded_yaml import DEFINITION

from .console_worker import HOSTILE_ID, TOKEN, Client, ConsoleWorker, start_console_worker
from .workers import child_env

PAGES = ("/console/segments", "/console/segments/loyal", "/console/segments/loyal?sort=paid_total&order=desc",
         "/console/customers", "/console/customers/c2", "/console/editor", "/console/editor?name=loyal")


@pytest.fixture(scope="module")
def console(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleWorker]:
    started, running = start_console_worker(kafka_bootstrap, tmp_path_factory.mktemp("console"))
    yield started
    running.__exit__(None, None, None)


def logged_in(console: ConsoleWorker) -> Client:
    client = Client(console.base)
    assert client.login().status == 303
    return client


def test_without_a_session_pages_go_to_login_and_actions_are_refused(console):
    client = Client(console.base)
    for path in PAGES:
        answer = client.get(path)
        assert (answer.status, answer.headers["Location"]) == (303, "/console/login"), path
        assert b"customer_id" not in answer.body
    assert client.post("/console/editor/check?name=x", b"when: {paid_orders: {gte: 1}}", None).status == 403
    # the bearer header opens the JSON routes, not the console: a browser session is needed
    assert client.get("/console/segments", Authorization=f"Bearer {TOKEN}").status == 303
    login = client.get("/console/login")
    assert login.status == 200 and 'type="password"' in login.text


def test_login_sets_a_strict_session_cookie_and_a_wrong_token_none(console):
    client = Client(console.base)
    wrong = client.login("wrong-token-0123456789abcdef")
    assert wrong.status == 401 and wrong.headers.get("Set-Cookie") is None and client.cookie is None
    answer = client.login()
    assert answer.status == 303 and answer.headers["Location"] == "/console/segments"
    cookie = answer.headers["Set-Cookie"]
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/console"):
        assert flag in cookie
    assert "Secure" not in cookie            # served over plain HTTP here
    assert TOKEN not in cookie
    assert "segments_console=" in cookie and len(client.cookie) > 40
    # a login from another site's page is refused before the token is even looked at
    forged = Client(console.base, extra={"Origin": "http://evil.example"})
    assert forged.login().status == 403 and forged.cookie is None


def test_every_page_answers_with_the_security_headers(console):
    client = logged_in(console)
    for path in PAGES:
        answer = client.get(path)
        assert answer.status == 200, (path, answer.text[:300])
        assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
        policy = answer.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Cache-Control"] == "no-store"
        assert "<script>" not in answer.text and " style=" not in answer.text and " onclick" not in answer.text
        assert TOKEN not in answer.text
    csv = client.get("/console/segments/loyal/members.csv")
    assert csv.status == 200 and csv.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert csv.text.startswith("customer_id,member_since,paid_orders") and csv.headers["Cache-Control"] == "no-store"
    assert "attachment" in csv.headers["Content-Disposition"]
    # the export of the JSON route (and so of `segments members`), byte for byte
    exported = Client(console.base).get("/segments/loyal/members?format=csv", Authorization=f"Bearer {TOKEN}")
    assert exported.status == 200 and csv.body == exported.body and csv.text.count("\n") > 1
    # refusals of console routes carry the headers too
    refused = Client(console.base).get("/console/segments")
    assert refused.status == 303 and refused.headers["X-Frame-Options"] == "DENY"


def test_a_hostile_customer_id_is_shown_as_text(console):
    client = logged_in(console)
    escaped = html.escape(HOSTILE_ID, quote=True)
    page = client.get("/console/customers/" + quote(HOSTILE_ID, safe=""))
    assert page.status == 200, page.text[:300]
    assert HOSTILE_ID not in page.text and "<img" not in page.text
    assert escaped in page.text
    found = client.get("/console/customers?id=" + quote(HOSTILE_ID, safe=""))
    assert found.status == 303 and found.headers["Location"] == "/console/customers/" + quote(HOSTILE_ID, safe="")
    members = client.get("/console/segments/" + _segment_of_hostile(client) + "?q=" + quote("<img", safe=""))
    assert members.status == 200 and escaped in members.text and "<img" not in members.text
    missing = client.get("/console/customers/" + quote("<script>x</script>", safe=""))
    assert missing.status == 404 and "<script>x" not in missing.text and "&lt;script&gt;x" in missing.text


def _segment_of_hostile(client: Client) -> str:
    """A segment the hostile customer is in (from its page)."""
    page = client.get("/console/customers/" + quote(HOSTILE_ID, safe="")).text
    current = page[page.index("Current segments"):page.index("Next time-driven move")]
    start = current.index('href="/console/segments/') + len('href="/console/segments/')
    return current[start:current.index('"', start)]


def test_posts_need_the_csrf_token_and_this_origin(console):
    client = logged_in(console)
    csrf = client.csrf()
    valid = b"when: {paid_orders: {gte: 1}}"
    assert client.post("/console/editor/check?name=one-order", valid, csrf).json()["problems"] == []
    assert client.post("/console/editor/check?name=one-order", valid, None).status == 403
    assert client.post("/console/editor/check?name=one-order", valid, csrf[:-1] + "x").status == 403
    other = Client(console.base, client.cookie, {"Origin": "http://evil.example"})
    assert other.post("/console/editor/check?name=one-order", valid, csrf).status == 403
    neither = client.request("POST", "/console/editor/check?name=one-order", valid,
                             {"X-CSRF-Token": csrf, "Origin": ""})
    assert neither.status == 403
    cross = client.post("/console/editor/check?name=one-order", valid, csrf, **{"Sec-Fetch-Site": "cross-site"})
    assert cross.status == 403
    # GET routes take no POST, and POST routes no GET
    assert client.post("/console/segments", b"", csrf).status == 405
    assert client.get("/console/editor/check").status == 405


def test_the_editor_says_what_segments_define_says(console, tmp_path):
    client = logged_in(console)
    csrf = client.csrf()
    for text in ("when: {paid_orders: {gte: two}}", "when: [", "- a list", "when: {no_such_field: {eq: 1}}",
                 "description: x"):
        path = tmp_path / "definition.yaml"
        path.write_text(text)
        _, expected = read_definition("new-one", path)
        answer = client.post("/console/editor/check?name=new-one", text.encode(), csrf).json()
        assert expected and answer["problems"] == [p.replace(str(path), "definition") for p in expected], text
        assert answer["preview"] is None
    answer = client.post("/console/editor/check?name=Bad_Name", b"when: {paid_orders: {gte: 1}}", csrf).json()
    assert answer["problems"] and "lower-case" in answer["problems"][0]
    preview = client.post("/console/editor/check?name=one-order", b"when: {paid_orders: {gte: 1}}", csrf).json()
    assert preview["problems"] == [] and preview["preview"]["read"] > 0 and not preview["preview"]["cut_short"]
    assert 0 < preview["preview"]["holding"] <= preview["preview"]["read"]


def test_bounds_of_bodies_pages_and_definitions(console):
    client = logged_in(console)
    csrf = client.csrf()
    huge = b"x" * (MAX_BODY_BYTES + 1)
    assert client.post("/console/editor/check?name=big", huge, csrf).status == 413
    over = b"# " + b"x" * DEFINITION.bytes
    assert len(over) <= MAX_BODY_BYTES
    problems = client.post("/console/editor/check?name=big", over, csrf).json()["problems"]
    assert problems == [f"definition: over the limits of a segment definition: larger than {DEFINITION.bytes:,} bytes"]
    assert client.get("/console/segments/loyal?page=200").status == 400
    assert client.get("/console/segments/loyal?page=" + "9" * 5000).status == 400
    assert client.get("/console/segments/loyal?page=" + quote("²")).status == 400
    assert client.get("/console/segments/loyal?q=" + "c" * 5000).status == 200       # searched by its first 200
    assert client.get("/console/segments/loyal?sort=city").status == 400
    assert client.get("/console/segments/no-such-segment").status == 404


def test_logout_ends_the_session(console):
    client = logged_in(console)
    csrf = client.csrf()
    answer = client.request("POST", "/console/logout", f"csrf={csrf}".encode(),
                            {"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status == 303 and "Max-Age=0" in answer.headers["Set-Cookie"]
    assert client.get("/console/segments").status == 303


def test_the_console_command_serves_the_same_console_over_the_stores(console, tmp_path):
    """`segments console` beside the running worker: the same pages read-only over its stores, and
    the editor publishing through the definitions topic."""
    port = free_port()
    log = tmp_path / "console.stderr"
    with open(log, "wb") as err:
        command = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "console", "--state-dir", str(console.state_dir),
             "--group-id", console.group_id, "--http-token-file", str(console.token_file),
             "--http-host", "127.0.0.1", "--port", str(port), "--bootstrap-servers", console.bootstrap,
             "--definitions-topic", console.definitions_topic],
            stdout=subprocess.DEVNULL, stderr=err, env={**child_env(), "PYTHONPATH": str(Path.cwd())})
    try:
        deadline = time.monotonic() + 60
        while b"/console/" not in log.read_bytes():
            assert command.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        client = Client(f"http://127.0.0.1:{port}")
        assert client.get("/console/segments").status == 303
        assert client.login().status == 303
        segments = client.get("/console/segments")
        assert segments.status == 200 and "counted over the stores" in segments.text and "loyal" in segments.text
        assert client.get("/console/customers/c2").status == 200
        escaped = client.get("/console/customers/" + quote(HOSTILE_ID, safe=""))
        assert escaped.status == 200 and "<img" not in escaped.text
        csrf = client.csrf()
        published = client.post("/console/editor/publish?name=from-the-command",
                                b"when: {paid_orders: {gte: 3}}", csrf).json()
        assert published["ok"] and published["version"] == 1, published
        again = client.post("/console/editor/publish?name=from-the-command", b"when: {paid_orders: {gte: 3}}",
                            csrf).json()
        assert again["ok"] and "unchanged" in again["message"]
        removed = client.post("/console/editor/remove?name=from-the-command", b"", csrf).json()
        assert removed["ok"] and "removed" in removed["message"]
        assert TOKEN not in log.read_text()
    finally:
        command.terminate()
        command.wait(30)


def test_a_rejected_definition_is_listed_with_its_problems(console):
    """A record written to the topic by hand that does not compile: the workers keep running without
    it, and the segments page lists it with the reason, escaped."""
    publish(console.bootstrap, {}, console.definitions_topic, "hand-written",
            b"version: 1\nwhen: {'<b>bold</b>': {eq: 1}}\n")
    client = logged_in(console)
    deadline = time.monotonic() + 60
    while "Rejected definitions" not in (page := client.get("/console/segments").text):
        assert time.monotonic() < deadline, "the rejection was not shown within 60 s"
        time.sleep(0.5)
    rejected = page[page.index("Rejected definitions"):]
    assert "hand-written" in rejected and "topic offset" in rejected
    assert "<b>bold" not in page and "&lt;b&gt;bold" in rejected
