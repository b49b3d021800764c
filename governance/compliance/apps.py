from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "governance.compliance"
    label = "compliance"
    verbose_name = "Compliance: audit rules, findings, retention"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from governance.compliance import beat

        # Load the static CELERY_BEAT_SCHEDULE into django-celery-beat's tables after every migrate,
        # so officers pause and reschedule in the admin (existing rows keep their admin edits).
        post_migrate.connect(beat.sync_after_migrate, sender=self, dispatch_uid="custody-compliance-beat-sync")
