"""manage.py create_token NAME [--label TEXT] [--scope full|ingest|read]: prints the token once."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.accounts.models import ApiToken


class Command(BaseCommand):
    help = "Issue an API token for a user and print it once; only its hash is stored."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="The user's username.")
        parser.add_argument("--label", default="")
        parser.add_argument("--scope", default=ApiToken.Scope.FULL, choices=ApiToken.Scope.values)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = get_user_model().objects.get(username=options["name"])
        except get_user_model().DoesNotExist as exc:
            raise CommandError(f"No user named {options['name']!r}; create it with create_user first.") from exc
        _, raw = ApiToken.issue(user, label=options["label"], scope=options["scope"])
        self.stdout.write(raw)
