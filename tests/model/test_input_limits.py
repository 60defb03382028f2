"""Hostile input messages: every one becomes an event or a DeadLetter with a reason, never an
exception (stream.model.decoding.Decoder, and the per-message path both runtimes share,
stream.runtime.intake.Intake)."""
from __future__ import annotations

import json
import math
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.model.decoding import Decoder
from stream.model.events import (MAX_AMOUNT, MAX_DEPTH, CustomerErased, CustomerUpdated, DeadLetter, OrderPaid,
                                 OrderPlaced)

DECODER = Decoder()
COMMON = '"event_id":"e-1","customer_id":"c-1","occurred_at":"2025-03-01T12:00:00Z"'
PAID = '{"type":"order_paid",' + COMMON + ',"order_id":"o-1","amount":10}'


def nested(depth: int, opener: str = '{"a":', closer: str = "}") -> str:
    return opener * depth + "1" + closer * depth


# ---- nesting depth -----------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    nested(100_000),                                                  # the whole message
    PAID[:-1] + ',"ignored":' + nested(100_000) + "}",                # inside a field the decoder skips
    PAID[:-1] + ',"ignored":' + nested(100_000, "[", "]") + "}",
    PAID[:-1] + ',"ignored":' + nested(sys.getrecursionlimit() + 10) + "}",
], ids=["top", "ignored-object", "ignored-array", "just-past-the-recursion-limit"])
def test_deep_nesting_is_a_dead_letter_naming_the_limit(raw):
    got = DECODER.decode(raw.encode())
    assert isinstance(got, DeadLetter), got
    assert f"deeper than {MAX_DEPTH}" in got.reason


def test_depth_limit_boundary():
    """MAX_DEPTH levels (the event object counts as one) are fine; one more is not."""
    def message(extra_levels: int) -> bytes:
        return (PAID[:-1] + ',"x":' + "[" * extra_levels + "]" * extra_levels + "}").encode()
    assert isinstance(DECODER.decode(message(MAX_DEPTH - 1)), OrderPaid)
    assert isinstance(DECODER.decode(message(MAX_DEPTH)), DeadLetter)


def test_many_brackets_inside_strings_or_side_by_side_are_not_depth():
    strings = PAID[:-1] + ',"x":"' + "[{" * 5000 + '","y":"\\"[[[["}'
    flat = PAID[:-1] + ',"x":[' + ",".join(["[]"] * 5000) + "]}"
    assert isinstance(DECODER.decode(strings.encode()), OrderPaid)
    assert isinstance(DECODER.decode(flat.encode()), OrderPaid)


def test_unbalanced_deep_brackets_are_not_json():
    got = DECODER.decode(("[" * 100_000 + "}").encode())
    assert isinstance(got, DeadLetter) and got.reason


# ---- duplicate keys ------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, key, path", [
    ('{"type":"order_paid",' + COMMON + ',"order_id":"o","amount":1,"type":"customer_erased"}', "type", "$"),
    ('{"type":"customer_erased",' + COMMON + ',"type":"customer_erased"}', "type", "$"),
    ('{"type":"customer_erased",' + COMMON + ',"\\u0074ype":"customer_erased"}', "type", "$"),
    ('{"type":"customer_erased","customer_id":"c-2",' + COMMON + '}', "customer_id", "$"),
    ('{"type":"order_paid",' + COMMON + ',"order_id":"o","amount":1,"amount":1000}', "amount", "$"),
    ('{"type":"order_paid",' + COMMON + ',"order_id":"o","amount":1,"amou\\u006et":1000}', "amount", "$"),
    ('{"type":"order_placed",' + COMMON + ',"order_id":"o","total":1,"currency":"USD","items":['
     '{"product_id":"p","quantity":1,"price":1},{"product_id":"p","quantity":1,"price":1,"price":9}]}',
     "price", "$.items[1]"),
    ('{"type":"order_placed",' + COMMON + ',"order_id":"o","total":1,"currency":"USD","items":['
     '{"product_id":"p","quantity":1,"price":1,"category":"a","category":"b"},{"product_id":"p","quantity":1,"price":1}]}',
     "category", "$.items[0]"),
    ('{"type":"customer_updated",' + COMMON + ',"attributes":{"city":"A","city":null}}', "city", "$.attributes"),
    ('{"type":"customer_updated",' + COMMON + ',"attributes":{"custom":{"tier":"gold","tier":"none"}}}',
     "tier", "$.attributes.custom"),
    ('{"type":"customer_updated",' + COMMON + ',"attributes":{"custom":{"t":1}},"attributes":{}}', "attributes", "$"),
], ids=["type-differs", "type-same", "type-escaped", "customer_id", "amount", "amount-escaped", "item-price",
        "item-category", "attribute", "custom-key", "attributes"])
def test_a_repeated_contract_key_is_a_dead_letter_naming_it(raw, key, path):
    got = DECODER.decode(raw.encode())
    assert isinstance(got, DeadLetter), got
    assert f"duplicate key `{key}` at `{path}`" in got.reason


@pytest.mark.parametrize("raw, cls", [
    # the same names elsewhere: as values, in unknown fields, as a custom key beside an attribute
    ('{"type":"customer_erased",' + COMMON + ',"note":"type","x":{"type":1,"type":2},"y":[{"customer_id":0}]}',
     CustomerErased),
    ('{"type":"customer_updated",' + COMMON + ',"attributes":{"city":"A","custom":{"city":"B","event_id":1}}}',
     CustomerUpdated),
    ('{"type":"order_placed",' + COMMON + ',"order_id":"o","total":1,"currency":"USD","items":['
     '{"product_id":"p","quantity":1,"price":1,"category":null},'
     '{"product_id":"p","quantity":1,"price":1,"x":1,"x":2}]}', OrderPlaced),
    ('{"type":"order_paid",' + COMMON + ',"order_id":"o","amount":1,"big":' + "9" * 5000 + '}', OrderPaid),
], ids=["names-as-values-and-unknown-fields", "custom-beside-attribute", "unknown-item-field", "huge-ignored-int"])
def test_repeats_the_contract_does_not_read_are_accepted(raw, cls):
    assert type(DECODER.decode(raw.encode())) is cls


# ---- amounts -------------------------------------------------------------------------------------------

def test_amount_bound_keeps_paid_total_finite():
    """The largest amount the contract allows, paid over and over, still sums to a finite total."""
    from stream.engine.core import Engine
    from stream.rules.catalog import load_catalog
    engine = Engine(load_catalog())
    for i in range(200):
        raw = (f'{{"type":"order_paid","event_id":"p-{i}","customer_id":"c",'
               f'"occurred_at":"2025-03-01T12:00:{i % 60:02d}Z","order_id":"o-{i}","amount":1e15}}').encode()
        event = DECODER.decode(raw)
        assert isinstance(event, OrderPaid)
        engine.apply(event, [])
    state = engine.store.get("c")
    assert math.isfinite(state.paid_total) and state.paid_total == 200 * MAX_AMOUNT
    twice = DECODER.decode(PAID.replace('"amount":10', '"amount":1.7e308').encode())
    assert isinstance(twice, DeadLetter) and "`$.amount`" in twice.reason


# ---- whatever else the parser raises ------------------------------------------------------------------

def test_an_unexpected_parser_exception_is_a_dead_letter():
    decoder = Decoder()

    def explode(raw):
        raise OverflowError("boom")
    decoder._decode = explode
    got = decoder.decode(PAID.encode())
    assert isinstance(got, DeadLetter) and "OverflowError" in got.reason


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(raw):
    got = DECODER.decode(raw)
    assert not isinstance(got, DeadLetter) or got.reason


def _depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


tricky_text = st.text(alphabet='[]{}"\\ab\n', max_size=10)
json_docs = st.recursive(st.one_of(st.none(), st.integers(), tricky_text),
                         lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                 st.dictionaries(tricky_text, inner, max_size=3)), max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(json_docs, st.integers(0, 80), st.sampled_from(["[", '{"k":']))
def test_the_depth_check_agrees_with_the_parsed_depth(doc, wrap, opener):
    """Strings full of brackets, quotes and backslashes never count; only real nesting does."""
    text = opener * wrap + json.dumps(doc, ensure_ascii=False) + ("]" if opener == "[" else "}") * wrap
    raw = text.encode()
    depth = _depth(json.loads(text))
    got = DECODER.decode(raw)
    assert (isinstance(got, DeadLetter) and f"deeper than {MAX_DEPTH}" in got.reason) == (depth > MAX_DEPTH)


@pytest.mark.parametrize("body", [b'"' + b'\\"' * 500_000, b'"' * 1_000_000, b'"' + b"a" * 1_000_000 + b"\\",
                                  b"[" * 500_000 + b"]" * 500_000],
                         ids=["open-string-of-escaped-quotes", "quotes", "open-string-ending-in-backslash", "deep"])
def test_the_depth_check_is_linear_on_hostile_megabytes(body):
    """A string scan that retried every quote took 16 s for 40 KB of escaped quotes (hours for 1 MiB)."""
    raw = (b"[" * (MAX_DEPTH + 1) + body)[:DECODER.max_bytes]
    started = time.perf_counter()
    got = DECODER.decode(raw)
    assert isinstance(got, DeadLetter) and got.reason
    assert time.perf_counter() - started < 5


# ---- the cheap pre-check never lets a repeated contract key through --------------------------------

def _obj(pairs: list[tuple[str, str]], spacing: str) -> str:
    return "{" + ",".join(f"{json.dumps(k)}{spacing}:{v}" for k, v in pairs) + "}"


@st.composite
def events_maybe_repeating(draw) -> tuple[bytes, str | None]:
    """A valid order_placed or customer_updated, with one contract key repeated (at the top, in an
    item, in attributes or custom) or none; unknown fields and null optionals on the side; keys
    spelled with escapes or whitespace before the colon sometimes. Returns (bytes, repeated key)."""
    spacing = draw(st.sampled_from(["", " ", "\n\t "]))
    repeat = draw(st.sampled_from([None, None, "top", "nested"]))
    kind = draw(st.sampled_from(["order_placed", "customer_updated"]))
    top = [("type", json.dumps(kind)), ("event_id", '"e"'), ("customer_id", '"c"'),
           ("occurred_at", '"2025-01-01T00:00:00Z"')]
    if kind == "order_placed":
        items = [[("product_id", '"p"'), ("quantity", "1"), ("price", "2")] for _ in range(draw(st.integers(1, 3)))]
        if draw(st.booleans()):
            items[0].append(("category", draw(st.sampled_from(['"books"', "null"]))))
        city = draw(st.sampled_from(['"Lyon"', "null"]))
        top += [("order_id", '"o"'), ("total", "1"), ("currency", '"USD"'), ("city", city)]
        nested = items[draw(st.integers(0, len(items) - 1))]
    else:
        attributes = [("city", '"Lyon"'), ("custom", None)]
        custom = [(f"k{i}", '"v"') for i in range(draw(st.integers(1, 3)))]
        nested = draw(st.sampled_from([attributes, custom]))
    if draw(st.booleans()):
        top.append(("unknown", _obj([("x", "1"), ("x", "2"), ("type", '"y"')], spacing)))   # repeats nobody reads
    repeated = None
    if repeat == "top":
        name, value = draw(st.sampled_from(top[:4]))
        top.append((name, value))
        repeated = name
    elif repeat == "nested":
        name, value = draw(st.sampled_from([p for p in nested if p[1] is not None]))
        nested.append((name, value))
        repeated = name
    if kind == "order_placed":
        top.append(("items", "[" + ",".join(_obj(i, spacing) for i in items) + "]"))
    else:
        attributes = [(k, _obj(custom, spacing) if v is None else v) for k, v in attributes]
        top.append(("attributes", _obj(attributes, spacing)))
    text = _obj(draw(st.permutations(top)), spacing)
    if repeated is not None and spacing == "" and draw(st.booleans()):
        # only the repeat spaced out before its colon, so a count of `":` alone would miss it
        at = text.rfind(f'"{repeated}":') + len(repeated) + 2
        text = text[:at] + draw(st.sampled_from([" ", "\n", "\t\r "])) + text[at:]
    elif repeated is not None and draw(st.booleans()):
        # the repeated name spelled with an escape, as parsers read it the same
        first = f'"{repeated}"'
        escaped = '"\\u' + format(ord(repeated[0]), "04x") + repeated[1:] + '"'
        at = text.rfind(first)
        text = text[:at] + escaped + text[at + len(first):]
    return text.encode(), repeated


@settings(max_examples=500, deadline=None)
@given(events_maybe_repeating())
def test_a_repeated_contract_key_is_always_caught(case):
    raw, repeated = case
    got = DECODER.decode(raw)
    if repeated is None:
        assert not isinstance(got, DeadLetter), got
    else:
        assert isinstance(got, DeadLetter) and f"duplicate key `{repeated}`" in got.reason, (raw, got)
