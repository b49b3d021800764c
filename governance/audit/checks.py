"""``manage.py check --deploy`` fails when audit checkpoints cannot be signed (no key configured)."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured


@checks.register(checks.Tags.security, deploy=True)
def signing_key_configured(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from governance.audit.signing import KEY_ENV, KEY_FILE_ENV, load_private_key

    try:
        load_private_key()
    except ImproperlyConfigured as exc:
        return [
            checks.Error(
                f"Audit checkpoints cannot be signed: {exc}",
                hint=f"Set {KEY_ENV} or {KEY_FILE_ENV} (python manage.py audit_keygen makes a key).",
                id="custody.audit.E001",
            )
        ]
    return []
