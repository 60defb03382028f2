"""The console's pieces without a worker: sessions (expiry, the bounded table, the failed-login
bound), the refusal without a token, the bounded history, and member pages sorted by a figure."""
from __future__ import annotations

import io

import msgspec
import pytest

from stream.console import history as history_module
from stream.console.backend import Backend
from stream.console.history import History
from stream.console.passes import PAGE_ROWS, member_page
from stream.console.routes import console_routes
from stream.model.changes import make_change
from stream.runtime import sessions as sessions_module
from stream.runtime.http import App
from stream.runtime.sessions import COOKIE, FAILED_LOGINS_PER_MINUTE, IDLE_SECONDS, MAX_SESSIONS, Sessions

TOKEN = b"unit-test-token-0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cookie_of(session_id: str) -> dict[str, str]:
    return {"HTTP_COOKIE": f"other=1; {COOKIE}={session_id}"}


def test_a_session_expires_when_idle_and_at_its_lifetime():
    clock = Clock()
    table = Sessions(TOKEN, clock)
    opened = table.login(TOKEN.decode())
    assert opened is not None
    session_id, session = opened
    assert table.find(cookie_of(session_id)) is session
    clock.now += IDLE_SECONDS - 1
    assert table.find(cookie_of(session_id)) is session           # used: idle time starts again
    clock.now += IDLE_SECONDS + 1
    assert table.find(cookie_of(session_id)) is None and len(table) == 0
    session_id, _ = table.login(TOKEN.decode()) or ("", None)
    for _ in range(int(sessions_module.LIFETIME_SECONDS // (IDLE_SECONDS / 2)) + 1):
        clock.now += IDLE_SECONDS / 2
        table.find(cookie_of(session_id))
    assert table.find(cookie_of(session_id)) is None               # however busy, it ends


def test_the_session_table_is_bounded_and_forgets_the_oldest():
    table = Sessions(TOKEN, Clock())
    ids = [table.login(TOKEN.decode())[0] for _ in range(MAX_SESSIONS + 5)]      # type: ignore[index]
    assert len(table) == MAX_SESSIONS
    assert all(table.find(cookie_of(i)) is None for i in ids[:5])
    assert all(table.find(cookie_of(i)) is not None for i in ids[5:])
    assert table.find({"HTTP_COOKIE": f"{COOKIE}=made-up"}) is None and table.find({}) is None
    assert table.find({"HTTP_COOKIE": 'bad"cookie;;='}) is None


def test_wrong_tokens_lock_logins_for_a_minute():
    clock = Clock()
    table = Sessions(TOKEN, clock)
    for _ in range(FAILED_LOGINS_PER_MINUTE):
        assert table.login("guess-0123456789abcdef") is None
    assert table.locked() and table.login(TOKEN.decode()) is None      # even the right one waits
    clock.now += 61
    assert not table.locked() and table.login(TOKEN.decode()) is not None


def _call(app: App, method: str, path: str) -> tuple[str, bytes]:
    seen: list[str] = []
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO(b""), "HTTP_HOST": "h",
               "HTTP_ORIGIN": "http://h", "CONTENT_LENGTH": "0"}
    body = b"".join(app(environ, lambda status, headers: seen.append(status)))
    return seen[0], body


def _unused_backend() -> Backend:
    def never(*_: object) -> object:
        raise AssertionError("a refused request read something")

    return Backend("test", never, never, never, never, History(), False, None)    # type: ignore[arg-type]


def test_without_a_token_the_console_is_refused_as_the_personal_data_routes_are():
    app = App(console_routes(_unused_backend()), None)
    for method, path in (("GET", "/console/login"), ("POST", "/console/login"), ("GET", "/console/segments"),
                         ("GET", "/console/customers/c1"), ("POST", "/console/editor/publish")):
        status, body = _call(app, method, path)
        assert status.startswith("403"), (method, path)
        assert "http_token_file" in msgspec.json.decode(body)["error"]


def test_every_answer_carries_the_security_headers_refusals_and_redirects_too():
    """A console page's refusals (wrong method, another site's POST, no session, an unknown path
    under /console) and its redirects are never framed, sniffed or cached, as its pages are."""
    app = App(console_routes(_unused_backend()), TOKEN)
    seen: list[tuple[str, list[tuple[str, str]]]] = []
    for method, path, origin, expected in (
            ("GET", "/console/editor/check", "http://h", "405"), ("PUT", "/console/login", "http://h", "405"),
            ("POST", "/console/editor/publish", "http://evil", "403"),
            ("POST", "/console/login", "http://evil", "403"),
            ("POST", "/console/editor/publish", "http://h", "403"),       # no session
            ("GET", "/console/segments", "http://h", "303"), ("GET", "/console/nothing", "http://h", "404"),
            ("GET", "/console/static/none.js", "http://h", "404")):
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO(b""), "HTTP_HOST": "h",
                   "HTTP_ORIGIN": origin, "CONTENT_LENGTH": "0"}
        b"".join(app(environ, lambda status, headers: seen.append((status, headers))))
        status, headers = seen[-1]
        names = [name for name, _ in headers]
        assert status.startswith(expected), (method, path, status)
        assert {"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Cache-Control"} <= set(names)
        assert len(names) == len(set(names)), (method, path, "a header twice")
    static = []
    b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/console/static/console.js", "HTTP_HOST": "h"},
                 lambda status, headers: static.append(dict(headers))))
    assert static[0]["Cache-Control"] == "max-age=300" and static[0]["X-Content-Type-Options"] == "nosniff"


def test_the_history_stays_within_its_bounds(monkeypatch):
    recent = History(sample_seconds=1, samples=3, hours=2, customers=2, per_customer=2)
    for t in range(10):
        recent.sample({"a": t, "b": 2 * t}, float(t))
    assert recent.sizes("a") == [(7.0, 7), (8.0, 8), (9.0, 9)]
    recent.sample({"a": 1}, 20.0)
    assert recent.sizes("b") == []                                  # a removed segment's history goes
    changes = [make_change(f"c{i % 3}", "a", i % 2 == 0, 1_000_000 * i, f"e{i}", 1) for i in range(9)]
    recent.record(changes[:6], 3600.0 * 5)
    recent.record(changes[6:], 3600.0 * 7)
    assert [(m.hour, m.entered, m.exited) for m in recent.moves("a", 3600.0 * 7)] == [(6, 0, 0), (7, 2, 1)]
    assert recent.changes("c0") == [] or len(recent.changes("c0")) <= 2
    kept = [c for c in ("c0", "c1", "c2") if recent.changes(c)]
    assert len(kept) == 2 and all(len(recent.changes(c)) <= 2 for c in kept)
    assert recent.changes("c2")[0].at == changes[8].at            # newest first
    assert history_module.SAMPLES * history_module.SAMPLE_SECONDS == 24 * 3600


class FakeStores:
    """member_page reads items() only: (key, stored state) in key order."""

    def __init__(self, rows: list[tuple[str, int, int]]):
        from stream.model.state import CustomerState, dump_state
        self._items = []
        for cid, orders, total in sorted(rows, key=lambda r: r[0].encode()):
            state = CustomerState(first_seen=0, last_seen=0, paid_count=orders, paid_total=total,
                                  member={"s": 1_000_000})
            self._items.append((cid.encode(), dump_state(state)))

    def items(self):
        return iter(self._items)


def test_a_page_sorted_by_a_figure_is_the_slice_of_the_full_order():
    rows = [(f"c{i:03d}", i % 7, (i * 37) % 101) for i in range(170)]
    stores = FakeStores(rows)
    expected = sorted(rows, key=lambda r: (-r[2], r[0]))
    for page in range(4):
        found = member_page(stores, "s", "", "paid_total", True, page)       # type: ignore[arg-type]
        assert [r[0] for r in found.rows] == [r[0] for r in expected[page * PAGE_ROWS:(page + 1) * PAGE_ROWS]]
        assert found.matched == 170 and found.more == ((page + 1) * PAGE_ROWS < 170)
    by_id = member_page(stores, "s", "c1", "customer_id", False, 1)          # type: ignore[arg-type]
    ids = [r[0] for r in rows if "c1" in r[0]]
    assert [r[0] for r in by_id.rows] == ids[PAGE_ROWS:2 * PAGE_ROWS] and by_id.more == (len(ids) > 2 * PAGE_ROWS)


@pytest.mark.parametrize("descending", [False, True])
def test_missing_figures_sort_last_either_way(descending):
    from stream.model.state import CustomerState, dump_state
    items = []
    for cid, orders in (("a", 2), ("b", 0), ("c", 5)):
        state = CustomerState(first_seen=0, last_seen=0, paid_count=orders, paid_total=10 * orders,
                              member={"s": 1})
        items.append((cid.encode(), dump_state(state)))

    class Stores:
        def items(self):
            return iter(items)

    order = [r[0] for r in member_page(Stores(), "s", "", "average_order_value", descending, 0).rows]  # type: ignore[arg-type]
    assert order[-1] == "b" and set(order) == {"a", "b", "c"}


def test_a_form_of_too_many_fields_reads_as_empty():
    from stream.runtime.http import Request
    assert Request((), {}, "POST", b"&".join(b"f%d=x" % i for i in range(21))).form() == {}
    assert Request((), {}, "POST", b"token=a%2Bb&csrf=c").form() == {"token": "a+b", "csrf": "c"}


@pytest.mark.parametrize(("headers", "same"), [
    ({"HTTP_ORIGIN": "http://h:9308"}, True),
    ({"HTTP_ORIGIN": "https://h:9308"}, True),                    # a TLS proxy in front
    ({"HTTP_ORIGIN": "http://evil:9308"}, False),
    ({"HTTP_ORIGIN": "http://h:9309"}, False),
    ({"HTTP_ORIGIN": "null"}, False),
    ({"HTTP_REFERER": "http://h:9308/console/editor"}, True),
    ({"HTTP_REFERER": "http://h:9308.evil/console"}, False),
    ({}, False),
    ({"HTTP_ORIGIN": "http://h:9308", "HTTP_SEC_FETCH_SITE": "same-site"}, False),
    ({"HTTP_ORIGIN": "http://[h:9308"}, False),                   # unparsable: refused, not a 500
    ({"HTTP_REFERER": "http://[::1/console"}, False),
])
def test_same_origin(headers, same):
    assert sessions_module.same_origin({"HTTP_HOST": "h:9308", **headers}) is same


def test_the_cookie_is_secure_when_the_browser_came_over_tls():
    assert "Secure" in sessions_module.set_cookie("x", {"HTTP_ORIGIN": "https://h"})[1]
    assert "Secure" in sessions_module.set_cookie("x", {"wsgi.url_scheme": "https"})[1]
    assert "Secure" not in sessions_module.set_cookie("x", {"HTTP_ORIGIN": "http://h"})[1]
