"""The worker's HTTP server (stream.runtime.metrics.serve, stream.runtime.http), on loopback: personal-data
routes off by default and behind the bearer token otherwise, probes and /metrics open, the token
never logged, the bind address honoured and logged as bound, and clients that hold connections
half-sent, flood it or hang up do not stop the probes, grow threads, or log tracebacks.

Every request loop here is bounded in count and time, and only loopback addresses are used."""
from __future__ import annotations

import http.client
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from stream.runtime import http as http_server

from stream.runtime import metrics
from stream.kafka.embedded_broker import free_port
from stream.runtime.http import App, Request, Response, Route
from tests.helpers import LOOPBACK

TOKEN = "s3cret-token-0123456789abcdef"


def answer(port: int, path: str, token: str | None = None, host: str = LOOPBACK, method: str = "GET",
           authorization: str | None = None, timeout: float = 5) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if authorization is not None:
        headers["Authorization"] = authorization
    try:
        conn.request(method, path, headers=headers)
        response = conn.getresponse()
        return response.status, response.headers, response.read()   # headers: case-insensitive
    finally:
        conn.close()


def personal(produced: list[int] | None = None, chunks: int = 3, chunk: bytes = b"row\n") -> list[Route]:
    """Stand-ins for stream.inspect.routes's routes: one answer, one stream (counting what it produced)."""
    def stream(_: Request) -> Response:
        def rows() -> Iterator[bytes]:
            for _ in range(chunks):
                if produced is not None:
                    produced.append(len(chunk))
                yield chunk
        return Response(200, rows(), "application/x-ndjson")

    return [Route("/customers/<id>", "a customer", lambda r: Response(200, json.dumps({"id": r.args[0]}).encode())),
            Route("/segments/<name>/members", "members", stream),
            Route("/definitions", "definitions", lambda _: Response(200, b"{}"))]


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "http-token"
    path.write_text(TOKEN + "\n")
    return path


PERSONAL_PATHS = ["/customers/c1", "/segments/loyal/members", "/definitions"]
OPEN_PATHS = ["/metrics", "/healthz"]


# ---- exposure -------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", PERSONAL_PATHS)
def test_personal_routes_are_off_without_a_token_file(serving, path):
    server = serving(personal())
    status, headers, body = answer(server.port, path, token=TOKEN)
    assert status == 403 and headers["Content-Type"] == "application/json"
    assert "http_token_file" in json.loads(body)["error"] and "SEGMENTS_HTTP_TOKEN_FILE" in json.loads(body)["error"]
    for open_path in OPEN_PATHS:
        assert answer(server.port, open_path)[0] == 200


@pytest.mark.parametrize("path", PERSONAL_PATHS)
def test_personal_routes_need_the_token(serving, token_file, path):
    server = serving(personal(), token_file)
    status, headers, body = answer(server.port, path)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in json.loads(body)["error"]
    for wrong in ("guess-0123456789abcdef", TOKEN[:-1], TOKEN + "x", TOKEN.upper()):
        status, headers, body = answer(server.port, path, token=wrong)
        assert status == 401 and 'error="invalid_token"' in headers["WWW-Authenticate"]
        assert wrong.encode() not in body
    assert answer(server.port, path, authorization=f"Basic {TOKEN}")[0] == 401
    assert answer(server.port, path, token=TOKEN)[0] == 200
    assert answer(server.port, path, authorization=f"bearer  {TOKEN} ")[0] == 200   # scheme is case-insensitive


def test_probes_and_metrics_stay_open_with_a_token(serving, token_file):
    health = metrics.Health()
    health.ready = True
    server = serving(personal(), token_file, health=health)
    assert answer(server.port, "/healthz")[:1] == (200,)
    assert answer(server.port, "/readyz")[0] == 200
    status, headers, body = answer(server.port, "/metrics")
    assert status == 200 and b"segments_up 1.0" in body


def test_index_lists_every_route_and_which_need_the_token(serving, token_file):
    status, _, body = answer(serving(personal(), token_file).port, "/")
    text = body.decode()
    assert status == 200
    for path in ("/metrics", "/healthz", "/readyz"):
        (line,) = [each for each in text.splitlines() if f"GET {path}:" in each]
        assert "[token]" not in line
    for path in ("/customers/<id>", "/segments/<name>/members", "/definitions"):
        (line,) = [each for each in text.splitlines() if f"GET {path}:" in each]
        assert "[token]" in line
    assert "personal-data routes: on" in text
    off = answer(serving(personal()).port, "/")[2].decode()
    assert "personal-data routes: off" in off and "http_token_file" in off


def test_unknown_paths_and_other_methods(serving, token_file):
    server = serving(personal(), token_file)
    status, _, body = answer(server.port, "/nothing")
    assert status == 404 and "GET /" in json.loads(body)["error"]
    status, headers, _ = answer(server.port, "/customers/c1", token=TOKEN, method="POST")
    assert status == 405 and headers["Allow"] == "GET"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=255), max_size=60))
def test_no_credential_but_the_token_opens_a_personal_route(credential):
    """For every credential other than the token, 401; only the token itself gives 200 (the WSGI
    app called directly, as waitress does, with header values as latin-1 text)."""
    app = App(personal(), TOKEN.encode())
    seen = []
    environ = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/definitions", "PATH_INFO": "/definitions",
               "HTTP_AUTHORIZATION": f"Bearer {credential}"}
    b"".join(app(environ, lambda status, headers: seen.append(status)))
    assert seen[0].startswith("200" if credential == TOKEN else "401")


_PATH_PARTS = st.sampled_from(["", "customers", "segments", "members", "definitions", "metrics", "healthz",
                                "readyz", "c1", "%2F", "..", ".", "x?format=csv", "%00", "?", "#", "//"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PATH_PARTS, min_size=1, max_size=5), st.booleans())
def test_without_the_token_only_the_open_routes_answer(parts, token_on):
    """Whatever the path, a request without the token gets a 200 only from /, /metrics, /healthz or
    /readyz, and never a route's personal answer."""
    path = "/" + "/".join(parts)
    # A marker no metric holds: /metrics carries the label values of whatever ran before in this
    # process (a segment named "browsing" has a "row" in it).
    app = App([*metrics._probes(metrics.Health()), *personal(chunk=b"personal-row\n")],
              TOKEN.encode() if token_on else None)
    seen = []
    environ = {"REQUEST_METHOD": "GET", "REQUEST_URI": path, "PATH_INFO": path}
    body = b"".join(app(environ, lambda status, headers: seen.append(status)))
    if seen[0].startswith("200"):
        assert path.split("?", 1)[0].split("#", 1)[0] in ("/", "/metrics", "/healthz", "/readyz"), path
    assert b"personal-row" not in body and b'"id"' not in body


# ---- the token file ---------------------------------------------------------------------------------

@pytest.mark.parametrize("content, problem", [
    ("short\n", "at least 16"),
    ("two words but long enough\n", "one line"),
    ("line-one-0123456789\nline-two-0123456789\n", "one line"),
])
def test_unusable_token_files_stop_the_start_naming_the_problem_not_the_content(tmp_path, content, problem):
    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(http_server.HttpSetupError) as info:
        metrics.serve(free_port(), metrics.Health(), personal(), LOOPBACK, path)
    assert problem in str(info.value) and str(path) in str(info.value)
    assert all(word not in str(info.value) for word in content.split())


def test_a_missing_token_file_stops_the_start(tmp_path):
    with pytest.raises(http_server.HttpSetupError, match="cannot read"):
        metrics.serve(free_port(), metrics.Health(), personal(), LOOPBACK, tmp_path / "absent")


@pytest.mark.parametrize("kind", ["endless", "fifo", "huge"])
def test_a_token_file_that_is_no_small_file_is_refused_at_once(tmp_path, kind):
    """A wrong path (/dev/zero, a named pipe, a large file) must stop the start with the reason,
    not read without end (memory) or wait for a writer forever."""
    import os
    path = tmp_path / "token"
    if kind == "endless":
        path = Path("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(b"a" * (http_server.MAX_TOKEN_FILE_BYTES + 1))
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            http_server.read_token(path)
        except BaseException as exc:          # what it raised is the result
            outcome.append(exc)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), f"read_token({path}) still reading after 5 s"
    (error,) = outcome
    assert isinstance(error, http_server.HttpSetupError) and str(path) in str(error), error


def test_the_token_is_never_logged(serving, token_file, caplog):
    caplog.set_level(logging.DEBUG)
    server = serving(personal(), token_file)
    for token in (TOKEN, "wrong-" + TOKEN, None):
        for path in PERSONAL_PATHS:
            answer(server.port, path, token=token)
    assert TOKEN not in caplog.text


# ---- the bind address -----------------------------------------------------------------------------

def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


def test_the_bind_address_is_honoured_and_logged_as_bound(serving, caplog):
    caplog.set_level(logging.INFO, logger="segments.http")
    only_two = serving(host="127.0.0.2")
    assert (only_two.host, answer(only_two.port, "/healthz", host="127.0.0.2")[0]) == ("127.0.0.2", 200)
    assert _refused("127.0.0.1", only_two.port)
    assert f"http://127.0.0.2:{only_two.port}" in caplog.text

    everywhere = serving(host="0.0.0.0")
    assert answer(everywhere.port, "/healthz", host="127.0.0.1")[0] == 200
    assert answer(everywhere.port, "/healthz", host="127.0.0.2")[0] == 200
    assert f"http://0.0.0.0:{everywhere.port}" in caplog.text


def test_an_address_that_cannot_be_bound_stops_the_start(serving):
    taken = serving()
    with pytest.raises(http_server.HttpSetupError, match=f"cannot serve HTTP on 127.0.0.1 port {taken.port}"):
        metrics.serve(taken.port, metrics.Health(), (), LOOPBACK)


# ---- clients that hold, flood or leave ------------------------------------------------------------

def _half_sent(port: int, n: int) -> list[socket.socket]:
    """n connections, each with a request line and a header but not the blank line that ends it."""
    socks = []
    for _ in range(n):
        sock = socket.create_connection((LOOPBACK, port), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        socks.append(sock)
    return socks


def test_half_sent_requests_neither_block_the_probes_nor_take_threads(serving, monkeypatch):
    monkeypatch.setattr(http_server, "CHANNEL_TIMEOUT", 2)
    server = serving()
    answer(server.port, "/healthz")            # the pool's threads are started
    threads = threading.active_count()
    socks = _half_sent(server.port, 300)
    try:
        started = time.monotonic()
        assert answer(server.port, "/healthz", timeout=5)[0] == 200
        assert time.monotonic() - started < 2.0
        assert threading.active_count() <= threads
        # Idle half-sent connections are closed by the server after CHANNEL_TIMEOUT.
        deadline = time.monotonic() + 10
        closed = 0
        for sock in socks:
            sock.settimeout(max(deadline - time.monotonic(), 0.1))
            try:
                closed += sock.recv(1) == b""
            except (ConnectionResetError, TimeoutError):
                pass
        assert closed == len(socks)
    finally:
        for sock in socks:
            sock.close()


def test_many_clients_at_once_are_all_answered_promptly_and_quietly(serving, caplog):
    server = serving()
    socks = [socket.create_connection((LOOPBACK, server.port), timeout=10) for _ in range(300)]
    try:
        started = time.monotonic()
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers = [b"".join(iter(lambda s=sock: s.recv(4096), b"")) for sock in socks]
        assert all(a.startswith(b"HTTP/1.1 200") for a in answers)
        assert time.monotonic() - started < 10
        assert not [r.getMessage() for r in caplog.records if r.name.startswith("waitress")]
    finally:
        for sock in socks:
            sock.close()


def test_a_client_that_hangs_up_mid_stream_logs_no_traceback_and_frees_its_slot(serving, token_file, caplog):
    caplog.set_level(logging.DEBUG)
    server = serving(personal(chunks=100_000, chunk=b"x" * 1000), token_file)
    for _ in range(http_server.PRIVATE_AT_ONCE + 2):
        sock = socket.create_connection((LOOPBACK, server.port), timeout=5)
        sock.sendall(f"GET /segments/s/members HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # RST, not FIN
        sock.close()
    for _ in range(20):                        # and hang-ups before the answer is written
        sock = socket.create_connection((LOOPBACK, server.port), timeout=5)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    time.sleep(0.5)
    # Each hang-up gave its slot back: a further export is not refused as busy.
    assert answer(server.port, "/customers/c1", token=TOKEN)[0] == 200
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)


def test_a_reader_that_stops_holds_a_bounded_buffer_not_the_whole_answer(serving, token_file):
    produced: list[int] = []
    server = serving(personal(produced, chunks=200_000, chunk=b"x" * 1000), token_file)   # 200 MB if drained
    sock = socket.create_connection((LOOPBACK, server.port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    try:
        sock.sendall(f"GET /segments/s/members HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        assert sock.recv(64).startswith(b"HTTP/1.1 200")
        time.sleep(1.5)
        held = sum(produced)
        assert held < 16 * 1024 * 1024, f"{held} bytes produced for a client that reads nothing"
        # It streams on when the client reads again.
        sock.settimeout(5)
        got = 0
        while got < 2 * held:
            got += len(sock.recv(1 << 16))
        assert sum(produced) > held
    finally:
        sock.close()


def test_personal_requests_cannot_take_every_thread(serving, token_file):
    server = serving(personal(chunks=200_000, chunk=b"x" * 1000), token_file)
    socks = []
    try:
        for _ in range(http_server.PRIVATE_AT_ONCE):
            sock = socket.create_connection((LOOPBACK, server.port), timeout=5)
            request = f"GET /segments/s/members HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
            sock.sendall(request.encode())
            assert sock.recv(64).startswith(b"HTTP/1.1 200")    # and then reads no more: its export waits
            socks.append(sock)
        status, headers, body = answer(server.port, "/customers/c1", token=TOKEN)
        assert status == 503 and headers["Retry-After"] == "1" and "busy" in json.loads(body)["error"]
        started = time.monotonic()
        assert answer(server.port, "/healthz")[0] == 200 and answer(server.port, "/metrics")[0] == 200
        assert time.monotonic() - started < 2.0
    finally:
        for sock in socks:
            sock.close()


def test_stop_is_prompt_with_connections_open_and_an_export_waiting(token_file):
    port = free_port()
    server = metrics.serve(port, metrics.Health(), personal(chunks=200_000, chunk=b"x" * 1000), LOOPBACK, token_file)
    socks = _half_sent(port, 50)
    export = socket.create_connection((LOOPBACK, port), timeout=5)
    export.sendall(f"GET /segments/s/members HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
    assert export.recv(64).startswith(b"HTTP/1.1 200")
    threads = threading.active_count()
    try:
        started = time.monotonic()
        metrics.stop(server)
        assert time.monotonic() - started < 2.0
        assert _refused(LOOPBACK, port)
        deadline = time.monotonic() + 5
        while threading.active_count() > threads - http_server.THREADS - 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert threading.active_count() <= threads - http_server.THREADS - 1, "the server's threads outlived stop()"
    finally:
        for sock in [*socks, export]:
            sock.close()
