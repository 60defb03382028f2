"""Synthetic shoppers, the demo and the benchmarks."""
