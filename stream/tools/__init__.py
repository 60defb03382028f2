"""Synthetic shoppers (and `segments produce`, which publishes them), the demo and the benchmarks."""
