"""Benchmarks: each prints its raw ceiling measured in the same run beside the figure."""
