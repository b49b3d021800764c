"""manage.py grant (--user NAME | --group NAME) (--namespace NS | --model NS:NAME) [--level view|write] [--revoke]

Object permissions for a user or a group (a role's group, e.g. ``--group data_scientist`` to let
every data scientist see the ``file`` or ``s3://lake`` data-source namespace). Namespaces that do
not exist yet are created. Every grant and revocation is on the audit trail.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from governance.permissions.grants import (
    LEVELS,
    VIEW,
    ensure_namespace,
    grant_model,
    grant_namespace,
    revoke_model,
    revoke_namespace,
)


class Command(BaseCommand):
    help = "Grant (or revoke) view or write on a namespace or a registered model to a user or a group."

    def add_arguments(self, parser: CommandParser) -> None:
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--user", metavar="NAME")
        who.add_argument("--group", metavar="NAME", help="A group, e.g. a role: data_scientist, approver.")
        what = parser.add_mutually_exclusive_group(required=True)
        what.add_argument("--namespace", metavar="NS")
        what.add_argument("--model", metavar="NS:NAME", help="A registered model, as <namespace>:<name>.")
        parser.add_argument("--level", choices=LEVELS, default=VIEW)
        parser.add_argument("--revoke", action="store_true", help="Take the level away instead.")

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        if options["user"]:
            holder: Any = get_user_model().objects.filter(username=options["user"]).first()
            if holder is None:
                raise CommandError(f"No user named {options['user']!r}.")
        else:
            holder = Group.objects.filter(name=options["group"]).first()
            if holder is None:
                raise CommandError(f"No group named {options['group']!r}.")
        level = options["level"]
        verb = "Revoked" if options["revoke"] else "Granted"
        if options["namespace"]:
            name = options["namespace"]
            if not name.strip() or "<" in name or ">" in name:
                raise CommandError(f"Invalid namespace name {name!r}.")
            namespace = ensure_namespace(name)
            (revoke_namespace if options["revoke"] else grant_namespace)(holder, namespace, level)
            target = f"namespace {name}"
        else:
            from governance.registry.models import RegisteredModel

            ns, sep, model_name = options["model"].rpartition(":")
            model = RegisteredModel.objects.filter(namespace__name=ns, name=model_name).first() if sep else None
            if model is None:
                raise CommandError(f"No registered model {options['model']!r} (expected <namespace>:<name>).")
            (revoke_model if options["revoke"] else grant_model)(holder, model, level)
            target = f"model {options['model']}"
        self.stdout.write(f"{verb} {level} on {target} {'from' if options['revoke'] else 'to'} {holder}.")
