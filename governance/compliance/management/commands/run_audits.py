from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Run the audit rules (built-ins and custody.audit_rules plugins) and update findings."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rule", action="append", help="Run only this rule id (repeatable).")
        parser.add_argument("--list", action="store_true", help="List the rules and exit.")

    def handle(self, *args: Any, **options: Any) -> None:
        from governance.compliance.engine import run_rules
        from governance.compliance.rules import all_rules

        if options["list"]:
            for rule in all_rules().values():
                self.stdout.write(f"{rule.id}\t{rule.severity}\t{type(rule).__module__}.{type(rule).__name__}")
            return
        try:
            report = run_rules(options["rule"])
        except KeyError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(report.as_dict(), indent=2, sort_keys=True))
        if report.errors:
            raise CommandError(f"rule(s) failed: {', '.join(report.errors)}")
