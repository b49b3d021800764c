"""Signal receivers that put ingestion, accounts, roles, permissions and logins on the audit trail.

Every receiver runs inside the transaction of the change it records (Django sends these signals
from inside ``save()``/``delete()``/``m2m`` writes, and lineage sends ``events_ingested`` inside the
ingestion transaction), so the entry commits or rolls back with the change.

Actions recorded here:

==========================  ===========================================================
``lineage.ingest``          one per accepted batch (one per POSTed event, one per
                            ``/lineage/batch``): ids and digests of the new raw events
``token.create``            an API token was issued (prefix, scope, label; never the hash)
``token.revoke``            ``revoked_at`` was set
``token.change``            another change of a token row (label, scope, expiry)
``token.delete``            a token row was deleted
``user.create``             a user was created
``user.change``             ``is_active``, ``is_staff`` or ``is_superuser`` changed
``user.delete``             a user was deleted
``role.grant`` / ``role.revoke``          group (role) membership added / removed (or cleared)
``group.delete``                          a group (role) was deleted, with its members
``user.permission.grant`` / ``.revoke``   a model permission given to / taken from a user
``group.permission.grant`` / ``.revoke``  a model permission given to / taken from a group
``object_permission.grant`` / ``.revoke`` a django-guardian object permission row saved / deleted
``auth.login``, ``auth.logout``, ``auth.login_failed``
==========================  ===========================================================

Not seen: ``QuerySet.update()``/``bulk_create()`` (no signals), e.g. guardian's bulk
``assign_perm(perm, user, queryset)``: code that changes permissions in bulk should call
:func:`governance.audit.services.record` itself.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete, pre_save

from governance.accounts.models import ApiToken
from governance.audit.services import CONTEXT, record, snapshot
from lineage.signals import events_ingested

USER_FLAGS = ("is_active", "is_staff", "is_superuser")
TOKEN_FIELDS = ("user", "label", "prefix", "scope", "created_at", "expires_at", "revoked_at")
UID = "custody-audit-"


# --- ingestion ------------------------------------------------------------------------------------
def on_events_ingested(sender: Any, events: list[Any], user: Any = None, **kwargs: Any) -> None:
    if not events:
        return
    first = events[0]
    if len(events) == 1:
        object_id = str(first.pk)
        label = first.event_type or first.kind
        object_repr = f"{label} {first.job_namespace}:{first.job_name}"[:1000]
    else:
        object_id = f"{first.pk}..{events[-1].pk}"
        object_repr = f"{len(events)} events"
    record(
        "lineage.ingest",
        object_type="lineage.rawevent",
        object_id=object_id,
        object_repr=object_repr,
        actor=user if getattr(user, "pk", None) else CONTEXT,
        extra={
            "count": len(events),
            "events": [[e.pk, e.digest] for e in events],
        },
    )


# --- API tokens -----------------------------------------------------------------------------------
def _token_state(token: ApiToken) -> dict[str, Any]:
    return snapshot(token, TOKEN_FIELDS, m2m=False)


def on_token_pre_save(sender: Any, instance: ApiToken, raw: bool = False, **kwargs: Any) -> None:
    if raw or instance.pk is None or instance._state.adding:
        return
    fields = kwargs.get("update_fields")
    if fields is not None and set(fields) <= {"last_used_at"}:
        return
    old = ApiToken.objects.filter(pk=instance.pk).first()
    instance._audit_before = _token_state(old) if old is not None else None  # type: ignore[attr-defined]


def on_token_saved(sender: Any, instance: ApiToken, created: bool, raw: bool = False, **kwargs: Any) -> None:
    if raw:
        return
    after = _token_state(instance)
    if created:
        record("token.create", obj=instance, after=after, extra={"user_id": instance.user_id})
        return
    before = getattr(instance, "_audit_before", None)
    if before is None:
        return
    instance._audit_before = None  # type: ignore[attr-defined]
    changed = {k for k in after if after[k] != before.get(k)}
    if not changed:
        return
    action = "token.revoke" if changed == {"revoked_at"} and before.get("revoked_at") is None else "token.change"
    record(
        action,
        obj=instance,
        before={k: before.get(k) for k in sorted(changed)},
        after={k: after[k] for k in sorted(changed)},
        extra={"user_id": instance.user_id},
    )


def on_token_deleted(sender: Any, instance: ApiToken, **kwargs: Any) -> None:
    record("token.delete", obj=instance, before=_token_state(instance), extra={"user_id": instance.user_id})


# --- users and roles ------------------------------------------------------------------------------
def on_user_pre_save(sender: Any, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    if raw or instance.pk is None or instance._state.adding:
        return
    fields = kwargs.get("update_fields")
    if fields is not None and not set(fields) & set(USER_FLAGS):
        return  # e.g. last_login on every login
    old = sender._default_manager.filter(pk=instance.pk).values(*USER_FLAGS).first()
    instance._audit_flags = old  # type: ignore[attr-defined]


def on_user_saved(sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    if raw:
        return
    if created:
        record(
            "user.create",
            obj=instance,
            after={"username": instance.get_username(), **{f: getattr(instance, f) for f in USER_FLAGS}},
        )
        return
    old = getattr(instance, "_audit_flags", None)
    instance._audit_flags = None
    if not old:
        return
    changed = [f for f in USER_FLAGS if old[f] != getattr(instance, f)]
    if changed:
        record(
            "user.change",
            obj=instance,
            before={f: old[f] for f in changed},
            after={f: getattr(instance, f) for f in changed},
        )


def on_user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    record(
        "user.delete",
        obj=instance,
        before={"username": instance.get_username(), **{f: getattr(instance, f) for f in USER_FLAGS}},
    )


def on_group_deleting(sender: Any, instance: Group, **kwargs: Any) -> None:
    """Deleting a role drops its memberships without m2m signals: record who had it."""
    members = sorted(instance.user_set.values_list("pk", flat=True))
    record("group.delete", obj=instance, before={"name": instance.name, "users": members})


def _names(model: Any, pks: set[Any] | None, field: str) -> list[str]:
    if not pks:
        return []
    return sorted(str(v) for v in model._default_manager.filter(pk__in=pks).values_list(field, flat=True))


def _perm_codes(pks: set[Any] | None) -> list[str]:
    if not pks:
        return []
    rows = Permission.objects.filter(pk__in=pks).values_list("content_type__app_label", "codename")
    return sorted(f"{app}.{code}" for app, code in rows)


def on_groups_changed(
    sender: Any, instance: Any, action: str, reverse: bool, model: Any, pk_set: Any, **kw: Any
) -> None:
    """User.groups: user.groups.add(g) (forward) or group.user_set.add(u) (reverse)."""
    if action == "pre_clear":
        # Remember who/what is about to go: post_clear gives no pk_set.
        related = instance.groups if not reverse else instance.user_set
        instance._audit_cleared = set(related.values_list("pk", flat=True))
        return
    if action not in {"post_add", "post_remove", "post_clear"}:
        return
    if action == "post_clear":
        pk_set = getattr(instance, "_audit_cleared", set())
    if not pk_set:
        return
    verb = "role.grant" if action == "post_add" else "role.revoke"
    user_model = get_user_model()
    if not reverse:  # instance is a user, pk_set are groups
        for name in _names(Group, pk_set, "name"):
            record(verb, obj=instance, extra={"role": name})
    else:  # instance is a group, pk_set are users
        for user in user_model._default_manager.filter(pk__in=pk_set).order_by("pk"):
            record(verb, obj=user, extra={"role": instance.name})


def _permissions_changed(owner_kind: str, owner_attr: str) -> Any:
    def receiver(sender: Any, instance: Any, action: str, reverse: bool, model: Any, pk_set: Any, **kw: Any) -> None:
        if action == "pre_clear":
            related = getattr(instance, owner_attr) if not reverse else None
            if related is not None:
                instance._audit_cleared_perms = set(related.values_list("pk", flat=True))
            return
        if action not in {"post_add", "post_remove", "post_clear"}:
            return
        if action == "post_clear":
            pk_set = getattr(instance, "_audit_cleared_perms", set())
        if not pk_set:
            return
        verb = f"{owner_kind}.permission.{'grant' if action == 'post_add' else 'revoke'}"
        if not reverse:  # instance is the user/group
            record(verb, obj=instance, extra={"permissions": _perm_codes(pk_set)})
        else:  # instance is a Permission, pk_set are users/groups
            code = f"{instance.content_type.app_label}.{instance.codename}"
            for owner in model._default_manager.filter(pk__in=pk_set).order_by("pk"):
                record(verb, obj=owner, extra={"permissions": [code]})

    return receiver


# --- guardian object permissions ------------------------------------------------------------------
def _object_permission_state(row: Any) -> dict[str, Any]:
    perm = row.permission
    state: dict[str, Any] = {"permission": f"{perm.content_type.app_label}.{perm.codename}"}
    if hasattr(row, "user_id"):
        state["user"] = row.user_id
    if hasattr(row, "group_id"):
        state["group"] = row.group_id
    target = getattr(row, "content_object", None)
    if hasattr(row, "object_pk"):
        state["object_type"] = f"{row.content_type.app_label}.{row.content_type.model}"
        state["object_id"] = str(row.object_pk)
    elif target is not None:
        state["object_type"] = f"{target._meta.app_label}.{target._meta.model_name}"
        state["object_id"] = str(target.pk)
    return state


def on_object_permission_saved(sender: Any, instance: Any, created: bool, raw: bool = False, **kw: Any) -> None:
    if raw or not created:
        return
    record("object_permission.grant", obj=instance, after=_object_permission_state(instance))


def on_object_permission_deleted(sender: Any, instance: Any, **kw: Any) -> None:
    record("object_permission.revoke", obj=instance, before=_object_permission_state(instance))


# --- logins ---------------------------------------------------------------------------------------
def on_logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    record("auth.login", obj=user, actor=user, request=request)


def on_logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is None:
        return
    record("auth.logout", obj=user, actor=user, request=request)


def on_login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    user_model = get_user_model()
    attempted = str(credentials.get(user_model.USERNAME_FIELD, credentials.get("username", "")))
    record(
        "auth.login_failed",
        object_type=f"{user_model._meta.app_label}.{user_model._meta.model_name}",
        object_repr=attempted,  # personal: redactable
        actor=None,
        actor_name="anonymous",
        request=request,
    )


def object_permission_models() -> list[Any]:
    """Every concrete django-guardian permission model (generic and direct foreign-key ones)."""
    from guardian.models import BaseObjectPermission

    return [m for m in apps.get_models() if issubclass(m, BaseObjectPermission) and not m._meta.abstract]


def connect() -> None:
    connect_ingestion()

    pre_save.connect(on_token_pre_save, sender=ApiToken, dispatch_uid=UID + "token-pre")
    post_save.connect(on_token_saved, sender=ApiToken, dispatch_uid=UID + "token-post")
    post_delete.connect(on_token_deleted, sender=ApiToken, dispatch_uid=UID + "token-delete")

    user_model = get_user_model()
    pre_save.connect(on_user_pre_save, sender=user_model, dispatch_uid=UID + "user-pre")
    post_save.connect(on_user_saved, sender=user_model, dispatch_uid=UID + "user-post")
    post_delete.connect(on_user_deleted, sender=user_model, dispatch_uid=UID + "user-delete")
    m2m_changed.connect(on_groups_changed, sender=user_model.groups.through, dispatch_uid=UID + "groups")
    pre_delete.connect(on_group_deleting, sender=Group, dispatch_uid=UID + "group-delete")
    m2m_changed.connect(
        _permissions_changed("user", "user_permissions"),
        sender=user_model.user_permissions.through,
        dispatch_uid=UID + "user-perms",
        weak=False,
    )
    m2m_changed.connect(
        _permissions_changed("group", "permissions"),
        sender=Group.permissions.through,
        dispatch_uid=UID + "group-perms",
        weak=False,
    )
    for model in object_permission_models():
        label = model._meta.label_lower
        post_save.connect(on_object_permission_saved, sender=model, dispatch_uid=f"{UID}objperm-save-{label}")
        post_delete.connect(on_object_permission_deleted, sender=model, dispatch_uid=f"{UID}objperm-del-{label}")

    user_logged_in.connect(on_logged_in, dispatch_uid=UID + "login")
    user_logged_out.connect(on_logged_out, dispatch_uid=UID + "logout")
    user_login_failed.connect(on_login_failed, dispatch_uid=UID + "login-failed")


def disconnect_ingestion() -> None:
    """Detach the ingestion receiver (benchmarks measure ingestion with auditing on and off)."""
    events_ingested.disconnect(dispatch_uid=UID + "ingest")


def connect_ingestion() -> None:
    events_ingested.connect(on_events_ingested, dispatch_uid=UID + "ingest")
