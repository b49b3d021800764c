from __future__ import annotations

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest
from django.utils.safestring import SafeString

from lineage.admin.base import ANY, LineageAdmin, can_edit_lineage, changelist_url, related_links
from lineage.models import Dataset, Job, Namespace, RawEvent


@admin.register(Namespace)
class NamespaceAdmin(LineageAdmin):
    """Namespaces are created by ingestion; admins may record who owns one and what it is for."""

    namespace_lookups = ("pk",)
    list_display = ("name", "owner_name", "updated_at", "created_at")
    search_rules = ((ANY, "name__icontains"),)  # a small table (teams, projects): substring search is cheap
    search_help_text = "Part of the namespace name."
    list_filter = (("updated_at", admin.DateFieldListFilter),)
    ordering = ("name",)
    fields = ("name", "owner_name", "description", "created_at", "updated_at", "related")
    readonly_fields = ("name", "created_at", "updated_at", "related")

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return can_edit_lineage(request)

    @admin.display(description="see also")
    def related(self, obj: Namespace) -> SafeString:
        return related_links(
            [
                ("Datasets", changelist_url(Dataset, namespace__id__exact=obj.pk)),
                ("Jobs", changelist_url(Job, namespace__id__exact=obj.pk)),
                ("Raw events of its jobs", changelist_url(RawEvent, job_namespace=obj.name)),
            ]
        )
