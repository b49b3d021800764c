from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "governance.core"
    label = "custody_core"
    verbose_name = "Custody core"
