"""manage.py audit_verify: exit 0 when the audit chain verifies, else 1 naming the first bad entry."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from governance.audit.verify import verify_chain


def _entries(n: int) -> str:
    return f"{n} entr{'y' if n == 1 else 'ies'}"


class Command(BaseCommand):
    help = "Recompute the audit trail's hash chain and check the signed checkpoints."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")
        parser.add_argument("--database", default=None)
        parser.add_argument(
            "--workers",
            type=int,
            default=min(4, os.cpu_count() or 1),
            help="Processes verifying ranges of a large chain in parallel on PostgreSQL (default: CPUs, at most 4).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        result = verify_chain(options["database"], workers=options["workers"])
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
        elif result.ok:
            if result.entries == 0:
                self.stdout.write("OK: the audit trail is empty.")
            else:
                anchored = (
                    f"latest signed checkpoint at entry {result.latest_checkpoint_sequence}"
                    if result.latest_checkpoint_sequence
                    else "no signed checkpoint yet"
                )
                self.stdout.write(
                    f"OK: {_entries(result.entries)} verified ({result.first_sequence}..{result.head_sequence}, "
                    f"head {result.head_hash}); {result.checkpoints_verified} checkpoint(s) checked, {anchored}; "
                    f"{_entries(result.unanchored_entries)} after it; {result.elapsed_seconds}s."
                )
        for warning in result.warnings:
            self.stderr.write(f"warning: {warning}")
        if not result.ok:
            problem = result.problem
            assert problem is not None
            if not options["json"]:
                self.stderr.write(f"FAILED at entry {problem.sequence}: {problem.kind}: {problem.detail}")
            sys.exit(1)
