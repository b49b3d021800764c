from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Retention: --dry-run lists every row that would go and why; --apply deletes (audited)."

    def add_arguments(self, parser: CommandParser) -> None:
        mode = parser.add_mutually_exclusive_group(required=True)
        mode.add_argument("--dry-run", action="store_true")
        mode.add_argument("--apply", action="store_true")
        parser.add_argument("--summary", action="store_true", help="Counts only, not one line per row.")

    def handle(self, *args: Any, **options: Any) -> None:
        from governance.compliance.retention import execute, plan

        p = plan()
        if not options["summary"]:
            for line in p.lines():
                self.stdout.write(line)
        self.stdout.write(json.dumps(p.summary(), indent=2, sort_keys=True))
        if options["apply"]:
            try:
                done = execute(p, actor_name="manage.py retention")
            except Exception as exc:
                raise CommandError(f"retention stopped: {exc}") from exc
            self.stdout.write(json.dumps({"done": done}, sort_keys=True))
