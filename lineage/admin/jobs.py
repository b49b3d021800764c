from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.utils.safestring import SafeString

from lineage.admin.base import (
    ANY,
    GIT_SHA,
    UUID,
    LineageAdmin,
    changelist_url,
    fk_link,
    json_field,
    related_links,
)
from lineage.admin.filters import NamespaceFilter
from lineage.models import (
    CodeCommit,
    ColumnLineage,
    DatasetVersion,
    Job,
    JobDatasetEdge,
    RawEvent,
    Run,
    RunInput,
    RunOutput,
)


@admin.register(Job)
class JobAdmin(LineageAdmin):
    namespace_lookups = ("namespace",)
    list_display = ("name", "namespace_link", "type", "latest_run_link", "updated_at")
    list_select_related = ("namespace", "latest_run")
    list_filter = (("namespace", NamespaceFilter), ("updated_at", admin.DateFieldListFilter))
    search_rules = ((ANY, "name__startswith"),)
    search_help_text = "Start of the job name (case-sensitive), e.g. etl.daily"
    sortable_by = ("updated_at",)
    fields = (
        "namespace",
        "name",
        "type",
        "description",
        "location",
        "parent",
        "latest_run",
        "created_at",
        "updated_at",
        "related",
        "facets_json",
        "facet_times_json",
    )

    namespace_link = fk_link("namespace")
    latest_run_link = fk_link("latest_run", "latest run")
    facets_json = json_field("facets")
    facet_times_json = json_field("facet_times", "facet times")

    @admin.display(description="see also")
    def related(self, obj: Job) -> SafeString:
        return related_links(
            [
                ("Runs", changelist_url(Run, job__id__exact=obj.pk)),
                ("Datasets it reads and writes (with validity)", changelist_url(JobDatasetEdge, job__id__exact=obj.pk)),
                ("Child jobs", changelist_url(Job, parent__id__exact=obj.pk)),
                ("Raw events", changelist_url(RawEvent, job_namespace=obj.namespace.name, job_name=obj.name)),
            ]
        )


@admin.register(Run)
class RunAdmin(LineageAdmin):
    namespace_lookups = ("job__namespace",)
    list_display = ("run_id", "job_link", "state", "started_at", "ended_at", "first_event_time", "parent_link")
    list_select_related = ("job__namespace", "parent")
    list_filter = ("state", ("job__namespace", NamespaceFilter), ("first_event_time", admin.DateFieldListFilter))
    search_rules = ((UUID, "run_id"), (r"run:(.+)", "run_id"), (ANY, "job__name__startswith"))
    search_help_text = "A run id (UUID, or run:ID for other ids), or the start of the job name (case-sensitive)."
    sortable_by = ("first_event_time",)
    fields = (
        "run_id",
        "job",
        "state",
        "started_at",
        "ended_at",
        "nominal_start_time",
        "nominal_end_time",
        "first_event_time",
        "last_event_time",
        "parent",
        "parent_run_id",
        "parent_job_namespace",
        "parent_job_name",
        "code_commit",
        "created_at",
        "updated_at",
        "related",
        "facets_json",
        "facet_times_json",
        "state_rank_json",
    )

    job_link = fk_link("job")
    parent_link = fk_link("parent", "parent run")
    facets_json = json_field("facets")
    facet_times_json = json_field("facet_times", "facet times")
    state_rank_json = json_field("state_rank", "state rank")

    @admin.display(description="see also")
    def related(self, obj: Run) -> SafeString:
        return related_links(
            [
                ("Inputs (datasets and versions read)", changelist_url(RunInput, run__id__exact=obj.pk)),
                ("Outputs (versions written)", changelist_url(RunOutput, run__id__exact=obj.pk)),
                ("Dataset versions it produced", changelist_url(DatasetVersion, run__id__exact=obj.pk)),
                ("Column lineage it reported", changelist_url(ColumnLineage, run__id__exact=obj.pk)),
                ("Child runs", changelist_url(Run, parent__id__exact=obj.pk)),
                ("Raw events", changelist_url(RawEvent, run_id=obj.run_id)),
            ]
        )


@admin.register(CodeCommit)
class CodeCommitAdmin(LineageAdmin):
    list_display = ("repo_url", "short_sha", "branch", "author", "is_dirty", "first_seen_at")
    list_filter = ("is_dirty",)
    search_rules = ((GIT_SHA, "sha__startswith"), (ANY, "repo_url__startswith"))
    search_help_text = "The start of a commit sha, or of the repository URL (case-sensitive)."
    ordering = ("-pk",)
    sortable_by = ()
    fields = (
        "repo_url",
        "sha",
        "vcs_type",
        "branch",
        "tag",
        "path",
        "url",
        "author",
        "is_dirty",
        "diff_digest",
        "first_seen_at",
        "related",
    )

    def restrict_to_namespaces(self, queryset: QuerySet[Any], namespace_ids: list[int]) -> QuerySet[Any]:
        # Commits belong to no namespace: show those that runs of visible jobs executed.
        used = Run.objects.filter(job__namespace__in=namespace_ids, code_commit__isnull=False)
        return queryset.filter(pk__in=used.values("code_commit_id"))

    @admin.display(description="sha")
    def short_sha(self, obj: CodeCommit) -> str:
        return obj.sha[:12]

    @admin.display(description="see also")
    def related(self, obj: CodeCommit) -> SafeString:
        return related_links([("Runs that executed it", changelist_url(Run, code_commit__id__exact=obj.pk))])
