"""Who may see and do what: roles (Django groups) plus per-namespace and per-model object
permissions (django-guardian, direct foreign-key tables), bounded by the API token's limits.

Roles (DESIGN §3):

====================== ============================================================================
``admin``              everything (as do superusers); the only role that may use break-glass
``compliance_officer`` reads everything, changes nothing
``auditor``            reads everything (audit trail and evidence), changes nothing
``approver``           reads everything (an approver judges a model by its whole lineage, which
                       usually crosses teams' namespaces); approves, rejects and comments on
                       promotion requests when the policy lists the role as eligible; writes
                       only where granted ``write``
``data_scientist``     reads the namespaces/models granted to it, writes where granted ``write``
====================== ============================================================================

Object permissions:

- namespace ``lineage.view_namespace``: see everything in it (lineage, models, promotions,
  deployments); ``lineage.write_namespace``: also write (ingest lineage, register models and
  versions, request promotions, record deployments). Write implies view.
- registered model ``registry.view_registeredmodel`` / ``registry.change_registeredmodel``: the
  same for one model (its versions, promotions and deployments), without the rest of the
  namespace's lineage.

An API token may be limited to namespaces (``create_token --namespace``): its bearer sees and
writes only there, whatever the user's own rights. An ingest-only token that is not limited posts
to any namespace, as before (it is an admin-issued pipeline credential and can read nothing).

Writing means: the event's own namespace (the job's; the dataset's for a DatasetEvent) and the
namespace of any output registering a model version. Datasets read or written elsewhere are data
sources (``s3://bucket``, ``file``...) shared by teams: referencing them needs no write grant,
seeing them needs a view grant (or a role that reads everything).

Self-service namespaces (``CUSTODY_CLAIM_NEW_NAMESPACES``, default on): a namespace that does not
exist yet may be created by an ingestion, whose submitter is then granted view and write on it
(only namespaces the event writes to; data-source namespaces are never claimed, they may be
shared). Existing namespaces need a grant.

Everything here caches per user object, i.e. per request; :func:`forget` drops the caches.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet

from governance.accounts.models import ApiToken
from lineage.models import Namespace

ADMIN = "admin"
COMPLIANCE_OFFICER = "compliance_officer"
AUDITOR = "auditor"
APPROVER = "approver"
DATA_SCIENTIST = "data_scientist"
READ_ALL_ROLES = frozenset({ADMIN, COMPLIANCE_OFFICER, AUDITOR, APPROVER})

VIEW_NAMESPACE = "view_namespace"
WRITE_NAMESPACE = "write_namespace"
VIEW_MODEL = "view_registeredmodel"
CHANGE_MODEL = "change_registeredmodel"

_CACHE_ATTRS = (
    "_custody_roles",
    "_custody_ns_perms",
    "_custody_model_perms",
    "_custody_visible",
    "_custody_claims",
    "_custody_known_namespaces",
)


def forget(user: Any) -> None:
    """Drop what this module cached on ``user`` (after granting or revoking)."""
    for attr in _CACHE_ATTRS:
        if hasattr(user, attr):
            delattr(user, attr)


def claims_enabled() -> bool:
    return bool(getattr(settings, "CUSTODY_CLAIM_NEW_NAMESPACES", True))


# --- roles --------------------------------------------------------------------------------------


def authenticated(user: Any) -> bool:
    return bool(getattr(user, "is_authenticated", False) and getattr(user, "is_active", False))


def roles(user: Any) -> frozenset[str]:
    """The user's group names, cached on the user object (the attribute the audit API and the
    lineage admin use too)."""
    cached = getattr(user, "_custody_roles", None)
    if cached is None:
        cached = frozenset(user.groups.values_list("name", flat=True)) if authenticated(user) else frozenset()
        user._custody_roles = cached
    return cached  # type: ignore[no-any-return]


def is_admin(user: Any) -> bool:
    return authenticated(user) and (bool(user.is_superuser) or ADMIN in roles(user))


def reads_everything(user: Any) -> bool:
    """Admins, compliance officers, auditors and approvers see every namespace (a token limit
    still applies)."""
    return authenticated(user) and (bool(user.is_superuser) or bool(roles(user) & READ_ALL_ROLES))


def has_role(user: Any, names: Iterable[str]) -> bool:
    wanted = set(names)
    if not authenticated(user):
        return False
    if user.is_superuser and ADMIN in wanted:
        return True
    return bool(roles(user) & wanted)


# --- tokens -------------------------------------------------------------------------------------


def token_of(user: Any) -> ApiToken | None:
    """The API token the current request authenticated with (set by BearerTokenAuthentication)."""
    token = getattr(user, "_custody_token", None)
    return token if isinstance(token, ApiToken) else None


def token_namespace_ids(token: ApiToken | None) -> frozenset[int] | None:
    """The namespaces a token is limited to, or None when it is not limited."""
    if token is None or token.pk is None or getattr(token, "limited", None) is False:
        return None
    cached = getattr(token, "_custody_ns_ids", None)
    if cached is None:
        cached = frozenset(token.namespaces.values_list("pk", flat=True))
        token._custody_ns_ids = cached  # type: ignore[attr-defined]
    return cached or None


def token_namespace_names(token: ApiToken | None) -> frozenset[str] | None:
    ids = token_namespace_ids(token)
    if ids is None or token is None:
        return None
    cached = getattr(token, "_custody_ns_names", None)
    if cached is None:
        cached = frozenset(Namespace.objects.filter(pk__in=sorted(ids)).values_list("name", flat=True))
        token._custody_ns_names = cached  # type: ignore[attr-defined]
    return cached  # type: ignore[no-any-return]


# --- object permissions -------------------------------------------------------------------------


def _object_perms(user: Any, user_model: Any, group_model: Any, codenames: tuple[str, ...]) -> dict[str, set[int]]:
    """``{codename: {object id}}`` of the user's own and group grants: one query (UNION)."""
    found: dict[str, set[int]] = {code: set() for code in codenames}
    if not authenticated(user):
        return found
    mine = user_model.objects.filter(user_id=user.pk, permission__codename__in=codenames).values_list(
        "content_object_id", "permission__codename"
    )
    groups = group_model.objects.filter(group__user__id=user.pk, permission__codename__in=codenames).values_list(
        "content_object_id", "permission__codename"
    )
    for object_id, code in mine.union(groups, all=True):
        found[code].add(object_id)
    return found


def namespace_perms(user: Any) -> dict[str, set[int]]:
    cached = getattr(user, "_custody_ns_perms", None)
    if cached is None:
        from governance.permissions.models import NamespaceGroupObjectPermission, NamespaceUserObjectPermission

        cached = _object_perms(
            user, NamespaceUserObjectPermission, NamespaceGroupObjectPermission, (VIEW_NAMESPACE, WRITE_NAMESPACE)
        )
        user._custody_ns_perms = cached
    return cached  # type: ignore[no-any-return]


def model_perms(user: Any) -> dict[str, set[int]]:
    cached = getattr(user, "_custody_model_perms", None)
    if cached is None:
        from governance.registry.models import (
            RegisteredModelGroupObjectPermission,
            RegisteredModelUserObjectPermission,
        )

        cached = _object_perms(
            user,
            RegisteredModelUserObjectPermission,
            RegisteredModelGroupObjectPermission,
            (VIEW_MODEL, CHANGE_MODEL),
        )
        user._custody_model_perms = cached
    return cached  # type: ignore[no-any-return]


def visible_namespace_ids(user: Any) -> frozenset[int] | None:
    """The namespaces ``user`` may read (None: all of them). This is the lineage visibility policy."""
    cached: Any = getattr(user, "_custody_visible", False)
    if cached is not False:
        return cached  # type: ignore[no-any-return]
    visible: frozenset[int] | None
    if not authenticated(user):
        visible = frozenset()
    elif reads_everything(user):
        visible = None
    else:
        perms = namespace_perms(user)
        visible = frozenset(perms[VIEW_NAMESPACE] | perms[WRITE_NAMESPACE])
    limit = token_namespace_ids(token_of(user))
    if limit is not None:
        visible = limit if visible is None else visible & limit
    user._custody_visible = visible
    return visible


def writable_namespace_ids(user: Any) -> frozenset[int] | None:
    """Namespaces ``user`` may write to (None: all), within the token's limit."""
    if not authenticated(user):
        return frozenset()
    writable: frozenset[int] | None = None if is_admin(user) else frozenset(namespace_perms(user)[WRITE_NAMESPACE])
    limit = token_namespace_ids(token_of(user))
    if limit is not None:
        writable = limit if writable is None else writable & limit
    return writable


def sees_namespace(user: Any, namespace_id: int | None) -> bool:
    visible = visible_namespace_ids(user)
    return visible is None or (namespace_id is not None and namespace_id in visible)


def writes_namespace(user: Any, namespace_id: int | None) -> bool:
    writable = writable_namespace_ids(user)
    return writable is None or (namespace_id is not None and namespace_id in writable)


def _token_allows(user: Any, namespace_id: int) -> bool:
    limit = token_namespace_ids(token_of(user))
    return limit is None or namespace_id in limit


def sees_model(user: Any, model: Any) -> bool:
    """May ``user`` see this registered model (and its versions, promotions, deployments)?"""
    if sees_namespace(user, model.namespace_id):
        return True
    perms = model_perms(user)
    return (model.pk in perms[VIEW_MODEL] or model.pk in perms[CHANGE_MODEL]) and _token_allows(
        user, model.namespace_id
    )


def writes_model(user: Any, model: Any) -> bool:
    """May ``user`` register versions of, request promotions of and record deployments of it?"""
    if writes_namespace(user, model.namespace_id):
        return True
    return model.pk in model_perms(user)[CHANGE_MODEL] and _token_allows(user, model.namespace_id)


def visible_models_q(user: Any, prefix: str = "") -> Q:
    """A filter on RegisteredModel (or, with ``prefix`` such as ``"model_version__model__"``, on a
    model related to it) keeping what ``user`` may see."""
    visible = visible_namespace_ids(user)
    if visible is None:
        return Q()
    perms = model_perms(user)
    ids = perms[VIEW_MODEL] | perms[CHANGE_MODEL]
    limit = token_namespace_ids(token_of(user))
    condition = Q(**{f"{prefix}namespace_id__in": sorted(visible)})
    if ids:
        by_model = Q(**{f"{prefix}pk__in": sorted(ids)})
        if limit is not None:
            by_model &= Q(**{f"{prefix}namespace_id__in": sorted(limit)})
        condition |= by_model
    return condition


def filter_models(user: Any, queryset: QuerySet[Any], prefix: str = "") -> QuerySet[Any]:
    return queryset.filter(visible_models_q(user, prefix))


# --- the lineage hooks --------------------------------------------------------------------------


def visibility_policy(user: Any) -> frozenset[int] | None:
    """``lineage.access`` visibility policy: the ids of the namespaces ``user`` may read."""
    return visible_namespace_ids(user)


def _written_namespaces(event: Any) -> list[str]:
    """The namespaces an event writes to: the job's (the dataset's, for a DatasetEvent), and the
    namespace of every output that registers a model version (a ``custody_model`` facet).

    Other datasets the event reads or writes are not checked: their OpenLineage namespaces name
    data sources (``s3://bucket``, ``postgres://host:5432``, ``file``) shared by many teams, not
    a team's namespace; who may *see* them is still governed by grants."""
    names: list[str] = []
    if event.kind == "DatasetEvent":
        if event.dataset is not None:
            names.append(event.dataset.namespace)
    elif event.job_namespace:
        names.append(event.job_namespace)
    names += [mention.namespace for mention in event.outputs if "custody_model" in (mention.facets or {})]
    return sorted(set(names))


def _existing(user: Any, names: Iterable[str]) -> dict[str, int]:
    known: dict[str, int | None] = getattr(user, "_custody_known_namespaces", None) or {}
    wanted = sorted(set(names) - known.keys())
    if wanted:
        found = dict(Namespace.objects.filter(name__in=wanted).values_list("name", "pk"))
        for name in wanted:
            known[name] = found.get(name)
        user._custody_known_namespaces = known
    return {name: pk for name in names if (pk := known.get(name)) is not None}


def write_policy(user: Any, auth: Any, event: Any) -> str | None:
    """``lineage.access`` write policy: why ``user`` (with credentials ``auth``) may not ingest
    ``event``, or None. Checked per event, before anything is stored."""
    if not authenticated(user):
        return "not authenticated"
    token = auth if isinstance(auth, ApiToken) else None
    if token is not None and not hasattr(user, "_custody_token"):
        user._custody_token = token
    written = _written_namespaces(event)
    limit = token_namespace_names(token)
    if limit is not None:
        outside = [name for name in written if name not in limit]
        if outside:
            return (
                f"this API token is limited to namespace(s) {', '.join(sorted(limit))}; "
                f"the event writes to {outside[0]!r}"
            )
        if token is not None and token.scope == ApiToken.Scope.INGEST:
            return None
    if is_admin(user):
        return None
    if token is not None and token.scope == ApiToken.Scope.INGEST and limit is None:
        return None  # an unrestricted ingest-only token: a pipeline credential issued by an admin
    existing = _existing(user, written)
    writable = namespace_perms(user)[WRITE_NAMESPACE]
    refused = [name for name in written if name in existing and existing[name] not in writable]
    if refused:
        return (
            f"no write access to namespace {refused[0]!r}; an admin can grant it "
            f"(manage.py create_user {user.get_username()} --role ... --namespace {refused[0]})"
        )
    new_written = [name for name in written if name not in existing]
    if new_written and not claims_enabled():
        return f"namespace {new_written[0]!r} does not exist; an admin must create it and grant write access"
    if new_written:
        claims = getattr(user, "_custody_claims", None) or {}
        for name in new_written:
            claims[name] = True  # view and write
        user._custody_claims = claims
    return None
