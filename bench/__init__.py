"""Custody benchmarks (see bench/README.md). Each module is a script: ``python -m bench.<name>``."""
