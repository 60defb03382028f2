"""Streaming customer-segment updater.

A pure engine (stream.engine) folds decoded events (stream.model) into per-customer state and
evaluates compiled segment rules (stream.rules); drivers (stream.replay, the native worker, the
Faust runtime, stream.backfill) own I/O and the clock. docs/architecture.md maps the packages and
their layers; tests/test_layers.py keeps every import pointing down them.
"""
