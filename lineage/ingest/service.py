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

from django.db import OperationalError, transaction
from django.utils import timezone

from lineage.access import write_denial
from lineage.ingest.canonical import canonical_json, canonical_pieces, find_unstorable_string
from lineage.ingest.errors import Forbidden, IngestError, InvalidEvent, MalformedBody
from lineage.ingest.event import ParsedEvent, parse_event
from lineage.ingest.project import project
from lineage.ingest.rows import Table, bound_cursor
from lineage.ingest.staging import expecting_large
from lineage.ingest.workspace import RunJobConflict
from lineage.models import Job, Namespace, RawEvent, Run
from lineage.models.fields import JSONText
from lineage.signals import events_ingested

logger = logging.getLogger(__name__)
RETRIES = 4
LARGE_EVENT = 1 << 20  # bytes of body from which an event is hashed and written a piece at a time


@dataclass
class Outcome:
    index: int
    status: str  # "created" | "duplicate" | "failed"
    digest: str = ""
    error: IngestError | None = None
    retriable: bool = False


@dataclass(eq=False)
class _Prepared:
    index: int
    event: ParsedEvent
    digest: str
    size: int
    # The canonical JSON the digest was computed over: stored as the payload. Dropped once stored
    # (None), so it is not alive beside the projection; rebuilt from the event if needed again.
    text: JSONText | None


def decode_json(body: bytes | bytearray) -> Any:
    """The JSON value of a request body. A bytearray is consumed: emptied once decoded to text, so
    the body is not alive beside the decoded value (the caller keeps nothing of it)."""
    if not body.strip():
        raise MalformedBody("Request body is empty; expected a JSON document.")
    try:
        # What json.loads does with bytes, in two steps so the body can go before parsing.
        text = body.decode(json.detect_encoding(body), "surrogatepass")
        if isinstance(body, bytearray):
            del body[:]
        return json.loads(text, parse_constant=_reject_constant)
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
        text = _canonical_text(value, size)
    except ValueError as exc:
        raise MalformedBody("A number in the event is out of range (infinite or NaN).") from exc
    digest, encodable = _utf8_digest(text)
    if not encodable or any("\\u0000" in piece for piece in text):
        where = find_unstorable_string(value)
        if where is not None:
            raise InvalidEvent("contains a NUL character or an unpaired surrogate, which cannot be stored", field=where)
    return _Prepared(
        index=index, event=event, digest=digest, size=size if size is not None else sum(map(len, text)), text=text
    )


def _canonical_text(value: Any, size: int | None) -> JSONText:
    """The canonical JSON of an event: in pieces (see :func:`canonical_pieces`) when its body is
    known to be large; else in one piece (a batch's events are taken as small, and telling them
    apart would cost a walk over each)."""
    if size is not None and size >= LARGE_EVENT:
        return JSONText(canonical_pieces(value))
    return JSONText([canonical_json(value)])


def _utf8_digest(text: JSONText, step: int = 1 << 20) -> tuple[str, bool]:
    """SHA-256 of the UTF-8 encoding of the text (lone surrogates encoded as such), one slice at a
    time so the encoding is never whole in memory beside the text; and whether it was encodable."""
    h = hashlib.sha256()
    encodable = True
    for piece in text:
        for start in range(0, len(piece), step):
            part = piece[start : start + step]
            try:
                h.update(part.encode("utf-8"))
            except UnicodeEncodeError:
                h.update(part.encode("utf-8", "surrogatepass"))
                encodable = False
    return h.hexdigest(), encodable


def ingest(values: list[Any], user: Any = None, sizes: list[int] | None = None, auth: Any = None) -> list[Outcome]:
    """Ingest decoded events on behalf of ``user`` (with credentials ``auth``); one Outcome per
    input value, in order. Events the write policy refuses fail with 403 and store nothing.

    ``user=None`` is a trusted in-process caller (a replay, a management command, a test): the
    write policy is for requests made on behalf of a user, and the API always passes one."""
    outcomes: dict[int, Outcome] = {}
    prepared: list[_Prepared] = []
    for index, value in enumerate(values):
        try:
            item = prepare(index, value, sizes[index] if sizes else None)
            denial = None if user is None else write_denial(user, auth, item.event)
            if denial is not None:
                raise Forbidden(denial)
            prepared.append(item)
        except IngestError as exc:
            outcomes[index] = Outcome(index, "failed", error=exc)
    for attempt in range(RETRIES):
        try:
            outcomes.update(_store_and_project(prepared, user))
            break
        except InvalidEvent as exc:
            if len(prepared) != 1:
                raise
            outcomes[prepared[0].index] = Outcome(prepared[0].index, "failed", prepared[0].digest, error=exc)
            break
        except (OperationalError, RunJobConflict) as exc:
            if attempt == RETRIES - 1 or not _is_retryable(exc):
                raise
            time.sleep(0.02 * (2**attempt))
    return [outcomes[i] for i in range(len(values))]


def _is_retryable(exc: Exception) -> bool:
    if isinstance(exc, RunJobConflict):
        return True
    code = getattr(getattr(exc, "__cause__", None), "sqlstate", None)
    return code in {"40P01", "40001"} or "database is locked" in str(exc)


def _store_and_project(prepared: list[_Prepared], user: Any) -> dict[int, Outcome]:
    """One transaction: drop duplicates and events that contradict the graph, store the rest
    verbatim, project them. A failure rolls the whole unit back; the caller retries or reports."""
    results: dict[int, Outcome] = {}
    with transaction.atomic(), expecting_large(any(item.size >= LARGE_EVENT for item in prepared)):
        seen: set[str] = set()  # a digest already stored is skipped by the insert and reported as a duplicate
        fresh = []
        for item in prepared:
            if item.digest in seen:
                results[item.index] = Outcome(item.index, "duplicate", item.digest)
            else:
                seen.add(item.digest)
                fresh.append(item)
        # One event alone needs no look-ahead: the projection refuses a run of another job itself
        # (InvalidEvent, the same message), and the transaction takes the raw event back with it.
        for item, error in (_run_job_conflicts(fresh) if len(fresh) > 1 else {}).items():
            results[item.index] = Outcome(item.index, "failed", item.digest, error=error)
        fresh = [item for item in fresh if item.index not in results]
        stored, concurrent_duplicates = _store_raw(fresh, user)
        for item in concurrent_duplicates:
            results[item.index] = Outcome(item.index, "duplicate", item.digest)
        project([item.event for item, _ in stored])
        for item, _ in stored:
            results[item.index] = Outcome(item.index, "created", item.digest)
        if stored:
            # Inside the transaction, so receivers (the audit trail) commit or roll back with it.
            events_ingested.send(sender=RawEvent, events=[raw for _, raw in stored], user=user)
    return results


def _run_job_conflicts(items: list[_Prepared]) -> dict[_Prepared, InvalidEvent]:
    """Events whose runId already belongs to another job (in the database, or earlier in the batch)."""
    run_ids = {item.event.run_id for item in items if item.event.kind == "RunEvent"}
    if not run_ids:
        return {}
    owners = _run_owners(run_ids)
    conflicts = {}
    for item in items:
        event = item.event
        if event.kind != "RunEvent":
            continue
        job = (event.job_namespace, event.job_name)
        owner = owners.setdefault(event.run_id, job)
        if owner != job:
            conflicts[item] = InvalidEvent(
                f"run {event.run_id!r} already belongs to job {owner[0]}:{owner[1]}; "
                "a runId identifies one run of one job",
                field="run.runId",
            )
    return conflicts


def _run_owners(run_ids: set[str]) -> dict[str, tuple[str, str]]:
    """runId -> (job namespace, job name) of the runs already stored."""
    runs, jobs, namespaces = Table.of(Run), Table.of(Job), Table.of(Namespace)
    where, params = runs.any_of("run_id", run_ids)
    sql = (
        f"SELECT {runs.column('run_id')}, {namespaces.column('name')}, {jobs.column('name')} FROM {runs.name} "
        f"JOIN {jobs.name} ON {jobs.column('id')} = {runs.column('job_id')} "
        f"JOIN {namespaces.name} ON {namespaces.column('id')} = {jobs.column('namespace_id')} WHERE {where}"
    )
    with bound_cursor(runs.connection) as cursor:
        cursor.execute(sql, params)
        return {run_id: (ns, name) for run_id, ns, name in cursor.fetchall()}


def _store_raw(items: list[_Prepared], user: Any) -> tuple[list[tuple[_Prepared, RawEvent]], list[_Prepared]]:
    """Insert the raw events in one statement; one a concurrent request stored meanwhile is
    skipped (``ON CONFLICT DO NOTHING``) and reported as a duplicate."""
    now = timezone.now()
    rows = [(item, _raw_event(item, user, now)) for item in items]
    if not rows:
        return [], []
    inserted = {
        id(raw) for raw in Table.of(RawEvent).insert([raw for _, raw in rows], conflicts="ignore", returning="digest")
    }
    stored = [(item, raw) for item, raw in rows if id(raw) in inserted]
    duplicates = [item for item, raw in rows if id(raw) not in inserted]
    return _with_payloads(stored), duplicates


def _with_payloads(rows: list[tuple[_Prepared, RawEvent]]) -> list[tuple[_Prepared, RawEvent]]:
    """Stored from the canonical text; receivers of the signal get the decoded event back."""
    for item, raw in rows:
        raw.payload = item.event.payload
        item.text = None  # stored: free it before projecting (a retry rebuilds it)
    return rows


def _raw_event(item: _Prepared, user: Any, now: Any) -> RawEvent:
    event = item.event
    return Table.of(RawEvent).new(
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
        payload=item.text if item.text is not None else _canonical_text(event.payload, None),
        submitted_by=user if getattr(user, "pk", None) else None,
    )
