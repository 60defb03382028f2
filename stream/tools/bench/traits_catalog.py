"""The catalog `segments bench engine --catalog traits` runs: 10 computed traits and 10 segments
reading them, over the synthetic shop's events (stream.tools.synth), beside the default catalog."""
from __future__ import annotations

from stream.rules.catalog import Catalog, parse_catalog

TRAITS_YAML = """
traits:
  orders_90d:     {count: order_paid, within: 90d}
  spend_30d:      {sum: order_paid.amount, within: 30d}
  avg_check_180d: {avg: order_paid.amount, within: 180d}
  biggest_order:  {max: order_paid.amount}
  smallest_90d:   {min: order_paid.amount, within: 90d}
  shoe_views_7d:  {count: product_viewed, where: {category: {eq: shoes}}, within: 7d}
  active_30_90d:  {count: order_paid, between: [90d, 30d]}
  top_category:   {most_frequent: order_placed.items.category, within: 365d}
  categories_90d: {distinct_count: product_viewed.category, within: 90d}
  abandoned_7d:   {sum: cart_abandoned.value, within: 7d}
segments:
  frequent-recent: {when: {trait.orders_90d: {gte: 3}}}
  big-spender-30d: {when: {trait.spend_30d: {gte: 500000}}}
  high-check:      {when: {trait.avg_check_180d: {gte: 100000}}}
  big-once:        {when: {trait.biggest_order: {gte: 400000}}}
  cheap-buyer:     {when: {trait.smallest_90d: {lt: 5000}}}
  shoe-browser:    {when: {trait.shoe_views_7d: {gte: 3}}}
  lapsing:         {when: {all: [{trait.active_30_90d: {gte: 1}}, {trait.orders_90d: {lte: 1}}]}}
  phones-fan:      {when: {trait.top_category: {eq: phones}}}
  explorer:        {when: {trait.categories_90d: {gte: 4}}}
  cart-heavy:      {when: {trait.abandoned_7d: {gte: 100000}}}
"""


def traits_catalog() -> Catalog:
    return parse_catalog(TRAITS_YAML, "bench traits catalog")
