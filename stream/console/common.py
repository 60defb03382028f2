"""What every console page handler shares: the page around its body, error pages, the stores."""
from __future__ import annotations

from collections.abc import Callable

from stream.console.backend import Backend
from stream.console.markup import Markup, el, html_page, page
from stream.runtime.http import Request, Response
from stream.storage.committed import CommittedStores, NoStores


def shown(request: Request, backend: Backend, title: str, body: object, active: str | None = None,
          status: int = 200) -> Response:
    assert request.session is not None, "console pages are session routes"
    return html_page(page(title, body, request.session.csrf, active, f"served by the {backend.driver}"), status)


def problem(request: Request, backend: Backend, status: int, title: str, text: str) -> Response:
    return shown(request, backend, title, el("p", text, class_="error"), status=status)


def with_stores(request: Request, backend: Backend, use: Callable[[CommittedStores], Response]) -> Response:
    """use(stores) over freshly opened committed stores, closed after; 503 when there are none."""
    try:
        stores = backend.stores()
    except NoStores as exc:
        return problem(request, backend, 503, "No stores to read", str(exc))
    with stores:
        return use(stores)


def table(head: list[str], rows: list[list[object]], class_: str | None = None) -> Markup:
    return el("table", el("thead", el("tr", [el("th", h) for h in head])),
              el("tbody", [el("tr", [el("td", cell) for cell in row]) for row in rows]), class_=class_)
