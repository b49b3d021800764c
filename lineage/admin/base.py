"""What every lineage admin shares: who may see it, what it may change, and how it stays fast.

Access (no migration, no per-user permission rows):

- Viewing: staff users in one of :data:`VIEW_ROLES` (compliance officers, auditors, approvers and admins)
  see every lineage model; superusers too; anyone else only with Django's own ``lineage.view_*``
  permission. Roles are Django groups (see ``governance.accounts``); they are read once per request.
- Changing: the graph is evidence derived from raw events, so add, change and delete are refused to
  everyone, superusers included. :class:`~lineage.admin.namespaces.NamespaceAdmin` is the one exception:
  admins may edit a namespace's owner and description.
- Per-namespace visibility: every queryset the admin shows goes through :meth:`LineageAdmin.visible_queryset`,
  which asks the same registry as the read API (:func:`lineage.access.visibility_for`). Its default policy
  lets everyone see everything, so today the hook returns the queryset unchanged; once governance registers
  its per-namespace policy, the admin hides rows of invisible namespaces (on every
  :attr:`LineageAdmin.namespace_lookups` path), namespace filters list only visible namespaces, and the
  detail page of a hidden object answers as if it did not exist. A guardian-based admin mixin can also
  override the hook.

Speed on million-row tables:

- :class:`~lineage.admin.pagination.EstimatedCountPaginator` and ``show_full_result_count = False``: no
  unbounded ``COUNT(*)``; facet counts are off.
- The list query defers JSON columns that the list does not show, of the model and of
  every ``list_select_related`` model, and joins the related rows it shows (``list_select_related``).
- Search goes through :attr:`LineageAdmin.search_rules`: each word of the search is matched by shape
  (a digest, a UUID, ``job:...``) to one index-friendly, case-sensitive lookup such as ``digest__exact``
  or ``name__startswith`` (Django's ``=`` and ``^`` prefixes are case-insensitive, which on PostgreSQL
  wraps the column in ``UPPER()`` and defeats its index). Only forward relations are searched, so the
  results never need ``DISTINCT``.
- Filters only use static choices or the small namespace table; dates use range filters on indexed
  columns instead of ``date_hierarchy``, whose drill-down runs ``SELECT DISTINCT`` over the table.
- Default ordering and ``sortable_by`` are limited to indexed columns (the small namespace table excepted).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.utils import get_fields_from_path
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import smart_split, unescape_string_literal

from lineage.access import Visibility, visibility_for
from lineage.admin.pagination import EstimatedCountPaginator

#: Groups whose staff members may view every lineage model.
VIEW_ROLES = frozenset({"compliance_officer", "auditor", "approver", "admin"})
#: Groups whose members may edit what is editable (namespace owner and description).
EDIT_ROLES = frozenset({"admin"})

#: Shapes of search words, for :attr:`LineageAdmin.search_rules`.
ANY = r"(.+)"
UUID = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
SHA256 = r"(?:sha256:)?([0-9a-f]{64})"
GIT_SHA = r"[0-9a-f]{7,64}"

#: Pretty-printed JSON longer than this is cut on detail pages (raw events link to the full payload).
JSON_DISPLAY_LIMIT = 200_000


def user_roles(request: HttpRequest) -> frozenset[str]:
    """The request user's group names, cached on the user object for the rest of the request."""
    user: Any = request.user
    roles = getattr(user, "_custody_roles", None)
    if roles is None:
        roles = frozenset(user.groups.values_list("name", flat=True)) if user.is_authenticated else frozenset()
        user._custody_roles = roles
    return roles


def can_view_lineage(request: HttpRequest) -> bool:
    user: Any = request.user
    if not (user.is_active and user.is_staff):
        return False
    return bool(user.is_superuser or user_roles(request) & VIEW_ROLES)


def can_edit_lineage(request: HttpRequest) -> bool:
    user: Any = request.user
    if not (user.is_active and user.is_staff):
        return False
    return bool(user.is_superuser or user_roles(request) & EDIT_ROLES)


def request_visibility(request: HttpRequest) -> Visibility:
    """What the request's user may see (see :mod:`lineage.access`), asked once per request."""
    visibility = getattr(request, "_custody_visibility", None)
    if visibility is None:
        visibility = visibility_for(request.user)
        request._custody_visibility = visibility  # type: ignore[attr-defined]
    return visibility


def admin_url(obj: models.Model) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])


def admin_link(obj: models.Model | None, label: object = None) -> SafeString | str:
    """A link to ``obj``'s admin page, or "-" for None."""
    if obj is None:
        return "-"
    try:
        return format_html('<a href="{}">{}</a>', admin_url(obj), obj if label is None else label)
    except NoReverseMatch:
        return str(obj if label is None else label)


def changelist_url(model: type[models.Model], **filters: object) -> str:
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    if filters:
        url += "?" + urlencode(filters)
    return url


def related_links(links: Iterable[tuple[str, str]]) -> SafeString:
    """An HTML list of ``(label, url)`` links, for "see also" rows on detail pages."""
    items = format_html_join("", '<li><a href="{}">{}</a></li>', ((url, label) for label, url in links))
    return format_html('<ul class="custody-links">{}</ul>', items)


def pretty_json(value: Any, limit: int = JSON_DISPLAY_LIMIT) -> SafeString:
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    note = ""
    if len(text) > limit:
        text, note = text[:limit], f"… cut at {limit:,} characters"
    return format_html('<pre class="custody-json">{}</pre>{}', text, note)


def json_field(name: str, description: str | None = None) -> Callable[[Any, models.Model], SafeString]:
    """A read-only admin field that shows the JSON field ``name`` pretty-printed."""

    @admin.display(description=description or name.replace("_", " "))
    def show(self: Any, obj: models.Model) -> SafeString:
        return pretty_json(getattr(obj, name))

    return show


def fk_link(name: str, description: str | None = None) -> Callable[[Any, models.Model], SafeString | str]:
    """A list or detail column showing the related object ``name`` as a link to its admin page."""

    @admin.display(description=description or name.replace("_", " "))
    def show(self: Any, obj: models.Model) -> SafeString | str:
        return admin_link(getattr(obj, name))

    return show


def _heavy_fields(model: type[models.Model]) -> list[str]:
    """JSON columns: facets and payloads, from a few bytes to megabytes."""
    return [f.name for f in model._meta.concrete_fields if isinstance(f, models.JSONField)]


def _as_tuple(spec: str | tuple[str, ...]) -> tuple[str, ...]:
    return (spec,) if isinstance(spec, str) else spec


class LeanChangeList(ChangeList):
    """Defers the JSON columns of the listed model and of its select_related models that the list does not show."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> models.QuerySet[Any]:
        queryset = super().get_queryset(request, exclude_parameters)
        shown = {name for name in self.list_display if isinstance(name, str)}
        deferred = [name for name in _heavy_fields(self.model) if name not in shown]
        if isinstance(self.list_select_related, list | tuple):
            for path in self.list_select_related:
                related = get_fields_from_path(self.model, path)[-1].related_model
                if related is not None:
                    deferred += [f"{path}__{name}" for name in _heavy_fields(related)]
        return queryset.defer(*deferred) if deferred else queryset


class LineageAdmin(admin.ModelAdmin):
    """Base admin of the lineage models: read-only evidence, role-based viewing, fast lists."""

    #: Paths from this model to the Namespace(s) its rows show; a row is visible when all of them are.
    #: Empty: the model has no namespace and overrides :meth:`restrict_to_namespaces`.
    namespace_lookups: tuple[str, ...] = ()
    #: ``(shape regex, lookup or lookups)`` pairs. Each search word uses the first pair whose regex matches
    #: it in full; the regex's first group, when it has one, is the value looked up; several lookups are
    #: ORed. Words are combined with AND. ``search_fields`` is derived from it (it shows the search box).
    search_rules: tuple[tuple[str, str | tuple[str, ...]], ...] = ()

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    list_max_show_all = 200
    actions = None
    save_on_top = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.search_rules and not cls.__dict__.get("search_fields"):
            lookups = [lookup for _, spec in cls.search_rules for lookup in _as_tuple(spec)]
            cls.search_fields = tuple(dict.fromkeys(lookups))

    # --- access ------------------------------------------------------------------------------
    def has_view_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return can_view_lineage(request) or super().has_view_permission(request, obj)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def visible_queryset(self, request: HttpRequest, queryset: models.QuerySet[Any]) -> models.QuerySet[Any]:
        """The rows of ``queryset`` that the request's user may see: all of them unless the visibility
        policy of :mod:`lineage.access` restricts the user to some namespaces."""
        visibility = request_visibility(request)
        if visibility.namespace_ids is None:
            return queryset
        return self.restrict_to_namespaces(queryset, sorted(visibility.namespace_ids))

    def restrict_to_namespaces(self, queryset: models.QuerySet[Any], namespace_ids: list[int]) -> models.QuerySet[Any]:
        if not self.namespace_lookups:
            return queryset.none()
        return queryset.filter(**{f"{lookup}__in": namespace_ids for lookup in self.namespace_lookups})

    def get_queryset(self, request: HttpRequest) -> models.QuerySet[Any]:
        return self.visible_queryset(request, super().get_queryset(request))

    # --- lists -------------------------------------------------------------------------------
    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return LeanChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: models.QuerySet[Any], search_term: str
    ) -> tuple[models.QuerySet[Any], bool]:
        if not self.search_rules or not search_term.strip():
            return super().get_search_results(request, queryset, search_term)
        for word in smart_split(search_term):
            if word[:1] in {'"', "'"} and word[0] == word[-1]:
                word = unescape_string_literal(word)
            condition = self.search_condition(word)
            if condition is None:
                return queryset.none(), False
            queryset = queryset.filter(condition)
        return queryset, False

    def search_condition(self, word: str) -> models.Q | None:
        """The filter for one search word, from the first of :attr:`search_rules` that matches its shape."""
        for shape, spec in self.search_rules:
            match = re.fullmatch(shape, word)
            if match:
                value = match.group(1) if match.groups() else word
                return models.Q.create([(lookup, value) for lookup in _as_tuple(spec)], connector=models.Q.OR)
        return None

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """Say which object a list is narrowed to when a "see also" link filtered it (``<fk>__id__exact``)."""
        extra_context = dict(extra_context or {})
        subtitle = self._filtered_by(request)
        if subtitle:
            extra_context.setdefault("subtitle", subtitle)
        return super().changelist_view(request, extra_context)

    def _filtered_by(self, request: HttpRequest) -> str:
        parts = []
        for key in request.GET:
            value = request.GET.get(key, "")
            match = re.fullmatch(r"(\w+?)__id__exact", key)
            if not match or not value.isdigit():
                continue
            try:
                field = self.opts.get_field(match.group(1))
            except FieldDoesNotExist:
                continue
            if isinstance(field, models.ForeignKey):
                related = field.related_model._default_manager.filter(pk=value).first()
                if related is not None:
                    parts.append(f"{field.verbose_name}: {related}")
        return "; ".join(parts)
