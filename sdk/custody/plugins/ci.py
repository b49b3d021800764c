"""CI: which pipeline run executed the code (GitHub Actions, GitLab CI, Jenkins, generic CI)."""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional

from custody._util import custody_facet
from custody.plugins import RunInfo, hookimpl


def detect(env: Mapping[str, str]) -> Optional[Dict[str, Any]]:
    get = env.get
    if get("GITHUB_ACTIONS") == "true":
        server = get("GITHUB_SERVER_URL", "https://github.com")
        repo = get("GITHUB_REPOSITORY")
        run_id = get("GITHUB_RUN_ID")
        return {
            "provider": "github-actions",
            "runId": run_id,
            "runAttempt": get("GITHUB_RUN_ATTEMPT"),
            "runNumber": get("GITHUB_RUN_NUMBER"),
            "pipeline": get("GITHUB_WORKFLOW"),
            "job": get("GITHUB_JOB"),
            "url": f"{server}/{repo}/actions/runs/{run_id}" if repo and run_id else None,
            "repository": f"{server}/{repo}" if repo else None,
            "commit": get("GITHUB_SHA"),
            "ref": get("GITHUB_REF"),
            "actor": get("GITHUB_ACTOR"),
            "event": get("GITHUB_EVENT_NAME"),
        }
    if get("GITLAB_CI") == "true":
        return {
            "provider": "gitlab-ci",
            "runId": get("CI_PIPELINE_ID"),
            "jobId": get("CI_JOB_ID"),
            "pipeline": get("CI_PIPELINE_NAME") or get("CI_PROJECT_PATH"),
            "job": get("CI_JOB_NAME"),
            "url": get("CI_JOB_URL") or get("CI_PIPELINE_URL"),
            "repository": get("CI_PROJECT_URL"),
            "commit": get("CI_COMMIT_SHA"),
            "ref": get("CI_COMMIT_REF_NAME"),
            "actor": get("GITLAB_USER_LOGIN"),
            "event": get("CI_PIPELINE_SOURCE"),
        }
    if get("JENKINS_URL") or get("JENKINS_HOME"):
        return {
            "provider": "jenkins",
            "runId": get("BUILD_ID") or get("BUILD_NUMBER"),
            "runNumber": get("BUILD_NUMBER"),
            "pipeline": get("JOB_NAME"),
            "url": get("BUILD_URL"),
            "repository": get("GIT_URL"),
            "commit": get("GIT_COMMIT"),
            "ref": get("GIT_BRANCH") or get("BRANCH_NAME"),
            "actor": get("BUILD_USER_ID"),
        }
    if (get("CI") or "").lower() in {"1", "true", "yes"}:
        return {"provider": "unknown"}
    return None


@hookimpl
def custody_run_facets(run: RunInfo, event_type: str) -> Optional[Dict[str, Any]]:
    if event_type != "START":
        return None
    info = detect(os.environ)
    if info is None:
        return None
    fields = {k: v for k, v in info.items() if v}
    return {"custody_ci": custody_facet("custody_ci", "CustodyCiRunFacet", **fields)}
