"""Benchmarks: each prints figures (no timed assertions). Run from the repo root: `make bench`."""
