"""The evidence a promotion request pins: the model version's lineage closure and its digest.

The closure is the producing run's upstream provenance (``lineage.graph.version_lineage``, as
deep as it goes): every run that contributed, each with its code commit, and every dataset version
those runs consumed (with its schema digest and whether the producer declared the version or it
was inferred), plus the version's artifact and environment digests. The digest is a SHA-256 over a
canonical JSON of exactly those facts, so a late event that adds an input to the training run
(or to any run upstream of it), a new dataset version that changes what an input resolves to, a
different commit, or a different artifact all change the digest, while run states, metrics and
other facets do not.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q

from governance.registry.models import ModelVersion
from lineage.graph import DATASET, RUN, VERSION, NodeRef, version_lineage
from lineage.models import Dataset, DatasetVersion, RawEvent, Run, SchemaChange

#: Bounds of the closure walk: edge hops and nodes. A closure cut there says ``truncated``.
CLOSURE_DEPTH = 400
CLOSURE_NODES = 20_000


@dataclass
class Closure:
    facts: dict[str, Any]
    digest: str
    schema_changes: list[dict[str, Any]] = field(default_factory=list)
    run_pks: set[int] = field(default_factory=set)
    dataset_pks: set[int] = field(default_factory=set)
    truncated: bool = False

    def as_json(self) -> dict[str, Any]:
        return {**self.facts, "schema_changes": self.schema_changes, "digest": self.digest}


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _commit(run: Run) -> dict[str, Any] | None:
    commit = run.code_commit
    if commit is None:
        return None
    return {
        "repo_url": commit.repo_url,
        "sha": commit.sha,
        "dirty": commit.is_dirty,
        "diff_digest": commit.diff_digest or None,
        "author": commit.author or None,
    }


def closure(version: ModelVersion) -> Closure:
    model = version.model
    facts: dict[str, Any] = {
        "model": {"namespace": model.namespace.name, "name": model.name, "version": version.version},
        "artifact_digest": version.artifact_digest or None,
        "environment_digest": version.environment_digest or None,
        "producing_run": None,
        "runs": [],
        "inputs": [],
        "truncated": False,
    }
    result = Closure(facts=facts, digest="")
    run = version.run
    if run is not None:
        start = NodeRef(RUN, run.pk, run.job.namespace_id)
        traversal = version_lineage(start, depth=CLOSURE_DEPTH, limit=CLOSURE_NODES, upstream=True, downstream=False)
        run_pks = traversal.kinds(RUN)
        version_pks = traversal.kinds(VERSION)
        runs = {r.pk: r for r in Run.objects.filter(pk__in=run_pks).select_related("job__namespace", "code_commit")}
        versions = {
            v.pk: v
            for v in DatasetVersion.objects.filter(pk__in=version_pks)
            .select_related("dataset__namespace")
            .defer("fields", "facets", "facet_times", "dataset__fields", "dataset__facets", "dataset__facet_times")
        }
        datasets = {
            d.pk: d
            for d in Dataset.objects.filter(pk__in=traversal.kinds(DATASET))
            .select_related("namespace")
            .defer("fields", "facets", "facet_times")
        }
        facts["producing_run"] = run.run_id
        facts["runs"] = sorted(
            (
                {
                    "run_id": r.run_id,
                    "job": {"namespace": r.job.namespace.name, "name": r.job.name},
                    "code_commit": _commit(r),
                }
                for r in runs.values()
            ),
            key=lambda item: item["run_id"],
        )
        inputs = []
        for (origin, destination), attrs in traversal.edges.items():
            if destination[0] != RUN or destination[1] not in runs:
                continue
            consumer = runs[destination[1]].run_id
            if origin[0] == VERSION and origin[1] in versions:
                v = versions[origin[1]]
                inputs.append(
                    {
                        "run_id": consumer,
                        "dataset": {"namespace": v.dataset.namespace.name, "name": v.dataset.name},
                        "version": v.version,
                        "schema_digest": v.schema_digest or None,
                        "resolution": (attrs or {}).get("resolution", "declared"),
                    }
                )
                result.dataset_pks.add(v.dataset_id)
            elif origin[0] == DATASET and origin[1] in datasets:
                d = datasets[origin[1]]
                inputs.append(
                    {
                        "run_id": consumer,
                        "dataset": {"namespace": d.namespace.name, "name": d.name},
                        "version": None,
                        "schema_digest": None,
                        "resolution": "unknown",
                    }
                )
                result.dataset_pks.add(d.pk)
        facts["inputs"] = sorted(
            inputs, key=lambda i: (i["run_id"], i["dataset"]["namespace"], i["dataset"]["name"], i["version"] or "")
        )
        facts["truncated"] = traversal.truncated
        result.truncated = traversal.truncated
        result.run_pks = set(runs)
        consumed = [
            origin[1] for (origin, destination) in traversal.edges if origin[0] == VERSION and destination[0] == RUN
        ]
        changes = SchemaChange.objects.filter(to_version_id__in=consumed).select_related(
            "dataset__namespace", "to_version"
        )
        result.schema_changes = sorted(
            (
                {
                    "dataset": {"namespace": c.dataset.namespace.name, "name": c.dataset.name},
                    "version": c.to_version.version,
                    "level": c.level,
                    "explanation": c.explanation,
                }
                for c in changes
            ),
            key=lambda c: (c["dataset"]["namespace"], c["dataset"]["name"], c["version"]),
        )
    result.digest = hashlib.sha256(canonical(facts).encode("utf-8")).hexdigest()
    return result


# --- who may not approve (separation of duties) ---------------------------------------------------


def run_author_ids(version: ModelVersion) -> set[int]:
    """Users who submitted the producing run's events (the run's authors)."""
    run = version.run
    if run is None:
        return set()
    return set(
        RawEvent.objects.filter(run_id=run.run_id, submitted_by__isnull=False)
        .order_by()
        .values_list("submitted_by_id", flat=True)
        .distinct()
    )


def is_run_author(user: Any, version: ModelVersion) -> bool:
    """Did ``user`` submit any event of the producing run? (One indexed query.)"""
    run = version.run
    if run is None or user.pk is None:
        return False
    return RawEvent.objects.filter(run_id=run.run_id, submitted_by_id=user.pk).exists()


def commit_author_names(version: ModelVersion, git: Any = None) -> set[str]:
    """The producing run's commit author, as names and e-mails (lower case). ``git``: the run's
    ``custody_git`` facet when the caller already has it."""
    run = version.run
    if run is None:
        return set()
    names: set[str] = set()
    if run.code_commit is not None and run.code_commit.author:
        names.add(run.code_commit.author)
    if git is None:
        git = Run.objects.filter(pk=run.pk).values_list("facets__custody_git", flat=True).first()
    if isinstance(git, dict):
        for key in ("author", "authorEmail"):
            value = git.get(key)
            if isinstance(value, str):
                names.add(value)
    return {name.strip().lower() for name in names if name.strip()}


def is_commit_author(user: Any, version: ModelVersion, git: Any = None) -> bool:
    """Does ``user`` match the commit author (username, e-mail or full name, case-insensitive)?"""
    names = commit_author_names(version, git)
    if not names:
        return False
    mine = {user.get_username(), getattr(user, "email", "") or ""}
    full = f"{getattr(user, 'first_name', '')} {getattr(user, 'last_name', '')}".strip()
    if getattr(user, "first_name", "") and getattr(user, "last_name", ""):
        mine.add(full)
    return bool({m.strip().lower() for m in mine if m and m.strip()} & names)


def commit_author_ids(version: ModelVersion) -> set[int]:
    """Users who match the producing run's commit author: by username, e-mail or full name
    (case-insensitive), from the code commit and the SDK's ``custody_git`` run facet."""
    run = version.run
    if run is None:
        return set()
    names: set[str] = set()
    if run.code_commit is not None and run.code_commit.author:
        names.add(run.code_commit.author.strip())
    git = (run.facets or {}).get("custody_git") if isinstance(run.facets, dict) else None
    if isinstance(git, dict):
        for key in ("author", "authorEmail"):
            value = git.get(key)
            if isinstance(value, str) and value.strip():
                names.add(value.strip())
    names = {n for n in names if n}
    if not names:
        return set()
    users = get_user_model()._default_manager
    condition = Q()
    for name in names:
        condition |= Q(username__iexact=name) | Q(email__iexact=name)
        first, _, last = name.partition(" ")
        if first and last:
            condition |= Q(first_name__iexact=first, last_name__iexact=last.strip())
    return set(users.filter(condition).values_list("pk", flat=True))
