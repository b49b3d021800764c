"""Lineage API routes under /api/v1/: ingestion and the Marquez-compatible reads."""

from django.urls import path

from lineage.api import ingest_views

urlpatterns = [
    path("lineage", ingest_views.LineageView.as_view(), name="lineage"),
    path("lineage/batch", ingest_views.LineageBatchView.as_view(), name="lineage-batch"),
]
