"""Environment: interpreter, platform, installed distributions (with a digest) and lock files.

``environmentDigest`` = sha256 over the interpreter (implementation, version, ABI), the OS and
machine, and the sorted ``name==version`` list of installed distributions: two runs with the same
digest ran on the same software. It is copied into every ``custody_model`` facet. The full package
list is sent with root runs only (child runs carry the digests). Computed once per process, on the
background thread.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import platform
import socket
import sys
import sysconfig
import threading
from typing import Any, Dict, List, Optional

from custody._util import custody_facet
from custody.plugins import RunInfo, hookimpl

LOCKFILES = (
    "uv.lock",
    "poetry.lock",
    "Pipfile.lock",
    "pdm.lock",
    "conda-lock.yml",
    "requirements.lock",
    "requirements.txt",
    "environment.yml",
)
_lock = threading.Lock()
_cached: Optional[Dict[str, Any]] = None


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def packages() -> Dict[str, str]:
    from importlib.metadata import distributions

    found: Dict[str, str] = {}
    for dist in distributions():
        try:
            name = dist.metadata["Name"]
        except Exception:
            continue
        if name:
            found.setdefault(_normalise(name), dist.version or "")
    return dict(sorted(found.items()))


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def lockfiles(start: str) -> List[Dict[str, Any]]:
    """Known lock/requirements files in ``start`` and its parents up to the repository root."""
    out: List[Dict[str, Any]] = []
    here = os.path.abspath(start)
    for _ in range(6):
        for name in LOCKFILES:
            path = os.path.join(here, name)
            if os.path.isfile(path):
                try:
                    with open(path, "rb") as fh:
                        out.append({"path": path, "digest": "sha256:" + hashlib.sha256(fh.read()).hexdigest()})
                except OSError:
                    continue
        if out or os.path.isdir(os.path.join(here, ".git")):
            break
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    return out


def _user() -> Optional[str]:
    try:
        return getpass.getuser()
    except Exception:
        return None


def environment() -> Dict[str, Any]:
    global _cached
    with _lock:
        if _cached is not None:
            return _cached
        from custody.plugins.git import script_dir

        pkgs = packages()
        package_lines = "\n".join(f"{name}=={version}" for name, version in pkgs.items())
        interpreter = {
            "implementation": platform.python_implementation(),
            "python": platform.python_version(),
            "abi": sysconfig.get_config_var("SOABI") or "",
            "system": platform.system(),
            "machine": platform.machine(),
        }
        identity = "\n".join(f"{k}={v}" for k, v in interpreter.items()) + "\n" + package_lines
        _cached = {
            **interpreter,
            "platform": platform.platform(),
            "executable": sys.executable,
            "prefix": sys.prefix,
            "virtualenv": sys.prefix != getattr(sys, "base_prefix", sys.prefix),
            "condaEnv": os.environ.get("CONDA_DEFAULT_ENV") or None,
            "hostname": socket.gethostname(),
            "user": _user(),
            "packageCount": len(pkgs),
            "packagesDigest": _digest(package_lines),
            "environmentDigest": _digest(identity),
            "lockfiles": lockfiles(script_dir()),
            "packages": pkgs,
        }
        return _cached


@hookimpl
def custody_run_facets(run: RunInfo, event_type: str) -> Optional[Dict[str, Any]]:
    if event_type != "START":
        return None
    env = dict(environment())
    if not run.is_root:
        env.pop("packages", None)
    return {"custody_environment": custody_facet("custody_environment", "CustodyEnvironmentRunFacet", **env)}
