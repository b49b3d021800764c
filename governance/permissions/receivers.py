"""Self-service namespaces: after an ingestion, grant its submitter the namespaces it created."""

from __future__ import annotations

from typing import Any

from governance.permissions.grants import grant_claims
from lineage.signals import events_ingested

UID = "custody-permissions-"


def on_events_ingested(sender: Any, events: list[Any], user: Any = None, **kwargs: Any) -> None:
    if user is not None and getattr(user, "_custody_claims", None):
        grant_claims(user)


def connect() -> None:
    events_ingested.connect(on_events_ingested, dispatch_uid=UID + "claims")
