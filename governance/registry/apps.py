from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "governance.registry"
    label = "registry"
    verbose_name = "Model registry"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from governance.registry import ingest, nodes
        from lineage.graph import register_node_kind
        from lineage.signals import events_ingested

        events_ingested.connect(ingest.on_events_ingested, dispatch_uid="custody-registry-models")
        register_node_kind(nodes.NODE_KIND)
