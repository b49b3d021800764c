"""Object permissions in the admin: django-guardian's management pages on namespaces (and, in the
registry admin, on registered models), reinforced so that staff cannot hand themselves rights.

- :class:`SelfGrantGuard` on top of guardian's ``ReinforcedGuardedModelAdminMixin``: the
  permission pages need guardian's own view/change permissions (superusers only, unless granted
  explicitly), and nobody but a superuser may open the page of their *own* object permissions.
- The lineage app's namespace admin is re-registered with both, keeping its behaviour.
- The grant tables themselves are listed read-only, for compliance officers and auditors.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from guardian.admin import ReinforcedGuardedModelAdminMixin

from governance.permissions import access
from governance.permissions.models import NamespaceGroupObjectPermission, NamespaceUserObjectPermission
from lineage.models import Namespace

READ_ROLES = frozenset({"admin", "compliance_officer", "auditor"})


class SelfGrantGuard(ReinforcedGuardedModelAdminMixin):
    """Guardian's object-permission pages, minus the ability to edit one's own rights."""

    def obj_perms_manage_user_view(self, request: HttpRequest, object_pk: Any, user_id: Any) -> HttpResponse:
        user: Any = request.user
        if str(user_id) == str(user.pk) and not user.is_superuser:
            messages.error(request, "You cannot change your own permissions.")
            return redirect(reverse("admin:index", current_app=self.admin_site.name))  # type: ignore[attr-defined]
        return super().obj_perms_manage_user_view(request, object_pk, user_id)  # type: ignore[no-any-return]

    def obj_perms_manage_group_view(self, request: HttpRequest, object_pk: Any, group_id: Any) -> HttpResponse:
        user: Any = request.user
        if not user.is_superuser and user.groups.filter(pk=group_id).exists():
            messages.error(request, "You cannot change the permissions of a group you belong to.")
            return redirect(reverse("admin:index", current_app=self.admin_site.name))  # type: ignore[attr-defined]
        return super().obj_perms_manage_group_view(request, object_pk, group_id)  # type: ignore[no-any-return]


def guard_namespace_admin(site: admin.AdminSite = admin.site) -> None:
    """Re-register the lineage namespace admin with guardian's (reinforced) permission pages."""
    current = site._registry.get(Namespace)
    if current is None or isinstance(current, SelfGrantGuard):
        return
    guarded = type(
        "Guarded" + type(current).__name__,
        (SelfGrantGuard, type(current)),
        {"__module__": __name__, "change_form_template": "admin/guardian/model/change_form.html"},
    )
    site.unregister(Namespace)
    site.register(Namespace, guarded)


class GrantAdmin(admin.ModelAdmin):
    """Who holds which object permission: read-only (grants are made on the object's page)."""

    list_filter = ("permission__codename",)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        user: Any = request.user
        return bool(user.is_active and user.is_staff and (user.is_superuser or access.roles(user) & READ_ROLES))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(NamespaceUserObjectPermission)
class NamespaceUserGrantAdmin(GrantAdmin):
    list_display = ("content_object", "user", "permission")
    list_select_related = ("permission", "content_object", "user")
    search_fields = ("content_object__name", "user__username")


@admin.register(NamespaceGroupObjectPermission)
class NamespaceGroupGrantAdmin(GrantAdmin):
    list_display = ("content_object", "group", "permission")
    list_select_related = ("permission", "content_object", "group")
    search_fields = ("content_object__name", "group__name")
