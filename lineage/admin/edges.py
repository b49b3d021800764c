from __future__ import annotations

from django.contrib import admin

from lineage.admin.base import ANY, UUID, LineageAdmin, fk_link, json_field
from lineage.admin.filters import NamespaceFilter, OpenEdgeFilter, static_choices_filter
from lineage.models import ColumnLineage, JobDatasetEdge, RunInput, RunOutput

RUN_OR_DATASET_SEARCH = ((UUID, "run__run_id"), (ANY, "dataset__name__startswith"))
RUN_OR_DATASET_HELP = "A run id (UUID), or the start of the dataset name (case-sensitive)."


@admin.register(RunInput)
class RunInputAdmin(LineageAdmin):
    namespace_lookups = ("run__job__namespace", "dataset__namespace")
    list_display = ("run_link", "dataset_link", "version_link", "first_seen_at")
    list_select_related = ("run", "dataset__namespace", "version")
    list_filter = (("dataset__namespace", NamespaceFilter),)
    search_rules = RUN_OR_DATASET_SEARCH
    search_help_text = RUN_OR_DATASET_HELP
    ordering = ("-pk",)
    sortable_by = ()
    fields = ("run", "dataset", "version", "first_seen_at", "facets_json", "facet_times_json")

    run_link = fk_link("run")
    dataset_link = fk_link("dataset")
    version_link = fk_link("version", "version read")
    facets_json = json_field("facets", "input facets")
    facet_times_json = json_field("facet_times", "facet times")


@admin.register(RunOutput)
class RunOutputAdmin(LineageAdmin):
    namespace_lookups = ("run__job__namespace", "dataset__namespace")
    list_display = ("run_link", "dataset_link", "version_link", "first_seen_at")
    list_select_related = ("run", "dataset__namespace", "version")
    list_filter = (("dataset__namespace", NamespaceFilter),)
    search_rules = RUN_OR_DATASET_SEARCH
    search_help_text = RUN_OR_DATASET_HELP
    ordering = ("-pk",)
    sortable_by = ()
    fields = ("run", "dataset", "version", "first_seen_at", "facets_json", "facet_times_json")

    run_link = fk_link("run")
    dataset_link = fk_link("dataset")
    version_link = fk_link("version", "version written")
    facets_json = json_field("facets", "output facets")
    facet_times_json = json_field("facet_times", "facet times")


@admin.register(JobDatasetEdge)
class JobDatasetEdgeAdmin(LineageAdmin):
    namespace_lookups = ("job__namespace", "dataset__namespace")
    list_display = ("job_link", "direction", "dataset_link", "source", "valid_from", "valid_to")
    list_select_related = ("job__namespace", "dataset__namespace")
    list_filter = ("direction", "source", OpenEdgeFilter, ("job__namespace", NamespaceFilter))
    search_rules = ((r"job:(.+)", "job__name__startswith"), (ANY, "dataset__name__startswith"))
    search_help_text = "Start of the dataset name, or job:NAME for the start of the job name (case-sensitive)."
    ordering = ("-pk",)
    sortable_by = ()
    fields = ("job", "direction", "dataset", "source", "valid_from", "valid_to")

    job_link = fk_link("job")
    dataset_link = fk_link("dataset")


@admin.register(ColumnLineage)
class ColumnLineageAdmin(LineageAdmin):
    namespace_lookups = ("dataset__namespace", "input_dataset__namespace")
    list_display = ("dataset_link", "field", "input_dataset_link", "input_field", "transformation_type", "event_time")
    list_select_related = ("dataset__namespace", "input_dataset__namespace")
    list_filter = (
        ("dataset__namespace", NamespaceFilter),
        static_choices_filter("transformation_type", "transformation type", ("DIRECT", "INDIRECT")),
    )
    search_rules = ((r"field:(.+)", "field"), (ANY, "dataset__name__startswith"))
    search_help_text = "Start of the output dataset name, or field:NAME for an output field (case-sensitive)."
    ordering = ("-pk",)
    sortable_by = ()
    fields = (
        "dataset",
        "field",
        "input_dataset",
        "input_field",
        "transformation_type",
        "transformation_description",
        "run",
        "event_time",
        "transformations_json",
    )

    dataset_link = fk_link("dataset", "dataset")
    input_dataset_link = fk_link("input_dataset", "input dataset")
    transformations_json = json_field("transformations")
