"""The worker's HTTP server (both runtimes): a route table behind waitress, with a bearer token
for every route that is not a probe or /metrics.

Why waitress (a pure-Python WSGI server of the Pylons project) and not the standard library's
ThreadingHTTPServer: waitress reads requests in one event loop and hands only *complete* requests
to a fixed pool of threads, so a client that connects and sends half a request, or nothing, costs a
socket until it has been idle for CHANNEL_TIMEOUT, never a thread. The listen backlog, the open
connections and the request sizes are bounded, and a client that hangs up is not an error. A
hardened http.server would need that event loop written here; a thread pool alone would let a few
hundred half-sent requests hold every thread and starve the probes.

Routes are private unless they say otherwise: a route added later is behind the token without
anyone remembering to put it there. A private route is reached with the bearer token in the
Authorization header, or, for the web console's routes (`session=True`), with a browser session
opened by pasting that token into the console's login page (stream.runtime.sessions). Every
request that is not a GET must come from this server's own pages (Origin, else Referer), and one
to a session route must also carry the session's CSRF token.
"""
from __future__ import annotations

import hmac
import logging
import os
import re
import socket
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import msgspec
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import create_server

from stream.errors import SegmentsError
from stream.rules.bounded_yaml import DEFINITION
from stream.runtime.sessions import (CSRF_HEADER, LOGIN_PATH, SECURITY_HEADERS, Session, Sessions, csrf_ok,
                                     same_origin)


# Bounds of the server (README, "HTTP: what is served, and to whom").
THREADS = 6                  # requests answered at once
PRIVATE_AT_ONCE = 4          # of which personal-data ones: probes and /metrics always find a thread
CONNECTION_LIMIT = 1000      # open connections; beyond it new ones wait in the listen backlog
BACKLOG = 1024               # connections the kernel queues before the server accepts them
CHANNEL_TIMEOUT = 15         # seconds a connection may stay idle or half-sent before it is closed
CLEANUP_INTERVAL = 2         # seconds between checks of that
MAX_HEADER_BYTES = 16384     # request line and headers
# A body is read only for a route that takes POST: the console's editor posts one definition as it.
MAX_BODY_BYTES = DEFINITION.bytes + 1024
OUTBUF_BYTES = 256 * 1024    # a streamed answer waits for a slow reader beyond this much unsent
STOP_SECONDS = 5.0           # stop() waits at most this long for answers in progress

# RFC 6750's b64token: what may follow "Bearer " in an Authorization header.
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
MIN_TOKEN_CHARS = 16
MAX_TOKEN_FILE_BYTES = 4096  # a token is one short line; more is the wrong file
REALM = 'Bearer realm="segments"'


class HttpSetupError(SegmentsError):
    """The server cannot start as configured (unreadable token file, address not bindable)."""


def read_token(path: Path) -> bytes:
    """The bearer token in `path` (one line; surrounding whitespace dropped). Errors never quote
    the file's content: it is a secret, and errors are logged."""
    try:
        # A regular file only, and read boundedly: a wrong path (/dev/zero, a named pipe) would
        # otherwise be read without end or wait for a writer for ever.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise HttpSetupError(f"http_token_file {path}: not a regular file")
        with open(path, "rb") as file:
            data = file.read(MAX_TOKEN_FILE_BYTES + 1)
    except OSError as exc:
        raise HttpSetupError(f"http_token_file {path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise HttpSetupError(f"http_token_file {path}: over {MAX_TOKEN_FILE_BYTES} bytes, not a token file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpSetupError(f"http_token_file {path}: not UTF-8 text") from None
    token = text.strip()
    if len(token) < MIN_TOKEN_CHARS:
        raise HttpSetupError(f"http_token_file {path}: holds {len(token)} characters; a token needs at least "
                             f"{MIN_TOKEN_CHARS} (e.g. `openssl rand -hex 32 > {path}`)")
    if not _TOKEN_CHARS.fullmatch(token):
        raise HttpSetupError(f"http_token_file {path}: a token is one line of the characters A-Z a-z 0-9 "
                             f"- . _ ~ + / (then = padding), as a bearer token must be")
    return token.encode("ascii")


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes | Iterable[bytes]          # an iterable is streamed; its close() is called when done
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Request:
    args: tuple[str, ...]                  # the <...> parts of the route's path, percent-decoded
    query: dict[str, list[str]]
    method: str = "GET"
    body: bytes = b""                      # read for POST routes only, at most MAX_BODY_BYTES
    environ: Mapping[str, Any] = field(default_factory=dict)
    sessions: Sessions | None = None       # the server's session table: None when no token is configured
    session: Session | None = None         # a session route's session, checked

    def form(self) -> dict[str, str]:
        """An application/x-www-form-urlencoded body, the last value of each field; empty when it
        is not one (the console's forms have a field or two: more than 20 is not one of them)."""
        try:
            fields = parse_qs(self.body.decode("utf-8", "replace"), max_num_fields=20)
        except ValueError:
            return {}
        return {k: v[-1] for k, v in fields.items()}


@dataclass(frozen=True)
class Route:
    path: str                              # e.g. "/customers/<id>"; each <name> matches one path segment
    summary: str
    handler: Callable[[Request], Response]
    public: bool = False                   # False: personal data, behind the bearer token
    methods: tuple[str, ...] = ("GET",)
    session: bool = False                  # private, reached with a console session instead of the header
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = "".join("([^/]+)" if part.startswith("<") else re.escape(part)
                        for part in re.split(r"(<\w+>)", self.path))
        object.__setattr__(self, "pattern", re.compile(regex))


def json_error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, msgspec.json.encode({"error": message}), headers=headers)


_REASONS = {200: "OK", 303: "See Other", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed", 429: "Too Many Requests", 503: "Service Unavailable"}
_OFF = ("personal-data routes are off on this worker: start it with http_token_file (--http-token-file, "
        "SEGMENTS_HTTP_TOKEN_FILE) naming a file that holds a bearer token, then send "
        "'Authorization: Bearer <token>'")


def personal_data_off() -> Response:
    """The answer of every private route, and of the console's login, on a server without a token."""
    return json_error(403, _OFF)


class App:
    """The WSGI application: routes, the token check, and GET / listing every route."""

    def __init__(self, routes: Iterable[Route], token: bytes | None):
        self.routes = list(routes)
        self.token = token
        self.sessions = Sessions(token) if token is not None else None
        self._private = threading.BoundedSemaphore(PRIVATE_AT_ONCE)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        response = self._answer(environ)
        # Every answer, a refusal or an error too, is never framed, sniffed or cached (what an answer
        # sets itself stands: the console's static files are cached a while).
        own = {name.lower() for name, _ in response.headers}
        headers = [("Content-Type", response.content_type), *response.headers,
                   *(h for h in SECURITY_HEADERS if h[0].lower() not in own)]
        if isinstance(response.body, bytes):
            headers.append(("Content-Length", str(len(response.body))))
        start_response(f"{response.status} {_REASONS.get(response.status, '')}".rstrip(), headers)
        return [response.body] if isinstance(response.body, bytes) else response.body

    def _answer(self, environ: dict[str, Any]) -> Response:
        path, query = _split(environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/"))
        method = environ["REQUEST_METHOD"]
        if path == "/" and method == "GET":
            return Response(200, self.index().encode(), "text/plain; charset=utf-8")
        for route in self.routes:
            match = route.pattern.fullmatch(path)
            if match:
                if method not in route.methods:
                    return json_error(405, f"{path} answers {', '.join(route.methods)} only",
                                      (("Allow", ", ".join(route.methods)),))
                if method != "GET" and not same_origin(environ):
                    return json_error(403, f"a {method} must come from this server's own pages "
                                           "(its Origin or Referer header did not say so)")
                request = Request(tuple(unquote(arg) for arg in match.groups()), parse_qs(query), method,
                                  _body(environ) if method != "GET" else b"", environ, self.sessions)
                return route.handler(request) if route.public else self._private_answer(route, request, environ)
        return json_error(404, f"no route {path!r}: GET / lists them")

    def _private_answer(self, route: Route, request: Request, environ: dict[str, Any]) -> Response:
        if route.session:
            refused, request = self._session_refusal(request)
        else:
            refused = self._refusal(environ.get("HTTP_AUTHORIZATION"))
        if refused is not None:
            return refused
        if not self._private.acquire(blocking=False):
            return json_error(503, f"busy: {PRIVATE_AT_ONCE} personal-data requests are being answered; retry",
                              (("Retry-After", "1"),))
        try:
            response = route.handler(request)
        except BaseException:
            self._private.release()
            raise
        if isinstance(response.body, bytes):
            self._private.release()
            return response
        return Response(response.status, _Closing(response.body, self._private.release), response.content_type,
                        response.headers)

    def _refusal(self, authorization: str | None) -> Response | None:
        """None when the request carries this worker's token, else the answer that says why not."""
        if self.token is None:
            return personal_data_off()
        scheme, _, credentials = (authorization or "").partition(" ")
        credentials = credentials.strip(" \t")          # HTTP's optional white space, nothing else
        if scheme.lower() != "bearer" or not credentials:
            return json_error(401, "this route needs 'Authorization: Bearer <token>' (the token in the "
                                   "worker's http_token_file)", (("WWW-Authenticate", REALM),))
        # WSGI gives header values as latin-1 text: back to the bytes the client sent. Constant time:
        # how long the comparison takes says nothing about how much of a guess was right.
        if not hmac.compare_digest(credentials.encode("latin-1"), self.token):
            return json_error(401, "wrong bearer token",
                              (("WWW-Authenticate", REALM + ', error="invalid_token"'),))
        return None

    def _session_refusal(self, request: Request) -> tuple[Response | None, Request]:
        """(None, the request with its session) when it carries a live console session (and, unless
        a GET, that session's CSRF token), else the answer that says why not: with no token
        configured, the refusal of every personal-data route."""
        if self.sessions is None:
            return personal_data_off(), request
        session = self.sessions.find(request.environ)
        if session is None:
            if request.method == "GET":     # a page: off to the login page (which leads to the segments)
                return Response(303, b"", "text/plain; charset=utf-8", (("Location", LOGIN_PATH),)), request
            return json_error(403, "no console session (logged out, or expired): log in again"), request
        if request.method != "GET":
            offered = request.environ.get(CSRF_HEADER)
            if offered is None and request.environ.get("CONTENT_TYPE", "").startswith(
                    "application/x-www-form-urlencoded"):
                offered = request.form().get("csrf")
            if not csrf_ok(session, offered):
                return json_error(403, "missing or wrong CSRF token: reload the page"), request
        return None, Request(request.args, request.query, request.method, request.body, request.environ,
                             request.sessions, session)

    def index(self) -> str:
        if all(r.public for r in self.routes):
            state = "none on this runtime"
        else:
            state = "on: send 'Authorization: Bearer <token>'" if self.token else "off. " + _OFF
        lines = ["GET /: this list"] + [f"{' '.join(r.methods)} {r.path}: {r.summary}"
                                        + ("" if r.public else "  [session]" if r.session else "  [token]")
                                        for r in self.routes]
        return ("segments worker HTTP routes ([token]: personal data, behind the bearer token; [session]: the "
                "web console, behind a session opened with that token at /console/login)\n"
                + "".join(f"  {line}\n" for line in lines) + f"personal-data routes: {state}\n")


def _body(environ: dict[str, Any]) -> bytes:
    """The request's body: waitress refuses one over MAX_BODY_BYTES before the application runs."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return b""
    return environ["wsgi.input"].read(min(length, MAX_BODY_BYTES)) if length > 0 else b""


def _split(uri: str) -> tuple[str, str]:
    """The raw (still percent-encoded) path and query of a request line's target: each <arg> is
    decoded only after matching, so an encoded / stays inside its segment."""
    if not uri.startswith("/"):                  # absolute form, http://host/path?query
        url = urlsplit(uri)
        return url.path or "/", url.query
    path, _, query = uri.partition("?")          # not urlsplit: it would take //x as a host name
    return path, query.partition("#")[0]


class _Closing:
    """A streamed body that calls `done` once when the server closes it (finished, or the client left)."""

    def __init__(self, body: Iterable[bytes], done: Callable[[], None]):
        self._body, self._done = body, done
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._done()


class Server:
    """waitress on one listening socket, run by a daemon thread; stop() is prompt."""

    def __init__(self, app: App, host: str, port: int):
        self.app = app
        sock = _listen(host, port)
        self.host, self.port = sock.getsockname()[:2]
        # waitress says "Client disconnected" (INFO) for every hang-up, and "Task queue depth is N"
        # (WARNING) for every request that waits for a thread: under a flood, a line per request.
        for name, level in (("waitress", logging.WARNING), ("waitress.queue", logging.ERROR)):
            if logging.getLogger(name).level == logging.NOTSET:
                logging.getLogger(name).setLevel(level)
        self._server = create_server(
            app, sockets=[sock], threads=THREADS, backlog=BACKLOG, connection_limit=CONNECTION_LIMIT,
            channel_timeout=CHANNEL_TIMEOUT, cleanup_interval=CLEANUP_INTERVAL,
            max_request_header_size=MAX_HEADER_BYTES, max_request_body_size=MAX_BODY_BYTES,
            outbuf_high_watermark=OUTBUF_BYTES, asyncore_use_poll=True,   # select() stops at 1024 sockets
            log_socket_errors=False,     # a reset connection is the client's business, not a traceback
            ident="segments", clear_untrusted_proxy_headers=True)
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        server = self._server
        # The event loop is not thread-safe: its own thread closes every connection (which wakes
        # answers waiting for a slow reader) and the listening socket; the loop then ends.
        try:
            server.trigger.pull_trigger(lambda: _close_all(server._map))
        except OSError:
            # The trigger is gone already (seen once on a loaded machine: EBADF), so the loop can
            # no longer be woken: close what is left from here, so that stop() still stops.
            _close_all(server._map)
        self._thread.join(STOP_SECONDS)
        server.task_dispatcher.shutdown(timeout=STOP_SECONDS)


def _close_all(channels: dict[int, Any]) -> None:
    for channel in list(channels.values()):
        channel.handle_close() if isinstance(channel, HTTPChannel) else channel.close()
    wasyncore.close_all(channels, ignore_all=True)


def _listen(host: str, port: int) -> socket.socket:
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE)[0]
        return socket.create_server(address[:2], family=family, backlog=BACKLOG)
    except OSError as exc:
        raise HttpSetupError(f"cannot serve HTTP on {host} port {port}: {exc.strerror or exc}") from None
