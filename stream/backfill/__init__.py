"""Rebuild state (or a new segment) from the input topics' history and hand it to the workers."""
