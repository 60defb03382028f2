"""Percentage buckets: a stable pseudo-random number 0..99 per customer, for A/B control groups.

Reproducible anywhere (no Python hash(), which is salted per process), in two steps:

    h      = blake2b(customer_id as UTF-8, digest_size=8)                  # 8 bytes, kept in state
    bucket = int.from_bytes(blake2b(h, digest_size=8, key=salt as UTF-8), "big") % 100

`h` is stored in the customer's state as a big-endian unsigned 64-bit integer (`id_hash`) because
compiled conditions see the state, not the customer id. The salt is the key of the second keyed
BLAKE2b (empty: unkeyed), so experiments with different salts split customers independently; 2^64
mod 100 is so small a bias (about 5e-18) that the buckets are uniform for any practical purpose.
"""
from __future__ import annotations

from hashlib import blake2b

BUCKETS = 100
MAX_SALT_BYTES = 64           # BLAKE2b's largest key


def customer_hash(customer_id: str) -> int:
    return int.from_bytes(blake2b(customer_id.encode(), digest_size=8).digest(), "big")


def bucket_of(id_hash: int, salt: bytes = b"") -> int:
    digest = blake2b(id_hash.to_bytes(8, "big"), digest_size=8, key=salt).digest()
    return int.from_bytes(digest, "big") % BUCKETS
