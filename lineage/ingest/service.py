"""Ingestion: store each accepted event verbatim, then project it, in one transaction per event.

A failed event leaves nothing behind (its savepoint is rolled back); a re-sent event (same
content digest) is accepted and changes nothing; a deadlock or serialisation failure on
PostgreSQL retries the whole unit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone

from lineage.ingest.canonical import canonical_json, find_unstorable_string
from lineage.ingest.errors import IngestError, InvalidEvent, MalformedBody
from lineage.ingest.event import ParsedEvent, parse_event
from lineage.ingest.project import Projector
from lineage.models import RawEvent
from lineage.signals import events_ingested

logger = logging.getLogger(__name__)
RETRIES = 4


@dataclass
class Outcome:
    index: int
    status: str  # "created" | "duplicate" | "failed"
    digest: str = ""
    error: IngestError | None = None
    retriable: bool = False


@dataclass
class _Prepared:
    index: int
    event: ParsedEvent
    digest: str
    size: int


def decode_json(body: bytes | bytearray) -> Any:
    if not body.strip():
        raise MalformedBody("Request body is empty; expected a JSON document.")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"Request body is not UTF-8 text: {exc.reason} at byte {exc.start}.") from exc
    except json.JSONDecodeError as exc:
        raise MalformedBody(f"Malformed JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from exc


def _reject_constant(name: str) -> Any:
    raise MalformedBody(f"Malformed JSON: {name} is not a valid JSON number.")


def prepare(index: int, value: Any, size: int | None = None) -> _Prepared:
    """Validate one decoded event and compute its digest; raises IngestError."""
    event = parse_event(value)
    try:
        text = canonical_json(value)
    except ValueError as exc:
        raise MalformedBody("A number in the event is out of range (infinite or NaN).") from exc
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        encoded = text.encode("utf-8", "surrogatepass")
        unstorable = True
    else:
        unstorable = "\\u0000" in text
    if unstorable:
        where = find_unstorable_string(value)
        if where is not None:
            raise InvalidEvent("contains a NUL character or an unpaired surrogate, which cannot be stored", field=where)
    digest = hashlib.sha256(encoded).hexdigest()
    del encoded
    return _Prepared(index=index, event=event, digest=digest, size=size if size is not None else len(text))


def ingest(values: list[Any], user: Any = None, sizes: list[int] | None = None) -> list[Outcome]:
    """Ingest decoded events; one Outcome per input value, in order."""
    outcomes: dict[int, Outcome] = {}
    prepared: list[_Prepared] = []
    for index, value in enumerate(values):
        try:
            prepared.append(prepare(index, value, sizes[index] if sizes else None))
        except IngestError as exc:
            outcomes[index] = Outcome(index, "failed", error=exc)
    for attempt in range(RETRIES):
        try:
            outcomes.update(_store_and_project(prepared, user))
            break
        except OperationalError as exc:
            if attempt == RETRIES - 1 or not _is_retryable(exc):
                raise
            time.sleep(0.02 * (2**attempt))
    return [outcomes[i] for i in range(len(values))]


def _is_retryable(exc: OperationalError) -> bool:
    code = getattr(getattr(exc, "__cause__", None), "sqlstate", None)
    return code in {"40P01", "40001"} or "database is locked" in str(exc)


def _store_and_project(prepared: list[_Prepared], user: Any) -> dict[int, Outcome]:
    results: dict[int, Outcome] = {}
    created: list[RawEvent] = []
    with transaction.atomic():
        known = set(RawEvent.objects.filter(digest__in=[p.digest for p in prepared]).values_list("digest", flat=True))
        projector = Projector()
        now = timezone.now()
        for item in prepared:
            if item.digest in known:
                results[item.index] = Outcome(item.index, "duplicate", item.digest)
                continue
            try:
                with transaction.atomic():
                    raw = _raw_event(item, user, now)
                    projector.apply(item.event)
            except IngestError as exc:
                projector.reset()
                results[item.index] = Outcome(item.index, "failed", item.digest, error=exc)
                continue
            except IntegrityError:
                projector.reset()
                if RawEvent.objects.filter(digest=item.digest).exists():
                    results[item.index] = Outcome(item.index, "duplicate", item.digest)
                    continue
                raise
            known.add(item.digest)
            created.append(raw)
            results[item.index] = Outcome(item.index, "created", item.digest)
        if created:
            # Inside the transaction, so receivers (the audit trail) commit or roll back with it.
            events_ingested.send(sender=RawEvent, events=created, user=user)
    return results


def _raw_event(item: _Prepared, user: Any, now: Any) -> RawEvent:
    event = item.event
    return RawEvent.objects.create(
        digest=item.digest,
        kind=event.kind,
        event_type=event.event_type,
        event_time=event.event_time,
        received_at=now,
        run_id=event.run_id,
        job_namespace=(event.dataset.namespace if event.dataset else event.job_namespace)[:1024],
        job_name=(event.dataset.name if event.dataset else event.job_name)[:1024],
        producer=event.producer,
        schema_url=event.schema_url,
        size_bytes=item.size,
        payload=event.payload,
        submitted_by=user if getattr(user, "pk", None) else None,
    )
