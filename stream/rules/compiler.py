"""The compiler: a segment's definition (YAML data), validated, into the compiled condition the
engine evaluates (stream.rules.predicates) and the nodes (stream.rules.nodes) stream.rules.explanation walks. Every
problem of a definition is reported together, each naming its segment and where in it.

Each condition also knows which groups of state fields it reads (`reads`, stream.rules.attributes).
"""
from __future__ import annotations

import datetime as _dt
import difflib
import math
import operator
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeGuard

from stream.model.buckets import BUCKETS, MAX_SALT_BYTES, bucket_of
from stream.model.state import CustomerState
from stream.model.time import DAY, parse_duration, parse_rfc3339
from stream.rules import predicates as pr
from stream.rules.attributes import ATTRS, IDENTITY, STREAM_EVENTS, STREAM_KEYS, Attr, Kind
from stream.rules.bounded_yaml import brief, clip
from stream.rules.nodes import Condition, Segment, Stream, combined
from stream.rules.predicates import Compare, Scalar, Test, Value
from stream.rules.problems import DefinitionError, key_names
from stream.rules.rfm import Rfm, condition as rfm_condition, value_at as rfm_value_at
from stream.rules.traits import TRAIT_OPERATORS, Trait, comparison as trait_comparison, condition as trait_condition

# Bounds on one segment's compiled condition tree: every event re-evaluates the tree of each segment
# it affects, and compiling, evaluating and explaining it recurse once per level.
MAX_CONDITIONS = 1000        # conditions and operators in one segment
MAX_NESTING = 32             # conditions nested (all, any, not) in one segment


class _OverLimit(DefinitionError):
    """A segment over MAX_CONDITIONS or MAX_NESTING: its compilation stops at once (what else is
    wrong with it no longer matters, and going on would cost what the limit is there to prevent)."""


@contextmanager
def _gathered(problems: list[str]) -> Iterator[None]:
    """Compiling one of several parts (conditions in a list, operators on an attribute): its problems
    join its siblings' in `problems`, so all are reported together; over a limit stops at once."""
    try:
        yield
    except _OverLimit:
        raise
    except DefinitionError as exc:
        problems.extend(exc.problems)


_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


def valid_name(name: str) -> bool:
    return _NAME.match(name) is not None


_SEGMENT_KEYS = {"when", "description", "version"}


class Compiler:
    def __init__(self, traits: dict[str, Trait] | None = None, broken: frozenset[str] = frozenset(),
                 rfm: Rfm | None = None, rfm_broken: bool = False) -> None:
        self._streams: dict[tuple[str, str], tuple[int, int]] = {}
        self._traits = traits or {}
        self._broken = broken            # traits defined but invalid (their problems are reported)
        self._rfm = rfm                  # the rfm section (stream.rules.rfm), None without one
        self._rfm_broken = rfm_broken    # ... defined but invalid (its problems are reported)
        self._reads_rfm = False

    def streams(self) -> list[Stream]:
        return [Stream(e, p, keep, horizon) for (e, p), (keep, horizon) in sorted(self._streams.items())]

    def _need_stream(self, event: str, per: str, keep: int, horizon: int) -> None:
        old_keep, old_horizon = self._streams.get((event, per), (0, 0))
        self._streams[(event, per)] = (max(old_keep, keep), max(old_horizon, horizon))

    def segment(self, name: str, definition: object) -> Segment:
        where = f"segment {brief(name)}"
        self._conditions = 0
        self._read: set[str] = set()
        self._reads_rfm = False
        self._references: set[str] = set()
        self._exits: dict[str, int] = {}          # name -> the longest left_within reading it
        if not valid_name(name):
            raise DefinitionError([f"{where}: a name is lower-case letters, digits and '-', starting with a letter "
                                   f"or digit, at most 64 characters"])
        if not isinstance(definition, dict):
            raise DefinitionError([f"{where}: expected a mapping with `when:` (and optional description, version)"])
        problems = []
        unknown = set(definition) - _SEGMENT_KEYS
        if unknown:
            problems.append(f"{where}: unknown key(s) {key_names(unknown)}; "
                            f"allowed: {', '.join(sorted(_SEGMENT_KEYS))}")
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
            when = self.condition(definition["when"], f"{where}: when", 1)
        except DefinitionError as exc:
            problems.extend(exc.problems)
        if problems:
            raise DefinitionError(problems)
        return Segment(name, version, description, when, definition, frozenset(self._read), rfm=self._reads_rfm,
                       references=frozenset(self._references), exits=dict(self._exits))

    def _count(self, where: str) -> None:
        self._conditions += 1
        if self._conditions > MAX_CONDITIONS:
            raise _OverLimit([f"{where}: more than {MAX_CONDITIONS} conditions and operators in one segment; "
                              f"split it, or use `in:` for a list of values"])

    def condition(self, node: object, where: str, depth: int) -> Condition:
        if depth > MAX_NESTING:
            raise _OverLimit([f"{where}: conditions nested more than {MAX_NESTING} levels deep"])
        self._count(where)
        if not isinstance(node, dict) or len(node) != 1:
            raise DefinitionError([f"{where}: a condition is a mapping with exactly one key (all, any, not, repeated, "
                                   f"segment, or an attribute); got {brief(node)}"])
        (key, arg), = node.items()
        key = str(key)
        if key in ("all", "any"):
            if not isinstance(arg, list) or not arg:
                raise DefinitionError([f"{where}.{key}: expected a non-empty list of conditions"])
            parts: list[Condition] = []
            problems: list[str] = []
            for i, child in enumerate(arg):
                with _gathered(problems):
                    parts.append(self.condition(child, f"{where}.{key}[{i}]", depth + 1))
            if problems:
                raise DefinitionError(problems)
            return combined("all" if key == "all" else "any", key, tuple(parts))
        if key == "not":
            return combined("not", "not", (self.condition(arg, f"{where}.not", depth + 1),))
        if key == "repeated":
            test, reads = self.repeated(arg, f"{where}.repeated")
            return Condition(test, reads, "repeated " + _operand_text(arg))
        if key == "segment":
            return self.reference(arg, f"{where}.segment")
        return self.attribute(key, arg, where)

    def reference(self, arg: object, where: str) -> Condition:
        """`segment: {name: N}` (a member of N), with `for: D` (a member for D or longer) or
        `left_within: D` (not a member, and left N less than D ago). Whether N exists, and that
        references make no cycle, the catalog checks (stream.rules.catalog), as it sees them all."""
        allowed = {"name", "for", "left_within"}
        if not isinstance(arg, dict):
            raise DefinitionError([f"{where}: expected a mapping like {{name: loyal}}, {{name: loyal, for: 30d}} "
                                   f"or {{name: churned, left_within: 30d}}"])
        problems = []
        if set(arg) - allowed:
            problems.append(f"{where}: unknown key(s) {key_names(set(arg) - allowed)}; "
                            f"allowed: {', '.join(sorted(allowed))}")
        name: Any = arg.get("name")
        if not isinstance(name, str) or not valid_name(name):
            problems.append(f"{where}.name: a segment name; got {brief(name)}")
        if "for" in arg and "left_within" in arg:
            problems.append(f"{where}: `for:` and `left_within:` exclude each other; use one")
        span: int | None = None
        for key in ("for", "left_within"):
            if key in arg:
                with _gathered(problems):
                    span = _duration(arg[key], f"{where}.{key}")
        if problems:
            raise DefinitionError(problems)
        self._references.add(name)
        if "left_within" in arg and span is not None:
            self._exits[name] = max(span, self._exits.get(name, 0))
            return Condition(pr.left_within(name, span), frozenset(),
                             f"segment {name} left_within {arg['left_within']}", reference=(name, "left"))
        if span is not None:
            return Condition(pr.member_for(name, span), frozenset(), f"segment {name} for {arg['for']}",
                             reference=(name, "member"))
        return Condition(pr.member_of(name), frozenset(), f"segment {name}", reference=(name, "member"))

    def repeated(self, arg: object, where: str) -> tuple[Test, frozenset[str]]:
        allowed = {"event", "per", "at_least", "within", "without_order_within"}
        if not isinstance(arg, dict):
            raise DefinitionError([f"{where}: expected a mapping with event, per, at_least, within"])
        problems = []
        if set(arg) - allowed:
            problems.append(f"{where}: unknown key(s) {key_names(set(arg) - allowed)}; "
                            f"allowed: {', '.join(sorted(allowed))}")
        # YAML data, checked here
        event: Any = arg.get("event")
        per: Any = arg.get("per", "product")
        at_least: Any = arg.get("at_least")
        if not isinstance(event, str) or event not in STREAM_EVENTS:      # a list is no dict key
            problems.append(f"{where}.event: one of {', '.join(STREAM_EVENTS)}; got {brief(event)}")
        if per not in STREAM_KEYS:
            problems.append(f"{where}.per: one of {', '.join(STREAM_KEYS)}; got {brief(per)}")
        if not isinstance(at_least, int) or isinstance(at_least, bool) or not 1 <= at_least <= 100:
            problems.append(f"{where}.at_least: a whole number from 1 to 100; got {brief(at_least)}")
        window: int | None = None
        without: int | None = None
        try:
            window = _duration(arg.get("within"), f"{where}.within")
        except DefinitionError as exc:
            problems.extend(exc.problems)
        if "without_order_within" in arg:
            try:
                without = _duration(arg["without_order_within"], f"{where}.without_order_within")
            except DefinitionError as exc:
                problems.extend(exc.problems)
        if problems or window is None:          # no window: its problem is listed
            raise DefinitionError(problems)
        self._need_stream(event, per, at_least, window)
        reads = {STREAM_EVENTS[event]}
        if without is not None:
            self._need_stream("order_placed", per, 1, without)
            reads.add("placed")
        return pr.repeated(f"{event}:{per}", at_least, window, f"order_placed:{per}", without), frozenset(reads)

    def attribute(self, name: str, ops: object, where: str) -> Condition:
        label = name
        if name.startswith("trait."):
            return self.trait(name, ops, where)
        if name.startswith("rfm."):
            return self.rfm(name, ops, where)
        if name.startswith("custom."):
            key = name[len("custom."):]
            if not key:
                raise DefinitionError([f"{where}: `custom.` needs a field name, like custom.tier"])
            attr = Attr(name, "any", "profile", _custom_field(key))
        elif name == "bucket":
            attr, ops, label = _bucket(ops, f"{where}.bucket")
        elif name in ATTRS:
            attr = ATTRS[name]
        else:
            hint = difflib.get_close_matches(name, list(ATTRS) + ["all", "any", "not", "repeated", "segment", "bucket"],
                                             n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise DefinitionError([f"{where}: unknown attribute or keyword {brief(name)}{suggestion}; "
                                   f"attributes: {', '.join(ATTRS)}, custom.<field>, trait.<name>, "
                                   f"rfm.r/f/m/cell, bucket"])

        def leaf(op: str, operand: object, at: str, text: str) -> Condition:
            test, extra = self.operator(attr, op, operand, at)
            return Condition(test, frozenset({attr.group, *extra}), text, attr=attr)
        return self._operators(label, ops, f"{where}.{clip(name, 80)}", leaf)

    def _operators(self, label: str, ops: object, where: str, leaf: Callable[[str, object, str, str], Condition]
                   ) -> Condition:
        """`{op: operand, ...}` on one attribute, trait or score: each operator the leaf
        `leaf(op, operand, where, text)` makes (text: its label), all of them holding; every
        operator's problems reported together."""
        if not isinstance(ops, dict) or not ops:
            raise DefinitionError([f"{where}: expected a mapping of operator -> value, like {{gte: 2}}"])
        leaves: list[Condition] = []
        problems: list[str] = []
        for op, operand in ops.items():
            with _gathered(problems):
                self._count(where)
                leaves.append(leaf(str(op), operand, f"{where}.{clip(str(op), 40)}",
                                   f"{label} {_OP_TEXT.get(op, op)} {_operand_text(operand)}"))
        if problems:
            raise DefinitionError(problems)
        return leaves[0] if len(leaves) == 1 else combined("all", label, tuple(leaves))

    def trait(self, name: str, ops: object, where: str) -> Condition:
        """`trait.<name>: {op: literal, ...}`: the trait's value at now (stream.rules.traits), each
        operator a leaf as for an attribute; a missing value (an empty window's avg) satisfies none."""
        key = name[len("trait."):]
        trait = self._traits.get(key)
        if trait is None and key in self._broken:
            raise DefinitionError([f"{where}: trait {brief(key)} is invalid (its problems are listed)"])
        if trait is None:
            hint = difflib.get_close_matches(key, list(self._traits), n=1)
            suggestion = f" (did you mean {'trait.' + hint[0]!r}?)" if hint else ""
            defined = ", ".join(sorted(self._traits)) or "none"
            raise DefinitionError([f"{where}: unknown trait {brief(key)}{suggestion}; "
                                   f"traits defined: {clip(defined, 200)}"])
        self._read.add(key)
        attr = Attr(name, trait.kind, trait.group, lambda st: None)     # for the literals' checks
        allowed = TRAIT_OPERATORS[trait.kind]

        def leaf(op: str, operand: object, at: str, text: str) -> Condition:
            if op not in allowed:
                raise DefinitionError([f"{at}: operator {brief(op)} does not apply to {trait.kind} trait "
                                       f"{key!r}; use one of {', '.join(sorted(allowed))}"])
            return Condition(self._trait_test(trait, attr, op, operand, at), frozenset({trait.group}), text,
                             trait=trait)
        return self._operators(name, ops, f"{where}.{clip(name, 80)}", leaf)

    def rfm(self, name: str, ops: object, where: str) -> Condition:
        """`rfm.r|f|m|cell: {op: literal, ...}`: the customer's RFM scores at now (stream.rules.rfm),
        each operator a leaf; a customer without scores satisfies no comparison."""
        if self._rfm is None and self._rfm_broken:
            raise DefinitionError([f"{where}: the rfm section is invalid (its problems are listed)"])
        rfm = self._rfm

        def leaf(op: str, operand: object, at: str, text: str) -> Condition:
            test = rfm_condition(rfm, name, op, operand, at)
            assert rfm is not None                     # (rfm_condition refuses a missing section)
            return Condition(test, rfm.groups, text, value=rfm_value_at(rfm, name))
        condition = self._operators(name, ops, f"{where}.{clip(name, 80)}", leaf)
        assert rfm is not None
        self._reads_rfm = True
        self._read |= rfm.traits                 # a trait measure: its changes re-evaluate the segment
        return condition

    def _trait_test(self, trait: Trait, attr: Attr, op: str, operand: object, where: str) -> Test:
        """One operator on a trait's value, its literal checked for `attr`'s kind."""
        if op == "exists":
            if not isinstance(operand, bool):
                raise DefinitionError([f"{where}: exists takes true or false"])
            return trait_condition(trait, lambda v: (v is not None) is operand)
        if op == "in":
            if not isinstance(operand, list) or not operand:
                raise DefinitionError([f"{where}: expected a non-empty list"])
            values = [self.literal(attr, v, where) for v in operand]
            return trait_condition(trait, lambda v: pr.member(v, values))
        literal = self.literal(attr, operand, where)
        if isinstance(literal, bool):            # (the trait kinds, number and string, take none)
            raise DefinitionError([f"{where}: expected a {attr.kind} value, got {brief(operand)}"])
        return trait_comparison(trait, op, literal)

    def operator(self, attr: Attr, op: str, operand: object, where: str) -> tuple[Test, set[str]]:
        ops = _OPERATORS_BY_KIND[attr.kind]
        if op not in ops:
            raise DefinitionError([f"{where}: operator {brief(op)} does not apply to {attr.kind} attribute "
                                   f"{attr.name!r}; use one of {', '.join(sorted(ops))}"])
        get = attr.get
        if op == "exists":
            if not isinstance(operand, bool):
                raise DefinitionError([f"{where}: exists takes true or false"])
            return pr.static(lambda st: (get(st) is not None) is operand), set()
        if op in ("within", "ago"):
            span = _duration(operand, where)
            return (pr.within if op == "within" else pr.ago)(get, span), set()
        if op == "birthday_within":
            span = _duration(operand, where)
            if span % DAY:
                raise DefinitionError([f"{where}: birthdays count whole days, like 7d"])
            return pr.birthday_within(get, span // DAY), set()
        if op in ("contains", "contains_any"):
            values = [operand] if op == "contains" else operand
            if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
                expected = "a string" if op == "contains" else "a non-empty list of strings"
                raise DefinitionError([f"{where}: expected {expected}"])
            wanted = frozenset(values)
            return pr.static(lambda st: not wanted.isdisjoint(get(st))), set()
        if op == "in":
            if not isinstance(operand, list) or not operand:
                raise DefinitionError([f"{where}: expected a non-empty list"])
            values = [self.literal(attr, v, where) for v in operand]
            return pr.static(lambda st: pr.member(get(st), values)), set()
        # comparisons: a literal, or another attribute of the same kind as {attr: name}
        compare = _COMPARE[op]
        if isinstance(operand, dict):
            name = operand.get("attr") if set(operand) == {"attr"} else None
            other = ATTRS.get(name) if isinstance(name, str) else None       # a list is no dict key
            if other is None or other.kind != attr.kind:
                raise DefinitionError([f"{where}: compare with a literal or with {{attr: NAME}} naming a {attr.kind} "
                                       f"attribute; got {brief(operand)}"])
            return pr.compare_attrs(get, compare, other.get), {other.group}
        value = self.literal(attr, operand, where)
        if attr.kind == "any":
            return pr.static(lambda st: pr.compare_untyped(compare, get(st), value)), set()
        return pr.compare_literal(get, compare, value), set()

    def literal(self, attr: Attr, value: object, where: str) -> Scalar:
        kind = attr.kind
        if kind == "time":
            return _parsed(parse_rfc3339, value, where, "expected an RFC 3339 timestamp with offset")
        if kind == "date":
            if not _iso_date(value):
                raise DefinitionError([f"{where}: expected a date YYYY-MM-DD, got {brief(value)}"])
            return value          # ISO dates compare correctly as strings
        if kind == "bucket":
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= BUCKETS:
                raise DefinitionError([f"{where}: a bucket is a whole number from 0 to {BUCKETS - 1} "
                                       f"({BUCKETS} allowed as a bound); got {brief(value)}"])
            return value
        if not _literal_of(value, kind):
            wanted = "string, number or boolean" if kind == "any" else kind
            raise DefinitionError([f"{where}: expected a {wanted} value for {attr.name!r}, got {brief(value)}"])
        return value


def _duration(value: object, where: str) -> int:
    return _parsed(parse_duration, value, where, "a duration is a string like 30d, 24h, 90m or 45s")


def _parsed(parse: Callable[[str], int], value: object, where: str, expected: str) -> int:
    """`parse(value)` with stream.model.time's reasons, clipped; a value that is no text at all is shown briefly."""
    if not isinstance(value, str):
        raise DefinitionError([f"{where}: {expected}, got {brief(value)}"])
    try:
        return parse(value)
    except ValueError as exc:
        raise DefinitionError([f"{where}: {clip(str(exc), 200)}"]) from None


_COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte")
_OPERATORS_BY_KIND: dict[Kind, set[str]] = {
    "number": {*_COMPARISONS, "in", "exists"},
    "time": {*_COMPARISONS, "within", "ago", "exists"},
    "string": {"eq", "ne", "in", "exists"},
    "date": {*_COMPARISONS, "birthday_within", "exists"},
    "bool": {"eq", "ne", "exists"},
    "set": {"contains", "contains_any"},
    "any": {*_COMPARISONS, "in", "exists"},
    "bucket": {*_COMPARISONS, "in"},
}
_COMPARE: dict[str, Compare] = {"eq": operator.eq, "ne": operator.ne, "gt": operator.gt,
            "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


def _custom_field(key: str) -> Callable[[CustomerState], Value]:
    # `key` a default rather than a closure cell: read on every evaluation, a default is the faster
    def get(st: CustomerState, key: str = key) -> Value:
        return st.custom.get(key)
    return get


def _bucket(ops: object, where: str) -> tuple[Attr, dict[Any, object], str]:
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


_OP_TEXT = {"eq": "==", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _operand_text(operand: object) -> str:
    """An operand as written in YAML flow style, for labels."""
    if isinstance(operand, bool):
        return "true" if operand else "false"
    if isinstance(operand, list):
        return "[" + ", ".join(map(_operand_text, operand)) + "]"
    if isinstance(operand, dict):
        return "{" + ", ".join(f"{k}: {_operand_text(v)}" for k, v in operand.items()) + "}"
    return str(operand)


def _finite_float(value: object) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def _iso_date(value: object) -> TypeGuard[str]:
    """A date as YYYY-MM-DD (what birth dates hold)."""
    if not isinstance(value, str):
        return False
    try:
        _dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _literal_of(value: object, kind: Kind) -> TypeGuard[Scalar]:
    """Whether `value` is a literal for a number, string, bool or untyped (custom) attribute."""
    if kind == "number":
        # NaN and infinities: JSON (the partition's record of its definitions) has neither. An
        # int is finite whatever its size (math.isfinite would overflow past float's range).
        return isinstance(value, int) and not isinstance(value, bool) or _finite_float(value)
    if kind == "string":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    return isinstance(value, (str, int, bool)) or _finite_float(value)
