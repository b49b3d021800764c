"""Lineage API routes under /api/v1/: ingestion and the Marquez-compatible reads."""

from django.urls import path

from lineage.api import graph_views, ingest_views, read_views

urlpatterns = [
    path("lineage", ingest_views.LineageView.as_view(), name="lineage"),
    path("lineage/batch", ingest_views.LineageBatchView.as_view(), name="lineage-batch"),
    path("column-lineage", graph_views.ColumnLineageView.as_view(), name="column-lineage"),
    path("runlineage/upstream", graph_views.RunLineageUpstreamView.as_view(), name="runlineage-upstream"),
    path("runs/<path:rest>", graph_views.RunProvenanceView.as_view(), name="run-provenance"),
    path("namespaces", read_views.NamespaceListView.as_view(), name="namespaces"),
    # Namespaces and names may contain '/' (clients' %2F arrives decoded): the view parses the rest.
    path("namespaces/<path:rest>", read_views.NamespaceTreeView.as_view(), name="namespace-tree"),
    path("jobs/runs/<path:rest>", read_views.RunTreeView.as_view(), name="job-runs"),
    path("search", read_views.SearchView.as_view(), name="search"),
    path("events/lineage", read_views.LineageEventsView.as_view(), name="lineage-events"),
]
