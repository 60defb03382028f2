"""Keep the published contract (schemas/*.schema.json) and the implementation in step.

Input: every example, listed or generated, gets the same verdict from the JSON Schema and from
`stream.model.decoding.Decoder`, and the schemas describe exactly the msgspec Structs' fields and constraints.
Output: `stream.model.changes.make_change` + `encode_change` produce what segment_change.schema.json allows.

A case marked xfail(strict=True) is a known mismatch between the contract and the code: fix the code,
then drop the mark.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from stream.model.changes import SegmentChange, encode_change, make_change
from stream.model.decoding import Decoder
from stream.model.events import (
    EVENT_TYPES, Attributes, CartAbandoned, CartUpdated, CustomerErased, CustomerUpdated, DeadLetter,
    MAX_AMOUNT, OrderCancelled, OrderItem, OrderPaid, OrderPlaced, ProductViewed,
)
from stream.model.time import SECOND, from_datetime

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
BASE_URL = "https://segment-stream.dev/schemas/"
TYPES = list(EVENT_TYPES)
UTC = dt.UTC


# --------------------------------------------------------------------------------------------------
# Schemas and validators
# --------------------------------------------------------------------------------------------------

def _load(name: str) -> dict:
    return json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))


TYPE_SCHEMAS = {t: _load(f"{t}.schema.json") for t in TYPES}
EVENT_SCHEMA = _load("event.schema.json")
CHANGE_SCHEMA = _load("segment_change.schema.json")
REGISTRY = Registry().with_resources(
    (s["$id"], Resource.from_contents(s)) for s in (*TYPE_SCHEMAS.values(), EVENT_SCHEMA, CHANGE_SCHEMA))

_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|[+-](\d{2}):(\d{2}))",
                      re.ASCII)


def _is_rfc3339(value: object) -> bool:
    """RFC 3339 date-time with the calendar checked (leap seconds not accepted: the decoder can't hold them)."""
    if not isinstance(value, str):
        return True
    m = _RFC3339.fullmatch(value)
    if not m:
        return False
    try:
        dt.datetime(*(int(g) for g in m.groups()[:6]))
    except ValueError:
        return False
    return m.group(7) is None or (int(m.group(7)) <= 23 and int(m.group(8)) <= 59)


FORMAT_CHECKER = FormatChecker()
if "date-time" not in FORMAT_CHECKER.checkers:
    # jsonschema asserts date-time only with rfc3339-validator installed; the schemas' `pattern` covers the
    # shape either way, this adds the calendar (2025-02-29) so the tests see what a full validator sees.
    FORMAT_CHECKER.checks("date-time")(_is_rfc3339)


def _validator(schema: dict) -> Draft202012Validator:
    return Draft202012Validator(schema, registry=REGISTRY, format_checker=FORMAT_CHECKER)


EVENT_V = _validator(EVENT_SCHEMA)
TYPE_V = {t: _validator(s) for t, s in TYPE_SCHEMAS.items()}
CHANGE_V = _validator(CHANGE_SCHEMA)
# The same schemas with no format assertion at all: what the `pattern`s alone enforce.
EVENT_V_NO_FORMAT = Draft202012Validator(EVENT_SCHEMA, registry=REGISTRY)

DECODER = Decoder()
NOT_JSON = object()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_json(raw: bytes) -> Any:
    """RFC 8259: UTF-8 text, no BOM, no NaN/Infinity. NOT_JSON when raw is not a JSON text."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return NOT_JSON


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode("utf-8")


# --------------------------------------------------------------------------------------------------
# The schema files themselves
# --------------------------------------------------------------------------------------------------

def test_schema_files_are_exactly_the_contract():
    expected = {f"{t}.schema.json" for t in TYPES} | {"event.schema.json", "segment_change.schema.json"}
    assert {p.name for p in SCHEMA_DIR.glob("*.json")} == expected
    assert (SCHEMA_DIR / "README.md").is_file()


@pytest.mark.parametrize("name", [*TYPES, "event", "segment_change"])
def test_schema_is_valid_draft_2020_12(name):
    schema = _load(f"{name}.schema.json")
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"{BASE_URL}{name}.schema.json"
    Draft202012Validator.check_schema(schema)


def test_event_schema_is_a_oneof_over_every_type():
    refs = [branch["$ref"] for branch in EVENT_SCHEMA["oneOf"]]
    assert sorted(refs) == sorted(f"{t}.schema.json" for t in TYPES)
    assert sorted(EVENT_SCHEMA["properties"]["type"]["enum"]) == sorted(TYPES)
    for t, schema in TYPE_SCHEMAS.items():
        assert schema["properties"]["type"]["const"] == t
        assert "type" in schema["required"]


@pytest.mark.parametrize("t", TYPES)
def test_type_schema_accepts_unknown_fields_and_shares_the_common_fields(t):
    schema = TYPE_SCHEMAS[t]
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is True
    common = ("event_id", "customer_id", "occurred_at")
    paid = TYPE_SCHEMAS["order_paid"]["properties"]
    assert {k: schema["properties"][k] for k in common} == {k: paid[k] for k in common}


def _properties(schema: dict, path: str = ""):
    for name, sub in schema.get("properties", {}).items():
        yield f"{path}{name}", sub
        yield from _properties(sub, f"{path}{name}.")
        if isinstance(sub.get("items"), dict):
            yield from _properties(sub["items"], f"{path}{name}[].")


@pytest.mark.parametrize("name", [*TYPES, "segment_change"])
def test_every_field_has_a_description(name):
    missing = [p for p, sub in _properties(_load(f"{name}.schema.json")) if not sub.get("description")]
    assert not missing


def test_format_checker_asserts_date_and_date_time():
    assert not FORMAT_CHECKER.conforms("2025-02-30", "date")
    assert not FORMAT_CHECKER.conforms("2025-02-29T12:00:00Z", "date-time")
    assert FORMAT_CHECKER.conforms("2024-02-29T12:00:00.5+05:30", "date-time")


@pytest.mark.parametrize("t", TYPES)
def test_schema_examples_decode(t):
    examples = TYPE_SCHEMAS[t]["examples"]
    assert examples
    for example in examples:
        EVENT_V.validate(example)
        got = DECODER.decode(encode(example))
        assert type(got) is EVENT_TYPES[t], got


# --------------------------------------------------------------------------------------------------
# Schema <-> Struct: same fields, same required lists, same constraints
# --------------------------------------------------------------------------------------------------

NESTED = {  # object-valued fields whose schema is described by a Struct of their own
    ("order_placed", "items"): OrderItem,
    ("customer_updated", "attributes"): Attributes,
}


def _subschema(t: str, field: str) -> dict:
    prop = TYPE_SCHEMAS[t]["properties"][field]
    return prop.get("items", prop) if prop.get("type") == "array" else prop


@pytest.mark.parametrize("t", TYPES)
def test_schema_fields_equal_struct_fields(t):
    cls = EVENT_TYPES[t]
    fields = msgspec.structs.fields(cls)
    schema = TYPE_SCHEMAS[t]
    assert set(schema["properties"]) == {"type"} | {f.encode_name for f in fields}
    assert set(schema["required"]) == {"type"} | {f.encode_name for f in fields if f.required}
    assert len(schema["required"]) == len(set(schema["required"]))
    assert cls.__struct_fields__ == tuple(f.name for f in fields)


@pytest.mark.parametrize("t, field", list(NESTED))
def test_nested_schema_fields_equal_struct_fields(t, field):
    cls = NESTED[(t, field)]
    fields = msgspec.structs.fields(cls)
    sub = _subschema(t, field)
    assert set(sub["properties"]) == {f.encode_name for f in fields}
    assert set(sub.get("required", [])) == {f.encode_name for f in fields if f.required}
    assert sub.get("additionalProperties", True) is True  # the decoder ignores unknown nested fields too


def _accepts_empty(pattern: str | None, min_length: int | None) -> bool:
    return not (min_length or 0) and (pattern is None or re.search(pattern, "") is not None)


def _sig_from_msgspec(t: mi.Type) -> dict:
    """What a field accepts, in JSON terms, as the decoder sees it (nested objects: just 'object')."""
    if isinstance(t, mi.UnionType):
        parts = [_sig_from_msgspec(m) for m in t.types]
        types = set().union(*(p["types"] for p in parts))
        merged = {k: v for p in parts for k, v in p.items() if k != "types"}
        if "number" in types:
            types.discard("integer")
        return {**merged, "types": types}
    if isinstance(t, mi.StrType):
        return {"types": {"string"}, "pattern": t.pattern, "accepts_empty": _accepts_empty(t.pattern, t.min_length),
                "max_length": t.max_length}
    if isinstance(t, mi.IntType) and (t.ge, t.le) == (-(2**63), 2**63 - 1):
        # custom values: a JSON Schema number cannot tell 2**63 from 9.3e18 (test_what_json_schema_cannot_say)
        return {"types": {"integer"}, "minimum": None}
    if isinstance(t, (mi.FloatType, mi.IntType)):
        assert t.gt is None and t.lt is None and t.multiple_of is None
        return {"types": {"number" if isinstance(t, mi.FloatType) else "integer"}, "minimum": t.ge, "maximum": t.le}
    if isinstance(t, mi.DateTimeType):
        assert t.tz is True  # an offset is required
        return {"types": {"string"}, "format": "date-time"}
    if isinstance(t, mi.DateType):
        return {"types": {"string"}, "format": "date"}
    if isinstance(t, mi.BoolType):
        return {"types": {"boolean"}}
    if isinstance(t, mi.NoneType):
        return {"types": {"null"}}
    if isinstance(t, mi.ListType):
        return {"types": {"array"}, "items": _sig_from_msgspec(t.item_type)}
    if isinstance(t, mi.DictType):
        assert isinstance(t.key_type, mi.StrType)
        return {"types": {"object"}, "values": _sig_from_msgspec(t.value_type), "max_properties": t.max_length,
                "key_max_length": t.key_type.max_length}
    if isinstance(t, mi.StructType):
        return {"types": {"object"}}
    if isinstance(t, mi.AnyType):
        return {"types": {"any"}}
    raise AssertionError(f"no JSON mapping for {t!r}")


def _sig_from_schema(s: dict) -> dict:
    if not s.get("type") and "const" not in s and "enum" not in s:
        return {"types": {"any"}}
    types = set(s["type"]) if isinstance(s["type"], list) else {s["type"]}
    sig: dict[str, Any] = {"types": types}
    if "string" in types:
        if "format" in s:  # timestamps also carry a pattern: the format is what the decoder implements
            sig["format"] = s["format"]
        else:
            sig["pattern"] = s.get("pattern")
            sig["accepts_empty"] = _accepts_empty(s.get("pattern"), s.get("minLength"))
            sig["max_length"] = s.get("maxLength")
    if types & {"number", "integer"}:
        sig["minimum"] = s.get("minimum")
        sig["maximum"] = s.get("maximum")
    if "array" in types:
        sig["items"] = _sig_from_schema(s.get("items", {}))
    if "object" in types and isinstance(s.get("additionalProperties"), dict):
        sig["values"] = _sig_from_schema(s["additionalProperties"])
        sig["max_properties"] = s.get("maxProperties")
        sig["key_max_length"] = s.get("propertyNames", {}).get("maxLength")
    return sig


def _field_cases():
    cases = []
    for t, cls in EVENT_TYPES.items():
        for f in mi.type_info(cls).fields:
            cases.append((t, f.encode_name, f, TYPE_SCHEMAS[t]["properties"].get(f.encode_name)))
    for (t, field), cls in NESTED.items():
        sub = _subschema(t, field)
        for f in mi.type_info(cls).fields:
            cases.append((t, f"{field}.{f.encode_name}", f, sub["properties"].get(f.encode_name)))
    params = []
    for t, path, f, prop in cases:
        params.append(pytest.param(f, prop, id=f"{t}.{path}"))
    return params


@pytest.mark.parametrize("field, prop", _field_cases())
def test_field_constraints_match(field, prop):
    """Types, nullability, non-emptiness, patterns, minimums and formats agree field by field."""
    assert prop is not None, f"the schema has no property {field.encode_name!r}"
    schema_sig = _sig_from_schema(prop)
    if field.encode_name == "currency":  # the schema also pins the length (see test_currency_trailing_newline)
        assert prop.get("minLength") == prop.get("maxLength") == 3
    assert _sig_from_msgspec(field.type) == schema_sig


# --------------------------------------------------------------------------------------------------
# Valid examples: the schema accepts them, the decoder returns the right class with the right values
# --------------------------------------------------------------------------------------------------

T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
COMMON = {"event_id": "evt-1", "customer_id": "cus-1", "occurred_at": "2025-03-01T12:00:00Z"}
COMMON_PY = {"event_id": "evt-1", "customer_id": "cus-1", "occurred_at": T0}
EXTRA = {"schema_version": 7, "trace": {"id": "abc", "spans": [1, 2.5, None, True]}, "note": None}
ITEM = {"product_id": "sku-1", "quantity": 1, "price": 9.99}

MINIMAL = {
    "order_placed": {"order_id": "ord-1", "total": 0, "currency": "EUR", "items": []},
    "order_paid": {"order_id": "ord-1", "amount": 0},
    "order_cancelled": {"order_id": "ord-1"},
    "product_viewed": {"product_id": "sku-1", "category": "books"},
    "cart_updated": {"cart_id": "cart-1", "value": 0, "items": []},
    "cart_abandoned": {"cart_id": "cart-1", "value": 0},
    "customer_updated": {"attributes": {}},
    "customer_erased": {},
}


def ev(t: str, **fields: Any) -> dict:
    return {"type": t, **COMMON, **MINIMAL[t], **fields}


def py(cls: type, **fields: Any) -> Any:
    t = cls.__struct_config__.tag
    minimal = dict(MINIMAL[t])  # all plain values, except attributes: {} decodes to Attributes()
    if t == "customer_updated":
        minimal["attributes"] = Attributes()
    return cls(**{**COMMON_PY, **minimal, **fields})


def _tz(hours: int, minutes: int = 0) -> dt.timezone:
    sign = -1 if hours < 0 else 1
    return dt.timezone(sign * dt.timedelta(hours=abs(hours), minutes=minutes))


VALID = [
    # minimal: required fields only
    *(pytest.param(ev(t), py(cls), id=f"{t}-minimal") for t, cls in EVENT_TYPES.items()),
    # maximal: every optional field, plus unknown fields at every level
    pytest.param(
        ev("order_placed", total=59.9, currency="USD", city="Lyon", country="FR", **EXTRA,
           items=[{**ITEM, "category": "books", "gift_wrap": True},
                  {"product_id": "sku-2", "quantity": 3, "price": 0}]),
        py(OrderPlaced, total=59.9, currency="USD", city="Lyon", country="FR",
           items=[OrderItem("sku-1", 1, 9.99, "books"), OrderItem("sku-2", 3, 0.0)]),
        id="order_placed-maximal"),
    pytest.param(ev("order_placed", items=[{**ITEM, "category": None}], city=None, country=None),
                 py(OrderPlaced, items=[OrderItem("sku-1", 1, 9.99)]), id="order_placed-explicit-nulls"),
    pytest.param(ev("order_paid", amount=1234567.891, **EXTRA), py(OrderPaid, amount=1234567.891),
                 id="order_paid-maximal"),
    pytest.param(ev("order_cancelled", reason="out of stock"), py(OrderCancelled), id="order_cancelled-extra-field"),
    pytest.param(ev("product_viewed", session_id="s-1", **EXTRA), py(ProductViewed, session_id="s-1"),
                 id="product_viewed-maximal"),
    pytest.param(ev("product_viewed", session_id=None), py(ProductViewed), id="product_viewed-null-session"),
    pytest.param(ev("cart_updated", value=12.5, items=[{"sku": "x", "qty": 2}, "free-form", 3, None], **EXTRA),
                 py(CartUpdated, value=12.5, items=[{"sku": "x", "qty": 2}, "free-form", 3, None]),
                 id="cart_updated-maximal"),
    pytest.param(ev("cart_abandoned", value=0.01, **EXTRA), py(CartAbandoned, value=0.01), id="cart_abandoned-maximal"),
    pytest.param(
        ev("customer_updated", attributes={
            "city": "Lyon", "country": "FR", "birth_date": "1990-07-14", "gender": "f", "email_opt_in": True,
            "custom": {"tier": "gold", "points": 1200, "ratio": 0.5, "beta": False}, "shoe_size": 38}, **EXTRA),
        py(CustomerUpdated, attributes=Attributes(
            city="Lyon", country="FR", birth_date=dt.date(1990, 7, 14), gender="f", email_opt_in=True,
            custom={"tier": "gold", "points": 1200, "ratio": 0.5, "beta": False})),
        id="customer_updated-maximal"),
    pytest.param(
        ev("customer_updated", attributes={"city": None, "country": None, "birth_date": None, "gender": None,
                                           "email_opt_in": None}),
        py(CustomerUpdated, attributes=Attributes(None, None, None, None, None)), id="customer_updated-null-clears"),
    pytest.param(ev("customer_updated", attributes={"birth_date": "2000-02-29", "custom": {}}),
                 py(CustomerUpdated, attributes=Attributes(birth_date=dt.date(2000, 2, 29), custom={})),
                 id="customer_updated-leap-birth-date"),
    pytest.param(ev("customer_updated", attributes={"custom": None}),
                 py(CustomerUpdated, attributes=Attributes(custom=None)), id="customer_updated-null-clears-custom"),
    pytest.param(ev("customer_erased", **EXTRA), py(CustomerErased), id="customer_erased-extra-fields"),
    # timestamps
    pytest.param(ev("order_paid", occurred_at="2025-03-01T17:00:00+05:00"),
                 py(OrderPaid, occurred_at=dt.datetime(2025, 3, 1, 17, tzinfo=_tz(5))), id="offset-plus-5"),
    pytest.param(ev("order_paid", occurred_at="2025-03-01T03:30:00-08:30"),
                 py(OrderPaid, occurred_at=dt.datetime(2025, 3, 1, 3, 30, tzinfo=_tz(-8, 30))), id="offset-minus-8-30"),
    pytest.param(ev("order_paid", occurred_at="2025-03-01T12:00:00+00:00"), py(OrderPaid), id="offset-zero"),
    pytest.param(ev("order_paid", occurred_at="2025-03-01T12:00:00-00:00"), py(OrderPaid), id="offset-minus-zero"),
    pytest.param(ev("order_paid", occurred_at="2025-03-01T12:00:00.5Z"),
                 py(OrderPaid, occurred_at=T0.replace(microsecond=500000)), id="fraction-1-digit"),
    pytest.param(ev("order_paid", occurred_at="2025-03-01T17:00:00.123456+05:00"),
                 py(OrderPaid, occurred_at=dt.datetime(2025, 3, 1, 17, 0, 0, 123456, tzinfo=_tz(5))),
                 id="fraction-6-digits-with-offset"),
    pytest.param(ev("order_paid", occurred_at="2025-03-01t12:00:00z"), py(OrderPaid), id="lower-case-t-z"),
    pytest.param(ev("order_paid", occurred_at="2024-02-29T23:59:59Z"),
                 py(OrderPaid, occurred_at=dt.datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)), id="leap-day"),
    # encodings
    pytest.param(ev("customer_erased", customer_id="клиент-№1 🛒"), py(CustomerErased, customer_id="клиент-№1 🛒"),
                 id="non-ascii-ids"),
    pytest.param(b'\n  ' + encode(ev("order_cancelled")) + b'\r\n', py(OrderCancelled), id="surrounding-whitespace"),
    pytest.param(json.dumps(ev("customer_erased", customer_id="Zoë"), ensure_ascii=False).encode("utf-8"),
                 py(CustomerErased, customer_id="Zoë"), id="raw-utf8"),
]


@pytest.mark.parametrize("raw, expected", VALID)
def test_valid_example(raw, expected):
    raw = raw if isinstance(raw, bytes) else encode(raw)
    doc = strict_json(raw)
    assert doc is not NOT_JSON
    assert list(EVENT_V.iter_errors(doc)) == []
    assert list(TYPE_V[doc["type"]].iter_errors(doc)) == []

    got = DECODER.decode(raw)
    assert type(got) is type(expected), got
    assert got == expected
    assert got.occurred_at.utcoffset() == expected.occurred_at.utcoffset()


def test_every_type_has_a_minimal_and_a_maximal_valid_example():
    ids = {p.id for p in VALID}
    for t in TYPES:
        assert f"{t}-minimal" in ids
        assert any(i.startswith(t) and i != f"{t}-minimal" for i in ids), t


# --------------------------------------------------------------------------------------------------
# Invalid examples: the schema rejects them (when they are JSON), the decoder dead-letters them with
# a reason that names the problem and the original bytes
# --------------------------------------------------------------------------------------------------

def at(path: str) -> str:
    """The reason must point at this JSON path, the way msgspec spells it."""
    return re.escape(f"`$.{path}`")


def missing(field: str, where: str | None = None) -> str:
    return re.escape(f"missing required field `{field}`") + (re.escape(f" - at `$.{where}`") if where else "")


BAD_TIMESTAMPS = {  # value -> why it is not RFC 3339 with an offset
    "2025-03-01T12:00:00": "no offset",
    "2025-03-01T12:00:00.250": "no offset, fractional",
    "2025-03-01": "date only",
    "2025-03-01T12:00Z": "no seconds",
    "2025-02-30T12:00:00Z": "Feb 30",
    "2025-02-29T12:00:00Z": "Feb 29 in a common year",
    "2025-04-31T12:00:00Z": "Apr 31",
    "2025-13-01T12:00:00Z": "month 13",
    "2025-03-01T24:00:00Z": "hour 24",
    "2025-03-01T23:59:60Z": "leap second",
    "2025-03-01T12:00:00+05": "offset without minutes",
    "2025-03-01T12:00:00+24:00": "offset hour 24",
    "2025-03-01T12:00:00.Z": "empty fraction",
    "2025-03-01T12:00:00,5Z": "comma fraction",
    "0000-03-01T12:00:00Z": "year 0",
    "20250301T120000Z": "basic format",
    " 2025-03-01T12:00:00Z": "leading space",
    "2025-03-01T12:00:00Z\n": "trailing newline",
    "": "empty",
    "yesterday": "words",
}
# unambiguous ISO 8601 forms: producers must send RFC 3339, the decoder forgives these
BAD_TIMESTAMPS_DECODER_ACCEPTS = {
    "2025-03-01T12:00:00+0500": "offset without a colon",
    "2025-03-01 12:00:00Z": "space instead of T",
}

BAD_VALUES: dict[str, list[Any]] = {  # for every required field: values the contract forbids
    "type": [None, 1, "", "Order_Placed", ["order_paid"]],
    "event_id": ["", 7, None, ["evt-1"]],
    "customer_id": ["", 7, None, {"id": "cus-1"}],
    "occurred_at": ["2025-03-01T12:00:00", "2025-02-30T12:00:00Z", 1740830400, None],
    "order_id": ["", 7, None],
    "product_id": ["", 7, None],
    "category": ["", 7, None],
    "cart_id": ["", 7, None],
    "total": [-0.01, -1, "59.90", None, True, 1e15 + 0.25, 10**16],
    "amount": [-0.01, -1, "59.90", None, False, 1.7e308, 10**16],
    "value": [-0.01, -1, "59.90", None, [1], 1e15 + 0.25, 1.7e308],
    "currency": ["usd", "Usd", "US", "USDX", "", "U$D", 978, None],
    "items": [None, {}, "sku-1", 3],
    "attributes": [None, [], "city=Lyon", 1],
}
OPTIONAL_BAD_VALUES = {  # optional top-level fields: absent and null are fine, these are not
    "order_placed": {"city": ["", 7], "country": ["", ["FR"]]},
    "product_viewed": {"session_id": [7, ["s-1"]]},
}
ITEM_BAD_VALUES = {
    "product_id": ["", 7, None],
    "quantity": [0, -1, 1.5, "1", None, True],
    "price": [-0.01, -5, "9.99", None, 1.7e308],
    "category": ["", 7],
}
ATTRIBUTE_BAD_VALUES = {
    "city": [7, ["Lyon"]],
    "country": [7, False],
    "birth_date": ["2025-02-30", "1990-02-29", "1990-1-1", "19900101", "1990-01-01T00:00:00Z", "01/02/1990", 19900101],
    "gender": [7, {}],
    "email_opt_in": ["yes", 1, "true"],
    "custom": [[], "tier=gold", 7, {"tier": None}, {"tier": ["gold"]}, {"tier": {"level": 1}}],
}



def _invalid_cases() -> list:
    cases = []

    def add(id_: str, raw: bytes | dict, reason: str, marks=()):
        cases.append(pytest.param(raw if isinstance(raw, bytes) else encode(raw), reason, id=id_, marks=marks))

    # every required field of every type: missing, and every forbidden value
    for t, cls in EVENT_TYPES.items():
        required = ["type", *(f.encode_name for f in msgspec.structs.fields(cls) if f.required)]
        for field in required:
            doc = ev(t)
            del doc[field]
            add(f"{t}-missing-{field}", doc, r"no `type` field" if field == "type" else missing(field))
            for bad in BAD_VALUES[field]:
                if field == "type":
                    reason = at("type") if not isinstance(bad, str) else r"unknown event type"
                else:
                    reason = at(field)
                add(f"{t}-{field}={bad!r}", {**ev(t), field: bad}, reason)
        for field, bads in OPTIONAL_BAD_VALUES.get(t, {}).items():
            for bad in bads:
                add(f"{t}-optional-{field}={bad!r}", ev(t, **{field: bad}), at(field))

    # the many ways to get a timestamp wrong
    for value, why in BAD_TIMESTAMPS.items():
        add(f"occurred_at-{why}", ev("order_paid", occurred_at=value), at("occurred_at"))

    # order lines
    items = [ITEM, {**ITEM, "product_id": "sku-2"}]
    for field in ("product_id", "quantity", "price"):
        line = {k: v for k, v in ITEM.items() if k != field}
        add(f"item-missing-{field}", ev("order_placed", items=[ITEM, line]), missing(field, "items[1]"))
    for field, bads in ITEM_BAD_VALUES.items():
        for bad in bads:
            add(f"item-{field}={bad!r}", ev("order_placed", items=[items[0], {**items[1], field: bad}]),
                at(f"items[1].{field}"))
    for bad in (None, "sku-1", 3, ["sku-1"]):
        add(f"item-not-an-object-{bad!r}", ev("order_placed", items=[bad]), at("items[0]"))
    add("currency-trailing-newline", ev("order_placed", currency="USD\n"), at("currency"))

    # profile attributes
    for field, bads in ATTRIBUTE_BAD_VALUES.items():
        for bad in bads:
            add(f"attributes-{field}={bad!r}", ev("customer_updated", attributes={field: bad}),
                re.escape(f"`$.attributes.{field}"))

    # not an event at all
    body = encode(ev("order_paid"))
    for id_, raw, reason in [
        ("empty", b"", "not JSON"),
        ("whitespace", b" \n", "not JSON"),
        ("truncated", body[:-1], "not JSON"),
        ("words", b"order_paid evt-1 cus-1", "not JSON"),
        ("single-quotes", body.replace(b'"', b"'"), "not JSON"),
        ("trailing-garbage", body + b" x", "not JSON"),
        ("two-objects", body + body, "not JSON"),
        ("NaN", body.replace(b'"amount": 0', b'"amount": NaN'), "not JSON"),
        ("Infinity", body.replace(b'"amount": 0', b'"amount": Infinity'), "not JSON"),
        ("utf8-bom", b"\xef\xbb\xbf" + body, "not JSON|UTF-8"),
        ("utf16", body.decode().encode("utf-16"), "not JSON|UTF-8"),
        ("not-utf8-at-start", b"\xff" + body, "not JSON|UTF-8"),
        ("array", b"[]", "JSON object"),
        ("array-of-event", b"[" + body + b"]", "JSON object"),
        ("string", b'"order_paid"', "JSON object"),
        ("number", b"42", "JSON object"),
        ("true", b"true", "JSON object"),
        ("null", b"null", "JSON object"),
        ("empty-object", b"{}", r"no `type` field"),
        ("unknown-type", encode({**ev("order_paid"), "type": "order_refunded"}),
         r"unknown event type: 'order_refunded'"),
        ("type-only", b'{"type": "order_paid"}', missing("event_id")),
    ]:
        add(id_, raw, reason)

    latin1 = encode(ev("customer_erased", customer_id="Zo\u00eb")).replace(b"Zo\\u00eb", b"Zo\xeb")
    add("not-utf8-in-field", latin1, "UTF-8|not JSON")
    add("surrogate-bytes-in-field", encode(ev("customer_erased", customer_id="X")).replace(b'"X"', b'"\xed\xa0\x80"'),
        "UTF-8|not JSON")
    add("not-utf8-in-unknown-field", encode(ev("customer_erased", note="X")).replace(b'"X"', b'"\xff\xfe"'),
        "UTF-8|not JSON")
    add("not-utf8-in-unknown-key", encode(ev("customer_erased", X=1)).replace(b'"X"', b'"\xff"'),
        "UTF-8|not JSON")
    return cases


INVALID = _invalid_cases()


@pytest.mark.parametrize("raw, reason", INVALID)
def test_invalid_example(raw, reason):
    doc = strict_json(raw)
    if doc is not NOT_JSON:
        assert not EVENT_V.is_valid(doc), "event.schema.json accepts it"
        if isinstance(doc, dict) and isinstance(doc.get("type"), str) and doc["type"] in TYPE_V:
            assert not TYPE_V[doc["type"]].is_valid(doc), f"{doc['type']}.schema.json accepts it"

    got = DECODER.decode(raw)
    assert isinstance(got, DeadLetter), f"decoded to {got!r}"
    assert type(got.raw) is bytes and got.raw == raw
    assert re.search(reason, got.reason), got.reason


def test_every_required_field_has_bad_values():
    for cls in EVENT_TYPES.values():
        for f in msgspec.structs.fields(cls):
            if f.required:
                assert BAD_VALUES.get(f.encode_name), f"{cls.__name__}.{f.name}: add forbidden values to BAD_VALUES"
            else:
                bad = OPTIONAL_BAD_VALUES.get(cls.__struct_config__.tag, {})
                assert bad.get(f.encode_name), f"{cls.__name__}.{f.name}"
    for f in msgspec.structs.fields(OrderItem):
        assert ITEM_BAD_VALUES.get(f.encode_name), f"OrderItem.{f.name}"
    for f in msgspec.structs.fields(Attributes):
        assert ATTRIBUTE_BAD_VALUES.get(f.encode_name), f"Attributes.{f.name}"


def test_timestamp_pattern_holds_without_format_assertion():
    """A validator that ignores `format` still rejects a missing offset, an impossible date and a leap second."""
    for value in ("2025-03-01T12:00:00", "2025-02-30T12:00:00Z", "2025-03-01T23:59:60Z", "2025-03-01T12:00:00+0500",
                  "2025-03-01 12:00:00Z", "0000-03-01T12:00:00Z", "2025-03-01T12:00:00+05"):
        assert not EVENT_V_NO_FORMAT.is_valid(ev("order_paid", occurred_at=value)), value
    assert EVENT_V_NO_FORMAT.is_valid(ev("order_paid", occurred_at="2025-03-01T12:00:00.123456789-03:30"))


def test_bytearray_and_memoryview_give_bytes_raw():
    for raw in (bytearray(b"[]"), memoryview(b"[]")):
        got = DECODER.decode(raw)
        assert isinstance(got, DeadLetter) and type(got.raw) is bytes and got.raw == b"[]"


def test_message_over_max_bytes_is_a_dead_letter():
    raw = encode(ev("order_paid"))
    assert EVENT_V.is_valid(strict_json(raw))  # size is the decoder's limit, not the schema's
    small = Decoder(max_bytes=len(raw) - 1)
    got = small.decode(raw)
    assert isinstance(got, DeadLetter) and got.raw == raw
    assert f"{len(raw)} bytes" in got.reason and f"{len(raw) - 1}-byte limit" in got.reason
    assert isinstance(Decoder(max_bytes=len(raw)).decode(raw), OrderPaid)  # the limit itself is allowed
    garbage = b"\xff" * (len(raw) + 10)
    got = small.decode(garbage)
    assert isinstance(got, DeadLetter) and got.raw == garbage and "limit" in got.reason


def test_what_json_schema_cannot_say():
    """The decoder is stricter than any JSON Schema can be on these; schemas/README.md says so. If the decoder
    starts accepting them, update the README and move them to VALID."""
    two_point_oh = encode(ev("order_placed", items=[{**ITEM, "quantity": 2.0}]))
    wide = encode(ev("customer_updated", attributes={"custom": {"n": 2**63}}))
    for raw, where in ((two_point_oh, "`$.items[0].quantity`"), (wide, "`$.attributes.custom[...]`")):
        assert EVENT_V.is_valid(strict_json(raw))
        got = DECODER.decode(raw)
        assert isinstance(got, DeadLetter) and where in got.reason, got


def test_amounts_beyond_the_bound_are_refused_by_both():
    """Amounts are bounded (MAX_AMOUNT), so no sum of them can overflow to infinity: a number beyond
    what a double holds (1e400, which Python reads as inf) and one just above the bound alike."""
    body = encode(ev("order_paid"))
    for text in (b"1e400", b"-1e400", b"1.0000000000000002e15", b"1" + b"0" * 400):
        raw = body.replace(b'"amount": 0', b'"amount": ' + text)
        doc = strict_json(raw)
        assert doc is not NOT_JSON and not EVENT_V.is_valid(doc), text
        got = DECODER.decode(raw)
        assert isinstance(got, DeadLetter) and "`$.amount`" in got.reason, (text, got)
    at_bound = DECODER.decode(body.replace(b'"amount": 0', b'"amount": 1e15'))
    assert isinstance(at_bound, OrderPaid) and at_bound.amount == MAX_AMOUNT


# Every string the state keeps is bounded at the contract (README "State bounds"): each bound is
# accepted at its limit and a dead letter one past it, by the schema and the decoder alike.
_WIDE = "\U0001F600"           # four bytes in UTF-8: the limits count characters, not bytes
LENGTH_BOUNDS = [  # (type, path to the string, limit)
    *((t, (f,), 128) for t in TYPES for f in ("event_id", "customer_id")),
    *((t, ("order_id",), 128) for t in ("order_placed", "order_paid", "order_cancelled")),
    ("order_placed", ("items", 0, "product_id"), 128), ("order_placed", ("items", 0, "category"), 128),
    ("order_placed", ("city",), 128), ("order_placed", ("country",), 64),
    ("product_viewed", ("product_id",), 128), ("product_viewed", ("category",), 128),
    ("product_viewed", ("session_id",), 128),
    ("cart_updated", ("cart_id",), 128), ("cart_abandoned", ("cart_id",), 128),
    ("customer_updated", ("attributes", "city"), 128), ("customer_updated", ("attributes", "country"), 64),
    ("customer_updated", ("attributes", "gender"), 64),
    ("customer_updated", ("attributes", "custom", "tier"), 256),
]


def _with(t: str, path: tuple, value: Any) -> dict:
    doc = json.loads(json.dumps(ev(t, items=[ITEM]) if t == "order_placed" else ev(t)))  # a deep copy
    parent = doc
    for p in path[:-1]:
        parent = parent[p] if isinstance(parent, list) else parent.setdefault(p, {})
    parent[path[-1]] = value
    return doc


@pytest.mark.parametrize("t, path, limit", LENGTH_BOUNDS,
                         ids=lambda v: ".".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_string_length_bounds(t, path, limit):
    for char in ("x", _WIDE):
        at_limit = encode(_with(t, path, char * limit))
        assert EVENT_V.is_valid(strict_json(at_limit))
        assert not isinstance(DECODER.decode(at_limit), DeadLetter)
        over = encode(_with(t, path, char * (limit + 1)))
        assert not EVENT_V.is_valid(strict_json(over))
        got = DECODER.decode(over)
        where = _json_path(path[:-1]) + "[...]" if path[-2:-1] == ("custom",) else _json_path(path)
        assert isinstance(got, DeadLetter) and f"length <= {limit} - at `{where}`" in got.reason, got


def test_custom_map_bounds():
    """At most 64 names per event, each at most 64 characters."""
    def custom(mapping: dict) -> bytes:
        return encode(ev("customer_updated", attributes={"custom": mapping}))
    for ok in (custom({f"k{i}": i for i in range(64)}), custom({"k" * 64: 1})):
        assert EVENT_V.is_valid(strict_json(ok)) and not isinstance(DECODER.decode(ok), DeadLetter)
    for bad, reason in ((custom({f"k{i}": i for i in range(65)}),
                         "`object` of length <= 64 - at `$.attributes.custom`"),
                        (custom({"k" * 65: 1}), "length <= 64 - at `key` in `$.attributes.custom`")):
        assert not EVENT_V.is_valid(strict_json(bad))
        got = DECODER.decode(bad)
        assert isinstance(got, DeadLetter) and reason in got.reason, got


def test_a_megabyte_of_custom_attributes_is_a_dead_letter():
    """The finding: one customer_updated under 1 MiB carrying ~0.7 MB of custom values."""
    raw = encode(ev("customer_updated", attributes={"custom": {f"k{i}": "v" * 12_000 for i in range(60)}}))
    assert 700_000 < len(raw) < DECODER.max_bytes
    got = DECODER.decode(raw)
    assert isinstance(got, DeadLetter) and "`$.attributes.custom[...]`" in got.reason, got


# --------------------------------------------------------------------------------------------------
# Generated events: round trip, and generated mutations rejected by both
# --------------------------------------------------------------------------------------------------

texts = st.text(max_size=12)
ids = st.text(min_size=1, max_size=12)
amounts = st.one_of(st.integers(0, 10**12), st.floats(0, 1e15, allow_nan=False, allow_infinity=False))
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
                         st.floats(allow_nan=False, allow_infinity=False), texts)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)), max_leaves=6)
ABSENT = object()


def same(strategy):
    """(json value, expected Python value) when they are the same thing."""
    return strategy.map(lambda v: (v, v))


@st.composite
def instants(draw):
    naive = draw(st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1)))
    minutes = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    value = naive.replace(tzinfo=dt.timezone(dt.timedelta(minutes=minutes)))
    text = value.isoformat()
    if value.microsecond and draw(st.booleans()):  # fewer fraction digits: .5 rather than .500000
        head, _, tail = text.partition(".")
        text = f"{head}.{tail[:6].rstrip('0')}{tail[6:]}"
    if minutes == 0 and draw(st.booleans()):
        text = text[:-6] + "Z"
    return text, value


@st.composite
def order_items(draw):
    product_id, quantity, price = draw(ids), draw(st.integers(1, 10**6)), draw(amounts)
    category = draw(st.one_of(st.just(ABSENT), st.none(), ids))
    doc = {"product_id": product_id, "quantity": quantity, "price": price}
    if category is not ABSENT:
        doc["category"] = category
    doc.update(draw(st.dictionaries(st.sampled_from(["sku_name", "discount", "meta"]), json_values, max_size=2)))
    return doc, OrderItem(product_id, quantity, price, None if category is ABSENT else category)


def list_of(strategy):
    return st.lists(strategy, max_size=3).map(lambda pairs: ([d for d, _ in pairs], [p for _, p in pairs]))


custom_values = st.one_of(texts, st.integers(-(2**63), 2**63 - 1), st.booleans(),
                          st.floats(allow_nan=False, allow_infinity=False))


@st.composite
def attributes(draw):
    doc, kwargs = {}, {}
    for name, strategy in (("city", same(texts)), ("country", same(texts)), ("gender", same(texts)),
                           ("email_opt_in", same(st.booleans())),
                           ("birth_date", st.dates().map(lambda d: (d.isoformat(), d)))):
        choice = draw(st.sampled_from(["absent", "null", "value"]))
        if choice == "null":
            doc[name] = kwargs[name] = None
        elif choice == "value":
            doc[name], kwargs[name] = draw(strategy)
    if draw(st.booleans()):
        doc["custom"] = kwargs["custom"] = draw(st.dictionaries(texts, custom_values, max_size=4))
    doc.update(draw(st.dictionaries(st.sampled_from(["shoe_size", "loyalty"]), json_values, max_size=2)))
    return doc, Attributes(**kwargs)


FIELD_STRATEGIES = {  # per type: field -> (strategy of (json, python), required?)
    "order_placed": {"order_id": (same(ids), True), "total": (same(amounts), True),
                     "currency": (same(st.from_regex(r"\A[A-Z]{3}\Z")), True),
                     "items": (list_of(order_items()), True),
                     "city": (same(st.one_of(st.none(), ids)), False),
                     "country": (same(st.one_of(st.none(), ids)), False)},
    "order_paid": {"order_id": (same(ids), True), "amount": (same(amounts), True)},
    "order_cancelled": {"order_id": (same(ids), True)},
    "product_viewed": {"product_id": (same(ids), True), "category": (same(ids), True),
                       "session_id": (same(st.one_of(st.none(), texts)), False)},
    "cart_updated": {"cart_id": (same(ids), True), "value": (same(amounts), True),
                     "items": (same(st.lists(json_values, max_size=3)), True)},
    "cart_abandoned": {"cart_id": (same(ids), True), "value": (same(amounts), True)},
    "customer_updated": {"attributes": (attributes(), True)},
    "customer_erased": {},
}


@st.composite
def events(draw, types=tuple(TYPES)):
    """(json document, expected decoded event)."""
    t = draw(st.sampled_from(types))
    cls = EVENT_TYPES[t]
    occurred_text, occurred = draw(instants())
    doc: dict[str, Any] = {"type": t, "event_id": draw(ids), "customer_id": draw(ids), "occurred_at": occurred_text}
    kwargs: dict[str, Any] = {"event_id": doc["event_id"], "customer_id": doc["customer_id"], "occurred_at": occurred}
    for name, (strategy, required) in FIELD_STRATEGIES[t].items():
        if required or draw(st.booleans()):
            doc[name], kwargs[name] = draw(strategy)
    known = {"type"} | set(cls.__struct_fields__)
    doc.update(draw(st.dictionaries(texts.filter(lambda k: k not in known), json_values, max_size=3)))
    if draw(st.booleans()):  # key order must not matter, `type` included
        doc = dict(reversed(list(doc.items())))
    return doc, cls(**kwargs)


def test_strategies_cover_every_field():
    for t, cls in EVENT_TYPES.items():
        own = set(cls.__struct_fields__) - {"event_id", "customer_id", "occurred_at"}
        assert set(FIELD_STRATEGIES[t]) == own, t
        assert {n for n, (_, req) in FIELD_STRATEGIES[t].items() if req} == {
            f.name for f in msgspec.structs.fields(cls) if f.required} - {"event_id", "customer_id", "occurred_at"}


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(case=events(), ascii_only=st.booleans())
def test_generated_events_round_trip(case, ascii_only):
    doc, expected = case
    raw = json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8")
    errors = [e.message for e in EVENT_V.iter_errors(strict_json(raw))]
    assert errors == []
    got = DECODER.decode(raw)
    assert got == expected
    assert got.occurred_at.utcoffset() == expected.occurred_at.utcoffset()


def _numeric_paths(doc: dict) -> list[tuple[tuple, str]]:
    """(path, kind) of every number the contract bounds below."""
    paths = [((k,), "amount") for k in ("total", "amount", "value") if k in doc]
    if doc["type"] == "order_placed":
        for i, _ in enumerate(doc["items"]):
            paths += [(("items", i, "price"), "amount"), (("items", i, "quantity"), "quantity")]
    return paths


def _required_paths(doc: dict) -> list[tuple]:
    cls = EVENT_TYPES[doc["type"]]
    paths = [("type",)] + [(f.encode_name,) for f in msgspec.structs.fields(cls) if f.required]
    if doc["type"] == "order_placed":
        paths += [("items", i, f) for i, _ in enumerate(doc["items"]) for f in ("product_id", "quantity", "price")]
    return paths


def _json_path(path: tuple) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


@FAST
@given(case=events(), data=st.data())
def test_generated_mutations_are_rejected_by_both(case, data):
    doc, _ = case
    doc = json.loads(json.dumps(doc))  # a deep copy
    numeric = _numeric_paths(doc)
    kind = data.draw(st.sampled_from(["drop", "negative"] if numeric else ["drop"]))
    if kind == "drop":
        path = data.draw(st.sampled_from(_required_paths(doc)))
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        del parent[path[-1]]
        where = _json_path(path[:-1])
        expected = ("no `type` field" if path == ("type",) else
                    f"missing required field `{path[-1]}`" + (f" - at `{where}`" if len(path) > 1 else ""))
    else:
        path, what = data.draw(st.sampled_from(numeric))
        bad = data.draw(st.integers(max_value=0) if what == "quantity" else st.one_of(
            st.integers(max_value=-1), st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False)))
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        parent[path[-1]] = bad
        expected = f"at `{_json_path(path)}`"

    raw = encode(doc)
    assert not EVENT_V.is_valid(strict_json(raw))
    got = DECODER.decode(raw)
    assert isinstance(got, DeadLetter), got
    assert got.raw == raw
    assert expected in got.reason, got.reason


# --------------------------------------------------------------------------------------------------
# Output: SegmentChange vs segment_change.schema.json
# --------------------------------------------------------------------------------------------------

def test_change_schema_fields_equal_struct_fields():
    fields = msgspec.structs.fields(SegmentChange)
    assert set(CHANGE_SCHEMA["properties"]) == {f.encode_name for f in fields}
    assert set(CHANGE_SCHEMA["required"]) == {f.encode_name for f in fields}  # every field, always present
    assert CHANGE_SCHEMA["additionalProperties"] is False


AT = from_datetime(dt.datetime(2025, 3, 1, 12, tzinfo=UTC))


@pytest.mark.parametrize("event_id, cause", [("evt-1", "event"), (None, "time")])
@pytest.mark.parametrize("entered, change", [(True, "entered"), (False, "exited")])
@pytest.mark.parametrize("micros, text", [(AT, "2025-03-01T12:00:00Z"), (AT + 250_000, "2025-03-01T12:00:00.250000Z")])
def test_make_change_validates(event_id, cause, entered, change, micros, text):
    made = make_change("cus-1", "big_spenders", entered, micros, event_id, 3)
    doc = json.loads(encode_change(made))
    assert list(CHANGE_V.iter_errors(doc)) == []
    assert doc == {"change_id": made.change_id, "customer_id": "cus-1", "segment": "big_spenders", "change": change,
                   "at": text, "cause": cause, "event_id": event_id, "definition_version": 3}


@pytest.mark.parametrize("entered", [True, False])
def test_definition_change_validates_and_keeps_its_own_id(entered):
    """A move made by a definition change: cause "definition", no event, its own change_id (a time
    move of the same customer, segment, instant and version must not share it)."""
    made = make_change("cus-1", "vip", entered, AT, None, 4, redefined=True)
    doc = json.loads(encode_change(made))
    assert list(CHANGE_V.iter_errors(doc)) == []
    assert (doc["cause"], doc["event_id"], doc["definition_version"]) == ("definition", None, 4)
    assert made.change_id != make_change("cus-1", "vip", entered, AT, None, 4).change_id
    assert not CHANGE_V.is_valid({**doc, "event_id": "evt-1"})      # a definition move cites no event


def test_change_schema_examples_validate():
    for example in CHANGE_SCHEMA["examples"]:
        CHANGE_V.validate(example)
        assert msgspec.convert(example, SegmentChange) is not None


GOOD_CHANGE = {"change_id": "0" * 32, "customer_id": "cus-1", "segment": "vip", "change": "entered",
               "at": "2025-03-01T12:00:00Z", "cause": "event", "event_id": "evt-1", "definition_version": 1}


@pytest.mark.parametrize("patch", [
    {"cause": "time"},                                   # time-caused change citing an event
    {"event_id": None},                                  # event-caused change citing nothing
    {"event_id": ""},
    {"cause": "manual"}, {"change": "joined"},
    {"definition_version": 0}, {"definition_version": 1.5}, {"definition_version": "1"},
    {"at": "2025-03-01T12:00:00+01:00"},                 # UTC only
    {"at": "2025-03-01T12:00:00"}, {"at": "2025-02-30T12:00:00Z"}, {"at": 1740830400},
    {"customer_id": ""}, {"segment": ""}, {"change_id": ""}, {"change_id": None},
    {"extra": 1},                                        # strict: no unknown fields
], ids=repr)
def test_change_schema_is_strict(patch):
    assert CHANGE_V.is_valid(GOOD_CHANGE)
    assert not CHANGE_V.is_valid({**GOOD_CHANGE, **patch})


@pytest.mark.parametrize("field", list(GOOD_CHANGE))
def test_change_schema_requires_every_field(field):
    assert not CHANGE_V.is_valid({k: v for k, v in GOOD_CHANGE.items() if k != field})


# realistic inputs: what the engine can pass (ids from decoded events, versions >= 1)
change_inputs = st.fixed_dictionaries({
    "customer_id": ids,
    "segment": ids,
    "entered": st.booleans(),
    "at": st.integers(from_datetime(dt.datetime(1, 1, 1, tzinfo=UTC)),
                      from_datetime(dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))),
    "event_id": st.one_of(st.none(), ids),
    "definition_version": st.integers(1, 10**6),
})


@FAST
@given(inputs=change_inputs)
def test_generated_changes_validate_and_ids_are_deterministic(inputs):
    made = make_change(**inputs)
    doc = json.loads(encode_change(made))
    assert [e.message for e in CHANGE_V.iter_errors(doc)] == []
    assert doc["cause"] == ("time" if inputs["event_id"] is None else "event")
    again = make_change(**inputs)
    assert again == made and encode_change(again) == encode_change(made)


@FAST
@given(inputs=change_inputs, data=st.data())
def test_change_id_differs_when_any_input_differs(inputs, data):
    field = data.draw(st.sampled_from(sorted(inputs)))
    other = data.draw(change_inputs)[field]
    assume(other != inputs[field])
    changed = {**inputs, field: other}
    assert make_change(**changed).change_id != make_change(**inputs).change_id


def test_change_id_does_not_collide_across_fields():
    one = make_change("a\x1fb", "c", True, AT, "evt-1", 1)
    two = make_change("a", "b\x1fc", True, AT, "evt-1", 1)
    assert one.change_id != two.change_id


def test_change_at_keeps_four_year_digits_at_the_earliest_instant():
    """strftime('%Y') wrote year 500 as '500'; the earliest accepted instant must still be RFC 3339."""
    micros = from_datetime(dt.datetime(1900, 1, 1, tzinfo=UTC))
    doc = json.loads(encode_change(make_change("cus-1", "vip", True, micros, None, 1)))
    assert doc["at"] == "1900-01-01T00:00:00Z"
    assert CHANGE_V.is_valid(doc)


@pytest.mark.parametrize("value, accepted", [
    ("1899-12-31T23:59:59.999999Z", False),
    ("1900-01-01T00:00:00Z", True),
    ("1900-01-01T00:30:00+01:00", False),        # 1899 in UTC
    ("8999-12-31T23:59:59.999999Z", True),
    ("9000-01-01T00:00:00Z", False),
    ("9999-12-31T23:00:00-05:00", False),       # year 10000 in UTC: would not format
    ("0500-01-01T00:00:00Z", False),
])
def test_occurred_at_range(value, accepted):
    """Event times are bounded so that time + the longest rule duration (100 years) stays writable."""
    raw = encode(ev("order_paid", occurred_at=value))
    decoded = DECODER.decode(raw)
    if accepted:
        assert isinstance(decoded, OrderPaid)
    else:
        assert isinstance(decoded, DeadLetter) and "outside 1900-01-01 .. 9000-01-01 UTC" in decoded.reason
        assert "`$.occurred_at`" in decoded.reason and decoded.raw == raw


def test_change_at_is_whole_microseconds_in_utc():
    made = make_change("cus-1", "vip", False, AT + 3 * SECOND + 7, None, 2)
    assert made.at == "2025-03-01T12:00:03.000007Z"


@pytest.mark.parametrize("value", sorted(BAD_TIMESTAMPS_DECODER_ACCEPTS))
def test_decoder_forgives_unambiguous_iso8601_timestamps(value):
    """A deliberate superset (schemas/README.md): the schema rejects these, the decoder reads them
    exactly, because re-parsing every timestamp to refuse an unambiguous one would cost each event."""
    raw = encode(ev("order_paid", occurred_at=value))
    assert not EVENT_V.is_valid(json.loads(raw))
    decoded = DECODER.decode(raw)
    assert isinstance(decoded, OrderPaid)
    assert decoded.occurred_at == dt.datetime.fromisoformat(value)
