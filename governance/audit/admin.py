"""Read-only admin of the audit trail, for compliance officers, auditors and admins."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import Max, Min, QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property
from django.utils.html import format_html

from governance.audit.api import can_read_audit
from governance.audit.models import AuditCheckpoint, AuditEntry


class ChainPaginator(Paginator):
    """The chain is contiguous, so an unfiltered count is ``max - min + 1``: no COUNT(*) over millions."""

    @cached_property
    def count(self) -> int:  # type: ignore[override]
        qs = self.object_list
        if isinstance(qs, QuerySet) and not qs.query.where:
            bounds = qs.model._default_manager.aggregate(low=Min("sequence"), high=Max("sequence"))
            if bounds["low"] is None:
                return 0
            return int(bounds["high"] - bounds["low"] + 1)
        return super().count


class ReadOnlyAuditAdmin(admin.ModelAdmin):
    actions = None
    show_full_result_count = False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_read_audit(request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_read_audit(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _pretty(value: Any) -> Any:
    if value is None:
        return "—"
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAuditAdmin):
    list_display = ("sequence", "timestamp", "actor_name", "action", "object_type", "object_id", "object_repr")
    list_filter = ("action", "object_type")
    search_fields = ("=object_id", "=actor_name", "=request_id", "action")
    date_hierarchy = None
    paginator = ChainPaginator
    list_per_page = 50
    ordering = ("-sequence",)
    fields = (
        "sequence",
        "timestamp",
        "actor_id",
        "actor_name",
        "action",
        "object_type",
        "object_id",
        "object_repr",
        "before_pretty",
        "after_pretty",
        "extra_pretty",
        "request_id",
        "source_ip",
        "redacted",
        "prev_hash",
        "hash",
    )
    readonly_fields = fields

    @admin.display(description="before")
    def before_pretty(self, obj: AuditEntry) -> Any:
        return _pretty(obj.before)

    @admin.display(description="after")
    def after_pretty(self, obj: AuditEntry) -> Any:
        return _pretty(obj.after)

    @admin.display(description="extra")
    def extra_pretty(self, obj: AuditEntry) -> Any:
        return _pretty(obj.extra)


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(ReadOnlyAuditAdmin):
    list_display = ("id", "sequence", "head_hash", "created_at", "key_id")
    ordering = ("-id",)
    readonly_fields = ("sequence", "head_hash", "created_at", "key_id", "algorithm", "signature")
    fields = readonly_fields
