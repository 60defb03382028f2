"""The explanation (stream.rules.explanation.condition) agrees with the compiled conditions: for any
customer state and instant, every segment's and every part's verdict is the compiled test's."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import DAY, instant
from stream.rules.explanation import condition
from stream.rules.catalog import load_catalog, parse_catalog
from stream.model.state import CustomerState
from tests.histories import CUSTOM_YAML

CATALOGS = [load_catalog(), parse_catalog(CUSTOM_YAML)]
T0 = instant("2025-01-01T00:00:00Z")

times = st.one_of(st.none(), st.integers(-200, 10).map(lambda d: T0 + d * DAY // 2))
amounts = st.sampled_from((0.0, 10.0, 20000.0, 50000.0, 100000.0))


@st.composite
def states(draw) -> CustomerState:
    seen = draw(st.integers(-400, 0)) * DAY // 2 + T0
    count = draw(st.integers(0, 6))
    views = draw(st.dictionaries(st.sampled_from(("p0", "p1", "phones")), st.lists(
        st.integers(-30, 0).map(lambda d: T0 + d * DAY // 4), max_size=4).map(sorted), max_size=2))
    return CustomerState(
        first_seen=seen, last_seen=draw(times) or seen, paid_count=count,
        paid_total=draw(amounts) * count, first_paid=draw(times) if count else None,
        last_paid=draw(times) if count else None, orders_placed=draw(st.integers(0, 3)),
        last_placed=draw(times), categories_bought=draw(st.lists(st.sampled_from(("phones", "books", "laptops")),
                                                                 unique=True)),
        cart_value=draw(st.sampled_from((None, 50.5, 99.0, 250.0))), abandoned_at=draw(times),
        abandoned_value=draw(st.sampled_from((None, 0.0, 50.5))), last_viewed=draw(times),
        streams={"product_viewed:product": views, "product_viewed:category": views,
                 "order_placed:category": draw(st.dictionaries(st.sampled_from(("phones", "p0")),
                                                               st.lists(times.filter(bool), min_size=1, max_size=2)
                                                               .map(sorted), max_size=1))},
        city=draw(st.sampled_from((None, "Almaty", "Astana"))), country=draw(st.sampled_from((None, "KZ", "RU"))),
        gender=draw(st.sampled_from((None, "f", "x"))),
        birth_date=draw(st.sampled_from((None, "1992-02-29", "1990-01-03", "1999-12-30"))),
        email_opt_in=draw(st.sampled_from((None, True, False))),
        custom=draw(st.dictionaries(st.sampled_from(("tier", "score")), st.sampled_from(("gold", 1, True, 2.5, 10)))),
        id_hash=draw(st.integers(0, 2**64 - 1)))


def leaves_agree(node, st_, now) -> None:
    for part in node.parts:
        assert condition(part, st_, now)["holds"] == part.test(st_, now)[0], part.label
        leaves_agree(part, st_, now)


@settings(max_examples=400, deadline=None)
@given(states(), st.integers(-10, 400).map(lambda h: T0 + h * DAY // 8))
def test_explanation_verdicts_equal_the_compiled_tests(state, now):
    for catalog in CATALOGS:
        for seg in catalog.segments:
            assert condition(seg.when, state, now)["holds"] == seg.test(state, now)[0], seg.name
            leaves_agree(seg.when, state, now)
