"""The `traits:` grammar (docs/traits.md): a trait's definition checked, with every problem of
every trait reported together (each naming its trait and where in it), into the stream.rules.traits.Trait
the engine folds and conditions read. Load time only: what runs per event is in stream.rules.traits."""
from __future__ import annotations

import math
import re
from typing import Any

from stream.model.time import parse_duration
from stream.rules.bounded_yaml import brief, clip
from stream.rules.problems import DefinitionError, key_names
from stream.rules.traits import (AGGREGATIONS, FIELDS, TRAIT_OPERATORS, FieldKind, Filter, Trait, all_filters,
                                 field_filter, new_trait)

_NUMERIC_ONLY = {"sum", "avg", "min", "max"}
_NEEDS_FIELD = {"sum", "avg", "min", "max", "most_frequent", "distinct_count"}
_TRAIT_KEYS = {*AGGREGATIONS, "where", "within", "between", "description", "version"}
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def compile_traits(doc: object, source: str) -> tuple[dict[str, Trait], list[str]]:
    """The traits of a `traits:` mapping that compile, and every problem of the others (so the
    segments can still be checked against those that did)."""
    if not isinstance(doc, dict):
        return {}, [f"{source}: `traits:` is a mapping of name -> trait, like "
                    f"orders_90d: {{count: order_paid, within: 90d}}"]
    traits: dict[str, Trait] = {}
    problems: list[str] = []
    for name, definition in doc.items():
        try:
            trait = compile_trait(str(name), definition)
        except DefinitionError as exc:
            problems.extend(exc.problems)
        else:
            traits[trait.name] = trait
    return traits, problems


def valid_trait_name(name: str) -> bool:
    return _NAME.match(name) is not None


def compile_trait(name: str, definition: object) -> Trait:
    where = f"trait {brief(name)}"
    if not valid_trait_name(name):
        raise DefinitionError([f"{where}: a trait name is lower-case letters, digits and '_', starting with a "
                               f"letter, at most 64 characters"])
    if not isinstance(definition, dict):
        raise DefinitionError([f"{where}: expected a mapping like {{count: order_paid, within: 90d}}"])
    problems: list[str] = []
    unknown = set(definition) - _TRAIT_KEYS
    if unknown:
        problems.append(f"{where}: unknown key(s) {key_names(unknown)}; allowed: an aggregation "
                        f"({', '.join(AGGREGATIONS)}), where, within, between, description")
    given = [key for key in AGGREGATIONS if key in definition]
    if len(given) != 1:
        problems.append(f"{where}: needs exactly one aggregation of {', '.join(AGGREGATIONS)}; "
                        f"got {', '.join(given) or 'none'}")
    if not isinstance(definition.get("description", ""), str):
        problems.append(f"{where}: description must be text")
    version = definition.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        problems.append(f"{where}: version must be a whole number >= 1, got {brief(version)}")
    window = _window(definition, where, problems)
    if len(given) != 1:
        raise DefinitionError(problems)
    aggregation = given[0]
    target = _target(aggregation, definition[aggregation], f"{where}.{aggregation}", problems)
    accepts: Filter | None = None
    if target is not None and "where" in definition:
        accepts = _where(definition["where"], target[0], target[1], f"{where}.where", problems)
    if problems or target is None:
        raise DefinitionError(problems)
    event, field = target
    within, after = window
    return new_trait(name, aggregation, event, field, within, after, definition, accepts)


def _window(definition: dict[Any, Any], where: str, problems: list[str]) -> tuple[int | None, int]:
    if "within" in definition and "between" in definition:
        problems.append(f"{where}: `within` or `between`, not both")
        return None, 0
    if "within" in definition:
        span = _duration(definition["within"], f"{where}.within", problems)
        return span, 0
    if "between" in definition:
        pair = definition["between"]
        if not isinstance(pair, list) or len(pair) != 2:
            problems.append(f"{where}.between: a list of two durations, the farther first, like [90d, 30d]; "
                            f"got {brief(pair)}")
            return None, 0
        far = _duration(pair[0], f"{where}.between[0]", problems)
        near = _duration(pair[1], f"{where}.between[1]", problems)
        if far is not None and near is not None and far <= near:
            problems.append(f"{where}.between: the first duration (how long ago the window starts) must be "
                            f"longer than the second (how long ago it ends); got {brief(pair)}")
        return far, near or 0
    return None, 0


def _duration(value: object, where: str, problems: list[str]) -> int | None:
    try:
        return parse_duration(value)
    except ValueError as exc:
        problems.append(f"{where}: {clip(str(exc), 200)}")
        return None


def _target(aggregation: str, value: object, where: str, problems: list[str]) -> tuple[str, str | None] | None:
    """`event` or `event.field` (`order_placed.items.category`), checked against the contract."""
    if not isinstance(value, str) or not value:
        problems.append(f"{where}: an event type or event.field, like order_paid.amount; got {brief(value)}")
        return None
    event, _, field = value.partition(".")
    if event not in FIELDS:
        problems.append(f"{where}: unknown event type {brief(event)}; one of {', '.join(FIELDS)}")
        return None
    if not field:
        if aggregation in _NEEDS_FIELD:
            problems.append(f"{where}: {aggregation} needs a field, like {event}.{next(iter(FIELDS[event]))}")
            return None
        return event, None
    kind = FIELDS[event].get(field)
    if kind is None:
        problems.append(f"{where}: {event} has no field {brief(field)}; fields: {', '.join(FIELDS[event])}")
        return None
    if aggregation in _NUMERIC_ONLY and kind != "number":
        numeric = [f for f, k in FIELDS[event].items() if k == "number"]
        problems.append(f"{where}: {aggregation} needs a numeric field, and {event}.{field} is text; "
                        f"numeric fields of {event}: {', '.join(numeric) or 'none'}")
        return None
    return event, field


def _where(spec: object, event: str, field: str | None, where: str, problems: list[str]) -> Filter | None:
    """`where: {field: {op: literal, ...}, ...}`: all must hold. Item fields (items.*) filter each
    item, so they need a trait over items.*."""
    if not isinstance(spec, dict) or not spec:
        problems.append(f"{where}: a mapping of event field -> operators, like {{category: {{eq: shoes}}}}")
        return None
    tests: list[Filter] = []
    for key, ops in spec.items():
        name = str(key)
        at = f"{where}.{clip(name, 80)}"
        kind = FIELDS[event].get(name)
        if kind is None:
            problems.append(f"{at}: {event} has no field {brief(name)}; fields: {', '.join(FIELDS[event])}")
            continue
        if name.startswith("items.") and not (field or "").startswith("items."):
            problems.append(f"{at}: an item field filters the items a trait over {event}.items.* aggregates")
            continue
        if not isinstance(ops, dict) or not ops:
            problems.append(f"{at}: expected a mapping of operator -> value, like {{eq: shoes}}")
            continue
        for op, operand in ops.items():
            if _field_operand(kind, str(op), operand, f"{at}.{clip(str(op), 40)}", problems):
                tests.append(field_filter(name, str(op), operand))
    return all_filters(tests) if tests else None


def _field_operand(kind: FieldKind, op: str, operand: object, where: str, problems: list[str]) -> bool:
    """Whether `op` applies to a field of `kind` and `operand` to it (else its problem is listed)."""
    if op not in TRAIT_OPERATORS[kind]:
        problems.append(f"{where}: operator {brief(op)} does not apply to a {kind} field; "
                        f"use one of {', '.join(sorted(TRAIT_OPERATORS[kind]))}")
        return False
    if op == "exists":
        if not isinstance(operand, bool):
            problems.append(f"{where}: exists takes true or false")
            return False
        return True
    literals = operand if op == "in" else [operand]
    if not isinstance(literals, list) or not literals or not all(_literal_of(v, kind) for v in literals):
        wanted = f"a non-empty list of {kind} values" if op == "in" else f"a {kind} value"
        problems.append(f"{where}: expected {wanted}, got {brief(operand)}")
        return False
    return True


def _literal_of(value: object, kind: FieldKind) -> bool:
    if kind == "string":
        return isinstance(value, str)
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and math.isfinite(value))
