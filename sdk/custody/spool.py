"""The local spool: append-only JSON Lines files that hold events until the server has them.

Each process writes its own *segment* (``seg-<time>-<pid>-<random>.jsonl``) under a directory per
server URL and holds an exclusive ``flock`` on it while it lives. Every event is appended to the
segment *before* it is sent; after the server acknowledges a batch, a control line
``{"custody_ack":<byte offset>}`` records how far delivery got. So a process killed at any moment
(even with SIGKILL) leaves a segment whose unacknowledged tail is exactly what may not have arrived.

A segment whose lock can be taken belongs to a process that is gone: the next process that starts
(or ``custody flush``) *claims* it, sends the tail and deletes the file. Runs that started in that
segment but never finished are closed with a deterministic ABORT event, so the server does not show
them running forever. The server de-duplicates identical events, so re-sending is harmless.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

try:
    import fcntl
except ImportError:  # Windows: no flock; segments count as abandoned after ABANDON_AFTER seconds idle
    fcntl = None  # type: ignore[assignment]

from custody._util import iso, ol_facet
from custody._version import PRODUCER

logger = logging.getLogger("custody")

ACK_PREFIX = b'{"custody_ack":'
CONTROL_PREFIX = b'{"custody_'
ABANDON_AFTER = 600.0
RUN_EVENT_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
TERMINAL = {"COMPLETE", "FAIL", "ABORT"}


def ensure_dir(path: str) -> None:
    os.makedirs(path, mode=0o700, exist_ok=True)


def _lock(fd: int) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


class Segment:
    """A segment this process owns: append events and acknowledgements; read its own tail back."""

    def __init__(self, path: str, fd: int, size: int) -> None:
        self.path = path
        self.fd = fd
        self.size = size
        self._reader: Optional[Any] = None

    @classmethod
    def create(cls, directory: str) -> Segment:
        ensure_dir(directory)
        name = f"seg-{time.time():.6f}-{os.getpid()}-{os.urandom(4).hex()}.jsonl"
        path = os.path.join(directory, name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags, 0o600)
        if not _lock(fd):  # cannot happen for a fresh name, but never write into someone's segment
            os.close(fd)
            raise OSError(f"could not lock new spool segment {path}")
        return cls(path, fd, 0)

    def append(self, data: bytes) -> int:
        """Append ``data``; returns the offset where it starts. Raises OSError (disk full...)."""
        start = self.size
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
            self.size += written
        return start

    def ack(self, offset: int) -> None:
        self.append(b'{"custody_ack":%d}\n' % offset)

    def read_events(self, start: int, limit_bytes: int) -> List[Tuple[bytes, int]]:
        """Event lines from byte ``start`` on, as ``(line without newline, end offset)``."""
        if self._reader is None:
            self._reader = open(self.path, "rb")  # noqa: SIM115 - kept open while the segment lives
        self._reader.seek(start)
        out: List[Tuple[bytes, int]] = []
        offset = start
        total = 0
        while total < limit_bytes:
            line = self._reader.readline()
            if not line or not line.endswith(b"\n"):
                break
            offset += len(line)
            if line.startswith(CONTROL_PREFIX):
                continue
            out.append((line[:-1], offset))
            total += len(line)
        return out

    def close(self, delete: bool) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if delete:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        try:
            os.close(self.fd)  # releases the lock
        except OSError:
            pass
        self.fd = -1


class Claimed:
    """An abandoned segment this process has locked, to replay its undelivered tail."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd

    def scan(self) -> Tuple[int, List[bytes]]:
        """``(acknowledged offset, synthesized ABORT events for runs left open)``."""
        acked = 0
        runs: Dict[str, Dict[str, Any]] = {}
        with open(self.path, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    break
                if line.startswith(ACK_PREFIX):
                    try:
                        acked = max(acked, int(json.loads(line)["custody_ack"]))
                    except (ValueError, KeyError, TypeError):
                        pass
                    continue
                try:
                    value = json.loads(line)
                except ValueError:
                    continue
                if line.startswith(b'{"custody_open_runs":'):
                    for run in value.get("custody_open_runs") or []:
                        if isinstance(run, dict) and run.get("runId"):
                            runs[run["runId"]] = {**run, "started": True, "ended": False}
                    continue
                _track_run(runs, value)
        aborts = [_abort_event(info) for info in runs.values() if info.get("started") and not info.get("ended")]
        return acked, aborts

    def events(self, start: int) -> Iterator[Tuple[bytes, int]]:
        with open(self.path, "rb") as fh:
            fh.seek(start)
            offset = start
            for line in fh:
                if not line.endswith(b"\n"):
                    break
                offset += len(line)
                if line.startswith(CONTROL_PREFIX):
                    continue
                yield line[:-1], offset

    def ack(self, offset: int) -> None:
        data = b'{"custody_ack":%d}\n' % offset
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def finish(self, delete: bool) -> None:
        if delete:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        try:
            os.close(self.fd)
        except OSError:
            pass


def _track_run(runs: Dict[str, Dict[str, Any]], event: Any) -> None:
    if not isinstance(event, dict):
        return
    run = event.get("run")
    job = event.get("job")
    if not isinstance(run, dict) or not isinstance(job, dict) or not isinstance(run.get("runId"), str):
        return
    info = runs.setdefault(run["runId"], {"runId": run["runId"], "started": False, "ended": False})
    info["namespace"] = job.get("namespace")
    info["name"] = job.get("name")
    info["eventTime"] = max(str(event.get("eventTime") or ""), str(info.get("eventTime") or ""))
    kind = str(event.get("eventType") or "").upper()
    if kind == "START":
        info["started"] = True
    elif kind in TERMINAL:
        info["ended"] = True


def _abort_event(info: Dict[str, Any]) -> bytes:
    """Deterministic (same content every time, so the server de-duplicates repeats)."""
    event: Dict[str, Any] = {
        "eventType": "ABORT",
        "eventTime": info.get("eventTime") or iso(),
        "run": {
            "runId": info["runId"],
            "facets": {
                "errorMessage": ol_facet(
                    "1-0-1/ErrorMessageRunFacet",
                    message="The process recording this run ended without finishing it (killed or crashed); "
                    "Custody replayed its spooled events and closed the run.",
                    programmingLanguage="python",
                )
            },
        },
        "job": {"namespace": info.get("namespace") or "default", "name": info.get("name") or "unknown"},
        "inputs": [],
        "outputs": [],
        "producer": PRODUCER,
        "schemaURL": RUN_EVENT_SCHEMA,
    }
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def segments(directory: str) -> List[str]:
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(os.path.join(directory, n) for n in names if n.startswith("seg-") and n.endswith(".jsonl"))


def claim(path: str) -> Optional[Claimed]:
    """Lock an abandoned segment (None when its process is alive or it is gone)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    if fcntl is None:
        try:
            if time.time() - os.fstat(fd).st_mtime < ABANDON_AFTER:
                os.close(fd)
                return None
        except OSError:
            os.close(fd)
            return None
    elif not _lock(fd):
        os.close(fd)
        return None
    if not os.path.exists(path):  # replayed and deleted by another process between listdir and lock
        os.close(fd)
        return None
    claimed = Claimed(path, fd)
    try:  # a torn last line (killed mid-write) must not swallow the acks we append
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell():
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    os.write(fd, b"\n")
    except OSError:
        pass
    return claimed


def describe(directory: str) -> Dict[str, Any]:
    """What ``custody status`` shows: segments, pending events and bytes, and those in use."""
    pending = 0
    pending_bytes = 0
    in_use = 0
    files = segments(directory)
    for path in files:
        fd = None
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    fcntl.flock(fd, fcntl.LOCK_UN)
                except OSError:
                    in_use += 1
            with os.fdopen(os.dup(fd), "rb") as fh:
                acked = 0
                lines: List[Tuple[int, int]] = []
                offset = 0
                for line in fh:
                    if not line.endswith(b"\n"):
                        break
                    offset += len(line)
                    if line.startswith(ACK_PREFIX):
                        try:
                            acked = max(acked, int(json.loads(line)["custody_ack"]))
                        except (ValueError, KeyError, TypeError):
                            pass
                    elif not line.startswith(CONTROL_PREFIX):
                        lines.append((offset, len(line)))
                for end, size in lines:
                    if end > acked:
                        pending += 1
                        pending_bytes += size
        except OSError:
            continue
        finally:
            if fd is not None:
                os.close(fd)
    rejected = os.path.join(directory, "rejected.jsonl")
    rejected_count = 0
    if os.path.exists(rejected):
        with open(rejected, "rb") as fh:
            rejected_count = sum(1 for _ in fh)
    return {
        "directory": directory,
        "segments": len(files),
        "in_use": in_use,
        "pending_events": pending,
        "pending_bytes": pending_bytes,
        "rejected_events": rejected_count,
    }


def record_rejected(directory: str, line: bytes, reason: str) -> None:
    """Keep an event the server refused (4xx), with the reason, for inspection; never raises."""
    try:
        ensure_dir(directory)
        entry = json.dumps({"rejectedAt": iso(), "reason": reason}).encode()[:-1]
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(os.path.join(directory, "rejected.jsonl"), flags, 0o600)  # events may be sensitive
        with os.fdopen(fd, "ab") as fh:
            fh.write(entry + b',"event":' + line + b"}\n")
    except OSError as exc:
        logger.debug("custody: could not record a rejected event: %s", exc)
