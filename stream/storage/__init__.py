"""Where customer states live between batches: the key layout, the RocksDB partition store
with its write-back cache and changelog, and read-only views of what a worker committed."""
