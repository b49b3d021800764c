"""manage.py create_user NAME --role ROLE [--namespace NS ...] [--password-from-env VAR] [--email EMAIL]

``--namespace`` grants per-namespace object permissions according to the roles: a data scientist
(or admin) gets view and write, an approver view (``--namespace-level`` overrides). Compliance
officers and auditors read every namespace anyway. Namespaces that do not exist yet are created.
"""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from governance.accounts.models import ROLE_NAMES
from governance.permissions.grants import LEVELS, ROLE_NAMESPACE_LEVEL, VIEW, ensure_namespace, grant_namespace


class Command(BaseCommand):
    help = "Create (or update) a user with a role. Without --password-from-env the user has no password."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--role", required=True, action="append", choices=ROLE_NAMES)
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--password-from-env", metavar="VAR", help="Read the password from this environment variable."
        )
        parser.add_argument(
            "--namespace",
            action="append",
            default=[],
            metavar="NS",
            help="Grant permissions on this namespace (repeatable); created if it does not exist yet.",
        )
        parser.add_argument(
            "--namespace-level",
            choices=LEVELS,
            help="view or write on the --namespace(s); by default write for data_scientist/admin, else view.",
        )

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        name: str = options["name"]
        password = None
        if options["password_from_env"]:
            password = os.environ.get(options["password_from_env"])
            if not password:
                raise CommandError(f"Environment variable {options['password_from_env']} is empty or unset.")
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(username=name, defaults={"email": options["email"]})
        roles: list[str] = options["role"]
        for role in roles:
            group, _ = Group.objects.get_or_create(name=role)
            user.groups.add(group)
        if "admin" in roles:
            user.is_staff = True
            user.is_superuser = True
        if "compliance_officer" in roles or "auditor" in roles or "approver" in roles:
            user.is_staff = True  # they work in the admin
        if password:
            user.set_password(password)
        elif created:
            user.set_unusable_password()
        user.save()
        granted = []
        for ns_name in options["namespace"]:
            if not ns_name.strip() or "<" in ns_name or ">" in ns_name:
                raise CommandError(f"Invalid namespace name {ns_name!r}.")
            level = options["namespace_level"] or max(
                (ROLE_NAMESPACE_LEVEL.get(role, VIEW) for role in roles), key=LEVELS.index
            )
            grant_namespace(user, ensure_namespace(ns_name), level)
            granted.append(f"{level} on {ns_name}")
        verb = "Created" if created else "Updated"
        suffix = f"; {', '.join(granted)}" if granted else ""
        self.stdout.write(f"{verb} user {name} with role(s) {', '.join(roles)}{suffix}.")
