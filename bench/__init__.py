"""Benchmarks: run on demand, they print percentiles; they are not tests."""
