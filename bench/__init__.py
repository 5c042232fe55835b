"""Benchmarks for swarmapply (run as modules, e.g. ``python -m bench.store_bench``)."""
