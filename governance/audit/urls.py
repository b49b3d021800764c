"""Audit trail routes, included under ``api/v1/audit/``."""

from django.urls import path

from governance.audit import api

urlpatterns = [
    path("", api.AuditListView.as_view(), name="audit-list"),
    path("verify", api.VerifyView.as_view(), name="audit-verify"),
    path("public-key", api.PublicKeyView.as_view(), name="audit-public-key"),
    path("checkpoints", api.CheckpointListView.as_view(), name="audit-checkpoints"),
    path("<int:sequence>", api.AuditEntryView.as_view(), name="audit-entry"),
]
