"""Streaming customer-segment updater.

One pure engine (`stream.engine`) folds decoded events (`stream.events`) into per-customer
state (`stream.state`) and evaluates compiled segment rules (`stream.rules`); drivers
(`stream.replay`, the Kafka worker) own I/O and the clock.
"""
