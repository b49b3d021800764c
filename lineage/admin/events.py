from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from lineage.admin.base import ANY, SHA256, UUID, LineageAdmin, admin_link, pretty_json
from lineage.admin.filters import EVENT_TYPES, NamespaceNameFilter, static_choices_filter
from lineage.models import Job, Namespace, RawEvent, Run

#: Payloads up to this size are pretty-printed in full on the detail page; larger ones are downloaded.
PAYLOAD_DISPLAY_BYTES = 1_000_000


@admin.register(RawEvent)
class RawEventAdmin(LineageAdmin):
    """Every accepted OpenLineage event, verbatim: the evidence the graph is derived from."""

    list_display = (
        "received_at",
        "kind",
        "event_type",
        "job_namespace",
        "job_name",
        "run_id",
        "size_bytes",
        "short_digest",
    )
    list_filter = (
        "kind",
        static_choices_filter("event_type", "event type", EVENT_TYPES),
        NamespaceNameFilter,
        ("received_at", admin.DateFieldListFilter),
    )
    search_rules = ((SHA256, "digest"), (UUID, "run_id"), (ANY, "job_name__startswith"))
    search_help_text = "A digest (sha256), a run id (UUID), or the start of the job name (case-sensitive)."
    sortable_by = ("received_at", "event_time")
    fields = (
        "digest",
        "kind",
        "event_type",
        "event_time",
        "received_at",
        "job_link",
        "run_link",
        "producer",
        "schema_url",
        "size_bytes",
        "submitted_by",
        "payload_pretty",
    )

    def restrict_to_namespaces(self, queryset: QuerySet[Any], namespace_ids: list[int]) -> QuerySet[Any]:
        # Raw events name their job's namespace; an event without a job (DatasetEvent) is hidden too.
        names = Namespace.objects.filter(pk__in=namespace_ids).values("name")
        return queryset.filter(job_namespace__in=names)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # The payload (up to tens of megabytes) is only read when the detail page shows it.
        return super().get_queryset(request).defer("payload")

    def get_urls(self) -> list[URLPattern]:
        opts = self.opts
        download = path(
            "<path:object_id>/payload.json",
            self.admin_site.admin_view(self.payload_view),
            name=f"{opts.app_label}_{opts.model_name}_payload",
        )
        return [download, *super().get_urls()]

    def payload_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The stored payload as JSON, for events too large to show in the page."""
        if not self.has_view_permission(request):
            raise PermissionDenied  # no viewing role: refused before anything is looked up
        event = self.get_object(request, unquote(object_id))
        if event is None:
            raise Http404("No such raw event.")
        if not self.has_view_permission(request, event):
            raise PermissionDenied
        response = JsonResponse(event.payload, safe=False)
        response["Content-Disposition"] = f'inline; filename="raw-event-{event.digest}.json"'
        return response

    def payload_url(self, obj: RawEvent) -> str:
        opts = self.opts
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_payload", args=[obj.pk])

    @admin.display(description="payload")
    def payload_pretty(self, obj: RawEvent) -> SafeString:
        download = format_html('<p><a href="{}">Download the stored JSON</a></p>', self.payload_url(obj))
        if obj.size_bytes > PAYLOAD_DISPLAY_BYTES:
            note = format_html("<p>{:,} bytes: too large to show here.</p>", obj.size_bytes)
            return format_html("{}{}", note, download)
        return format_html("{}{}", pretty_json(obj.payload, limit=4 * PAYLOAD_DISPLAY_BYTES), download)

    @admin.display(description="digest")
    def short_digest(self, obj: RawEvent) -> SafeString:
        return format_html('<span title="{}">{}…</span>', obj.digest, obj.digest[:16])

    @admin.display(description="job")
    def job_link(self, obj: RawEvent) -> SafeString | str:
        if not obj.job_name:
            return "-"
        job = Job.objects.filter(namespace__name=obj.job_namespace, name=obj.job_name).first()
        return admin_link(job) if job else f"{obj.job_namespace}:{obj.job_name}"

    @admin.display(description="run")
    def run_link(self, obj: RawEvent) -> SafeString | str:
        if not obj.run_id:
            return "-"
        run = Run.objects.filter(run_id=obj.run_id).first()
        return admin_link(run) if run else obj.run_id
