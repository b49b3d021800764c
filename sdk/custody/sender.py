"""The background sender: the caller's thread only enqueues; this thread builds the events, spools
them, batches them to ``POST /api/v1/lineage/batch`` and retries with backoff.

Delivery is at least once and in order (one connection, one batch in flight, retried batches are
re-sent whole); the server's content-digest de-duplication makes it exactly once in effect.

Outcomes of a batch:

* 2xx: delivered. Events the server refused (``failed_events`` not ``retriable``) are reported
  once per reason and kept in ``rejected.jsonl`` in the spool directory; retriable ones cause the
  batch to be sent again later.
* network error, 5xx, 408, 429: retried with exponential backoff (0.25 s doubling to 30 s, with
  jitter, honouring ``Retry-After``); meanwhile everything stays in the spool.
* 400/413/422 (and other 4xx): the batch is split to isolate the bad event, which is rejected.
* 401, 403, 404, 405: a configuration problem (token, permission, URL). Reported once; this process
  sends nothing more, and the events stay in the spool for ``custody flush`` once it is fixed.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import json
import logging
import os
import queue
import random
import socket
import threading
import time
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Set, Tuple

from custody import spool
from custody.config import Config
from custody.errors import ServerUnreachable
from custody.events import EventBuilder, encode

logger = logging.getLogger("custody")

BATCH_PATH = "/api/v1/lineage/batch"
MAX_INTAKE = 50_000
ROTATE_BYTES = 8 * 1024 * 1024
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 30.0
TARGET_SECONDS = 1.0  # batch sizes adapt so that a request takes about this long


class Outcome:
    """What became of one batch."""

    __slots__ = ("duplicates", "message", "rejected", "retry_after", "state", "successful", "timed_out")

    def __init__(self, state: str, message: str = "", retry_after: float = 0.0, timed_out: bool = False) -> None:
        self.state = state  # "ok" | "retry" | "pause"
        self.message = message
        self.retry_after = retry_after
        self.timed_out = timed_out
        self.successful = 0
        self.duplicates = 0
        self.rejected: List[Tuple[int, str]] = []


def post_batch(transport: Any, lines: List[bytes], timeout: Optional[float] = None, _base: int = 0) -> Outcome:
    """Send ``lines`` (encoded events) as one batch; isolates bad events by splitting on a 4xx."""
    body = b"[" + b",".join(lines) + b"]"
    try:
        response = transport.request("POST", BATCH_PATH, body, timeout=timeout)
    except ServerUnreachable as exc:
        cause = exc.__cause__
        return Outcome("retry", str(exc), timed_out=isinstance(cause, (socket.timeout, TimeoutError)))
    status = response.status
    if 200 <= status < 300:
        out = Outcome("ok")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("summary"), dict):
            out.successful = len(lines)
            return out
        summary = answer["summary"]
        out.successful = int(summary.get("successful") or 0)
        out.duplicates = int(summary.get("duplicates") or 0)
        for failure in answer.get("failed_events") or []:
            if not isinstance(failure, dict):
                continue
            index = failure.get("index")
            reason = str(failure.get("reason") or "rejected")
            if failure.get("retriable"):
                out.state = "retry"
                out.message = f"the server could not store an event for now: {reason}"
            elif isinstance(index, int):
                out.rejected.append((_base + index, reason))
        return out
    fields = response.error_fields()
    detail = str(fields.get("detail") or fields.get("error") or "").strip()
    described = f"{status} {detail}".strip()
    if status >= 500 or status in (408, 429):
        retry_after = 0.0
        try:
            retry_after = float(response.headers.get("retry-after", 0))
        except ValueError:
            pass
        return Outcome("retry", f"the server answered {described}", retry_after)
    if status in (401, 403, 404, 405):
        hints = {
            401: "the token is missing or invalid: set CUSTODY_TOKEN (manage.py create_token NAME)",
            403: "the token's user may not ingest lineage into this namespace",
            404: f"there is no {BATCH_PATH} at this URL: check CUSTODY_URL",
            405: f"{BATCH_PATH} does not accept POST here: check CUSTODY_URL",
        }
        return Outcome("pause", f"the server answered {described}; {hints[status]}")
    if len(lines) > 1:
        half = len(lines) // 2
        first = post_batch(transport, lines[:half], timeout, _base)
        if first.state != "ok":
            return first
        second = post_batch(transport, lines[half:], timeout, _base + half)
        if second.state != "ok":
            return second
        first.successful += second.successful
        first.duplicates += second.duplicates
        first.rejected += second.rejected
        return first
    out = Outcome("ok")
    out.rejected.append((_base, f"the server answered {described}"))
    return out


def describe_event(line: bytes) -> str:
    try:
        event = json.loads(line)
        job = event.get("job") or {}
        run = event.get("run") or {}
        where = f"{job.get('namespace')}:{job.get('name')}"
        return f"{event.get('eventType', '?')} event of run {run.get('runId')} (job {where})"
    except Exception:
        return "an event"


class BatchSizer:
    """Batch size follows the server: halve after a timeout or a slow answer, double while quick."""

    def __init__(self, maximum: int, start: int = 100) -> None:
        self.maximum = maximum
        self.limit = max(1, min(start, maximum))

    def update(self, outcome: Outcome, size: int, took: float) -> None:
        if outcome.state == "retry" and outcome.timed_out:
            self.limit = max(1, min(self.limit, size) // 2)
        elif outcome.state == "ok" and size >= self.limit and took < TARGET_SECONDS:
            self.limit = min(self.maximum, self.limit * 2)
        elif outcome.state == "ok" and took > 2 * TARGET_SECONDS and self.limit > 1:
            self.limit = max(1, self.limit // 2)


class Stats:
    def __init__(self) -> None:
        self.enqueued = 0
        self.events = 0
        self.delivered = 0
        self.duplicates = 0
        self.rejected = 0
        self.lost = 0
        self.batches = 0
        self.failures = 0
        self.replayed = 0

    def as_dict(self) -> Dict[str, int]:
        return dict(self.__dict__)


class Sender:
    """Two daemon threads share the work, so that spooling never waits for the network:

    * the *spooler* takes items off the queue, builds the events and appends them to the spool
      segment (so they survive a SIGKILL within milliseconds), then hands them to
    * the *sender*, which posts them in batches, retries, acknowledges, and replays what earlier
      processes left behind.
    """

    def __init__(self, config: Config, plugins: Callable[[], Any]) -> None:
        self.config = config
        self.queue: queue.SimpleQueue[Tuple[Any, ...]] = queue.SimpleQueue()
        self.builder = EventBuilder(config, plugins)
        self.stats = Stats()
        self._threads: List[threading.Thread] = []
        self._thread: Optional[threading.Thread] = None  # the spooler; None until started
        self._start_lock = threading.Lock()
        self._build_lock = threading.Lock()  # the builder's per-run state
        self._lock = threading.RLock()  # spool segment, backlog, acknowledgements, waiters
        self._cond = threading.Condition(self._lock)
        self._transport: Any = None
        self.segment: Optional[spool.Segment] = None
        self.wal_ok = True
        self.backlog: Deque[Tuple[int, bytes, int]] = collections.deque()
        self.backlog_bytes = 0
        self.spill_offset: Optional[int] = None
        self.spill_seq = 0
        self.seq = 0
        self.resolved = 0
        self.waiters: List[Tuple[int, threading.Event, Dict[str, Any], int]] = []
        self._problems: List[int] = []  # seqs of events rejected or dropped, ascending
        self._flush_mark = 0  # seq covered by the previous flush()
        self.paused: Optional[str] = None
        self.healthy = True
        self.retry_at = 0.0
        self.backoff = 0.0
        self.sizer = BatchSizer(config.max_batch_events)
        self.last_error: Optional[str] = None
        self.replay_pending = True
        self._reported: Set[Any] = set()
        self._outage_started: Optional[float] = None
        self.stopped = threading.Event()
        self._stop_item: Optional[Tuple[Any, ...]] = None

    # --- caller side ---------------------------------------------------------------------------
    def put(self, item: Tuple[Any, ...]) -> None:
        self.queue.put(item)
        if self._thread is None:
            self.start()

    def start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            spooler = threading.Thread(target=self._spooler, name="custody-spooler", daemon=True)
            sender = threading.Thread(target=self._sender, name="custody-sender", daemon=True)
            try:
                spooler.start()
                sender.start()
            except RuntimeError:  # interpreter shutting down: shutdown() does the work inline
                return
            self._threads = [spooler, sender]
            self._thread = spooler

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until everything recorded so far is delivered (True) or ``timeout`` passes (False)."""
        done = threading.Event()
        holder: Dict[str, Any] = {}
        self.put(("flush", done, holder))
        return done.wait(timeout) and bool(holder.get("ok"))

    def shutdown(self, timeout: float) -> bool:
        """Deliver what can be delivered within ``timeout``; the rest stays spooled. True if all went."""
        deadline = time.monotonic() + timeout
        done = threading.Event()
        holder: Dict[str, Any] = {}
        item = ("stop", deadline, done, holder)
        self.queue.put(item)
        if not self._threads or not all(t.is_alive() for t in self._threads):
            self._run_inline()
            return bool(holder.get("ok"))
        if done.wait(max(0.0, deadline - time.monotonic()) + 0.5):
            return bool(holder.get("ok"))
        # Stuck (a plugin or the server hanging): whatever is still queued goes to the spool now.
        if self._build_lock.acquire(timeout=1.0):
            try:
                self._intake(None)
            finally:
                self._build_lock.release()
        if self._lock.acquire(timeout=1.0):
            try:
                self._close_segment()
            finally:
                self._lock.release()
        return False

    def status(self) -> Dict[str, Any]:
        return {
            "queued": self.queue.qsize(),
            "backlog": len(self.backlog),
            "spilled": self.spill_offset is not None,
            "healthy": self.healthy,
            "paused": self.paused,
            "last_error": self.last_error,
            "batch_limit": self.sizer.limit,
            "spool": self.segment.path if self.segment else None,
            "spool_writable": self.wal_ok,
            **self.stats.as_dict(),
        }

    # --- the spooler thread ----------------------------------------------------------------------
    def _spooler(self) -> None:
        while True:
            try:
                deadline = self.builder.next_metrics_deadline()
                try:
                    if deadline is None:
                        item: Optional[Tuple[Any, ...]] = self.queue.get()
                    else:
                        item = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    item = None
                with self._build_lock:
                    stop = self._intake(item)
                if stop is not None:
                    with self._cond:
                        self._stop_item = stop
                        self._cond.notify_all()
                    return
            except Exception:  # never let recording die: report and go on
                logger.exception("custody: unexpected error while spooling (recording continues)")
                time.sleep(0.1)

    # --- the sender thread -------------------------------------------------------------------------
    def _sender(self) -> None:
        with self._build_lock:  # imports happen under this lock (see pause_for_fork)
            from custody.transport import Transport

            self._transport = Transport(self.config.base_url, self.config.token, self.config.timeout)
        while True:
            try:
                with self._cond:
                    while self._stop_item is None and not self._ready():
                        self._cond.wait(self._wait_timeout())
                    stop = self._stop_item
                if stop is not None:
                    self._finish(stop)
                    return
                if self.replay_pending:
                    self._replay()
                else:
                    self._send_batch()
            except Exception:
                logger.exception("custody: unexpected error in the background sender (recording continues)")
                time.sleep(0.1)

    def _run_inline(self) -> None:
        """At interpreter exit without threads: spool what is queued, then deliver within the deadline."""
        from custody.transport import Transport

        if self._transport is None:
            self._transport = Transport(self.config.base_url, self.config.token, self.config.timeout)
        with self._build_lock:
            stop = None
            while stop is None:
                stop = self._intake(None)
                if stop is None and self.queue.empty():
                    return
        self._finish(stop)

    def _ready(self) -> bool:
        if self.paused is not None or time.monotonic() < self.retry_at:
            return False
        return bool(self.replay_pending or self.backlog or self.spill_offset is not None)

    def _wait_timeout(self) -> Optional[float]:
        if (
            self.paused is None
            and self.retry_at
            and (self.backlog or self.spill_offset is not None or self.replay_pending)
        ):
            return max(0.0, self.retry_at - time.monotonic())
        return None

    # --- intake: build events, spool them, queue them for sending ----------------------------------
    def _intake(self, first: Optional[Tuple[Any, ...]]) -> Optional[Tuple[Any, ...]]:
        """Called with the build lock held."""
        items = [] if first is None else [first]
        get = self.queue.get_nowait
        try:
            while len(items) < MAX_INTAKE:
                item = get()
                items.append(item)
                if item[0] == "stop":
                    break
        except queue.Empty:
            pass
        builder = self.builder
        events: List[Dict[str, Any]] = []
        flushes: List[Tuple[Any, ...]] = []
        stop: Optional[Tuple[Any, ...]] = None
        touched: Set[str] = set()
        for item in items:
            kind = item[0]
            try:
                if kind == "metrics":
                    builder.metrics(item[1], item[2], item[3], item[4])
                    touched.add(item[1].run_id)
                elif kind == "start":
                    events.append(builder.start(item[1], item[2]))
                elif kind == "end":
                    touched.discard(item[1].run_id)
                    events.append(builder.end(item[1], item[2], item[3], item[4]))
                elif kind == "params":
                    builder.params(item[1], item[2], item[3])
                    touched.add(item[1].run_id)
                elif kind == "dataset":
                    builder.dataset(item[1], item[2], item[3], item[4], item[5])
                    touched.add(item[1].run_id)
                elif kind == "model":
                    builder.model(item[1], item[2], item[3], item[4])
                    touched.add(item[1].run_id)
                elif kind == "emit":
                    events.append(item[1])
                elif kind == "flush":
                    flushes.append(item)
                elif kind == "stop":
                    stop = item
            except Exception:
                logger.exception("custody: could not record a %s item; it is skipped", kind)
        self.stats.enqueued += len(items)
        force = bool(flushes) or stop is not None
        due = {acc.run.run_id for acc in builder.due_metrics(time.monotonic(), force)}
        for run_id, acc in list(builder.runs.items()):
            if run_id in touched or run_id in due:
                event = builder.running(acc, with_metrics=run_id in due)
                if event is not None:
                    events.append(event)
        lines = [encode(e) for e in events]
        with self._cond:
            if lines:
                self._store(lines)
                self._cond.notify_all()
            for item in flushes:
                self.waiters.append((self.seq, item[1], item[2], self._flush_mark))
                self._flush_mark = self.seq
            self._notify()
        return stop

    def _segment(self) -> Optional[spool.Segment]:
        if self.segment is None and self.wal_ok:
            try:
                directory = self.config.spool_path
                self.segment = spool.Segment.create(directory)
                _write_server_file(directory, self.config.base_url)
                open_runs = self.builder.open_runs()
                if open_runs:
                    header = json.dumps({"custody_open_runs": open_runs}, separators=(",", ":")).encode()
                    self.segment.append(header + b"\n")
            except OSError as exc:
                self._wal_failed(exc, creating=True)
        return self.segment

    def _store(self, lines: List[bytes]) -> None:
        self.stats.events += len(lines)
        segment = self._segment()
        if segment is not None and self.wal_ok:
            try:
                start = segment.append(b"".join(line + b"\n" for line in lines))
            except OSError as exc:
                self._wal_failed(exc, creating=False)
            else:
                offset = start
                cap = self.config.max_memory_bytes
                for line in lines:
                    offset += len(line) + 1
                    self.seq += 1
                    if self.spill_offset is None and self.backlog_bytes < cap:
                        self.backlog.append((self.seq, line, offset))
                        self.backlog_bytes += len(line)
                    elif self.spill_offset is None:
                        self.spill_offset = offset - len(line) - 1
                        self.spill_seq = self.seq
                return
        for line in lines:
            self.seq += 1
            self.backlog.append((self.seq, line, -1))
            self.backlog_bytes += len(line)
        while self.backlog_bytes > self.config.max_memory_bytes and len(self.backlog) > 1:
            seq, line, _ = self.backlog.popleft()
            self.backlog_bytes -= len(line)
            self.resolved = max(self.resolved, seq)
            self._problem(seq)
            self.stats.lost += 1
            self._once(
                "lost",
                logging.ERROR,
                "custody: the server is unreachable, the spool is unwritable and %d MB of events are "
                "waiting in memory: the oldest events are being dropped",
                self.config.max_memory_bytes // (1024 * 1024),
            )

    def _wal_failed(self, exc: OSError, creating: bool) -> None:
        self.wal_ok = False
        where = self.config.spool_path if creating or self.segment is None else self.segment.path
        self._once(
            "wal",
            logging.WARNING,
            "custody: cannot write the spool at %s (%s: %s). Recording goes on; events are kept in "
            "memory only and would be lost if this process ended before the server (%s) has them. "
            "Set CUSTODY_SPOOL_DIR to a writable directory with free space.",
            where,
            type(exc).__name__,
            exc,
            self.config.base_url,
        )
        if self.spill_offset is not None and self.segment is not None:
            seq = self.spill_seq
            for line, _end in self.segment.read_events(self.spill_offset, 1 << 62):
                self.backlog.append((seq, line, -1))
                self.backlog_bytes += len(line)
                seq += 1
            self.spill_offset = None

    def _refill(self) -> None:
        if self.spill_offset is None or self.segment is None:
            return
        lines = self.segment.read_events(self.spill_offset, self.config.max_memory_bytes // 2)
        if not lines:
            self.spill_offset = None
            return
        for line, end in lines:
            self.backlog.append((self.spill_seq, line, end))
            self.backlog_bytes += len(line)
            self.spill_seq += 1
            self.spill_offset = end
        if self.spill_seq > self.seq:
            self.spill_offset = None

    # --- sending -------------------------------------------------------------------------------------
    def _take_batch(self) -> List[Tuple[int, bytes, int]]:
        with self._lock:
            if not self.backlog:
                self._refill()
            batch: List[Tuple[int, bytes, int]] = []
            size = 0
            for entry in self.backlog:
                if batch and (len(batch) >= self.sizer.limit or size + len(entry[1]) > self.config.max_batch_bytes):
                    break
                batch.append(entry)
                size += len(entry[1]) + 1
            return batch

    def _send_batch(self, timeout: Optional[float] = None) -> Optional[Outcome]:
        batch = self._take_batch()
        if not batch:
            return None
        lines = [line for _, line, _ in batch]
        started = time.monotonic()
        outcome = post_batch(self._transport, lines, timeout)
        took = time.monotonic() - started
        self.stats.batches += 1
        self.sizer.update(outcome, len(lines), took)
        if outcome.state != "ok":
            self._failed(outcome)
            return outcome
        self._succeeded(outcome, lines, [seq for seq, _, _ in batch])
        with self._cond:
            for _ in batch:
                _, line, _ = self.backlog.popleft()
                self.backlog_bytes -= len(line)
            last_seq, _, last_end = batch[-1]
            self.resolved = max(self.resolved, last_seq)
            if last_end >= 0 and self.wal_ok and self.segment is not None:
                try:
                    self.segment.ack(last_end)
                except OSError as exc:
                    self._wal_failed(exc, creating=False)
            self._notify()
            self._maybe_rotate()
        return outcome

    def _problem(self, seq: int) -> None:
        if len(self._problems) < 100_000:
            self._problems.append(seq)
        else:
            self._problems[-1] = max(self._problems[-1], seq)

    def _succeeded(self, outcome: Outcome, lines: List[bytes], seqs: List[int]) -> None:
        self.stats.delivered += len(lines) - len(outcome.rejected)
        self.stats.duplicates += outcome.duplicates
        for index, reason in outcome.rejected:
            self.stats.rejected += 1
            with self._lock:
                self._problem(seqs[index])
            line = lines[index]
            spool.record_rejected(self.config.spool_path, line, reason)
            self._once(
                ("rejected", reason[:200]),
                logging.WARNING,
                "custody: the server rejected %s: %s. It will not be retried; it is kept in %s "
                "(further events rejected for the same reason are not reported again).",
                describe_event(line),
                reason,
                os.path.join(self.config.spool_path, "rejected.jsonl"),
            )
        if not self.healthy:
            took = time.monotonic() - (self._outage_started or time.monotonic())
            logger.warning(
                "custody: the server at %s is reachable again after %.0f s; sending the spooled events",
                self.config.base_url,
                took,
            )
        self.healthy = True
        self.backoff = 0.0
        self.retry_at = 0.0
        self._outage_started = None

    def _failed(self, outcome: Outcome) -> None:
        self.stats.failures += 1
        self.last_error = outcome.message
        if outcome.state == "pause":
            self.paused = outcome.message
            logger.error(
                "custody: %s. This process sends nothing more; recorded events stay in the spool %s "
                "and are sent by `custody flush` (or the next run) once this is fixed.",
                outcome.message,
                self.config.spool_path if self.wal_ok else "(unavailable: memory only)",
            )
            with self._cond:
                self._notify()
            return
        self.backoff = BACKOFF_FIRST if self.backoff == 0 else min(self.backoff * 2, BACKOFF_MAX)
        delay = max(self.backoff * random.uniform(0.8, 1.2), outcome.retry_after)
        if outcome.timed_out:
            delay = min(delay, 1.0)  # the server is alive but slow: retry soon, with a smaller batch
        self.retry_at = time.monotonic() + delay
        if self.healthy and outcome.timed_out:
            self.healthy = False
            self._outage_started = time.monotonic()
            logger.warning(
                "custody: the server at %s did not answer within %.0f s; recording goes on, events stay "
                "spooled in %s and are retried with smaller batches.",
                self.config.base_url,
                self.config.timeout,
                self.config.spool_path if self.wal_ok else "memory (the spool is unwritable)",
            )
        elif self.healthy:
            self.healthy = False
            self._outage_started = time.monotonic()
            logger.warning(
                "custody: cannot deliver lineage to %s (%s); recording goes on, events are spooled in %s "
                "and retried in the background.",
                self.config.base_url,
                outcome.message,
                self.config.spool_path if self.wal_ok else "memory (the spool is unwritable)",
            )
        else:
            logger.debug("custody: still cannot deliver (%s); next try in %.1f s", outcome.message, delay)

    def _notify(self) -> None:
        """Wake flush() callers whose events are all resolved (or that can no longer be). Lock held."""
        if not self.waiters:
            return
        keep = []
        for target, event, holder, since in self.waiters:
            if self.resolved >= target and not self.replay_pending:
                first = bisect.bisect_right(self._problems, since)
                holder["ok"] = not (first < len(self._problems) and self._problems[first] <= target)
                event.set()
            elif self.paused is not None or self.stopped.is_set():
                holder["ok"] = False
                event.set()
            else:
                keep.append((target, event, holder, since))
        self.waiters = keep

    def _maybe_rotate(self) -> None:
        segment = self.segment
        if segment is None or self.backlog or self.spill_offset is not None or segment.size < ROTATE_BYTES:
            return
        segment.close(delete=True)
        self.segment = None

    def _close_segment(self) -> None:
        if self.segment is None:
            return
        delivered = not self.backlog and self.spill_offset is None
        self.segment.close(delete=delivered)
        self.segment = None

    # --- replaying what dead processes left --------------------------------------------------------
    def _replay(self) -> None:
        result = replay(
            self.config,
            self._transport,
            skip=self.segment.path if self.segment else None,
            between=lambda: self._stop_item is not None,
            sizer=self.sizer,
        )
        self.stats.replayed += result.sent
        self.stats.duplicates += result.duplicates
        self.stats.rejected += result.rejected
        if result.outcome is not None and result.outcome.state != "ok":
            self._failed(result.outcome)
            return
        if self._stop_item is not None and result.remaining_segments:
            return
        with self._cond:
            self.replay_pending = False
            self._notify()
        if result.sent:
            logger.info("custody: delivered %d events spooled by earlier processes", result.sent)

    # --- stopping ----------------------------------------------------------------------------------------
    def _finish(self, item: Tuple[Any, ...]) -> None:
        _, deadline, done, holder = item
        tried_now = False
        while (self.backlog or self.spill_offset is not None) and self.paused is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0.05:
                break
            if time.monotonic() < self.retry_at:
                if tried_now:
                    break
                tried_now = True  # one immediate try at exit, whatever the backoff says
            outcome = self._send_batch(timeout=min(self.config.timeout, remaining))
            if outcome is None or outcome.state != "ok":
                break
        if self.replay_pending and self.paused is None and self.healthy and deadline - time.monotonic() > 0.1:
            result = replay(
                self.config,
                self._transport,
                skip=self.segment.path if self.segment else None,
                deadline=deadline,
                sizer=self.sizer,
            )
            self.stats.replayed += result.sent
            self.replay_pending = result.remaining_segments > 0
        with self._cond:
            remaining_events = len(self.backlog)
            spilled = self.spill_offset is not None
            where = self.segment.path if self.segment is not None else None
            self._close_segment()
            if remaining_events or spilled:
                if self.wal_ok and where:
                    logger.warning(
                        "custody: %s events not yet delivered to %s are kept in the spool %s; the next "
                        "process using custody (or `custody flush`) sends them.",
                        "Some" if spilled else remaining_events,
                        self.config.base_url,
                        where,
                    )
                else:
                    self.stats.lost += remaining_events
                    logger.error(
                        "custody: %d events could not be delivered to %s nor spooled, and are lost.",
                        remaining_events,
                        self.config.base_url,
                    )
            holder["ok"] = not remaining_events and not spilled and self.paused is None
            self.stopped.set()
            self._notify()
        if self._transport is not None:
            self._transport.close()
        done.set()

    def _once(self, key: Any, level: int, message: str, *args: Any) -> None:
        if key in self._reported:
            logger.debug(message, *args)
            return
        self._reported.add(key)
        logger.log(level, message, *args)

    def pause_for_fork(self) -> None:
        self._fork_held = self._build_lock.acquire(timeout=5.0)

    def resume_after_fork(self) -> None:
        if getattr(self, "_fork_held", False):
            self._fork_held = False
            self._build_lock.release()

    def reset_after_fork(self) -> None:
        """In a forked child: forget the parent's threads, queue, spool segment and backlog."""
        if self.segment is not None:
            try:
                os.close(self.segment.fd)  # the parent keeps its lock through its own descriptor
            except OSError:
                pass
        self.__init__(self.config, self.builder._plugins)  # type: ignore[misc]


class ReplayResult:
    def __init__(self) -> None:
        self.sent = 0
        self.duplicates = 0
        self.rejected = 0
        self.segments = 0
        self.remaining_segments = 0
        self.outcome: Optional[Outcome] = None


def replay(
    config: Config,
    transport: Any,
    *,
    skip: Optional[str] = None,
    between: Optional[Callable[[], bool]] = None,
    deadline: Optional[float] = None,
    sizer: Optional[BatchSizer] = None,
) -> ReplayResult:
    """Send the undelivered events of every abandoned segment of this server's spool directory.
    ``between`` is asked after each batch whether to stop."""
    result = ReplayResult()
    sizer = sizer or BatchSizer(config.max_batch_events)
    directory = config.spool_path
    for path in spool.segments(directory):
        if path == skip:
            continue
        if deadline is not None and time.monotonic() >= deadline:
            result.remaining_segments += 1
            continue
        claimed = spool.claim(path)
        if claimed is None:
            continue
        delivered = False
        try:
            acked, aborts = claimed.scan()
            entries: Iterator[Tuple[bytes, int]] = claimed.events(acked)
            extra = [(line, -1) for line in aborts]
            delivered = _replay_entries(config, transport, result, claimed, entries, extra, between, deadline, sizer)
        except OSError as exc:
            logger.warning("custody: could not replay the spool segment %s: %s", path, exc)
        finally:
            claimed.finish(delete=delivered)
        if delivered:
            result.segments += 1
        else:
            result.remaining_segments += 1
            if result.outcome is not None and result.outcome.state != "ok":
                break
    return result


def _replay_entries(
    config: Config,
    transport: Any,
    result: ReplayResult,
    claimed: spool.Claimed,
    entries: Iterator[Tuple[bytes, int]],
    extra: List[Tuple[bytes, int]],
    between: Optional[Callable[[], bool]],
    deadline: Optional[float],
    sizer: BatchSizer,
) -> bool:
    def batches() -> Iterator[List[Tuple[bytes, int]]]:
        batch: List[Tuple[bytes, int]] = []
        size = 0
        for entry in itertools.chain(entries, extra):
            if batch and (len(batch) >= sizer.limit or size + len(entry[0]) > config.max_batch_bytes):
                yield batch
                batch, size = [], 0
            batch.append(entry)
            size += len(entry[0]) + 1
        if batch:
            yield batch

    for batch in batches():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        lines = [line for line, _ in batch]
        remaining = None if deadline is None else max(0.1, deadline - time.monotonic())
        started = time.monotonic()
        outcome = post_batch(transport, lines, None if remaining is None else min(config.timeout, remaining))
        sizer.update(outcome, len(lines), time.monotonic() - started)
        if outcome.state != "ok":
            result.outcome = outcome
            return False
        result.sent += len(lines) - len(outcome.rejected)
        result.duplicates += outcome.duplicates
        for index, reason in outcome.rejected:
            result.rejected += 1
            spool.record_rejected(config.spool_path, lines[index], reason)
            logger.warning("custody: the server rejected spooled %s: %s", describe_event(lines[index]), reason)
        ends = [end for _, end in batch if end >= 0]
        if ends:
            try:
                claimed.ack(ends[-1])
            except OSError:
                pass
        if between is not None and between():
            return False
    result.outcome = Outcome("ok")
    return True


def _write_server_file(directory: str, url: str) -> None:
    path = os.path.join(directory, "server.json")
    if os.path.exists(path):
        return
    try:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump({"url": url}, fh)
    except OSError:
        pass
