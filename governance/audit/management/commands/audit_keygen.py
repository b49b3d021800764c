"""manage.py audit_keygen [--out FILE]: a new Ed25519 private key (PEM) for signing audit checkpoints."""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.audit.signing import KEY_ENV, KEY_FILE_ENV, new_private_key_pem


class Command(BaseCommand):
    help = f"Print (or write, mode 0600) a new audit signing key for {KEY_ENV} / {KEY_FILE_ENV}."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", help="Write the key to this new file instead of printing it.")

    def handle(self, *args: Any, **options: Any) -> None:
        pem = new_private_key_pem()
        if not options["out"]:
            self.stdout.write(pem.decode("ascii"), ending="")
            return
        try:
            fd = os.open(options["out"], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as exc:
            raise CommandError(f"{options['out']} exists; refusing to overwrite a signing key.") from exc
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        self.stdout.write(f"Wrote a new signing key to {options['out']}; set {KEY_FILE_ENV}={options['out']}.")
