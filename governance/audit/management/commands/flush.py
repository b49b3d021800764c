"""``manage.py flush``, which also empties the append-only audit tables.

Flushing wipes the whole database, so the audit tables go with it (their triggers would otherwise
refuse, and Django's TransactionTestCase flushes between tests). Everything else is Django's own
command; the opening lasts only for the flush and only on this connection.
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands import flush

from governance.audit.guards import opening


class Command(flush.Command):
    def handle(self, **options: Any) -> None:
        with opening("flush", using=options["database"]):
            super().handle(**options)
