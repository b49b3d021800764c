from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "governance.audit"
    label = "audit"
    verbose_name = "Audit trail"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from governance.audit import admin_hooks, checks, guards, receivers  # noqa: F401  (checks registers)

        guards.install()
        receivers.connect()
        admin_hooks.install()
