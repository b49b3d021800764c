"""manage.py create_token NAME [--label TEXT] [--scope full|ingest|read] [--namespace NS ...]: prints the token once."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.accounts.models import ApiToken
from governance.permissions.grants import ensure_namespace


class Command(BaseCommand):
    help = "Issue an API token for a user and print it once; only its hash is stored."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="The user's username.")
        parser.add_argument("--label", default="")
        parser.add_argument("--scope", default=ApiToken.Scope.FULL, choices=ApiToken.Scope.values)
        parser.add_argument(
            "--namespace",
            action="append",
            default=[],
            metavar="NS",
            help="Limit the token to this namespace (repeatable); created if it does not exist yet.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = get_user_model().objects.get(username=options["name"])
        except get_user_model().DoesNotExist as exc:
            raise CommandError(f"No user named {options['name']!r}; create it with create_user first.") from exc
        names: list[str] = options["namespace"]
        for name in names:
            if not name.strip() or "<" in name or ">" in name:
                raise CommandError(f"Invalid namespace name {name!r}.")
        namespaces = [ensure_namespace(name) for name in names]
        _, raw = ApiToken.issue(user, label=options["label"], scope=options["scope"], namespaces=namespaces)
        self.stdout.write(raw)
