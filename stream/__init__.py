"""Streaming customer-segment updater.

One pure engine (`stream.engine.core`) folds decoded events (`stream.model.events`) into per-customer
state (`stream.model.state`) and evaluates compiled segment rules (`stream.rules.compiler`); drivers
(`stream.replay.driver`, the Kafka worker) own I/O and the clock.
"""
