"""The console's routes over a Backend: what either driver serves (stream.worker.loop,
stream.cli.console). Every page and action is a session route (stream.runtime.http: private, with
the CSRF token on each POST); only the login page and the static script and stylesheet are public."""
from __future__ import annotations

from collections.abc import Callable

from stream.console import customers, editor, login, segments
from stream.console.backend import Backend
from stream.runtime.http import Request, Response, Route

Page = Callable[[Backend, Request], Response]


def console_routes(backend: Backend) -> list[Route]:
    def bound(handler: Page) -> Callable[[Request], Response]:
        return lambda request: handler(backend, request)

    def page(route: str, summary: str, handler: Page, methods: tuple[str, ...] = ("GET",)) -> Route:
        return Route(route, summary, bound(handler), methods=methods, session=True)

    return [
        Route("/console/login", "the console's login page (paste the token)", login.login, public=True,
              methods=("GET", "POST")),
        Route("/console/static/<file>", "the console's script and stylesheet", login.static, public=True),
        Route("/console/logout", "end the console session", login.logout, methods=("POST",), session=True),
        Route("/console", "the web console", login.home, session=True),
        Route("/console/", "the web console", login.home, session=True),
        page("/console/segments", "console: every segment, its size and history", segments.segments_page),
        page("/console/segments/<name>", "console: a segment and its members", segments.segment_page),
        page("/console/segments/<name>/members.csv", "console: the members as CSV", segments.members_csv),
        page("/console/customers", "console: find a customer", customers.find_page),
        page("/console/customers/<id>", "console: a customer's explanation and changes", customers.customer_page),
        page("/console/editor", "console: the definition editor", editor.editor_page),
        page("/console/editor/check", "console: check a definition, preview its size", editor.check, ("POST",)),
        page("/console/editor/publish", "console: publish a definition", editor.publish, ("POST",)),
        page("/console/editor/remove", "console: remove a definition", editor.remove, ("POST",)),
    ]
