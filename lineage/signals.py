"""Signals through which other apps (governance) hook into lineage without lineage importing them."""

from django.dispatch import Signal

# Sent inside the transaction that stores new raw events, before it commits: kwargs ``events`` (list of RawEvent)
# and ``user`` (the submitting user or None).
events_ingested = Signal()
