"""The contracts: input events, the per-customer state, segment changes, instants and buckets.

Plain data (msgspec Structs) and pure functions over them, on the standard library and msgspec
alone."""
