"""Filtering and streaming exports of the audit trail.

JSON Lines export (``format=jsonl``, what ``custody verify`` reads), one JSON object per line:

``{"type": "header", ...}``
    format name and version, the filters, the export time and the server's public key(s).
``{"type": "entry", "sequence": ..., "time": ..., "actor_id": ..., "actor_name": ..., "action": ...,
"object_type": ..., "object_id": ..., "object_repr": ..., "before": ..., "after": ..., "extra": ...,
"request_id": ..., "source_ip": ..., "redacted": [...] | null, "prev_hash": ..., "hash": ...}``
    an entry matching the filters, in full.
``{"type": "link", "sequence": n, "body": ..., "hash": ...}``
    (filtered exports only) an entry between two matches, or between the last match and the
    checkpoint after it, reduced to its body digest: enough to recompute the chain up to the signed
    checkpoint without disclosing the entry.
``{"type": "checkpoint", "sequence": ..., "hash": ..., "time": ..., "key_id": ..., "algorithm":
"Ed25519", "signature": ...}``
    a signed checkpoint, written right after the entry (or link) it vouches for.

Records are in sequence order; an unfiltered export is the whole chain. Memory stays flat: rows come
from a server-side cursor (``QuerySet.iterator(chunk_size=...)``) and JSON columns are copied as the
canonical text they are stored in.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import BooleanField, Case, Q, QuerySet, TextField, Value, When
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from governance.audit import chain, signing
from governance.audit.models import AuditCheckpoint, AuditEntry

FORMAT_NAME = "custody.audit.export"
FORMAT_VERSION = 1
CHUNK = 2000
COLUMNS = (
    "sequence",
    "timestamp",
    "actor_id",
    "actor_name",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "before_t",
    "after_t",
    "extra_t",
    "request_id",
    "source_ip",
    "redacted_t",
    "prev_hash",
    "hash",
)
CSV_HEADER = [
    "sequence",
    "time",
    "actor_id",
    "actor_name",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "before",
    "after",
    "extra",
    "request_id",
    "source_ip",
    "redacted",
    "prev_hash",
    "hash",
]
FILTER_NAMES = ("since", "until", "actor", "action", "object_type", "object_id")


class BadFilter(ValueError):
    pass


@dataclass
class Filters:
    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    after_sequence: int | None = None

    @property
    def narrowing(self) -> bool:
        return any(getattr(self, name) is not None for name in FILTER_NAMES)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in FILTER_NAMES:
            value = getattr(self, name)
            if value is not None:
                out[name] = chain.format_time(value) if isinstance(value, datetime) else value
        return out

    def q(self) -> Q:
        q = Q()
        if self.since is not None:
            q &= Q(timestamp__gte=self.since)
        if self.until is not None:
            q &= Q(timestamp__lt=self.until)
        if self.actor is not None:
            actor_q = Q(actor_name=self.actor)
            user = get_user_model()._default_manager.filter(username=self.actor).values_list("pk", flat=True).first()
            if user is not None:
                actor_q |= Q(actor_id=user)
            if self.actor.isdigit():
                actor_q |= Q(actor_id=int(self.actor))
            q &= actor_q
        if self.action is not None:
            if self.action.endswith("*"):
                q &= Q(action__startswith=self.action[:-1])
            else:
                q &= Q(action__in=[a.strip() for a in self.action.split(",") if a.strip()])
        if self.object_type is not None:
            q &= Q(object_type=self.object_type)
        if self.object_id is not None:
            q &= Q(object_id=self.object_id)
        return q


def _instant(name: str, raw: str, end: bool) -> datetime:
    try:
        day = parse_date(raw) if len(raw) == 10 else None
    except ValueError as exc:
        raise BadFilter(f"{name} is not a valid date: {raw!r}.") from exc
    if day is not None:  # a whole day: from its start, or (until) to its end
        value = datetime(day.year, day.month, day.day) + (timedelta(days=1) if end else timedelta())
    else:
        try:
            parsed = parse_datetime(raw)
        except ValueError:
            parsed = None
        if parsed is None:
            raise BadFilter(f"{name} must be an ISO-8601 date or date-time; got {raw!r}.")
        value = parsed
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value


def parse_filters(params: Any) -> Filters:
    """Filters from query parameters: since, until (ISO-8601; a date means the whole day), actor
    (username or user id), action (exact, comma-separated, or a prefix ending in ``*``), object_type,
    object_id, after_sequence."""
    f = Filters()
    for name in ("since", "until"):
        raw = (params.get(name) or "").strip()
        if raw:
            setattr(f, name, _instant(name, raw, end=name == "until"))
    for name in ("actor", "action", "object_type", "object_id"):
        raw = (params.get(name) or "").strip()
        if raw:
            setattr(f, name, raw)
    raw = (params.get("after_sequence") or "").strip()
    if raw:
        if not raw.isdigit():
            raise BadFilter(f"after_sequence must be a non-negative integer; got {raw!r}.")
        f.after_sequence = int(raw)
    if f.since and f.until and f.since >= f.until:
        raise BadFilter("since must be before until.")
    return f


def _rows(qs: QuerySet[AuditEntry], *extra: str) -> Any:
    return (
        qs.annotate(
            before_t=Cast("before", TextField()),
            after_t=Cast("after", TextField()),
            extra_t=Cast("extra", TextField()),
            redacted_t=Cast("redacted", TextField()),
        )
        .order_by("sequence")
        .values_list(*COLUMNS, *extra)
        .iterator(chunk_size=CHUNK)
    )


def _json_or_null(text: str | None) -> str:
    return "null" if text is None else text


def entry_line(row: Any) -> str:
    """One ``entry`` record from a row in COLUMNS order (the JSON columns as stored canonical text)."""
    actor_id = row[2]
    return "".join(
        (
            '{"type":"entry","sequence":',
            str(row[0]),
            ',"time":"',
            chain.format_time(row[1]),
            '","actor_id":',
            "null" if actor_id is None else str(actor_id),
            ',"actor_name":',
            encode_basestring(row[3]),
            ',"action":',
            encode_basestring(row[4]),
            ',"object_type":',
            encode_basestring(row[5]),
            ',"object_id":',
            encode_basestring(row[6]),
            ',"object_repr":',
            encode_basestring(row[7]),
            ',"before":',
            _json_or_null(row[8]),
            ',"after":',
            _json_or_null(row[9]),
            ',"extra":',
            _json_or_null(row[10]),
            ',"request_id":',
            encode_basestring(row[11]),
            ',"source_ip":',
            encode_basestring(row[12]),
            ',"redacted":',
            _json_or_null(row[13]),
            ',"prev_hash":"',
            row[14],
            '","hash":"',
            row[15],
            '"}\n',
        )
    )


def header(filters: Filters) -> dict[str, Any]:
    keys = signing.trusted_public_keys()
    return {
        "type": "header",
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "chain": {"v": chain.VERSION, "genesis": chain.GENESIS},
        "exported_at": chain.format_time(timezone.now()),
        "filters": filters.as_dict(),
        "public_keys": [{"key_id": k.key_id, "pem": k.pem, "current": k.current} for k in keys.values()],
    }


def _range(filters: Filters) -> tuple[int, int] | None:
    """First and last sequence to write: from the first match to the checkpoint after the last."""
    base = AuditEntry.objects.all()
    if filters.after_sequence is not None:
        base = base.filter(sequence__gt=filters.after_sequence)
    matches = base.filter(filters.q())
    first = matches.order_by("sequence").values_list("sequence", flat=True).first()
    if first is None:
        return None
    last = matches.order_by("-sequence").values_list("sequence", flat=True).first()
    assert last is not None
    if filters.narrowing:
        anchor = (
            AuditCheckpoint.objects.filter(sequence__gte=last)
            .order_by("sequence")
            .values_list("sequence", flat=True)
            .first()
        )
        head = base.order_by("-sequence").values_list("sequence", flat=True).first() or last
        if anchor is not None and anchor <= head:
            last = anchor
    return first, last


def iter_jsonl(filters: Filters) -> Iterator[str]:
    yield json.dumps(header(filters), sort_keys=True) + "\n"
    bounds = _range(filters)
    if bounds is None:
        if not filters.narrowing:  # no entries at all: any checkpoint shows they were removed
            for cp in AuditCheckpoint.objects.order_by("sequence", "id"):
                yield json.dumps(signing.checkpoint_record(cp), sort_keys=True) + "\n"
        return
    first, last = bounds
    checkpoints: dict[int, list[AuditCheckpoint]] = {}
    for cp in AuditCheckpoint.objects.filter(sequence__gte=first, sequence__lte=last).order_by("sequence", "id"):
        checkpoints.setdefault(cp.sequence, []).append(cp)
    qs = AuditEntry.objects.filter(sequence__gte=first, sequence__lte=last)
    narrowing = filters.narrowing
    if narrowing:
        qs = qs.annotate(
            matched=Case(When(filters.q(), then=Value(True)), default=Value(False), output_field=BooleanField())
        )
        rows = _rows(qs, "matched")
    else:
        rows = _rows(qs)
    row_body = chain.make_row_hasher()
    buffer: list[str] = []
    for row in rows:
        if not narrowing or row[16]:
            buffer.append(entry_line(row))
        else:
            buffer.append(f'{{"type":"link","sequence":{row[0]},"body":"{row_body(row)}","hash":"{row[15]}"}}\n')
        cps = checkpoints.get(row[0])
        if cps:
            buffer.extend(json.dumps(signing.checkpoint_record(cp), sort_keys=True) + "\n" for cp in cps)
        if len(buffer) >= 500:
            yield "".join(buffer)
            buffer = []
    if not narrowing:
        # The whole chain was asked for: checkpoints past its end mean entries were cut from the
        # end, and the verifier must see them to say so.
        later = AuditCheckpoint.objects.filter(sequence__gt=last).order_by("sequence", "id")
        buffer.extend(json.dumps(signing.checkpoint_record(cp), sort_keys=True) + "\n" for cp in later)
    if buffer:
        yield "".join(buffer)


class _Echo:
    def write(self, value: str) -> str:
        return value


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    # Spreadsheets run cells that start like formulas; the CSV is for reading, JSONL is the evidence.
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def iter_csv(filters: Filters) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    qs = AuditEntry.objects.filter(filters.q())
    if filters.after_sequence is not None:
        qs = qs.filter(sequence__gt=filters.after_sequence)
    buffer: list[str] = []
    for row in _rows(qs):
        values = list(row)
        values[1] = chain.format_time(row[1])
        buffer.append(writer.writerow([_cell(v) if v is not None else "" for v in values]))
        if len(buffer) >= 500:
            yield "".join(buffer)
            buffer = []
    if buffer:
        yield "".join(buffer)


def entry_dict(entry: AuditEntry) -> dict[str, Any]:
    return {
        "sequence": entry.sequence,
        "time": chain.format_time(entry.timestamp),
        "actor_id": entry.actor_id,
        "actor_name": entry.actor_name,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "object_repr": entry.object_repr,
        "before": entry.before,
        "after": entry.after,
        "extra": entry.extra,
        "request_id": entry.request_id,
        "source_ip": entry.source_ip,
        "redacted": entry.redacted,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def page(filters: Filters, limit: int) -> tuple[list[dict[str, Any]], int | None]:
    """One page of entries (keyset on sequence) and the sequence to continue after, if any."""
    qs = AuditEntry.objects.filter(filters.q()).order_by("sequence")
    if filters.after_sequence is not None:
        qs = qs.filter(sequence__gt=filters.after_sequence)
    entries = list(qs[: limit + 1])
    more = len(entries) > limit
    entries = entries[:limit]
    return [entry_dict(e) for e in entries], (entries[-1].sequence if more and entries else None)
