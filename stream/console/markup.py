"""HTML built so that nothing is ever inserted unescaped: every string is escaped on its way into a
page unless it is Markup, and only this module's builders make Markup. Customer ids, attribute
values and definitions come from Kafka records and the editor, so they are an attacker's text.

Pages carry no inline script or style (the Content-Security-Policy forbids both): behaviour comes
from static/console.js, looks from static/console.css, and the CSRF token reaches the script in a
<meta> element.
"""
from __future__ import annotations

import html
from collections.abc import Iterable
from urllib.parse import quote, urlencode

from stream.runtime.http import Response

HTML = "text/html; charset=utf-8"


class Markup(str):
    """Text that is HTML already (built here from escaped parts)."""



def esc(value: object) -> Markup:
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def _children(children: Iterable[object]) -> Iterable[str]:
    for child in children:
        if child is None:
            continue
        if isinstance(child, str | int | float):
            yield esc(child)
        else:
            yield from _children(child)     # type: ignore[arg-type]   # an iterable of children


_VOID = frozenset({"meta", "link", "input", "br", "img"})


def el(tag: str, *children: object, **attrs: object) -> Markup:
    """<tag attrs>children</tag>: `class_` is class, other underscores are hyphens; an attribute of
    None is left out, True is written bare."""
    parts = [tag]
    for name, value in attrs.items():
        if value is None or value is False:
            continue
        name = name.rstrip("_").replace("_", "-")
        parts.append(name if value is True else f'{name}="{esc(value)}"')
    opening = f"<{' '.join(parts)}>"
    if tag in _VOID:
        return Markup(opening)
    return Markup(opening + "".join(_children(children)) + f"</{tag}>")


def join(items: Iterable[object]) -> Markup:
    return Markup("".join(_children(items)))


def path(*segments: str, **query: object) -> str:
    """A console URL: each segment percent-encoded (a customer id may hold / or ?), then the query."""
    url = "/console/" + "/".join(quote(s, safe="") for s in segments)
    shown = {k: v for k, v in query.items() if v not in (None, "")}
    return url + ("?" + urlencode(shown) if shown else "")


NAV = (("segments", "Segments"), ("customers", "Customer"), ("editor", "Definition editor"))


def page(title: str, body: object, csrf: str | None, active: str | None = None, note: str = "") -> Markup:
    """A whole console page: head (stylesheet, script, CSRF token), navigation, body."""
    nav = None
    if csrf is not None:
        nav = el("nav", el("span", "segments console", class_="brand"),
                 [el("a", label, href=path(key), class_="active" if key == active else None) for key, label in NAV],
                 el("form", el("input", type="hidden", name="csrf", value=csrf),
                    el("button", "Log out", type="submit"), method="post", action=path("logout"), class_="logout"))
    return Markup("<!DOCTYPE html>" + el(
        "html",
        el("head", el("meta", charset="utf-8"), el("title", f"{title} · segments console"),
           el("meta", name="viewport", content="width=device-width, initial-scale=1"),
           el("meta", name="csrf-token", content=csrf) if csrf is not None else None,
           el("link", rel="stylesheet", href="/console/static/console.css"),
           el("script", src="/console/static/console.js", defer=True)),
        el("body", nav, el("main", el("h1", title), body),
           el("footer", note) if note else None),
        lang="en"))


def html_page(markup: Markup, status: int = 200, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, markup.encode(), HTML, headers)
