"""Granting and revoking object permissions on namespaces and registered models.

Grants are django-guardian rows in the direct foreign-key tables; each row saved or deleted is put
on the audit trail by the audit app's receivers (``object_permission.grant`` / ``.revoke``), in
the same transaction.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from governance.permissions import access
from lineage.models import Namespace

VIEW = "view"
WRITE = "write"
LEVELS = (VIEW, WRITE)

NAMESPACE_PERMS = {VIEW: ["lineage.view_namespace"], WRITE: ["lineage.view_namespace", "lineage.write_namespace"]}
MODEL_PERMS = {
    VIEW: ["registry.view_registeredmodel"],
    WRITE: ["registry.view_registeredmodel", "registry.change_registeredmodel"],
}
#: What ``create_user --namespace`` grants for each role (roles reading everything need nothing).
ROLE_NAMESPACE_LEVEL = {"data_scientist": WRITE, "approver": VIEW, "admin": WRITE}


def ensure_namespace(name: str) -> Namespace:
    """The namespace called ``name``, created (empty) if it does not exist yet."""
    now = timezone.now()
    namespace, _ = Namespace.objects.get_or_create(name=name, defaults={"created_at": now, "updated_at": now})
    return namespace


@transaction.atomic
def grant_namespace(holder: Any, namespace: Namespace, level: str = VIEW) -> None:
    """Give a user or group ``view`` or ``write`` (which includes view) on a namespace."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}")
    for perm in NAMESPACE_PERMS[level]:
        assign_perm(perm, holder, namespace)
    access.forget(holder)


@transaction.atomic
def revoke_namespace(holder: Any, namespace: Namespace, level: str = VIEW) -> None:
    """Take ``write`` (keeping view), or ``view`` (and with it write), away."""
    perms = ["lineage.write_namespace"] if level == WRITE else NAMESPACE_PERMS[WRITE]
    for perm in perms:
        remove_perm(perm, holder, namespace)
    access.forget(holder)


@transaction.atomic
def grant_model(holder: Any, model: Any, level: str = VIEW) -> None:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}")
    for perm in MODEL_PERMS[level]:
        assign_perm(perm, holder, model)
    access.forget(holder)


@transaction.atomic
def revoke_model(holder: Any, model: Any, level: str = VIEW) -> None:
    perms = ["registry.change_registeredmodel"] if level == WRITE else MODEL_PERMS[WRITE]
    for perm in perms:
        remove_perm(perm, holder, model)
    access.forget(holder)


def has_any_grant(namespace: Namespace) -> bool:
    from governance.permissions.models import NamespaceGroupObjectPermission, NamespaceUserObjectPermission

    return (
        NamespaceUserObjectPermission.objects.filter(content_object=namespace).exists()
        or NamespaceGroupObjectPermission.objects.filter(content_object=namespace).exists()
    )


def grant_claims(user: Any) -> list[tuple[str, str]]:
    """After an ingestion: give ``user`` the namespaces it created (see :mod:`access`, self-service
    namespaces). Only namespaces that exist now and that nobody holds any grant on are given.
    Returns ``(namespace, level)`` pairs granted."""
    claims: dict[str, bool] = getattr(user, "_custody_claims", None) or {}
    if not claims or not access.authenticated(user):
        return []
    user._custody_claims = {}
    granted = []
    for namespace in Namespace.objects.filter(name__in=sorted(claims)).order_by("name"):
        if has_any_grant(namespace):
            continue
        level = WRITE if claims[namespace.name] else VIEW
        grant_namespace(user, namespace, level)
        granted.append((namespace.name, level))
    return granted
