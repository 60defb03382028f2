"""The console's segment pages: every segment with its size and history, and one segment with its
definition and its members (paged, searched and sorted on the server: stream.console.passes)."""
from __future__ import annotations

import re
import time
from typing import Any

import yaml

from stream.console.backend import Backend
from stream.console.charts import moves_chart, sizes_chart
from stream.console.common import problem, shown, table, with_stores
from stream.console.markup import Markup, el, join, path
from stream.console.passes import MAX_PAGES, MAX_QUERY_CHARS, PAGE_ROWS, SORTABLE, member_page
from stream.inspect.members import FIELDS
from stream.inspect.fields import FieldError
from stream.inspect.routes import export_columns, members_export
from stream.runtime.http import Request, Response
from stream.storage.committed import CommittedStores, NoStores

CHART_HOURS = 24
_PAGE = re.compile(r"[0-9]{1,4}")


def _flags(entry: dict[str, Any]) -> Markup:
    backfill = [el("li", flag) for flag in entry.get("needs_backfill", [])]
    passes = entry.get("reevaluating_partitions", [])
    return join([el("ul", backfill, class_="flags") if backfill else None,
                 el("span", f"re-evaluating on partitions {', '.join(map(str, passes))}", class_="busy")
                 if passes else None]) or Markup("—")


def rejections(described: dict[str, Any]) -> Markup | None:
    rejected = described.get("rejected", [])
    if not rejected:
        return None
    return join([el("h2", "Rejected definitions (the previous version keeps running)"),
                 table(["Segment", "From", "Version", "Problems"],
                       [[r["segment"], r["source"], r["version"] if r["version"] is not None else "—",
                         el("ul", [el("li", p) for p in r["problems"]])] for r in rejected], "rejections")])


def segments_page(backend: Backend, request: Request) -> Response:
    described = backend.definitions()
    running = described.get("segments", {})
    sizes = backend.sizes()
    now = time.time()
    rows = []
    for segment in backend.catalog().segments:
        entry = running.get(segment.name, {})
        moves = backend.history.moves(segment.name, now)[-CHART_HOURS:]
        rows.append([el("a", segment.name, href=path("segments", segment.name)),
                     el("span", f"{sizes.counts.get(segment.name, 0):,}", class_="size"),
                     sizes_chart(backend.history.sizes(segment.name)),
                     moves_chart(moves) if backend.moves_kept else el("span", "kept by the workers", class_="muted"),
                     entry.get("version", segment.version), entry.get("source", "—"), _flags(entry),
                     segment.description or ""])
    body = join([
        table(["Segment", "Members", "Size over time", f"Entered / exited per hour (last {CHART_HOURS} h)",
               "Version", "From", "Backfill / re-evaluation", "Description"], rows, "segments"),
        el("p", sizes.note, class_="muted"),
        rejections(described),
    ])
    return shown(request, backend, "Segments", body, "segments")


def _page_number(request: Request) -> int | None:
    text = request.query.get("page", ["0"])[-1]
    # ASCII digits, a few: str.isdigit() takes "²", which int() refuses, and int() refuses thousands
    return int(text) if _PAGE.fullmatch(text) and int(text) < MAX_PAGES else None


def segment_page(backend: Backend, request: Request) -> Response:
    (name,) = request.args
    catalog = backend.catalog()
    segment = catalog.by_name.get(name)
    if segment is None:
        return problem(request, backend, 404, "Unknown segment", f"no segment {name!r} runs now")
    query = request.query.get("q", [""])[-1][:MAX_QUERY_CHARS]
    sort = request.query.get("sort", ["customer_id"])[-1]
    descending = request.query.get("order", ["asc"])[-1] == "desc"
    number = _page_number(request)
    if sort not in SORTABLE or number is None:
        return problem(request, backend, 400, "Bad request",
                       f"sort is one of {', '.join(SORTABLE)}; page is a number below {MAX_PAGES} "
                       f"(narrow the search, or export the CSV, for more)")
    entry = backend.definitions().get("segments", {}).get(name, {})

    def members(stores: CommittedStores) -> Response:
        found = member_page(stores, name, query, sort, descending, number)
        order = "desc" if descending else "asc"

        def sorter(column: str) -> Markup:
            if column not in SORTABLE:
                return el("span", column)
            flip = "asc" if column == sort and descending else "desc" if column == sort else "asc"
            arrow = (" ↓" if descending else " ↑") if column == sort else ""
            return el("a", column + arrow, href=path("segments", name, q=query, sort=column, order=flip))

        head = el("thead", el("tr", [el("th", sorter(column)) for column in FIELDS]))
        body_rows = [el("tr", el("td", el("a", row[0], href=path("customers", row[0]))),
                        [el("td", "" if cell is None else f"{cell:,.2f}" if isinstance(cell, float) else cell)
                         for cell in row[1:]])
                     for row in found.rows]
        pager = el("p", el("a", "← previous", href=path("segments", name, q=query, sort=sort, order=order,
                                                          page=number - 1)) if number else None,
                   f" page {number + 1} " + (f"of {max(1, -(-found.matched // PAGE_ROWS)):,} ({found.matched:,} "
                                             f"matching) " if found.matched is not None else ""),
                   el("a", "next →", href=path("segments", name, q=query, sort=sort, order=order, page=number + 1))
                   if found.more and number + 1 < MAX_PAGES else None, class_="pager")
        search = el("form", el("input", type="search", name="q", value=query, placeholder="customer id contains…",
                               maxlength=MAX_QUERY_CHARS, id="member-search"),
                    el("input", type="hidden", name="sort", value=sort),
                    el("input", type="hidden", name="order", value=order),
                    el("button", "Search", type="submit"), method="get", action=path("segments", name),
                    class_="search")
        definition = yaml.safe_dump(entry.get("definition", segment.definition), sort_keys=False)
        body = join([
            el("p", segment.description or "", class_="description"),
            el("dl", el("dt", "Version"), el("dd", entry.get("version", segment.version)),
               el("dt", "From"), el("dd", entry.get("source", "—")),
               el("dt", "Backfill / re-evaluation"), el("dd", _flags(entry))),
            el("h2", "Size over time"), sizes_chart(backend.history.sizes(name), 600, 120),
            el("h2", "Entered / exited per hour") if backend.moves_kept else None,
            moves_chart(backend.history.moves(name, time.time()), 600, 120) if backend.moves_kept else None,
            el("h2", "Definition"), el("pre", definition, class_="definition"),
            el("p", el("a", "Edit in the definition editor", href=path("editor", name=name))),
            el("h2", "Members"), search,
            el("p", el("a", "Export all members as CSV", href=path("segments", name, "members.csv"), download=True),
                   " (the fields of `segments members`)"),
            el("table", head, el("tbody", body_rows), class_="members"), pager,
        ])
        return shown(request, backend, f"Segment {name}", body, "segments")

    return with_stores(request, backend, members)


def members_csv(backend: Backend, request: Request) -> Response:
    """The CSV of `segments members` (stream.inspect.members), streamed: the bytes of the members
    route's ?format=csv, ?fields= included."""
    (name,) = request.args
    catalog = backend.catalog()
    if name not in catalog.by_name:
        return problem(request, backend, 404, "Unknown segment", f"no segment {name!r} runs now")
    try:
        stores = backend.stores()
    except NoStores as exc:
        return problem(request, backend, 503, "No stores to read", str(exc))
    try:
        extra = export_columns(request, stores, catalog)
    except FieldError as exc:
        stores.close()
        return problem(request, backend, 400, "Unknown fields", f"fields: {exc}")
    # a segment name is [a-z0-9-]: safe in a header as it is
    return members_export(stores, name, "csv", extra,
                          (("Content-Disposition", f'attachment; filename="{name}-members.csv"'),))
