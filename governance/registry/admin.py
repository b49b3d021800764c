"""Admin of the model registry: registered models (with guardian's per-model permission pages,
reinforced) and their versions, read-only evidence for approvers and compliance officers."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from governance.permissions import access
from governance.permissions.admin import SelfGrantGuard
from governance.registry.models import (
    ModelVersion,
    RegisteredModel,
    RegisteredModelGroupObjectPermission,
    RegisteredModelUserObjectPermission,
)

#: Staff in these roles use the governance admin (what they see still follows their visibility).
ADMIN_ROLES = frozenset({"admin", "approver", "compliance_officer", "auditor"})


def can_use_governance_admin(request: HttpRequest) -> bool:
    user: Any = request.user
    if not (user.is_active and user.is_staff):
        return False
    return bool(user.is_superuser or access.roles(user) & ADMIN_ROLES)


class GovernanceReadAdmin(admin.ModelAdmin):
    """Read-only for everyone: changes go through the service layer (API or admin actions)."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_use_governance_admin(request)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return can_use_governance_admin(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


def lineage_link(node_id: str, label: str = "lineage graph (JSON)") -> SafeString:
    from urllib.parse import urlencode

    return format_html('<a href="/api/v1/lineage?{}">{}</a>', urlencode({"nodeId": node_id, "depth": 20}), label)


@admin.register(RegisteredModel)
class RegisteredModelAdmin(SelfGrantGuard, GovernanceReadAdmin):
    change_form_template = "admin/guardian/model/change_form.html"  # type: ignore[misc]
    list_display = ("name", "namespace", "updated_at", "created_at")
    list_select_related = ("namespace",)
    list_filter = ("namespace",)
    search_fields = ("name",)
    fields = ("namespace", "name", "description", "created_at", "created_by", "updated_at", "versions_link")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return access.filter_models(request.user, super().get_queryset(request))

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        # Only to reach guardian's permission pages (which also need guardian's own permissions);
        # every field stays read-only.
        return can_use_governance_admin(request) and access.is_admin(request.user)

    @admin.display(description="versions")
    def versions_link(self, obj: RegisteredModel) -> SafeString:
        url = reverse("admin:registry_modelversion_changelist") + f"?model__id__exact={obj.pk}"
        return format_html('<a href="{}">{} version(s)</a>', url, obj.versions.count())


@admin.register(ModelVersion)
class ModelVersionAdmin(GovernanceReadAdmin):
    list_display = ("version", "model", "framework", "artifact_short", "run", "source", "created_at")
    list_select_related = ("model__namespace", "run")
    list_filter = ("source", "framework")
    search_fields = ("version", "model__name", "artifact_digest")
    fields = (
        "model",
        "version",
        "artifact_uri",
        "artifact_digest",
        "artifact_size",
        "framework",
        "framework_version",
        "model_class",
        "hyperparameters",
        "params",
        "metrics",
        "environment_digest",
        "run",
        "source",
        "created_at",
        "created_by",
        "updated_at",
        "links",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return access.filter_models(request.user, super().get_queryset(request), "model__")

    @admin.display(description="artifact")
    def artifact_short(self, obj: ModelVersion) -> str:
        return obj.artifact_digest[:19] + "…" if obj.artifact_digest else "-"

    @admin.display(description="see also")
    def links(self, obj: ModelVersion) -> SafeString:
        model = obj.model
        node = f"model:{model.namespace.name}:{model.name}:{obj.version}"
        evidence = f"/api/v1/models/{model.name}/versions/{obj.version}/evidence?namespace={model.namespace.name}"
        promotions = reverse("admin:promotions_promotionrequest_changelist") + f"?model_version__id__exact={obj.pk}"
        return format_html(
            '<ul><li>{}</li><li><a href="{}">evidence (JSON)</a></li><li><a href="{}">promotion requests</a></li></ul>',
            lineage_link(node),
            evidence,
            promotions,
        )


class ModelGrantAdmin(GovernanceReadAdmin):
    list_filter = ("permission__codename",)

    def has_module_permission(self, request: HttpRequest) -> bool:
        user: Any = request.user
        return can_use_governance_admin(request) and bool(
            user.is_superuser or access.roles(user) & {"admin", "compliance_officer", "auditor"}
        )

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.has_module_permission(request)


@admin.register(RegisteredModelUserObjectPermission)
class ModelUserGrantAdmin(ModelGrantAdmin):
    list_display = ("content_object", "user", "permission")
    list_select_related = ("permission", "content_object__namespace", "user")
    search_fields = ("content_object__name", "user__username")


@admin.register(RegisteredModelGroupObjectPermission)
class ModelGroupGrantAdmin(ModelGrantAdmin):
    list_display = ("content_object", "group", "permission")
    list_select_related = ("permission", "content_object__namespace", "group")
    search_fields = ("content_object__name", "group__name")
