"""Browser sessions for the web console (stream.console): a browser cannot send the bearer token
on a page navigation, so the token is pasted once into the login page and exchanged for a session.

A session is a random id (256 bits) in a cookie that scripts cannot read (HttpOnly), that no other
site's page makes the browser send (SameSite=Strict), and that only the console's paths receive
(Path=/console), Secure when the request came over TLS. The table is bounded (MAX_SESSIONS; the
oldest goes first) and each session expires after IDLE_SECONDS unused, or LIFETIME_SECONDS after
login whatever its use. Each session has its own CSRF token, which every POST must carry, besides
coming from the console's own origin (Origin, else Referer). Failed logins are bounded per minute,
so the token cannot be guessed at the server's speed. Ids are kept hashed: a lookup's timing says
nothing about a stored id, and the table leaks no usable id.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

COOKIE = "segments_console"
COOKIE_PATH = "/console"
LOGIN_PATH = "/console/login"
CSRF_HEADER = "HTTP_X_CSRF_TOKEN"        # X-CSRF-Token, as WSGI names it
MAX_SESSIONS = 64
IDLE_SECONDS = 3600.0
LIFETIME_SECONDS = 12 * 3600.0
FAILED_LOGINS_PER_MINUTE = 20
# Sent with every answer of the server (stream.runtime.http.App), the console's pages and every
# refusal or error: no script, style, frame or form target but this server's own, never framed,
# never sniffed, never cached (pages show personal data), no Referer to another site.
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
                                "object-src 'none'"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "same-origin"),
)


@dataclass
class Session:
    csrf: str
    started: float
    used: float


class Sessions:
    """The session table of one server, for the token it serves."""

    def __init__(self, token: bytes, clock: Callable[[], float] = time.monotonic):
        self._token = token
        self._clock = clock
        self._table: OrderedDict[bytes, Session] = OrderedDict()     # hashed id -> session, oldest use first
        self._failures: deque[float] = deque()
        self._lock = threading.Lock()

    def locked(self) -> bool:
        """Whether FAILED_LOGINS_PER_MINUTE wrong tokens came in the last minute: then every login
        waits, the right token's too, for the minute to pass."""
        now = self._clock()
        with self._lock:
            while self._failures and self._failures[0] <= now - 60:
                self._failures.popleft()
            return len(self._failures) >= FAILED_LOGINS_PER_MINUTE

    def login(self, offered: str) -> tuple[str, Session] | None:
        """(id, session) for the right token, None for a wrong one (or any while locked())."""
        if self.locked():
            return None
        now = self._clock()
        with self._lock:
            # Constant time: how long the comparison takes says nothing about how much of a guess was right.
            if not hmac.compare_digest(offered.strip().encode("utf-8", "replace"), self._token):
                self._failures.append(now)
                return None
            session_id = secrets.token_urlsafe(32)
            session = Session(secrets.token_urlsafe(32), now, now)
            self._table[_hashed(session_id)] = session
            while len(self._table) > MAX_SESSIONS:
                self._table.popitem(last=False)
            return session_id, session

    def find(self, environ: Mapping[str, object]) -> Session | None:
        """The live session whose id the request's cookie holds (its use noted), or None."""
        session_id = _cookie(environ)
        if session_id is None:
            return None
        key, now = _hashed(session_id), self._clock()
        with self._lock:
            session = self._table.get(key)
            if session is None:
                return None
            if now - session.used > IDLE_SECONDS or now - session.started > LIFETIME_SECONDS:
                del self._table[key]
                return None
            session.used = now
            self._table.move_to_end(key)
            return session

    def logout(self, environ: Mapping[str, object]) -> None:
        session_id = _cookie(environ)
        if session_id is not None:
            with self._lock:
                self._table.pop(_hashed(session_id), None)

    def __len__(self) -> int:
        return len(self._table)


def _hashed(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("utf-8", "replace")).digest()


def _cookie(environ: Mapping[str, object]) -> str | None:
    header = environ.get("HTTP_COOKIE")
    if not isinstance(header, str):
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


def secure(environ: Mapping[str, object]) -> bool:
    """Whether the browser reached the console over TLS: the request came over it, or its Origin
    says https (a TLS proxy in front of this plain-HTTP server), so the cookie is sent over TLS only."""
    origin = environ.get("HTTP_ORIGIN")
    return environ.get("wsgi.url_scheme") == "https" or (isinstance(origin, str) and origin.startswith("https://"))


def set_cookie(session_id: str, environ: Mapping[str, object]) -> tuple[str, str]:
    flags = f"; Path={COOKIE_PATH}; HttpOnly; SameSite=Strict; Max-Age={int(LIFETIME_SECONDS)}"
    return "Set-Cookie", f"{COOKIE}={session_id}{flags}" + ("; Secure" if secure(environ) else "")


def clear_cookie(environ: Mapping[str, object]) -> tuple[str, str]:
    return "Set-Cookie", (f"{COOKIE}=; Path={COOKIE_PATH}; HttpOnly; SameSite=Strict; Max-Age=0"
                          + ("; Secure" if secure(environ) else ""))


def same_origin(environ: Mapping[str, object]) -> bool:
    """Whether a state-changing request comes from a page of this server: its Origin (which
    browsers send with every POST), else its Referer, names the Host it was sent to; a fetch's
    Sec-Fetch-Site, when sent, must say same-origin too. The scheme is not compared: behind a TLS
    proxy the page is https and this server plain HTTP (the CSRF token is the check that counts)."""
    host = environ.get("HTTP_HOST")
    if not isinstance(host, str) or not host:
        return False
    site = environ.get("HTTP_SEC_FETCH_SITE")
    if site is not None and site != "same-origin":
        return False
    sent = environ.get("HTTP_ORIGIN")
    if not isinstance(sent, str):
        sent = environ.get("HTTP_REFERER")
    if not isinstance(sent, str):
        return False
    try:
        url = urlsplit(sent)
    except ValueError:          # e.g. "http://[h": anyone's header, refused rather than a 500
        return False
    return url.scheme in ("http", "https") and hmac.compare_digest(url.netloc.encode("latin-1"),
                                                                   host.encode("latin-1"))


def csrf_ok(session: Session, offered: str | None) -> bool:
    return offered is not None and hmac.compare_digest(offered.encode("utf-8", "replace"), session.csrf.encode())
