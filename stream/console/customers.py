"""The console's customer page: the explanation (stream.rules.explanation, as `segments explain`),
the current segments with member-since, and the recent changes the worker's history kept."""
from __future__ import annotations

import msgspec

from stream.console.backend import Backend
from stream.console.common import problem, shown, table, with_stores
from stream.console.markup import Markup, el, join, path
from stream.console.passes import MAX_QUERY_CHARS
from stream.inspect.running import explaining
from stream.rules.explanation import Node, explain
from stream.runtime.http import Request, Response
from stream.storage.committed import CommittedStores


def _finder(value: str = "") -> Markup:
    return el("form", el("label", "Customer id ", el("input", type="search", name="id", value=value, required=True,
                                                      maxlength=MAX_QUERY_CHARS, id="customer-id")),
              el("button", "Open", type="submit"), method="get", action=path("customers"), class_="search")


def find_page(backend: Backend, request: Request) -> Response:
    """The form; with ?id=, off to that customer's page."""
    customer_id = request.query.get("id", [""])[-1].strip()
    if customer_id:
        return Response(303, b"", "text/plain; charset=utf-8", (("Location", path("customers", customer_id)),))
    return shown(request, backend, "Customer", _finder(), "customers")


def _value(value: object) -> str:
    return msgspec.json.encode(value).decode()


def _node(node: Node) -> Markup:
    verdict = el("span", "holds" if node["holds"] else "does not hold", class_="yes" if node["holds"] else "no")
    detail = []
    if "value" in node:
        detail.append(el("span", " value ", el("code", _value(node["value"]))))
    if "changes_at" in node:
        detail.append(el("span", f" · changes by time at {node['changes_at']}", class_="time"))
    parts = node.get("parts", [])
    return el("li", el("code", node["condition"]), " ", verdict, detail,
              el("ul", [_node(p) for p in parts]) if parts else None)


def customer_page(backend: Backend, request: Request) -> Response:
    (customer_id,) = request.args

    def answer(stores: CommittedStores) -> Response:
        found = stores.find(customer_id)
        if found is None:
            return problem(request, backend, 404, "Unknown customer",
                           f"no customer {customer_id!r} in the stores read")
        partition, state = found
        data = explain(customer_id, state, explaining(partition, backend.catalog()), partition.stream_time or 0,
                       partition.number)
        move = data["next_move"]
        changes = backend.history.changes(customer_id)
        recent = (table(["At", "Segment", "Change", "Cause"],
                        [[c.at, el("a", c.segment, href=path("segments", c.segment)), c.change, c.cause]
                         for c in changes], "changes") if changes else
                  el("p", "none kept: the worker keeps the last changes of recently changed customers while it runs"
                     if backend.moves_kept else "not kept here: each worker's own console shows its recent changes",
                     class_="muted"))
        conditions = [el("section", el("h3", el("a", seg["segment"], href=path("segments", seg["segment"])),
                                       f" v{seg['version']}: ",
                                       el("span", f"member since {seg['member_since']}" if seg["member"]
                                          else "not a member", class_="yes" if seg["member"] else "no"),
                                       f" · re-evaluated by time at {seg['next_move_due']}"
                                       if seg["next_move_due"] else None),
                                 el("ul", _node(seg["when"]), class_="conditions"), class_="segment")
                      for seg in data["conditions"]]
        body = join([
            _finder(customer_id),
            el("p", f"partition {data['partition']}, as of {data['as_of']} (its last committed batch)",
               class_="muted"),
            el("h2", "Current segments"),
            table(["Segment", "Member since"], [[el("a", n, href=path("segments", n)), since]
                                                 for n, since in data["segments"].items()], "current")
            if data["segments"] else el("p", "none"),
            el("p", "Next time-driven move: ",
               el("strong", f"{move['segment']} due {move['due']}" if move else "none")),
            el("h2", "Recent segment changes"), recent,
            el("h2", "Why: every condition, its value and verdict"), conditions,
            el("h2", "Attributes"),
            table(["Attribute", "Value"], [[k, el("code", _value(v))] for k, v in data["attributes"].items()],
                  "attributes"),
        ])
        return shown(request, backend, f"Customer {customer_id}", body, "customers")

    return with_stores(request, backend, answer)
