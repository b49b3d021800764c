"""Git: commit, branch, remote, author, dirty flag and a digest of the uncommitted changes.

Emits the ``custody_git`` run facet (read by the server to record the CodeCommit) and the standard
``sourceCodeLocation`` job facet. Looks at the repository holding the main script (else the current
directory); ``CUSTODY_GIT_DIR`` overrides. In CI, a detached HEAD takes its branch from the CI
variables. Credentials in a remote URL (``https://user:token@host/...``) are removed.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from custody._util import custody_facet, ol_facet
from custody.plugins import RunInfo, hookimpl

TIMEOUT = 5.0
UNTRACKED_DIGEST_MAX_BYTES = 16 * 1024 * 1024
_cache: Dict[str, Tuple[float, Optional[Dict[str, Any]]]] = {}
_lock = threading.Lock()
CACHE_SECONDS = 2.0  # child runs started right after their parent reuse its answer


def _git(cwd: str, *args: str, binary: bool = False) -> Optional[Any]:
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            timeout=TIMEOUT,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout if binary else proc.stdout.decode("utf-8", "replace").strip()


def script_dir() -> str:
    override = os.environ.get("CUSTODY_GIT_DIR")
    if override:
        return override
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path:
        return os.path.dirname(os.path.abspath(str(path)))
    return os.getcwd()


def sanitize_url(url: str) -> str:
    """Drop user:password@ from URLs (tokens in remotes must not reach the lineage store)."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@", r"\1", url.strip())


def web_url(repo_url: str) -> Optional[str]:
    """``https://host/org/repo`` for GitHub/GitLab/Bitbucket-style remotes, else None."""
    match = re.match(r"^(?:https?://|ssh://git@|git@)([^/:]+)[:/](.+?)(?:\.git)?/?$", repo_url)
    if not match:
        return None
    host, path = match.groups()
    host = host.split(":")[0] if repo_url.startswith("ssh://") else host
    return f"https://{host}/{path}"


def _ci_branch() -> str:
    for var in ("GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME", "BRANCH_NAME", "GIT_BRANCH"):
        value = os.environ.get(var)
        if value:
            return re.sub(r"^origin/", "", value)
    return ""


def _status_entries(status: str) -> List[str]:
    """``XY path`` entries of ``git status --porcelain=v1 -z`` (a rename's source path skipped)."""
    fields = status.split("\0")
    entries: List[str] = []
    i = 0
    while i < len(fields):
        item = fields[i]
        i += 1
        if len(item) < 4:
            continue
        entries.append(item)
        if item[0] in "RC":
            i += 1
    return entries


def _diff_digest(root: str, status: str) -> Optional[str]:
    """sha256 over ``git diff HEAD --binary`` plus untracked files (path and content)."""
    diff = _git(root, "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff", binary=True)
    if diff is None:
        return None
    h = hashlib.sha256(diff)
    untracked = sorted(line[3:] for line in _status_entries(status) if line.startswith("?? "))
    budget = UNTRACKED_DIGEST_MAX_BYTES
    for rel in untracked:
        h.update(b"\0untracked\0" + rel.encode("utf-8", "surrogateescape") + b"\0")
        full = os.path.join(root, rel)
        try:
            size = os.path.getsize(full)
            if os.path.isfile(full) and size <= budget:
                with open(full, "rb") as fh:
                    h.update(fh.read())
                budget -= size
            else:
                h.update(b"size:%d" % size)
        except OSError:
            continue
    return "sha256:" + h.hexdigest()


def inspect_repo(start: str) -> Optional[Dict[str, Any]]:
    out = _git(start, "rev-parse", "--show-toplevel", "HEAD", "--abbrev-ref", "HEAD")
    if not out:
        return None
    lines = out.splitlines()
    if len(lines) < 3:
        return None
    root, sha, branch = lines[0], lines[1], lines[2]
    if branch == "HEAD":
        branch = _ci_branch()
    remote = ""
    remotes = _git(root, "remote") or ""
    names: List[str] = [r for r in remotes.splitlines() if r]
    if names:
        name = "origin" if "origin" in names else names[0]
        remote = sanitize_url(_git(root, "remote", "get-url", name) or "")
    author = _git(root, "log", "-1", "--format=%an%x00%ae%x00%cI") or ""
    author_name, author_email, committed_at = ([*author.split("\0"), "", "", ""])[:3]
    status = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=normal") or ""
    changed = _status_entries(status)
    dirty = bool(changed)
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    rel_path = None
    if script:
        full = os.path.realpath(os.path.abspath(script))
        real_root = os.path.realpath(root)
        if full.startswith(real_root + os.sep):
            rel_path = os.path.relpath(full, real_root).replace(os.sep, "/")
    info: Dict[str, Any] = {
        "root": root,
        "repoUrl": remote or f"file://{root}",
        "commit": sha,
        "branch": branch or None,
        "author": author_name or None,
        "authorEmail": author_email or None,
        "committedAt": committed_at or None,
        "dirty": dirty,
        "diffDigest": _diff_digest(root, status) if dirty else None,
        "changedFiles": len(changed),
        "path": rel_path,
    }
    return info


def repo_info() -> Optional[Dict[str, Any]]:
    start = script_dir()
    now = time.monotonic()
    with _lock:
        hit = _cache.get(start)
        if hit and now - hit[0] < CACHE_SECONDS:
            return hit[1]
    info = inspect_repo(start)
    with _lock:
        _cache[start] = (time.monotonic(), info)
    return info


@hookimpl
def custody_run_facets(run: RunInfo, event_type: str) -> Optional[Dict[str, Any]]:
    if event_type != "START":
        return None
    info = repo_info()
    if info is None:
        return None
    fields = {k: v for k, v in info.items() if k != "root"}
    return {"custody_git": custody_facet("custody_git", "CustodyGitRunFacet", **fields)}


@hookimpl
def custody_job_facets(run: RunInfo) -> Optional[Dict[str, Any]]:
    info = repo_info()
    if info is None:
        return None
    web = web_url(info["repoUrl"])
    url = info["repoUrl"]
    if web:
        url = f"{web}/tree/{info['commit']}" + (f"/{info['path']}" if info.get("path") else "")
    return {
        "sourceCodeLocation": ol_facet(
            "1-1-0/SourceCodeLocationJobFacet",
            type="git",
            url=url,
            repoUrl=info["repoUrl"],
            path=info.get("path"),
            version=info["commit"],
            branch=info.get("branch"),
        )
    }
