from django.apps import AppConfig


class PermissionsConfig(AppConfig):
    name = "governance.permissions"
    label = "permissions"
    verbose_name = "Namespace permissions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from governance.permissions import access, admin, receivers
        from lineage.access import set_visibility_policy, set_write_policy

        set_visibility_policy(access.visibility_policy)
        set_write_policy(access.write_policy)
        receivers.connect()
        admin.guard_namespace_admin()
