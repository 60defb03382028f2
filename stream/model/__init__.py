"""The contracts: input events, the per-customer state, segment changes, instants and buckets.

Plain data (msgspec Structs) and pure functions over them; nothing here imports another layer."""
