"""The console's definition editor: a definition checked on the server as it is typed, with the
words `segments define` uses (stream.rules.catalog.parse_definition), a preview of how many stored
customers it would hold now (a pass bounded in time: stream.console.passes.would_hold), and
publishing to the definitions topic, or removal, through the code `define` / `undefine` run
(stream.kafka.publishing).

The page's script posts the definition as the request body (text/plain, at most
bounded_yaml.DEFINITION's bytes, which the server bounds too) with the session's CSRF token in a
header; the answers are JSON."""
from __future__ import annotations

from typing import Any

import msgspec
import yaml

from stream.console.backend import Backend
from stream.console.common import shown
from stream.console.markup import el, join, path
from stream.console.passes import would_hold
from stream.kafka.publishing import REFUSED, Outcome, define_segment, invalid, remove_segment
from stream.rules.bounded_yaml import DEFINITION
from stream.rules.catalog import TRAIT_PREFIX, compile_catalog, parse_definition
from stream.rules.rfm import RFM_KEY
from stream.runtime.http import Request, Response
from stream.storage.committed import NoStores

SOURCE = "definition"            # what the loader's messages name as the document
_EXAMPLE = """description: customers with two paid orders or more
when:
  paid_orders: {gte: 2}
"""


def _json(status: int, value: dict[str, Any]) -> Response:
    return Response(status, msgspec.json.encode(value), "application/json")


def editor_page(backend: Backend, request: Request) -> Response:
    name = request.query.get("name", [""])[-1][:64]
    running = backend.definitions().get("segments", {}).get(name)
    text = _EXAMPLE
    if running is not None:
        text = yaml.safe_dump({k: v for k, v in running["definition"].items() if k != "version"}, sort_keys=False)
    publishing = backend.topic is not None
    body = join([
        el("p", "Write one segment definition: the grammar of one entry under `segments:` (YAML or JSON). "
                "It is checked as you type, with the messages of `segments define`.", class_="muted"),
        el("form", el("label", "Segment name ", el("input", name="name", id="segment-name", value=name, required=True,
                                                   maxlength=64, pattern="[a-z0-9][a-z0-9-]{0,63}",
                                                   autocomplete="off")),
           el("label", "Definition", el("textarea", text, name="definition", id="definition", rows=16, cols=80,
                                        spellcheck="false", maxlength=DEFINITION.bytes)),
           el("div", "", id="problems", role="status", aria_live="polite"),
           el("div", "", id="preview", role="status", aria_live="polite"),
           el("div", el("button", "Publish", type="button", id="publish", disabled=not publishing),
              " ",
              el("button", "Remove this segment", type="button", id="remove", class_="danger",
                 disabled=not publishing)),
           el("div", "", id="outcome", role="status", aria_live="polite"),
           id="editor", data_check=path("editor", "check"), data_publish=path("editor", "publish"),
           data_remove=path("editor", "remove"), data_segments=path("segments")),
        None if publishing else el("p", "Publishing is off: this console was started without bootstrap servers.",
                                   class_="muted"),
    ])
    return shown(request, backend, "Definition editor", body, "editor")


def _name(request: Request) -> str:
    return request.query.get("name", [""])[-1]


def _running_traits(backend: Backend) -> dict[str, dict[str, Any]]:
    """The traits the workers run (trait.<name> -> definition), and their rfm section (rfm.scores):
    a segment written here may read them."""
    return {name: entry["definition"] for name, entry in backend.definitions()["segments"].items()
            if name.startswith(TRAIT_PREFIX) or name == RFM_KEY}


def check(backend: Backend, request: Request) -> Response:
    """{problems, preview}: preview only for a valid definition, and null when no store could be read."""
    name = _name(request)
    traits = _running_traits(backend)
    definition, problems = parse_definition(name, request.body, SOURCE, traits)
    if problems or definition is None:
        return _json(200, {"problems": problems, "preview": None})
    segment = compile_catalog({**traits, name: definition}, SOURCE, alone=True).by_name.get(name)
    if segment is None:                     # a trait.<name>: it holds no customers to count
        return _json(200, {"problems": [], "preview": None})
    try:
        stores = backend.stores()
    except NoStores as exc:
        return _json(200, {"problems": [], "preview": {"unavailable": str(exc)}})
    with stores:
        tally = would_hold(stores, segment, backend.preview_seconds)
    return _json(200, {"problems": [], "preview": {"holding": tally.counts["holding"], "read": tally.read,
                                                   "cut_short": tally.cut_short, "seconds": round(tally.seconds, 2),
                                                   "stored_about": tally.about}})


def _answer(outcome: Outcome) -> Response:
    return _json(200 if outcome.ok else 409 if outcome.status == REFUSED else 502,
                 {"ok": outcome.ok, "message": outcome.message, "problems": outcome.problems,
                  "version": outcome.version})


_OFF = {"ok": False, "message": "publishing is off: no bootstrap servers", "problems": []}


def publish(backend: Backend, request: Request) -> Response:
    if backend.topic is None:
        return _json(409, _OFF)
    name = _name(request)
    definition, problems = parse_definition(name, request.body, SOURCE, _running_traits(backend))
    if problems or definition is None:
        return _answer(invalid(name, problems))
    return _answer(define_segment(name, definition, backend.topic))


def remove(backend: Backend, request: Request) -> Response:
    if backend.topic is None:
        return _json(409, _OFF)
    return _answer(remove_segment(_name(request), backend.topic))
