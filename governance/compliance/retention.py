"""Retention (DESIGN §3): per-kind, per-namespace policies; legal holds; never deletes what a past or
present production deployment's lineage depends on, nor anything under hold.

``plan()`` decides, row by row, what goes and why (the dry run prints it); ``execute(plan)`` deletes
exactly those rows in short batches (one transaction each, so ingestion is never blocked for long),
and records every batch in the audit trail with the digest of every row that went. Audit entries are
never deleted: their personal fields are redacted in place (the chain still verifies).

Protected (never deleted): the lineage closure of every model version ever deployed to a production
environment (model version → producing run → its inputs' versions → their producing runs, …), the raw
events of those runs, every run that produced a registered model version, each dataset's current
version, and rows still referenced by something that stays (a version read or written by a run that
stays; a run that produced a version that stays)."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from governance.audit.services import record
from governance.compliance.closure import Closure, ever_deployed_model_version_ids, lineage_closure
from governance.compliance.models import Finding, LegalHold, RetentionPolicy
from lineage.models import DatasetVersion, Namespace, RawEvent, Run, RunInput, RunOutput

BATCH = 2000
KINDS = [k.value for k in RetentionPolicy.Kind]
AUDIT_PATHS = ["actor_name", "object_repr", "source_ip"]


def _digest(row: Any) -> str:
    text = json.dumps(row, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Item:
    pk: Any
    namespace: str
    at: datetime
    reason: str


@dataclass
class Plan:
    now: datetime
    items: dict[str, list[Item]] = field(default_factory=dict)
    kept: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> reason -> count

    def keep(self, kind: str, reason: str, n: int = 1) -> None:
        bucket = self.kept.setdefault(kind, {})
        bucket[reason] = bucket.get(reason, 0) + n

    def summary(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "delete": {k: len(v) for k, v in self.items.items() if k != "audit_entries"},
            "redact": len(self.items.get("audit_entries", [])),
            "kept": self.kept,
        }

    def lines(self) -> Iterator[str]:
        for kind, items in self.items.items():
            verb = "redact" if kind == "audit_entries" else "delete"
            for item in items:
                where = item.namespace or "-"
                yield f"{verb} {kind} {item.pk} namespace={where} at={item.at.isoformat()}: {item.reason}"


class Policies:
    def __init__(self, now: datetime) -> None:
        self.now = now
        self.default: dict[str, int] = {}
        self.by_ns: dict[tuple[str, int], int] = {}
        for p in RetentionPolicy.objects.filter(active=True):
            if p.namespace_id is None:
                self.default[p.kind] = p.keep_days
            else:
                self.by_ns[(p.kind, p.namespace_id)] = p.keep_days

    def cutoff(self, kind: str, namespace_id: int | None) -> tuple[datetime, str] | None:
        days = self.by_ns.get((kind, namespace_id)) if namespace_id is not None else None
        scope = "namespace policy"
        if days is None:
            days, scope = self.default.get(kind), "default policy"
        if days is None:
            return None
        return self.now - timedelta(days=days), f"older than {days} days ({scope} for {kind})"

    def any(self, kind: str) -> bool:
        return kind in self.default or any(k == kind for k, _ in self.by_ns)

    def oldest_cutoff(self, kind: str) -> datetime | None:
        days = [d for (k, _), d in self.by_ns.items() if k == kind] + (
            [self.default[kind]] if kind in self.default else []
        )
        return self.now - timedelta(days=min(days)) if days else None


class Holds:
    def __init__(self) -> None:
        self.holds = list(LegalHold.objects.filter(active=True))
        self.model_closure: dict[int, Closure] = {}
        self.dataset_runs: dict[int, set[str]] = {}
        for hold in self.holds:
            if hold.model_id:
                from governance.registry.models import ModelVersion

                ids = ModelVersion.objects.filter(model_id=hold.model_id).values_list("pk", flat=True)
                self.model_closure[hold.pk] = lineage_closure(ids)

    def match(
        self,
        *,
        namespace_id: int | None,
        at: datetime,
        dataset_ids: Iterable[int] = (),
        run_id: int | None = None,
        version_id: int | None = None,
        run_uuid: str | None = None,
    ) -> LegalHold | None:
        datasets = set(dataset_ids)
        for hold in self.holds:
            if hold.namespace_id is not None and hold.namespace_id != namespace_id:
                continue
            if hold.dataset_id is not None and hold.dataset_id not in datasets:
                continue
            if hold.model_id is not None:
                c = self.model_closure[hold.pk]
                if not (
                    (run_id is not None and run_id in c.run_ids)
                    or (version_id is not None and version_id in c.version_ids)
                    or (run_uuid is not None and run_uuid in c.run_uuids)
                ):
                    continue
            if hold.window_start is not None and at < hold.window_start:
                continue
            if hold.window_end is not None and at > hold.window_end:
                continue
            return hold
        return None


def protected_closure() -> Closure:
    return lineage_closure(ever_deployed_model_version_ids())


def plan(now: datetime | None = None) -> Plan:
    from governance.registry.models import ModelVersion
    from lineage.models import Dataset

    now = now or timezone.now()
    result = Plan(now=now)
    policies = Policies(now)
    holds = Holds()
    protected = protected_closure()
    ns_names = dict(Namespace.objects.values_list("pk", "name"))
    ns_ids = {v: k for k, v in ns_names.items()}

    # --- candidates: runs and dataset versions (decided together: they reference each other) ---
    runs: dict[int, Item] = {}
    versions: dict[int, Item] = {}
    if policies.any("runs"):
        oldest = policies.oldest_cutoff("runs")
        model_runs = set(ModelVersion.objects.exclude(run=None).values_list("run_id", flat=True))
        rows = Run.objects.filter(last_event_time__lt=oldest).values_list(
            "pk", "run_id", "job__namespace_id", "last_event_time"
        )
        touched: dict[int, set[int]] = defaultdict(set)
        candidates = list(rows)
        ids = [r[0] for r in candidates]
        for i in range(0, len(ids), BATCH):
            chunk = ids[i : i + BATCH]
            for model in (RunInput, RunOutput):
                for run_id, dataset_id in model.objects.filter(run_id__in=chunk).values_list("run_id", "dataset_id"):
                    touched[run_id].add(dataset_id)
        for pk, uuid, ns, at in candidates:
            cut = policies.cutoff("runs", ns)
            if cut is None or at >= cut[0]:
                continue
            if pk in protected.run_ids:
                result.keep("runs", "lineage of a production deployment")
                continue
            if pk in model_runs:
                result.keep("runs", "produced a registered model version")
                continue
            hold = holds.match(namespace_id=ns, at=at, dataset_ids=touched.get(pk, ()), run_id=pk, run_uuid=uuid)
            if hold:
                result.keep("runs", f"legal hold {hold.pk} ({hold.name})")
                continue
            runs[pk] = Item(pk, ns_names.get(ns, ""), at, cut[1])
    if policies.any("dataset_versions"):
        oldest = policies.oldest_cutoff("dataset_versions")
        current = set(Dataset.objects.exclude(current_version=None).values_list("current_version_id", flat=True))
        model_versions = set(
            ModelVersion.objects.exclude(dataset_version=None).values_list("dataset_version_id", flat=True)
        )
        version_rows = DatasetVersion.objects.filter(created_at__lt=oldest).values_list(
            "pk", "dataset_id", "dataset__namespace_id", "created_at"
        )
        for pk, dataset_id, ns, at in version_rows.iterator(chunk_size=10_000):
            cut = policies.cutoff("dataset_versions", ns)
            if cut is None or at >= cut[0]:
                continue
            if pk in protected.version_ids:
                result.keep("dataset_versions", "lineage of a production deployment")
                continue
            if pk in current or pk in model_versions:
                result.keep("dataset_versions", "current version or a model version's artifact")
                continue
            hold = holds.match(namespace_id=ns, at=at, dataset_ids=[dataset_id], version_id=pk)
            if hold:
                result.keep("dataset_versions", f"legal hold {hold.pk} ({hold.name})")
                continue
            versions[pk] = Item(pk, ns_names.get(ns, ""), at, cut[1])
    # References that stay keep their targets: iterate to a fixpoint.
    changed = True
    while changed and (runs or versions):
        changed = False
        ref_runs: dict[int, set[int]] = defaultdict(set)  # version -> runs referencing it
        vids = list(versions)
        for i in range(0, len(vids), BATCH):
            chunk = vids[i : i + BATCH]
            for model in (RunInput, RunOutput):
                for vid, rid in model.objects.filter(version_id__in=chunk).values_list("version_id", "run_id"):
                    ref_runs[vid].add(rid)
        for vid in list(versions):
            if any(r not in runs for r in ref_runs.get(vid, ())):
                del versions[vid]
                result.keep("dataset_versions", "read or written by a run that stays")
                changed = True
        rids = list(runs)
        for i in range(0, len(rids), BATCH):
            chunk = rids[i : i + BATCH]
            for vid, rid in DatasetVersion.objects.filter(run_id__in=chunk).values_list("pk", "run_id"):
                if vid not in versions and rid in runs:
                    del runs[rid]
                    result.keep("runs", "produced a dataset version that stays")
                    changed = True
    # --- raw events ---
    raw: list[Item] = []
    if policies.any("raw_events"):
        oldest = policies.oldest_cutoff("raw_events")
        raw_rows = RawEvent.objects.filter(event_time__lt=oldest).values_list(
            "pk", "run_id", "job_namespace", "event_time"
        )
        for pk, run_uuid, ns_name, at in raw_rows.iterator(chunk_size=10_000):
            raw_ns = ns_ids.get(ns_name)
            cut = policies.cutoff("raw_events", raw_ns)
            if cut is None or at >= cut[0]:
                continue
            if run_uuid and run_uuid in protected.run_uuids:
                result.keep("raw_events", "lineage of a production deployment")
                continue
            hold = holds.match(
                namespace_id=raw_ns, at=at, run_uuid=run_uuid or None, dataset_ids=_held_dataset_runs(holds, run_uuid)
            )
            if hold:
                result.keep("raw_events", f"legal hold {hold.pk} ({hold.name})")
                continue
            raw.append(Item(pk, ns_name, at, cut[1]))
    # --- findings ---
    findings: list[Item] = []
    if policies.any("findings"):
        for f in Finding.objects.filter(
            status=Finding.Status.RESOLVED, resolved_at__lt=policies.oldest_cutoff("findings")
        ):
            cut = policies.cutoff("findings", f.namespace_id)
            assert f.resolved_at is not None
            if cut is None or f.resolved_at >= cut[0]:
                continue
            hold = holds.match(namespace_id=f.namespace_id, at=f.resolved_at)
            if hold:
                result.keep("findings", f"legal hold {hold.pk} ({hold.name})")
                continue
            findings.append(Item(f.pk, ns_names.get(f.namespace_id or 0, ""), f.resolved_at, cut[1]))
    # --- audit entries: redacted, never deleted ---
    entries: list[Item] = []
    cut = policies.cutoff("audit_entries", None)
    if cut is not None:
        from governance.audit.models import AuditEntry

        for seq, at, redacted in AuditEntry.objects.filter(timestamp__lt=cut[0]).values_list(
            "sequence", "timestamp", "redacted"
        ):
            if set(AUDIT_PATHS) <= set(redacted or []):
                continue
            hold = (
                holds.match(namespace_id=None, at=at)
                if any(h.namespace_id is None and h.dataset_id is None and h.model_id is None for h in holds.holds)
                else None
            )
            if hold:
                result.keep("audit_entries", f"legal hold {hold.pk} ({hold.name})")
                continue
            entries.append(Item(seq, "", at, cut[1] + "; personal fields redacted, entry kept"))
    result.items = {
        "raw_events": raw,
        "runs": sorted(runs.values(), key=lambda i: i.pk),
        "dataset_versions": sorted(versions.values(), key=lambda i: i.pk),
        "findings": findings,
        "audit_entries": entries,
    }
    return result


def _held_dataset_runs(holds: Holds, run_uuid: str) -> list[int]:
    """For dataset holds: the held dataset ids a raw event's run touched."""
    dataset_holds = [h for h in holds.holds if h.dataset_id is not None]
    if not dataset_holds or not run_uuid:
        return []
    hit = []
    for hold in dataset_holds:
        uuids = holds.dataset_runs.get(hold.pk)
        if uuids is None:
            dataset_id = int(hold.dataset_id or 0)
            ids = set(RunInput.objects.filter(dataset_id=dataset_id).values_list("run__run_id", flat=True))
            ids |= set(RunOutput.objects.filter(dataset_id=dataset_id).values_list("run__run_id", flat=True))
            uuids = holds.dataset_runs[hold.pk] = ids
        if run_uuid in uuids:
            assert hold.dataset_id is not None
            hit.append(hold.dataset_id)
    return hit


def _where(model: Any, column: str, ids: list[Any]) -> tuple[str, list[Any]]:
    from django.db import connection

    table = connection.ops.quote_name(model._meta.db_table)
    col = connection.ops.quote_name(column)
    if connection.vendor == "postgresql":  # one array parameter: no 5,000-placeholder statements
        return f"{table} WHERE {col} = ANY(%s)", [list(ids)]
    return f"{table} WHERE {col} IN ({', '.join(['%s'] * len(ids))})", list(ids)


def _sql(statement: str, params: list[Any]) -> Any:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall() if cur.description else cur.rowcount


def _digests(model: Any, column: str, ids: list[Any]) -> list[tuple[Any, str]]:
    """(id, SHA-256) of every row whose ``column`` is in ``ids``: the row's JSON (PostgreSQL's
    row_to_json, computed in the database; elsewhere the ORM's values, canonical JSON)."""
    from django.db import connection

    if not ids:
        return []
    if connection.vendor == "postgresql":
        where, params = _where(model, column, ids)
        source = where.replace(" WHERE ", " t WHERE t.", 1)
        digest_sql = "encode(sha256(convert_to(row_to_json(t)::text, 'UTF8')), 'hex')"
        return [(pk, digest) for pk, digest in _sql(f"SELECT t.id, {digest_sql} FROM {source}", params)]
    return [(row["id"], _digest(row)) for row in model._base_manager.filter(**{f"{column}__in": ids}).values()]


def _fast_delete(model: Any, ids: list[Any]) -> None:
    """Delete ``ids`` in a few set-based statements: CASCADE children (leaf tables) deleted, SET_NULL
    references cleared; PROTECT references were excluded by :func:`plan`, and the database's foreign
    keys refuse the DELETE (rolling the batch back) should one have appeared since."""
    if not ids:
        return
    for rel in model._meta.related_objects:
        if rel.many_to_many or not getattr(rel, "field", None) or not rel.field.concrete:
            continue
        where, params = _where(rel.related_model, rel.field.column, ids)
        if rel.on_delete is models.CASCADE:
            if rel.related_model._meta.related_objects:
                rel.related_model._base_manager.filter(**{f"{rel.field.name}__in": ids}).delete()
            else:
                _sql(f"DELETE FROM {where}", params)
        elif rel.on_delete is models.SET_NULL:
            from django.db import connection

            col = connection.ops.quote_name(rel.field.column)
            table, _, cond = where.partition(" WHERE ")
            _sql(f"UPDATE {table} SET {col} = NULL WHERE {cond}", params)
    where, params = _where(model, model._meta.pk.column, ids)
    _sql(f"DELETE FROM {where}", params)


MODELS = {"raw_events": RawEvent, "runs": Run, "dataset_versions": DatasetVersion, "findings": Finding}


def execute(p: Plan, *, actor_name: str = "retention", batch: int = BATCH) -> dict[str, int]:
    """Carry out ``p`` in batches; each batch is one transaction with its audit entry. Dataset versions
    go before runs: a version's read/write edges (all of runs that go too: see :func:`plan`) are removed
    with it, then the runs (whose produced versions are gone by then)."""
    from governance.audit.services import redact_many

    done: dict[str, int] = {}
    for kind in ("raw_events", "findings", "dataset_versions", "runs"):
        items = p.items.get(kind, [])
        model: Any = MODELS[kind]
        for i in range(0, len(items), batch):
            chunk = items[i : i + batch]
            reasons = {item.pk: item.reason for item in chunk}
            with transaction.atomic():
                from django.db import connection

                if connection.vendor == "postgresql":
                    # Foreign-key checks now, not at commit: the audit chain's lock (taken by record()
                    # below and held until commit) must not wait for them, or ingestion would.
                    _sql("SET CONSTRAINTS ALL IMMEDIATE", [])
                if kind == "raw_events":
                    where, params = _where(model, "id", list(reasons))
                    found = [(pk, digest) for pk, digest in _sql(f"SELECT id, digest FROM {where}", params)]
                else:
                    found = _digests(model, "id", list(reasons))
                ids = [pk for pk, _ in found]
                gone = [{"id": pk, "sha256": digest, "reason": reasons[pk]} for pk, digest in found]
                extra: dict[str, Any] = {"kind": kind, "count": len(gone), "rows": gone}
                if kind == "dataset_versions":
                    edges = []
                    for edge_model in (RunInput, RunOutput):
                        edges += [
                            {"table": edge_model._meta.model_name, "id": pk, "sha256": digest}
                            for pk, digest in _digests(edge_model, "version_id", ids)
                        ]
                        where, params = _where(edge_model, "version_id", ids)
                        _sql(f"DELETE FROM {where}", params)
                    extra["edges"] = edges
                _fast_delete(model, ids)
                record(
                    "retention.delete",
                    object_type=f"{model._meta.app_label}.{model._meta.model_name}",
                    object_id=f"{len(gone)} rows",
                    actor=None,
                    actor_name=actor_name,
                    extra=extra,
                )
            done[kind] = done.get(kind, 0) + len(gone)
    entries = p.items.get("audit_entries", [])
    for i in range(0, len(entries), 500):
        seqs: list[int] = [int(item.pk) for item in entries[i : i + 500]]
        redact_many(seqs, AUDIT_PATHS, reason="retention", actor=None, actor_name=actor_name, missing_ok=True)
        done["audit_entries"] = done.get("audit_entries", 0) + len(seqs)
    return done


__all__ = ["Plan", "execute", "plan", "protected_closure"]
