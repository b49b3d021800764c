"""Direct foreign-key object-permission tables for namespaces (django-guardian).

Guardian's generic tables key objects by ``(content_type, object_pk as text)``, which cannot be
joined or indexed against the target table; these tables hold a real foreign key, so "which
namespaces may this user see" is one indexed join (DESIGN §3). Guardian finds them by their
reverse relation on :class:`lineage.models.Namespace`, so ``assign_perm``, ``remove_perm``,
``ObjectPermissionChecker`` and ``get_objects_for_user`` use them transparently.
"""

from __future__ import annotations

from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from lineage.models import Namespace


class NamespaceUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="user_object_permissions")

    class Meta(UserObjectPermissionBase.Meta):
        verbose_name = "namespace permission of a user"
        verbose_name_plural = "namespace permissions of users"


class NamespaceGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="group_object_permissions")

    class Meta(GroupObjectPermissionBase.Meta):
        verbose_name = "namespace permission of a group"
        verbose_name_plural = "namespace permissions of groups"
