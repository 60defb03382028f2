"""Why a customer is (or is not) in each segment: the state, the memberships, and every condition.

The explanation walks a segment's condition nodes (stream.rules.nodes.Condition): leaves are
evaluated by their own compiled test; all / any / not combine their parts' verdicts here,
independently of the compiled combinators (a property test holds the two to the same verdict).
Every part is shown, also those the engine's short-circuit never looks at.
"""
from __future__ import annotations

from typing import Any, NotRequired, TypedDict

import msgspec

from stream.model.buckets import bucket_of
from stream.rules.attributes import ATTRS, Attr
from stream.rules.catalog import Catalog
from stream.rules.nodes import Condition
from stream.rules.rfm import rfm_scores
from stream.model.state import CustomerState
from stream.model.time import format_rfc3339


class Node(TypedDict):
    """One condition of the answer: a leaf has its value (and when time alone flips it), a
    composite its parts."""
    condition: str
    holds: bool
    value: NotRequired[object]
    changes_at: NotRequired[str]
    parts: NotRequired[list[Node]]


class SegmentAnswer(TypedDict):
    segment: str
    version: int
    member: bool
    member_since: str | None
    holds: bool
    next_move_due: str | None
    when: Node


class NextMove(TypedDict):
    segment: str
    due: str


class TraitAnswer(TypedDict):
    value: object
    changes_at: str | None          # when time alone next changes it (an event entering or leaving)


class RfmAnswer(TypedDict):
    """The customer's RFM scores at now (stream.rules.rfm); None each without them (never paid)."""
    r: int | None
    f: int | None
    m: int | None
    cell: str | None


class Answer(TypedDict):
    """explain(): JSON-able, its keys in this order (`segments explain --format json`, GET /customers/<id>)."""
    customer_id: str
    partition: int | None
    as_of: str | None
    segments: dict[str, str]
    next_move: NextMove | None
    attributes: dict[str, object]
    traits: dict[str, TraitAnswer]      # the catalog's computed traits (none: empty)
    rfm: RfmAnswer | None               # the scores, with an rfm section with cut points (else None)
    state: object
    conditions: list[SegmentAnswer]


def _instant(micros: int | None) -> str | None:
    return None if micros is None else format_rfc3339(micros)


def _shown(attr: Attr, value: Any) -> object:
    if attr.kind == "time" and value is not None:
        return format_rfc3339(value)
    if attr.kind == "set":
        return sorted(value)
    return value


def condition(node: Condition, st: CustomerState, now: int) -> Node:
    """{condition, holds, value (leaves), changes_at (leaves whose value time alone will flip),
    parts (composites)}."""
    if node.combine is None:
        holds, flip = node.test(st, now)
        out: Node = {"condition": node.label, "holds": holds}
        if node.attr is not None:
            out["value"] = _shown(node.attr, node.attr.get(st))
        elif node.trait is not None:
            out["value"] = node.trait.value(st, now)[0]
        elif node.value is not None:
            out["value"] = node.value(st, now)
        elif node.reference is not None:         # since when a member, or when it last left
            name, read = node.reference
            out["value"] = _instant((st.member if read == "member" else st.left or {}).get(name))
        if flip is not None:
            out["changes_at"] = format_rfc3339(flip)
        return out
    parts = [condition(part, st, now) for part in node.parts]
    verdicts = [p["holds"] for p in parts]
    holds = (all(verdicts) if node.combine == "all" else any(verdicts) if node.combine == "any"
             else not verdicts[0])
    return {"condition": node.label, "holds": holds, "parts": parts}


def attributes(st: CustomerState) -> dict[str, object]:
    """What definitions read, as they read it (instants in RFC 3339), plus the unsalted bucket."""
    out: dict[str, object] = {name: _shown(attr, attr.get(st)) for name, attr in ATTRS.items()}
    out.update({f"custom.{k}": v for k, v in sorted(st.custom.items())})
    out["bucket"] = None if st.id_hash is None else bucket_of(st.id_hash)
    return out


def explain(customer_id: str, st: CustomerState, catalog: Catalog, now: int,
            partition: int | None = None) -> Answer:
    """The whole answer, as JSON-able data, evaluated at `now` (the partition's stream time)."""
    segments: list[SegmentAnswer] = []
    for seg in catalog.segments:
        tree = condition(seg.when, st, now)
        segments.append({
            "segment": seg.name, "version": seg.version, "member": seg.name in st.member,
            "member_since": _instant(st.member.get(seg.name)), "holds": tree["holds"],
            "next_move_due": _instant(st.timers.get(seg.name)), "when": tree})
    due = min(st.timers.items(), key=lambda item: (item[1], item[0]), default=None)
    return {
        "customer_id": customer_id, "partition": partition, "as_of": _instant(now),
        "segments": {name: format_rfc3339(since) for name, since in sorted(st.member.items())},
        "next_move": None if due is None else {"segment": due[0], "due": format_rfc3339(due[1])},
        "attributes": attributes(st),
        "traits": traits(st, catalog, now),
        "rfm": rfm(st, catalog, now),
        # the stored record itself; its instants are microseconds since the epoch (stream.model.time)
        "state": msgspec.to_builtins(msgspec.structs.asdict(st)),
        "conditions": segments,
    }


def traits(st: CustomerState, catalog: Catalog, now: int) -> dict[str, TraitAnswer]:
    """Each trait's value at now, and when time alone next changes it."""
    out: dict[str, TraitAnswer] = {}
    for name, trait in sorted(catalog.traits.items()):
        value, nxt = trait.value(st, now)
        out[name] = {"value": value, "changes_at": _instant(nxt)}
    return out


def rfm(st: CustomerState, catalog: Catalog, now: int) -> RfmAnswer | None:
    if catalog.rfm is None or catalog.rfm.cuts is None:
        return None
    found = rfm_scores(catalog.rfm, st, now)
    if found is None:
        return {"r": None, "f": None, "m": None, "cell": None}
    r, f, m, cell = found
    return {"r": r, "f": f, "m": m, "cell": cell}


def render(answer: Answer) -> str:
    """The explanation for a terminal: `paid_orders >= 2: true (5)`, indented by nesting."""
    lines = [f"customer {answer['customer_id']} (partition {answer['partition']}, as of {answer['as_of']})"]
    lines.append("segments: " + (", ".join(f"{n} since {s}" for n, s in answer["segments"].items()) or "none"))
    move = answer["next_move"]
    lines.append("next time-driven move: " + (f"{move['segment']} due {move['due']}" if move else "none"))
    lines.append("attributes: " + msgspec.json.encode(answer["attributes"]).decode())
    for name, trait in answer["traits"].items():
        changes = f", changes at {trait['changes_at']}" if trait["changes_at"] else ""
        lines.append(f"trait.{name}: {msgspec.json.encode(trait['value']).decode()}{changes}")
    scores = answer["rfm"]
    if scores is not None:
        lines.append("rfm: " + (f"r {scores['r']}, f {scores['f']}, m {scores['m']}, cell {scores['cell']}"
                                if scores["cell"] is not None else "no scores (not every measure has a value)"))
    lines.append("state: " + msgspec.json.encode(answer["state"]).decode())
    lines.append("conditions:")
    for seg in answer["conditions"]:
        where = f"member since {seg['member_since']}" if seg["member"] else "not a member"
        head = f"  {seg['segment']}: {where}"
        if seg["next_move_due"]:
            head += f"; re-evaluated by time at {seg['next_move_due']}"
        lines.append(head)
        _render(seg["when"], 2, lines)
    return "\n".join(lines) + "\n"


def _render(node: Node, depth: int, lines: list[str]) -> None:
    text = f"{'  ' * depth}{node['condition']}: {'true' if node['holds'] else 'false'}"
    if "value" in node:
        text += f" ({msgspec.json.encode(node['value']).decode()})"
    if "changes_at" in node:
        text += f", changes at {node['changes_at']}"
    lines.append(text)
    for part in node.get("parts", ()):
        _render(part, depth + 1, lines)
