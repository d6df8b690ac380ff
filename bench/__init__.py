"""Benchmarks (`make bench`). Every figure is reported with a baseline measured in the same run."""
