"""Segment definitions: YAML data, validated on load, compiled once into predicates.

A compiled condition is a function `(state, now) -> (holds, next_flip)`: whether it holds at `now`,
and the earliest instant after `now` at which it could change with no new event (None if never).
The engine keeps the smallest `next_flip` of a customer's segments as that customer's timer, which
is how "no order for 60 days" moves a customer on the day with no event arriving.

`next_flip` may be early (a composite reports the first instant any part could flip; the engine
re-evaluates then and finds nothing changed), but never late: every real flip is reported.

Each condition also knows which groups of state fields it reads (`reads`); an event re-evaluates
only the segments that read a group its type changes (see CHANGED_BY).
"""
from __future__ import annotations

import datetime as _dt
import difflib
import math
import operator
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from stream.model import events as ev
from stream.rules.bounded_yaml import SEGMENTS_FILE, DocumentError, brief, clip, load, read_file
from stream.model.buckets import BUCKETS, MAX_SALT_BYTES, bucket_of
from stream.model.state import CustomerState
from stream.model.time import DAY, parse_duration, parse_rfc3339

Test = Callable[[CustomerState, int], "tuple[bool, int | None]"]

# Which state field groups each event type can change. "seen" (first/last seen) changes with any
# applied event; erasure is handled by the engine (every segment is exited).
CHANGED_BY: dict[type, frozenset[str]] = {
    ev.OrderPlaced: frozenset({"placed", "profile", "seen"}),
    ev.OrderPaid: frozenset({"paid", "seen"}),
    ev.OrderCancelled: frozenset({"paid", "seen"}),
    ev.ProductViewed: frozenset({"views", "seen"}),
    ev.CartUpdated: frozenset({"cart", "seen"}),
    ev.CartAbandoned: frozenset({"cart", "seen"}),
    ev.CustomerUpdated: frozenset({"profile", "seen"}),
}


# The group of what never changes for a customer (its id, so its buckets): read once, on creation.
IDENTITY = "identity"


# Bounds on one segment's compiled condition tree: every event re-evaluates the tree of each segment
# it affects, and compiling, evaluating and explaining it recurse once per level.
MAX_CONDITIONS = 1000        # conditions and operators in one segment
MAX_NESTING = 32             # conditions nested (all, any, not) in one segment

# Bounds on what an error says, so a hostile document cannot make a huge message, log line or
# GET /definitions answer: problems listed, and characters per problem.
MAX_PROBLEMS_SHOWN = 20
PROBLEM_CHARS = 500


class DefinitionError(ValueError):
    """Every problem found in a segments file, each naming its segment and where in it; the
    message lists at most MAX_PROBLEMS_SHOWN of them, each at most PROBLEM_CHARS long."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid segment definitions:\n" + "\n".join(f"  - {p}" for p in shown(problems)))


class _OverLimit(DefinitionError):
    """A segment over MAX_CONDITIONS or MAX_NESTING: its compilation stops at once (what else is
    wrong with it no longer matters, and going on would cost what the limit is there to prevent)."""


def shown(problems: list[str] | tuple[str, ...]) -> list[str]:
    """The problems as reported: the first MAX_PROBLEMS_SHOWN, clipped, and how many more."""
    listed = [clip(p, PROBLEM_CHARS) for p in problems[:MAX_PROBLEMS_SHOWN]]
    if len(problems) > MAX_PROBLEMS_SHOWN:
        listed.append(f"... and {len(problems) - MAX_PROBLEMS_SHOWN:,} more problems")
    return listed


def _names(keys: Any) -> str:
    """Keys of a mapping for a message: a few, each short."""
    names = sorted(clip(k, 40) if isinstance(k, str) else brief(k) for k in keys)
    return ", ".join(names[:10]) + (f" (and {len(names) - 10:,} more)" if len(names) > 10 else "")


@dataclass(frozen=True)
class Attr:
    name: str
    kind: str            # number | time | string | date | bool | set | any
    group: str           # state field group it reads
    get: Callable[[CustomerState], Any]


def _average(st: CustomerState) -> float | None:
    return st.paid_total / st.paid_count if st.paid_count else None


ATTRS: dict[str, Attr] = {a.name: a for a in (
    Attr("paid_orders", "number", "paid", lambda st: st.paid_count),
    Attr("paid_total", "number", "paid", lambda st: st.paid_total),
    Attr("average_order_value", "number", "paid", _average),
    Attr("first_paid_at", "time", "paid", lambda st: st.first_paid),
    Attr("last_paid_at", "time", "paid", lambda st: st.last_paid),
    Attr("orders_placed", "number", "placed", lambda st: st.orders_placed),
    Attr("last_order_placed_at", "time", "placed", lambda st: st.last_placed),
    Attr("categories_bought", "set", "placed", lambda st: st.categories_bought),
    Attr("cart_updated_at", "time", "cart", lambda st: st.cart_updated_at),
    Attr("cart_value", "number", "cart", lambda st: st.cart_value),
    Attr("last_cart_abandoned_at", "time", "cart", lambda st: st.abandoned_at),
    Attr("last_cart_abandoned_value", "number", "cart", lambda st: st.abandoned_value),
    Attr("last_viewed_at", "time", "views", lambda st: st.last_viewed),
    Attr("first_seen_at", "time", "seen", lambda st: st.first_seen),
    Attr("last_seen_at", "time", "seen", lambda st: st.last_seen),
    Attr("city", "string", "profile", lambda st: st.city),
    Attr("country", "string", "profile", lambda st: st.country),
    Attr("gender", "string", "profile", lambda st: st.gender),
    Attr("birth_date", "date", "profile", lambda st: st.birth_date),
    Attr("email_opt_in", "bool", "profile", lambda st: st.email_opt_in),
)}

# Windowed counts: which events feed a stream, how the item key is read, and the group it changes.
STREAM_EVENTS = {"product_viewed": "views", "order_placed": "placed"}
STREAM_KEYS = ("product", "category")


@dataclass(frozen=True)
class Stream:
    """Recent times of one event kind per item, kept just deep and long enough for the rules."""
    event: str        # product_viewed | order_placed
    per: str          # product | category
    keep: int         # times kept per item: the largest at_least that reads this stream
    horizon: int      # times older than this (relative to now) can never count again

    @property
    def name(self) -> str:
        return f"{self.event}:{self.per}"


@dataclass
class Segment:
    name: str
    version: int
    description: str
    test: Test
    reads: frozenset[str]
    definition: dict[str, Any]


@dataclass
class Catalog:
    segments: list[Segment]
    streams: list[Stream]
    source: str
    by_name: dict[str, Segment] = field(init=False)
    affected: dict[type, tuple[Segment, ...]] = field(init=False)
    on_create: dict[type, tuple[Segment, ...]] = field(init=False)

    def __post_init__(self) -> None:
        self.segments.sort(key=lambda s: s.name)   # evaluation (and so output) order is by name
        self.by_name = {s.name: s for s in self.segments}
        self.affected = {etype: tuple(s for s in self.segments if s.reads & groups)
                         for etype, groups in CHANGED_BY.items()}
        # A customer's first event: a segment that reads nothing the event changed sees the fields
        # it reads at their empty defaults, where no time condition is pending (no timestamps are
        # set but first/last seen, which every event changes). So it holds as on an empty state,
        # for good: only those that hold there need evaluating, beside the affected ones.
        empty = CustomerState(first_seen=0, last_seen=0)
        on_empty = {s.name for s in self.segments if s.test(empty, 0)[0]}
        self.on_create = {etype: tuple(s for s in self.segments
                                       if s.reads & groups or s.name in on_empty or IDENTITY in s.reads)
                          for etype, groups in CHANGED_BY.items()}


# ----------------------------------------------------------------------------------------------
# Loading and validation

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


def valid_name(name: str) -> bool:
    return _NAME.match(name) is not None
_SEGMENT_KEYS = {"when", "description", "version"}


def default_catalog_path() -> Path:
    return Path(str(resources.files("stream.rules").joinpath("catalog.yaml")))


def load_catalog(path: str | Path | None = None) -> Catalog:
    """A segments file (within bounded_yaml.SEGMENTS_FILE), validated and compiled."""
    path = Path(path) if path is not None else default_catalog_path()
    try:
        doc = read_file(path, SEGMENTS_FILE)
    except OSError as exc:
        raise DefinitionError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    except DocumentError as exc:
        raise DefinitionError([f"{path}: {exc}"]) from None
    return _catalog(doc, str(path))


def parse_catalog(text: str | bytes, source: str = "<string>") -> Catalog:
    try:
        doc = load(text, SEGMENTS_FILE)
    except DocumentError as exc:
        raise DefinitionError([f"{source}: {exc}"]) from None
    return _catalog(doc, source)


def _catalog(doc: Any, source: str) -> Catalog:
    if not isinstance(doc, dict) or not isinstance(doc.get("segments"), dict) or not doc["segments"]:
        raise DefinitionError([f"{source}: expected a mapping with a non-empty `segments:` mapping of name -> definition"])
    extra = set(doc) - {"segments"}
    problems = [f"{source}: unknown top-level key(s): {_names(extra)}"] if extra else []
    try:
        catalog = compile_catalog(doc["segments"], source)
    except DefinitionError as exc:
        problems.extend(exc.problems)
    if problems:
        raise DefinitionError(problems)
    return catalog


def compile_catalog(definitions: dict[Any, Any], source: str) -> Catalog:
    """A catalog from name -> definition mappings (one entry under `segments:` each); every problem
    of every segment is reported together. May be empty (every segment removed at run time)."""
    compiler = _Compiler()
    segments, problems = [], []
    for name, definition in definitions.items():
        try:
            segments.append(compiler.segment(str(name), definition))
        except DefinitionError as exc:
            problems.extend(exc.problems)
    if problems:
        raise DefinitionError(problems)
    return Catalog(segments, compiler.streams(), source)


class _Compiler:
    def __init__(self) -> None:
        self._streams: dict[tuple[str, str], tuple[int, int]] = {}

    def streams(self) -> list[Stream]:
        return [Stream(e, p, keep, horizon) for (e, p), (keep, horizon) in sorted(self._streams.items())]

    def _need_stream(self, event: str, per: str, keep: int, horizon: int) -> None:
        old_keep, old_horizon = self._streams.get((event, per), (0, 0))
        self._streams[(event, per)] = (max(old_keep, keep), max(old_horizon, horizon))

    def segment(self, name: str, definition: Any) -> Segment:
        where = f"segment {brief(name)}"
        self._conditions = 0
        if not valid_name(name):
            raise DefinitionError([f"{where}: a name is lower-case letters, digits and '-', starting with a letter or digit, at most 64 characters"])
        if not isinstance(definition, dict):
            raise DefinitionError([f"{where}: expected a mapping with `when:` (and optional description, version)"])
        problems = []
        unknown = set(definition) - _SEGMENT_KEYS
        if unknown:
            problems.append(f"{where}: unknown key(s) {_names(unknown)}; allowed: {', '.join(sorted(_SEGMENT_KEYS))}")
        version = definition.get("version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            problems.append(f"{where}: version must be a whole number >= 1, got {brief(version)}")
        description = definition.get("description", "")
        if not isinstance(description, str):
            problems.append(f"{where}: description must be text")
        if "when" not in definition:
            problems.append(f"{where}: missing `when:` condition")
            raise DefinitionError(problems)
        try:
            test, reads = self.condition(definition["when"], f"{where}: when", 1)
        except DefinitionError as exc:
            problems.extend(exc.problems)
        if problems:
            raise DefinitionError(problems)
        return Segment(name, version, description, test, reads, definition)

    def _count(self, where: str) -> None:
        self._conditions += 1
        if self._conditions > MAX_CONDITIONS:
            raise _OverLimit([f"{where}: more than {MAX_CONDITIONS} conditions and operators in one segment; "
                              f"split it, or use `in:` for a list of values"])

    def condition(self, node: Any, where: str, depth: int) -> tuple[Test, frozenset[str]]:
        if depth > MAX_NESTING:
            raise _OverLimit([f"{where}: conditions nested more than {MAX_NESTING} levels deep"])
        self._count(where)
        if not isinstance(node, dict) or len(node) != 1:
            raise DefinitionError([f"{where}: a condition is a mapping with exactly one key (all, any, not, repeated, or an attribute); got {brief(node)}"])
        (key, arg), = node.items()
        key = str(key)
        if key in ("all", "any"):
            if not isinstance(arg, list) or not arg:
                raise DefinitionError([f"{where}.{key}: expected a non-empty list of conditions"])
            parts, problems = [], []
            for i, child in enumerate(arg):
                try:
                    parts.append(self.condition(child, f"{where}.{key}[{i}]", depth + 1))
                except _OverLimit:
                    raise
                except DefinitionError as exc:
                    problems.extend(exc.problems)
            if problems:
                raise DefinitionError(problems)
            tests = tuple(t for t, _ in parts)
            reads = frozenset().union(*(r for _, r in parts))
            return _explained((_all if key == "all" else _any)(tests), key, key, tests), reads
        if key == "not":
            test, reads = self.condition(arg, f"{where}.not", depth + 1)
            return _explained(_not(test), "not", "not", (test,)), reads
        if key == "repeated":
            test, reads = self.repeated(arg, f"{where}.repeated")
            return _explained(test, "repeated " + _operand_text(arg)), reads
        return self.attribute(key, arg, where)

    def repeated(self, arg: Any, where: str) -> tuple[Test, frozenset[str]]:
        allowed = {"event", "per", "at_least", "within", "without_order_within"}
        if not isinstance(arg, dict):
            raise DefinitionError([f"{where}: expected a mapping with event, per, at_least, within"])
        problems = []
        if set(arg) - allowed:
            problems.append(f"{where}: unknown key(s) {_names(set(arg) - allowed)}; allowed: {', '.join(sorted(allowed))}")
        event, per, at_least = arg.get("event"), arg.get("per", "product"), arg.get("at_least")
        if not isinstance(event, str) or event not in STREAM_EVENTS:      # a list is no dict key
            problems.append(f"{where}.event: one of {', '.join(STREAM_EVENTS)}; got {brief(event)}")
        if per not in STREAM_KEYS:
            problems.append(f"{where}.per: one of {', '.join(STREAM_KEYS)}; got {brief(per)}")
        if not isinstance(at_least, int) or isinstance(at_least, bool) or not 1 <= at_least <= 100:
            problems.append(f"{where}.at_least: a whole number from 1 to 100; got {brief(at_least)}")
        window = without = None
        try:
            window = _duration(arg.get("within"), f"{where}.within")
        except DefinitionError as exc:
            problems.extend(exc.problems)
        if "without_order_within" in arg:
            try:
                without = _duration(arg["without_order_within"], f"{where}.without_order_within")
            except DefinitionError as exc:
                problems.extend(exc.problems)
        if problems:
            raise DefinitionError(problems)
        self._need_stream(event, per, at_least, window)
        reads = {STREAM_EVENTS[event]}
        if without is not None:
            self._need_stream("order_placed", per, 1, without)
            reads.add("placed")
        return _repeated(f"{event}:{per}", at_least, window, f"order_placed:{per}", without), frozenset(reads)

    def attribute(self, name: str, ops: Any, where: str) -> tuple[Test, frozenset[str]]:
        label = name
        if name.startswith("custom."):
            key = name[len("custom."):]
            if not key:
                raise DefinitionError([f"{where}: `custom.` needs a field name, like custom.tier"])
            attr = Attr(name, "any", "profile", lambda st, k=key: st.custom.get(k))
        elif name == "bucket":
            attr, ops, label = _bucket(ops, f"{where}.bucket")
        elif name in ATTRS:
            attr = ATTRS[name]
        else:
            hint = difflib.get_close_matches(name, list(ATTRS) + ["all", "any", "not", "repeated", "bucket"], n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise DefinitionError([f"{where}: unknown attribute or keyword {brief(name)}{suggestion}; attributes: {', '.join(ATTRS)}, custom.<field>, bucket"])
        where = f"{where}.{clip(name, 80)}"
        if not isinstance(ops, dict) or not ops:
            raise DefinitionError([f"{where}: expected a mapping of operator -> value, like {{gte: 2}}"])
        tests, reads, problems = [], {attr.group}, []
        for op, operand in ops.items():
            try:
                self._count(where)
                test, extra = self.operator(attr, str(op), operand, f"{where}.{clip(str(op), 40)}")
                tests.append(_explained(test, f"{label} {_OP_TEXT.get(op, op)} {_operand_text(operand)}",
                                        attr=attr))
                reads |= extra
            except _OverLimit:
                raise
            except DefinitionError as exc:
                problems.extend(exc.problems)
        if problems:
            raise DefinitionError(problems)
        return (tests[0] if len(tests) == 1 else _explained(_all(tuple(tests)), label, "all", tuple(tests))), \
            frozenset(reads)

    def operator(self, attr: Attr, op: str, operand: Any, where: str) -> tuple[Test, set[str]]:
        ops = _OPERATORS_BY_KIND[attr.kind]
        if op not in ops:
            raise DefinitionError([f"{where}: operator {brief(op)} does not apply to {attr.kind} attribute {attr.name!r}; use one of {', '.join(sorted(ops))}"])
        get = attr.get
        if op == "exists":
            if not isinstance(operand, bool):
                raise DefinitionError([f"{where}: exists takes true or false"])
            return _static(lambda st: (get(st) is not None) is operand), set()
        if op in ("within", "ago"):
            span = _duration(operand, where)
            return (_within if op == "within" else _ago)(get, span), set()
        if op == "birthday_within":
            span = _duration(operand, where)
            if span % DAY:
                raise DefinitionError([f"{where}: birthdays count whole days, like 7d"])
            return _birthday_within(get, span // DAY), set()
        if op in ("contains", "contains_any"):
            values = [operand] if op == "contains" else operand
            if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
                raise DefinitionError([f"{where}: expected {'a string' if op == 'contains' else 'a non-empty list of strings'}"])
            wanted = frozenset(values)
            return _static(lambda st: not wanted.isdisjoint(get(st))), set()
        if op == "in":
            if not isinstance(operand, list) or not operand:
                raise DefinitionError([f"{where}: expected a non-empty list"])
            values = [self.literal(attr, v, where) for v in operand]
            return _static(lambda st: _member(get(st), values)), set()
        # comparisons: a literal, or another attribute of the same kind as {attr: name}
        compare = _COMPARE[op]
        if isinstance(operand, dict):
            name = operand.get("attr") if set(operand) == {"attr"} else None
            other = ATTRS.get(name) if isinstance(name, str) else None       # a list is no dict key
            if other is None or other.kind != attr.kind:
                raise DefinitionError([f"{where}: compare with a literal or with {{attr: NAME}} naming a {attr.kind} attribute; got {brief(operand)}"])
            return _compare_attrs(get, compare, other.get), {other.group}
        value = self.literal(attr, operand, where)
        if attr.kind == "any":
            return _static(lambda st: _compare_untyped(compare, get(st), value)), set()
        return _compare_literal(get, compare, value), set()

    def literal(self, attr: Attr, value: Any, where: str) -> Any:
        kind = attr.kind
        ok = {
            # NaN and infinities: JSON (the partition's record of its definitions) has neither. An
            # int is finite whatever its size (math.isfinite would overflow past float's range).
            "number": isinstance(value, int) and not isinstance(value, bool) or _finite_float(value),
            "string": isinstance(value, str),
            "bool": isinstance(value, bool),
            "any": isinstance(value, (str, int, bool)) or _finite_float(value),
        }
        if kind == "time":
            return _parsed(parse_rfc3339, value, where, "expected an RFC 3339 timestamp with offset")
        if kind == "date":
            try:
                _dt.date.fromisoformat(value)
                return value          # ISO dates compare correctly as strings
            except (TypeError, ValueError):
                raise DefinitionError([f"{where}: expected a date YYYY-MM-DD, got {brief(value)}"]) from None
        if kind == "bucket":
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= BUCKETS:
                raise DefinitionError([f"{where}: a bucket is a whole number from 0 to {BUCKETS - 1} "
                                       f"({BUCKETS} allowed as a bound); got {brief(value)}"])
            return value
        if not ok[kind]:
            wanted = "string, number or boolean" if kind == "any" else kind
            raise DefinitionError([f"{where}: expected a {wanted} value for {attr.name!r}, got {brief(value)}"])
        return value


def _duration(value: Any, where: str) -> int:
    return _parsed(parse_duration, value, where, "a duration is a string like 30d, 24h, 90m or 45s")


def _parsed(parse: Callable[[str], int], value: Any, where: str, expected: str) -> int:
    """`parse(value)` with timeutil's reasons, clipped; a value that is no text at all is shown briefly."""
    if not isinstance(value, str):
        raise DefinitionError([f"{where}: {expected}, got {brief(value)}"])
    try:
        return parse(value)
    except ValueError as exc:
        raise DefinitionError([f"{where}: {clip(str(exc), 200)}"]) from None


_COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte")
_OPERATORS_BY_KIND = {
    "number": {*_COMPARISONS, "in", "exists"},
    "time": {*_COMPARISONS, "within", "ago", "exists"},
    "string": {"eq", "ne", "in", "exists"},
    "date": {*_COMPARISONS, "birthday_within", "exists"},
    "bool": {"eq", "ne", "exists"},
    "set": {"contains", "contains_any"},
    "any": {*_COMPARISONS, "in", "exists"},
    "bucket": {*_COMPARISONS, "in"},
}
_COMPARE = {"eq": operator.eq, "ne": operator.ne, "gt": operator.gt,
            "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


def _same_kind(a: Any, b: Any) -> bool:
    # bool is an int in Python; a custom field holding true must not equal 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str)
    return True


def _compare_untyped(compare: Callable[[Any, Any], bool], a: Any, b: Any) -> bool:
    """Custom fields hold any JSON scalar: a value of another kind satisfies no comparison."""
    return a is not None and _same_kind(a, b) and compare(a, b)


def _member(value: Any, values: list[Any]) -> bool:
    return value is not None and any(_same_kind(value, v) and value == v for v in values)


def _bucket(ops: Any, where: str) -> tuple[Attr, dict[Any, Any], str]:
    """`bucket: {salt: TEXT, <comparisons>}`: the customer's percentage bucket (stream.model.buckets)
    under that salt (none: unsalted); the rest of the mapping are the usual comparisons."""
    if not isinstance(ops, dict):
        raise DefinitionError([f"{where}: expected a mapping like {{lt: 10}} or {{salt: exp-7, lt: 10}}"])
    salt = ops.get("salt", "")
    problems = []
    if "salt" in ops and (not isinstance(salt, str) or not salt or len(salt.encode()) > MAX_SALT_BYTES):
        problems.append(f"{where}.salt: text of 1 to {MAX_SALT_BYTES} bytes (UTF-8); got {brief(salt)}")
    rest = {op: operand for op, operand in ops.items() if op != "salt"}
    if not rest:
        problems.append(f"{where}: needs a comparison besides the salt, like {{lt: 10}}")
    if problems:
        raise DefinitionError(problems)
    key = salt.encode()

    def get(st: CustomerState) -> int | None:
        return None if st.id_hash is None else bucket_of(st.id_hash, key)
    return Attr("bucket", "bucket", IDENTITY, get), rest, f"bucket[{salt}]" if salt else "bucket"


# ----------------------------------------------------------------------------------------------
# Explanation: what stream.rules.explanation reads; the engine never looks at it, so the hot path is unchanged

@dataclass(frozen=True)
class Node:
    combine: str | None           # all | any | not for a composite; None for a leaf (its own test)
    label: str                    # e.g. "all", "paid_orders >= 2", "last_paid_at" (several operators)
    parts: tuple[Test, ...]
    attr: Attr | None             # a leaf's attribute, whose value the explanation shows


def _explained(test: Test, label: str, combine: str | None = None, parts: tuple[Test, ...] = (),
               attr: Attr | None = None) -> Test:
    """Attach the explanation node to the compiled function itself (`test.node`)."""
    test.node = Node(combine, label, parts, attr)  # type: ignore[attr-defined]
    return test


_OP_TEXT = {"eq": "==", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _operand_text(operand: Any) -> str:
    """An operand as written in YAML flow style, for labels."""
    if isinstance(operand, bool):
        return "true" if operand else "false"
    if isinstance(operand, list):
        return "[" + ", ".join(map(_operand_text, operand)) + "]"
    if isinstance(operand, dict):
        return "{" + ", ".join(f"{k}: {_operand_text(v)}" for k, v in operand.items()) + "}"
    return str(operand)


# ----------------------------------------------------------------------------------------------
# Compiled predicates

def _static(holds: Callable[[CustomerState], bool]) -> Test:
    """A condition time alone cannot change."""
    return lambda st, now: (holds(st), None)


def _compare_literal(get: Callable[[CustomerState], Any], compare: Callable[[Any, Any], bool], value: Any) -> Test:
    """A typed attribute against a literal checked at load time; a missing value satisfies nothing."""
    def test(st: CustomerState, now: int) -> tuple[bool, None]:
        v = get(st)
        return (v is not None and compare(v, value)), None
    return test


def _compare_attrs(get: Callable[[CustomerState], Any], compare: Callable[[Any, Any], bool],
                   other: Callable[[CustomerState], Any]) -> Test:
    def test(st: CustomerState, now: int) -> tuple[bool, None]:
        a, b = get(st), other(st)
        return (a is not None and b is not None and compare(a, b)), None
    return test


def _within(get: Callable[[CustomerState], int | None], span: int) -> Test:
    """now - t < span: holds until t + span."""
    def test(st: CustomerState, now: int) -> tuple[bool, int | None]:
        t = get(st)
        if t is None:
            return False, None
        end = t + span
        return (True, end) if now < end else (False, None)
    return test


def _ago(get: Callable[[CustomerState], int | None], span: int) -> Test:
    """now - t >= span: holds from t + span on."""
    def test(st: CustomerState, now: int) -> tuple[bool, int | None]:
        t = get(st)
        if t is None:
            return False, None
        start = t + span
        return (True, None) if now >= start else (False, start)
    return test


def _birthday_within(get: Callable[[CustomerState], str | None], days: int) -> Test:
    """The next birthday (today counts) is fewer than `days` days away, in UTC calendar days.
    People born on 29 February celebrate on 28 February in other years."""
    def test(st: CustomerState, now: int) -> tuple[bool, int | None]:
        born = get(st)
        if born is None:
            return False, None
        today = _dt.date(1970, 1, 1) + _dt.timedelta(days=now // DAY)
        birthday = _next_birthday(born, today)
        midnight = lambda d: (d - _dt.date(1970, 1, 1)).days * DAY  # noqa: E731
        if (birthday - today).days < days:
            return True, midnight(birthday + _dt.timedelta(days=1))
        return False, midnight(birthday - _dt.timedelta(days=days - 1))
    return test


def _next_birthday(born: str, today: _dt.date) -> _dt.date:
    month, day = int(born[5:7]), int(born[8:10])
    for year in (today.year, today.year + 1):
        try:
            candidate = _dt.date(year, month, day)
        except ValueError:      # 29 February in a common year
            candidate = _dt.date(year, 2, 28)
        if candidate >= today:
            return candidate
    raise AssertionError("unreachable: a birthday recurs within a year")


def _repeated(stream: str, at_least: int, window: int, orders: str, without: int | None) -> Test:
    """Some item has >= at_least events within `window`, and (with `without`) no order of that item
    within `without`. Per item, the condition holds from the order block's end until the
    at_least-th newest event leaves the window; the next flip is the nearest of those instants."""
    def test(st: CustomerState, now: int) -> tuple[bool, int | None]:
        items = st.streams.get(stream)
        if not items:
            return False, None
        ordered = st.streams.get(orders) if without is not None else None
        holds, nxt = False, None
        for key, times in items.items():
            if len(times) < at_least:
                continue
            end = times[-at_least] + window
            if end <= now:
                continue
            flip = end
            if ordered:
                last = ordered.get(key)
                if last is not None and now < last[-1] + without:
                    flip = last[-1] + without
                    if flip >= end:
                        continue         # the order block outlasts the views: never holds
                else:
                    holds = True
            else:
                holds = True
            if nxt is None or flip < nxt:
                nxt = flip
        return holds, nxt
    return test


def _all(tests: tuple[Test, ...]) -> Test:
    def test(st: CustomerState, now: int) -> tuple[bool, int | None]:
        holds, nxt = True, None
        for part in tests:
            value, flip = part(st, now)
            if not value:
                if flip is None:
                    return False, None   # a false part that time cannot turn: nothing to wait for
                holds = False
            if flip is not None and (nxt is None or flip < nxt):
                nxt = flip
        return holds, nxt
    return test


def _any(tests: tuple[Test, ...]) -> Test:
    def test(st: CustomerState, now: int) -> tuple[bool, int | None]:
        holds, nxt = False, None
        for part in tests:
            value, flip = part(st, now)
            if value:
                if flip is None:
                    return True, None    # a true part that time cannot turn: nothing to wait for
                holds = True
            if flip is not None and (nxt is None or flip < nxt):
                nxt = flip
        return holds, nxt
    return test


def _not(inner: Test) -> Test:
    def test(st: CustomerState, now: int) -> tuple[bool, int | None]:
        value, flip = inner(st, now)
        return not value, flip
    return test


def _finite_float(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value)
