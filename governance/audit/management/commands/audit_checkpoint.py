"""manage.py audit_checkpoint [--force]: sign the audit chain's head now (Celery beat does it periodically)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from governance.audit.signing import create_checkpoint


class Command(BaseCommand):
    help = "Sign a checkpoint of the audit chain's head."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--force", action="store_true", help="Sign even if the head is already checkpointed.")

    def handle(self, *args: Any, **options: Any) -> None:
        checkpoint = create_checkpoint(force=options["force"])
        if checkpoint is None:
            self.stdout.write("Nothing to sign: the chain is empty or its head is already checkpointed.")
        else:
            cp = checkpoint
            self.stdout.write(f"Checkpoint {cp.pk}: entry {cp.sequence} {cp.head_hash} (key {cp.key_id})")
