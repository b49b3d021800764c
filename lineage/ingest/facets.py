"""Order-independent facet merging: for every facet key, the value from the newest event wins.

Each merged facet dict carries a companion dict of the event time (ISO string) that set each key,
so a late, older event never overwrites a newer value; on equal times the larger content digest
wins. The result is a function of the set of events, whatever order they arrive in.
"""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum
from typing import Any

from lineage.ingest.canonical import digest_of


class Merge(IntEnum):
    """What a merge changed (falsy when nothing did)."""

    NONE = 0
    TIMES = 1  # only when some values were last reported: the values themselves are unchanged
    VALUES = 2


def merge_facets(facets: dict[str, Any], times: dict[str, str], new: dict[str, Any], at: datetime) -> Merge:
    """Merge ``new`` (reported at ``at``) into ``facets`` in place; says what changed.

    A newer report of an equal value moves only its time and keeps the stored object, so callers
    can skip re-deriving (and re-writing) what depends on the values alone."""
    result = Merge.NONE
    stamp = at.isoformat()
    for key, value in new.items():
        seen = times.get(key)
        if key in facets and seen is not None:
            if stamp < seen:
                continue
            if stamp == seen and (facets[key] == value or digest_of(value) <= digest_of(facets[key])):
                continue
            if facets[key] == value:
                times[key] = stamp
                result = max(result, Merge.TIMES)
                continue
        facets[key] = value
        times[key] = stamp
        result = Merge.VALUES
    return result
