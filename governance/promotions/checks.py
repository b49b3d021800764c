"""Checks a promotion policy can require. Each is evaluated on the model version and its lineage
closure when the request is made and whenever its evidence is recomputed; a request whose
required checks do not all pass cannot be approved (break-glass excepted).

Built-in checks:

==========================  ============================================================
``artifact_digest``         the version has a sha256 artifact digest
``producing_run``           the version is linked to the run that produced it
``run_completed``           that run completed (state COMPLETED)
``clean_commit``            that run's code commit is known and was not dirty
``environment_digest``      the version records its environment digest
``lineage_complete``        the closure walk was not cut by its bounds, and every input's
                            version is known (declared or inferred)
``no_major_schema_change``  no consumed dataset version brought a MAJOR schema change
``metric:<name><op><value>`` a metric of the version compares to a number, e.g.
                            ``metric:auc>=0.9`` (ops: >=, <=, >, <, ==, !=)
==========================  ============================================================
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from typing import Any

from governance.registry.models import ModelVersion
from lineage.models import Run

Result = dict[str, Any]
METRIC = re.compile(r"^metric:(?P<name>[^<>=!]+?)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>-?[0-9.eE+-]+)$")
OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}


def _artifact_digest(version: ModelVersion, evidence: dict[str, Any]) -> tuple[bool, str]:
    ok = bool(version.artifact_digest)
    return ok, "artifact digest recorded" if ok else "no sha256 artifact digest"


def _producing_run(version: ModelVersion, evidence: dict[str, Any]) -> tuple[bool, str]:
    ok = version.run_id is not None
    return ok, "linked to its producing run" if ok else "no producing run"


def _run_completed(version: ModelVersion, evidence: dict[str, Any]) -> tuple[bool, str]:
    run = version.run
    if run is None:
        return False, "no producing run"
    ok = run.state == Run.State.COMPLETED
    return ok, f"producing run is {run.state}"


def _clean_commit(version: ModelVersion, evidence: dict[str, Any]) -> tuple[bool, str]:
    run = version.run
    commit = run.code_commit if run is not None else None
    if commit is None:
        return False, "no code commit known for the producing run"
    if commit.is_dirty is None:
        return False, f"commit {commit.sha[:12]}: unknown whether the working tree was clean"
    return (not commit.is_dirty), f"commit {commit.sha[:12]} {'dirty' if commit.is_dirty else 'clean'}"


def _environment_digest(version: ModelVersion, evidence: dict[str, Any]) -> tuple[bool, str]:
    ok = bool(version.environment_digest)
    return ok, "environment digest recorded" if ok else "no environment digest"


def _lineage_complete(version: ModelVersion, evidence: dict[str, Any]) -> tuple[bool, str]:
    if evidence.get("truncated"):
        return False, "the lineage closure is larger than the walk's bounds"
    unknown = [i for i in evidence.get("inputs", []) if i.get("version") is None]
    if unknown:
        first = unknown[0]["dataset"]
        return False, f"{len(unknown)} input(s) of unknown version, e.g. {first['namespace']}:{first['name']}"
    return True, f"{len(evidence.get('inputs', []))} input version(s) known"


def _no_major_schema_change(version: ModelVersion, evidence: dict[str, Any]) -> tuple[bool, str]:
    major = [c for c in evidence.get("schema_changes", []) if c.get("level") == "MAJOR"]
    if major:
        first = major[0]
        return False, f"MAJOR schema change in {first['dataset']['namespace']}:{first['dataset']['name']}"
    return True, "no MAJOR schema change in the consumed versions"


BUILTIN: dict[str, Callable[[ModelVersion, dict[str, Any]], tuple[bool, str]]] = {
    "artifact_digest": _artifact_digest,
    "producing_run": _producing_run,
    "run_completed": _run_completed,
    "clean_commit": _clean_commit,
    "environment_digest": _environment_digest,
    "lineage_complete": _lineage_complete,
    "no_major_schema_change": _no_major_schema_change,
}


def validate(names: Any) -> list[str]:
    """The check names, validated (ValueError names the bad one)."""
    if names is None:
        return []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("required_checks must be a list of check names")
    for name in names:
        if name in BUILTIN:
            continue
        match = METRIC.match(name)
        if match is None:
            raise ValueError(
                f"unknown check {name!r}; expected one of {', '.join(sorted(BUILTIN))} or metric:<name><op><number>"
            )
        try:
            float(match["value"])
        except ValueError:
            raise ValueError(f"{name!r}: {match['value']!r} is not a number")
    return list(dict.fromkeys(names))


def _metric(version: ModelVersion, name: str, op: str, expected: float) -> tuple[bool, str]:
    raw = (version.metrics or {}).get(name)
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return False, f"metric {name!r} not recorded"
    try:
        value = float(raw)
    except ValueError:
        return False, f"metric {name!r} is not a number ({raw!r})"
    if math.isnan(value):
        return False, f"metric {name!r} is NaN"
    ok = OPS[op](value, expected)
    return ok, f"{name} = {value:g} ({'meets' if ok else 'fails'} {op} {expected:g})"


#: Checks that read the lineage closure (the others read the version and its run only).
NEEDS_EVIDENCE = frozenset({"lineage_complete", "no_major_schema_change"})


def evaluate(
    names: list[str], version: ModelVersion, evidence: dict[str, Any] | Callable[[], dict[str, Any]]
) -> list[Result]:
    """Results of the named checks. ``evidence`` may be a callable, called only if a check needs it."""
    if callable(evidence):
        evidence = evidence() if NEEDS_EVIDENCE & set(names) else {}
    results = []
    for name in names:
        if name in BUILTIN:
            passed, detail = BUILTIN[name](version, evidence)
        else:
            match = METRIC.match(name)
            if match is None:
                passed, detail = False, "unknown check"
            else:
                passed, detail = _metric(version, match["name"].strip(), match["op"], float(match["value"]))
        results.append({"name": name, "passed": passed, "detail": detail})
    return results


def failing(results: list[Result]) -> list[Result]:
    return [r for r in results if not r.get("passed")]
