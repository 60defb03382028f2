"""`segments backfill`: the engine over the input topics' history, in one reproducible order, to
rebuild state (or a new segment) and hand it to the workers of a new consumer group."""
