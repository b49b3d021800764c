from django.contrib import admin

from governance.accounts.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "user", "label", "scope", "created_at", "last_used_at", "expires_at", "revoked_at")
    list_filter = ("scope",)
    search_fields = ("prefix", "label", "user__username")
    readonly_fields = ("prefix", "key_hash", "created_at", "last_used_at")
    raw_id_fields = ("user",)

    def has_add_permission(self, request: object) -> bool:
        # Tokens are issued by `manage.py create_token`, which shows the secret once.
        return False
