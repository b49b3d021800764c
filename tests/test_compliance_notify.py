"""Notifications: e-mail through Django's locmem backend, webhooks to a real local HTTP receiver that
verifies the signature following governance/compliance/README.md alone, one message per new finding,
retries with backoff, per-namespace and per-severity configuration."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core import mail

from governance.compliance.engine import run_rules
from governance.compliance.models import Notification, NotificationEndpoint
from tests.test_compliance_graph import ago, model_version, namespace, run

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "whsec-test-1"


class Receiver(http.server.BaseHTTPRequestHandler):
    """Written from the README: HMAC-SHA256(secret, timestamp + "." + body), hex, "v1=" prefix,
    constant-time compare, 300 s tolerance."""

    received: list[dict[str, Any]] = []
    fail_next = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ts = self.headers["X-Custody-Timestamp"]
        expected = "v1=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        fresh = abs(time.time() - int(ts)) <= 300
        ok = hmac.compare_digest(expected, self.headers["X-Custody-Signature"]) and fresh
        if Receiver.fail_next:
            Receiver.fail_next -= 1
            self.send_response(503)
            self.end_headers()
            return
        Receiver.received.append({"ok": ok, "body": json.loads(body), "delivery": self.headers["X-Custody-Delivery"]})
        self.send_response(204 if ok else 401)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.received = []
    Receiver.fail_next = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


@pytest.fixture(autouse=True)
def eager(settings: Any) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    from governance.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = False


def test_email_and_signed_webhook_once_per_new_finding(receiver: str) -> None:
    NotificationEndpoint.objects.create(name="mail", kind="email", target="sec@example.com, ops@example.com")
    NotificationEndpoint.objects.create(name="hook", kind="webhook", target=receiver, secret=SECRET)
    mv = model_version("d", run("train", ago(5), dirty=True))
    for _ in range(3):
        run_rules(["model.dirty_commit"])
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["sec@example.com", "ops@example.com"] and "[Custody medium]" in mail.outbox[0].subject
    assert len(Receiver.received) == 1 and Receiver.received[0]["ok"]
    assert Receiver.received[0]["body"]["subject"] == f"model_version:{mv.pk}"
    # Resolved, then firing again: a new occurrence, notified once more.
    commit = mv.run.code_commit
    commit.is_dirty = False
    commit.save()
    run_rules(["model.dirty_commit"])
    commit.is_dirty = True
    commit.save()
    run_rules(["model.dirty_commit"])
    run_rules(["model.dirty_commit"])
    assert len(mail.outbox) == 2 and len(Receiver.received) == 2
    assert Notification.objects.filter(state="sent").count() == 4


def test_wrong_secret_is_refused_by_the_receiver(receiver: str) -> None:
    NotificationEndpoint.objects.create(name="hook", kind="webhook", target=receiver, secret="not-the-secret")
    model_version("d", run("train", ago(5), dirty=True))
    run_rules(["model.dirty_commit"])
    assert Receiver.received and not Receiver.received[0]["ok"]
    assert Notification.objects.get().state == "failed"


def test_failed_delivery_is_retried_then_sent(receiver: str) -> None:
    from governance.compliance.notify import deliver_one

    endpoint = NotificationEndpoint.objects.create(name="hook", kind="webhook", target=receiver, secret=SECRET)
    Receiver.fail_next = 1
    model_version("d", run("train", ago(5), dirty=True))
    run_rules(["model.dirty_commit"])
    note = Notification.objects.get(endpoint=endpoint)
    # The task's autoretry (eager here: at once; on a worker: after the backoff) delivered it.
    assert note.state == "sent" and note.attempts == 2
    assert deliver_one(note.pk) == "already sent"  # a duplicate delivery of the task sends nothing
    assert len(Receiver.received) == 1
    from governance.compliance.tasks import deliver

    assert deliver.max_retries == 5 and deliver.retry_backoff and deliver.acks_late


def test_namespace_and_severity_filters() -> None:
    NotificationEndpoint.objects.create(
        name="a-only", kind="email", target="a@example.com", namespace=namespace("team-a")
    )
    NotificationEndpoint.objects.create(name="high", kind="email", target="high@example.com", min_severity="high")
    model_version("a", run("train", ago(5), dirty=True, ns="team-a"), ns="team-a")
    model_version("b", run("train", ago(5), dirty=True, ns="team-b"), ns="team-b")
    run_rules(["model.dirty_commit"])  # medium findings
    assert [m.to for m in mail.outbox] == [["a@example.com"]]


def test_signature_helper_matches_the_documented_scheme() -> None:
    from governance.compliance.notify import sign, verify

    body = b'{"a":1}'
    assert sign("k", 1700000000, body) == "v1=" + hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert verify("k", "1700000000", sign("k", 1700000000, body), body, now=1700000100)
    assert not verify("k", "1700000000", sign("k", 1700000000, body), body, now=1700000400)  # replay window
