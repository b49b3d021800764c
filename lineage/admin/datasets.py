from __future__ import annotations

from django.contrib import admin
from django.utils.safestring import SafeString

from lineage.admin.base import (
    ANY,
    UUID,
    LineageAdmin,
    changelist_url,
    fk_link,
    json_field,
    related_links,
)
from lineage.admin.filters import LIFECYCLE_STATES, NamespaceFilter, static_choices_filter
from lineage.models import (
    ColumnLineage,
    Dataset,
    DatasetSymlink,
    DatasetVersion,
    JobDatasetEdge,
    RunInput,
    RunOutput,
    SchemaChange,
)

LifecycleFilter = static_choices_filter("lifecycle_state", "lifecycle state", LIFECYCLE_STATES)


@admin.register(Dataset)
class DatasetAdmin(LineageAdmin):
    namespace_lookups = ("namespace",)
    list_display = ("name", "namespace_link", "type", "is_deleted", "lifecycle_state", "updated_at")
    list_select_related = ("namespace",)
    list_filter = (
        ("namespace", NamespaceFilter),
        "is_deleted",
        LifecycleFilter,
        ("updated_at", admin.DateFieldListFilter),
    )
    search_rules = ((ANY, "name__startswith"),)
    search_help_text = "Start of the dataset name (case-sensitive), e.g. public.orders"
    sortable_by = ("updated_at",)
    fields = (
        "namespace",
        "name",
        "type",
        "physical_name",
        "source_name",
        "description",
        "current_version",
        "is_deleted",
        "lifecycle_state",
        "lifecycle_event_time",
        "renamed_to",
        "created_at",
        "updated_at",
        "related",
        "fields_json",
        "tags_json",
        "facets_json",
        "facet_times_json",
    )

    namespace_link = fk_link("namespace")
    fields_json = json_field("fields", "schema fields")
    tags_json = json_field("tags")
    facets_json = json_field("facets")
    facet_times_json = json_field("facet_times", "facet times")

    @admin.display(description="see also")
    def related(self, obj: Dataset) -> SafeString:
        return related_links(
            [
                ("Versions", changelist_url(DatasetVersion, dataset__id__exact=obj.pk)),
                ("Schema changes", changelist_url(SchemaChange, dataset__id__exact=obj.pk)),
                ("Jobs that read or write it", changelist_url(JobDatasetEdge, dataset__id__exact=obj.pk)),
                ("Runs that read it", changelist_url(RunInput, dataset__id__exact=obj.pk)),
                ("Runs that wrote it", changelist_url(RunOutput, dataset__id__exact=obj.pk)),
                ("Column lineage of its fields", changelist_url(ColumnLineage, dataset__id__exact=obj.pk)),
                ("Column lineage fed by it", changelist_url(ColumnLineage, input_dataset__id__exact=obj.pk)),
                ("Other identifiers (symlinks)", changelist_url(DatasetSymlink, dataset__id__exact=obj.pk)),
            ]
        )


@admin.register(DatasetSymlink)
class DatasetSymlinkAdmin(LineageAdmin):
    namespace_lookups = ("dataset__namespace",)
    list_display = ("namespace", "name", "type", "dataset_link")
    list_select_related = ("dataset__namespace",)
    search_rules = ((ANY, "name__startswith"),)
    search_help_text = "Start of the symlink name (case-sensitive)."
    ordering = ("-pk",)
    sortable_by = ()
    fields = ("dataset", "namespace", "name", "type")

    dataset_link = fk_link("dataset")


@admin.register(DatasetVersion)
class DatasetVersionAdmin(LineageAdmin):
    namespace_lookups = ("dataset__namespace",)
    list_display = ("version", "dataset_link", "created_at", "run_link", "lifecycle_state", "schema_digest")
    list_select_related = ("dataset__namespace", "run")
    list_filter = (("dataset__namespace", NamespaceFilter), LifecycleFilter)
    search_rules = ((UUID, ("uuid", "version__exact")), (ANY, "version__exact"))
    search_help_text = "A version id, exactly (Custody's version UUID or the producer's version)."
    ordering = ("-pk",)
    sortable_by = ()
    fields = (
        "dataset",
        "version",
        "uuid",
        "created_at",
        "run",
        "lifecycle_state",
        "schema_digest",
        "schema_event_time",
        "related",
        "fields_json",
        "facets_json",
        "facet_times_json",
    )

    dataset_link = fk_link("dataset")
    run_link = fk_link("run", "written by run")
    fields_json = json_field("fields", "schema fields")
    facets_json = json_field("facets")
    facet_times_json = json_field("facet_times", "facet times")

    @admin.display(description="see also")
    def related(self, obj: DatasetVersion) -> SafeString:
        return related_links(
            [
                ("Other versions of the dataset", changelist_url(DatasetVersion, dataset__id__exact=obj.dataset_id)),
                ("Schema change that led to it", changelist_url(SchemaChange, to_version__id__exact=obj.pk)),
                ("Runs that read it", changelist_url(RunInput, version__id__exact=obj.pk)),
                ("Runs that wrote it", changelist_url(RunOutput, version__id__exact=obj.pk)),
            ]
        )


@admin.register(SchemaChange)
class SchemaChangeAdmin(LineageAdmin):
    namespace_lookups = ("dataset__namespace",)
    list_display = ("dataset_link", "level", "short_explanation", "from_version_link", "to_version_link", "created_at")
    list_select_related = ("dataset__namespace", "from_version", "to_version")
    list_filter = ("level", ("dataset__namespace", NamespaceFilter))
    search_rules = ((ANY, "dataset__name__startswith"),)
    search_help_text = "Start of the dataset name (case-sensitive)."
    ordering = ("-pk",)
    sortable_by = ()
    fields = ("dataset", "level", "explanation", "from_version", "to_version", "created_at", "changes_json")

    dataset_link = fk_link("dataset")
    from_version_link = fk_link("from_version", "from version")
    to_version_link = fk_link("to_version", "to version")
    changes_json = json_field("changes")

    @admin.display(description="explanation")
    def short_explanation(self, obj: SchemaChange) -> str:
        return obj.explanation if len(obj.explanation) <= 120 else obj.explanation[:119] + "…"
