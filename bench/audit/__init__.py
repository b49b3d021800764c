"""Audit-trail benchmarks: ``python -m bench.audit.<name>`` (see bench/audit/README.md)."""
