"""The evidence pack as a W3C PROV document (PROV-JSON), built with the ``prov`` library.

- entities: the model version, its artifact, code commits, dataset versions;
- activities: runs, promotion requests, deployments;
- agents: users (requesters, approvers, deployers, run submitters);
- relations: ``used`` (run → consumed dataset versions and commit, promotion and deployment → the
  model version), ``wasGeneratedBy`` (model version and artifact → producing run, dataset versions →
  their producing run), ``wasAssociatedWith`` (activities → users, with the role as attribute),
  ``wasDerivedFrom`` (model version → consumed dataset versions, commit, artifact).

Identifiers live in the ``custody`` namespace; each path segment is percent-encoded.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from prov.model import ProvDocument

NAMESPACE = "https://custody.dev/ns/evidence#"


def _id(*parts: Any) -> str:
    return "custody:" + "/".join(quote(str(p), safe="") for p in parts)


def _attrs(**values: Any) -> dict[Any, Any]:
    """PROV attributes in the custody namespace, without empty values (PROV literals are strings,
    numbers or booleans)."""
    out: dict[Any, Any] = {}
    for key, value in values.items():
        if value is None or value == "" or value == [] or value == {}:
            continue
        out[f"custody:{key}"] = value if isinstance(value, (str, int, float, bool)) else str(value)
    return out


def document(pack: dict[str, Any]) -> ProvDocument:
    doc = ProvDocument()
    doc.add_namespace("custody", NAMESPACE)
    model = pack["model"]
    mv = model["version"]
    lineage = pack["lineage"]
    model_id = _id("model", model["namespace"], model["name"], mv["version"])
    doc.entity(
        model_id,
        {
            "prov:type": "custody:ModelVersion",
            "prov:label": f"{model['namespace']}:{model['name']} {mv['version']}",
            **_attrs(
                framework=mv["framework"],
                environment_digest=mv["environment_digest"],
                evidence_digest=lineage["evidence_digest"],
                pack_digest=pack["digest"]["value"],
            ),
        },
    )
    agents: set[str] = set()

    def agent(name: str | None) -> str | None:
        if not name:
            return None
        ident = _id("user", name)
        if ident not in agents:
            doc.agent(ident, {"prov:type": "prov:Person", "prov:label": name})
            agents.add(ident)
        return ident

    artifact = lineage["artifact"]
    artifact_id = None
    if artifact.get("sha256") or artifact.get("uri"):
        artifact_id = _id("artifact", artifact.get("sha256") or artifact.get("uri"))
        doc.entity(
            artifact_id,
            {"prov:type": "custody:Artifact", **_attrs(uri=artifact.get("uri"), sha256=artifact.get("sha256"))},
        )
        doc.wasDerivedFrom(model_id, artifact_id)

    commits: set[str] = set()
    runs: set[str] = set()
    for run in lineage["runs"]:
        if run.get("redacted"):
            continue
        run_id = _id("run", run["run_id"])
        runs.add(run["run_id"])
        doc.activity(
            run_id,
            startTime=run.get("started_at"),
            endTime=run.get("ended_at"),
            other_attributes={
                "prov:type": "custody:Run",
                "prov:label": f"{run['job']['namespace']}:{run['job']['name']}",
                **_attrs(state=run.get("state"), job_namespace=run["job"]["namespace"], job_name=run["job"]["name"]),
            },
        )
        commit = run.get("code_commit")
        if commit:
            commit_id = _id("commit", commit["repo_url"], commit["sha"])
            if commit_id not in commits:
                doc.entity(
                    commit_id,
                    {
                        "prov:type": "custody:CodeCommit",
                        **_attrs(repo_url=commit["repo_url"], sha=commit["sha"], dirty=commit.get("dirty")),
                    },
                )
                commits.add(commit_id)
            doc.used(run_id, commit_id)
            author = agent(commit.get("author"))
            if author is not None:
                doc.wasAttributedTo(commit_id, author)

    producing = lineage.get("producing_run")
    if producing and not producing.get("redacted"):
        producing_id = _id("run", producing["run_id"])
        doc.wasGeneratedBy(model_id, producing_id)
        if artifact_id is not None:
            doc.wasGeneratedBy(artifact_id, producing_id)
        if producing.get("code_commit"):
            c = producing["code_commit"]
            doc.wasDerivedFrom(model_id, _id("commit", c["repo_url"], c["sha"]))

    for dv in lineage["dataset_versions"]:
        if dv.get("redacted"):
            continue
        parts = [dv["dataset"]["namespace"], dv["dataset"]["name"]]
        dv_id = _id("dataset", *parts, dv["version"]) if dv["version"] is not None else _id("dataset", *parts)
        doc.entity(
            dv_id,
            {
                "prov:type": "custody:DatasetVersion",
                "prov:label": f"{dv['dataset']['namespace']}:{dv['dataset']['name']}@{dv['version'] or '?'}",
                **_attrs(
                    schema_digest=dv.get("schema_digest"),
                    fields=len(dv.get("fields") or []),
                    resolution=dv.get("resolution"),
                ),
            },
        )
        for consumer in dv.get("consumed_by", []):
            if consumer in runs:
                doc.used(_id("run", consumer), dv_id)
        if dv.get("producing_run") and dv["producing_run"] in runs:
            doc.wasGeneratedBy(dv_id, _id("run", dv["producing_run"]))
        doc.wasDerivedFrom(model_id, dv_id)

    for req in pack["promotions"]:
        pid = _id("promotion", req["id"])
        doc.activity(
            pid,
            startTime=req.get("created_at"),
            endTime=req.get("decided_at"),
            other_attributes={
                "prov:type": "custody:Promotion",
                "prov:label": f"promotion to {req['environment']}",
                **_attrs(
                    environment=req["environment"],
                    state=req["state"],
                    evidence_digest=req["evidence_digest"],
                    policy_version=req["policy"]["version"],
                    quorum_met=req["quorum"]["met"],
                    separation_of_duties=req["separation_of_duties"]["outcome"],
                ),
            },
        )
        doc.used(pid, model_id)
        requester = agent(req.get("requested_by"))
        if requester is not None:
            doc.wasAssociatedWith(pid, requester, other_attributes={"prov:role": "custody:requester"})
        for decision in req["decisions"]:
            who = agent(decision["user"])
            if who is not None:
                doc.wasAssociatedWith(
                    pid,
                    who,
                    other_attributes={
                        "prov:role": f"custody:{decision['decision']}",
                        **_attrs(at=decision["at"], reason=decision["reason"], stale=decision["stale"]),
                    },
                )

    for dep in pack["deployments"]:
        did = _id("deployment", dep["id"])
        doc.activity(
            did,
            startTime=dep.get("deployed_at"),
            other_attributes={
                "prov:type": "custody:Deployment",
                "prov:label": f"deployment to {dep['environment']}",
                **_attrs(
                    environment=dep["environment"],
                    target=dep["target"],
                    version=dep["version"],
                    rollback_of=(dep.get("rollback_of") or {}).get("id"),
                    break_glass=dep["break_glass"],
                ),
            },
        )
        doc.used(did, model_id)
        deployer = agent(dep.get("deployed_by"))
        if deployer is not None:
            doc.wasAssociatedWith(did, deployer, other_attributes={"prov:role": "custody:deployer"})
        if dep.get("promotion_id") is not None:
            doc.wasInformedBy(did, _id("promotion", dep["promotion_id"]))
    return doc


def serialize(pack: dict[str, Any]) -> str:
    return str(document(pack).serialize(format="json", indent=2))
