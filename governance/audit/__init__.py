"""Tamper-evident audit trail. See :mod:`governance.audit.services` for how to record an action."""
