"""The time governance services use. Services take ``now=`` for time travel; without it they
ask :func:`now`, which tests may also override with :func:`frozen`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from django.utils import timezone

_frozen: datetime | None = None


def now() -> datetime:
    return _frozen if _frozen is not None else timezone.now()


@contextmanager
def frozen(instant: datetime) -> Iterator[None]:
    """Inside the block, :func:`now` answers ``instant`` (for tests of expiry)."""
    global _frozen
    previous = _frozen
    _frozen = instant
    try:
        yield
    finally:
        _frozen = previous
