"""Logging in to the console (the worker's bearer token, pasted once, for a session:
stream.runtime.sessions), logging out, and the static files the pages load."""
from __future__ import annotations

from importlib import resources

from stream.console.markup import el, html_page, join, page, path
from stream.runtime.http import Request, Response, personal_data_off
from stream.runtime.sessions import clear_cookie, set_cookie

_STATIC_TYPES = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}


def _login_form(message: str | None = None, status: int = 200) -> Response:
    body = join([
        el("p", message, class_="error") if message else None,
        el("p", "Paste the token of the worker's http_token_file (the bearer token of its personal-data routes)."),
        el("form", el("label", "Token ", el("input", type="password", name="token", id="token", required=True,
                                            autocomplete="current-password", maxlength=4096)),
           el("button", "Log in", type="submit", id="login"), method="post", action=path("login")),
    ])
    return html_page(page("Log in", body, None), status)


def login(request: Request) -> Response:
    sessions = request.sessions
    if sessions is None:
        return personal_data_off()          # no token configured: refused as the personal-data routes are
    if request.method == "GET":
        return _login_form()
    if sessions.locked():
        return _login_form("Too many wrong tokens in the last minute: wait a minute and try again.", 429)
    opened = sessions.login(request.form().get("token", ""))
    if opened is None:
        return _login_form("Wrong token.", 401)
    session_id, _ = opened
    return Response(303, b"", "text/plain; charset=utf-8",
                    (("Location", path("segments")), set_cookie(session_id, request.environ)))


def logout(request: Request) -> Response:
    assert request.sessions is not None           # a session route: the server has sessions
    request.sessions.logout(request.environ)
    return Response(303, b"", "text/plain; charset=utf-8",
                    (("Location", path("login")), clear_cookie(request.environ)))


def home(request: Request) -> Response:
    return Response(303, b"", "text/plain; charset=utf-8", (("Location", path("segments")),))


def _load_static() -> dict[str, bytes]:
    folder = resources.files("stream.console").joinpath("static")
    return {name: folder.joinpath(name).read_bytes() for name in _STATIC_TYPES}


_STATIC = _load_static()


def static(request: Request) -> Response:
    (name,) = request.args
    if name not in _STATIC:
        return Response(404, b"no such file\n", "text/plain; charset=utf-8")
    return Response(200, _STATIC[name], _STATIC_TYPES[name],
                    (("Cache-Control", "max-age=300"),))
