from django.apps import AppConfig
from django.conf import settings


class PromotionsConfig(AppConfig):
    name = "governance.promotions"
    label = "promotions"
    verbose_name = "Promotions and deployments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from governance.promotions import nodes, services
        from governance.registry.services import version_changed
        from lineage.graph import register_node_kind
        from lineage.signals import events_ingested

        # After the registry's receiver (INSTALLED_APPS order), so new model versions exist.
        events_ingested.connect(services.on_events_ingested, dispatch_uid="custody-promotions-staleness")
        version_changed.connect(services.on_version_changed, dispatch_uid="custody-promotions-version")
        register_node_kind(nodes.NODE_KIND)
        # The periodic sweep that records expired requests (reads also treat a passed deadline
        # as expired, so this only makes the stored state and the audit trail catch up).
        schedule = getattr(settings, "CELERY_BEAT_SCHEDULE", None)
        if isinstance(schedule, dict):
            schedule.setdefault(
                "promotions-expire",
                {"task": "governance.promotions.tasks.expire_promotions", "schedule": 300.0},
            )
