"""Admin edits of every model go on the audit trail, with before and after values.

How: at startup, every ``ModelAdmin`` registered on every admin site gets three methods wrapped
(on the instance; classes are left alone): ``save_model`` reads the row's stored state just before
an edit is saved (the *before*), and Django's own admin-log hooks ``log_addition``, ``log_change``
and ``log_deletions`` record ``admin.add``, ``admin.change`` and ``admin.delete`` with the
*after* state and Django's change message. This covers the change form, list-editable changes,
deletions (single and bulk action) and any model admin added later, without each admin having to
opt in through a mixin.

Why not a receiver on ``LogEntry``: it sees no before-values, and since Django 5.1 deletions are
logged with ``bulk_create``, which sends no signal at all.

The change form and the delete view run in a transaction, so the entry commits with the edit; the
bulk "delete selected" action logs before it deletes (Django's order).
"""

from __future__ import annotations

import functools
from typing import Any

from django.contrib.admin.sites import all_sites

from governance.audit.services import record, snapshot

_BEFORE = "_custody_audit_before"


def _state(obj: Any) -> dict[str, Any] | None:
    try:
        return snapshot(obj)
    except Exception:  # a model whose values do not serialise: keep the edit auditable anyway
        return {"repr": str(obj)}


def _message(message: Any) -> Any:
    return message if isinstance(message, list | str) else str(message)


def _key(obj: Any) -> tuple[str, str]:
    return (obj._meta.label_lower, str(obj.pk))


def _wrap(model_admin: Any) -> None:
    if getattr(model_admin, "_custody_audited", False):
        return
    save_model = model_admin.save_model
    log_addition = model_admin.log_addition
    log_change = model_admin.log_change
    log_deletions = model_admin.log_deletions

    @functools.wraps(save_model)
    def audited_save_model(request: Any, obj: Any, form: Any, change: bool) -> Any:
        if change and obj.pk is not None:
            stored = type(obj)._base_manager.filter(pk=obj.pk).first()
            if stored is not None:
                befores = getattr(request, _BEFORE, None)
                if befores is None:
                    befores = {}
                    setattr(request, _BEFORE, befores)
                befores[_key(obj)] = _state(stored)
        return save_model(request, obj, form, change)

    @functools.wraps(log_addition)
    def audited_log_addition(request: Any, obj: Any, message: Any) -> Any:
        result = log_addition(request, obj, message)
        record("admin.add", obj=obj, after=_state(obj), extra={"message": _message(message)}, request=request)
        return result

    @functools.wraps(log_change)
    def audited_log_change(request: Any, obj: Any, message: Any) -> Any:
        result = log_change(request, obj, message)
        before = (getattr(request, _BEFORE, None) or {}).pop(_key(obj), None)
        record(
            "admin.change",
            obj=obj,
            before=before,
            after=_state(obj),
            extra={"message": _message(message)},
            request=request,
        )
        return result

    @functools.wraps(log_deletions)
    def audited_log_deletions(request: Any, queryset: Any) -> Any:
        for obj in queryset:
            record("admin.delete", obj=obj, before=_state(obj), request=request)
        return log_deletions(request, queryset)

    model_admin.save_model = audited_save_model
    model_admin.log_addition = audited_log_addition
    model_admin.log_change = audited_log_change
    model_admin.log_deletions = audited_log_deletions
    model_admin._custody_audited = True


def install() -> None:
    for site in list(all_sites):
        for model_admin in site._registry.values():
            _wrap(model_admin)
