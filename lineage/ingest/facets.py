"""Order-independent facet merging: for every facet key, the value from the newest event wins.

Each merged facet dict carries a companion dict of the event time (ISO string) that set each key,
so a late, older event never overwrites a newer value; on equal times the larger content digest
wins. The result is a function of the set of events, whatever order they arrive in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lineage.ingest.canonical import digest_of


def merge_facets(facets: dict[str, Any], times: dict[str, str], new: dict[str, Any], at: datetime) -> bool:
    """Merge ``new`` (reported at ``at``) into ``facets`` in place; True if anything changed."""
    changed = False
    stamp = at.isoformat()
    for key, value in new.items():
        seen = times.get(key)
        if key in facets and seen is not None:
            if stamp < seen:
                continue
            if stamp == seen and (facets[key] == value or digest_of(value) <= digest_of(facets[key])):
                continue
        facets[key] = value
        times[key] = stamp
        changed = True
    return changed
