from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from governance.compliance import engine
from governance.compliance.models import (
    Finding,
    FreshnessExpectation,
    LegalHold,
    Notification,
    NotificationEndpoint,
    PrivacySignoff,
    RetentionPolicy,
)


@admin.register(Finding)
class FindingAdmin(admin.ModelAdmin):
    list_display = ("rule_id", "subject", "severity", "status", "namespace", "first_seen_at", "last_seen_at")
    list_filter = ("status", "severity", "rule_id")
    search_fields = ("subject", "title")
    readonly_fields = [f.name for f in Finding._meta.fields if f.name not in ("accepted_reason", "accepted_until")]
    actions = ["reopen"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Finding, form: Any, change: bool) -> None:
        # Accepting goes through the audited service: a reason is required.
        if obj.accepted_reason and obj.status != Finding.Status.ACCEPTED:
            engine.set_status(
                obj, Finding.Status.ACCEPTED, actor=request.user, reason=obj.accepted_reason, until=obj.accepted_until
            )
        else:
            super().save_model(request, obj, form, change)

    @admin.action(description="Re-open the selected findings")
    def reopen(self, request: HttpRequest, queryset: QuerySet[Finding]) -> None:
        for finding in queryset:
            engine.set_status(finding, Finding.Status.OPEN, actor=request.user, reason="re-opened in the admin")
        messages.info(request, f"{queryset.count()} re-opened")


admin.site.register(NotificationEndpoint)
admin.site.register(RetentionPolicy)
admin.site.register(FreshnessExpectation)
admin.site.register(PrivacySignoff)


@admin.register(LegalHold)
class LegalHoldAdmin(admin.ModelAdmin):
    list_display = ("name", "namespace", "dataset", "model", "window_start", "window_end", "active")


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("finding", "endpoint", "occurrence", "state", "attempts", "sent_at")
    list_filter = ("state",)
