"""Who may read what in the lineage graph: a small registry that governance hooks into.

Namespaces are the unit of access control. A *visibility policy* is a function ``policy(user)``
that returns the ids of the namespaces the user may see, or ``None`` for "everything". The
default policy lets every authenticated caller see everything; governance registers its real
policy (roles, per-namespace permissions) with :func:`set_visibility_policy` when it is ready,
so lineage never imports governance.

Every read of the lineage API goes through :func:`visibility_for`:

- lists leave out objects in namespaces the caller cannot see;
- details of such objects answer 404, exactly as if they did not exist (no existence leak);
- graph traversals keep going *through* invisible nodes, which come back as redacted
  placeholders (their type and an opaque id, never a name or facets), so the shape of the
  graph stays honest without disclosing what is hidden.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db.models import Model, QuerySet
from django.utils.crypto import salted_hmac

VisibilityPolicy = Callable[[Any], Iterable[int] | None]
"""``policy(user) -> None | iterable of visible namespace ids`` (None: the user sees everything)."""

# A namespace name can never contain '<' or '>' (ingestion refuses them), so ids built on this
# marker cannot collide with the id of a real node.
REDACTED = "<redacted>"

M = TypeVar("M", bound=Model)


def allow_everything(user: Any) -> None:
    """The default policy: every authenticated caller reads every namespace."""
    return None


_policy: VisibilityPolicy = allow_everything


def set_visibility_policy(policy: VisibilityPolicy | None) -> VisibilityPolicy:
    """Register the policy used by every lineage read (``None`` restores the default).

    Returns the previously registered policy, so callers can restore it.
    """
    global _policy
    previous = _policy
    _policy = policy if policy is not None else allow_everything
    return previous


def get_visibility_policy() -> VisibilityPolicy:
    return _policy


@contextmanager
def visibility_policy(policy: VisibilityPolicy | None) -> Iterator[None]:
    """Use ``policy`` inside the block only (for tests and scripts)."""
    previous = set_visibility_policy(policy)
    try:
        yield
    finally:
        set_visibility_policy(previous)


@dataclass(frozen=True)
class Visibility:
    """What one caller may see: ``namespace_ids`` is None when unrestricted."""

    namespace_ids: frozenset[int] | None = None

    @property
    def unrestricted(self) -> bool:
        return self.namespace_ids is None

    def sees(self, namespace_id: int | None) -> bool:
        if self.namespace_ids is None:
            return True
        return namespace_id is not None and namespace_id in self.namespace_ids

    def filter(self, queryset: QuerySet[M], field: str = "namespace_id") -> QuerySet[M]:
        """``queryset`` restricted to rows whose ``field`` names a visible namespace."""
        if self.namespace_ids is None:
            return queryset
        return queryset.filter(**{f"{field}__in": sorted(self.namespace_ids)})


EVERYTHING = Visibility(None)


def visibility_for(user: Any) -> Visibility:
    """Ask the registered policy what ``user`` may see."""
    visible = _policy(user)
    if visible is None:
        return EVERYTHING
    return Visibility(frozenset(int(pk) for pk in visible))


def opaque_id(kind: str, pk: int) -> str:
    """A stable identifier for a hidden node that reveals nothing about it (HMAC of kind and row id)."""
    return salted_hmac("custody.lineage.redacted", f"{kind}:{pk}", algorithm="sha256").hexdigest()[:20]


def redacted_node_id(kind: str, pk: int) -> str:
    """The graph id of a hidden node, e.g. ``dataset:<redacted>:3f9c...``."""
    return f"{kind}:{REDACTED}:{opaque_id(kind, pk)}"


# --- writes ----------------------------------------------------------------------------------------
WritePolicy = Callable[[Any, Any, Any], str | None]
"""``policy(user, auth, event) -> None | reason``: may ``user`` (with credentials ``auth``, e.g.
an API token) ingest ``event`` (a :class:`lineage.ingest.event.ParsedEvent`)? A reason refuses it:
the event is answered 403 (or failed in a batch) and nothing of it is stored."""


def allow_every_write(user: Any, auth: Any, event: Any) -> None:
    """The default policy: every authenticated caller may ingest into every namespace."""
    return None


_write_policy: WritePolicy = allow_every_write


def set_write_policy(policy: WritePolicy | None) -> WritePolicy:
    """Register the policy every ingested event is checked against (``None``: the default).
    Returns the previous policy."""
    global _write_policy
    previous = _write_policy
    _write_policy = policy if policy is not None else allow_every_write
    return previous


def write_denial(user: Any, auth: Any, event: Any) -> str | None:
    """Why ``user`` may not ingest ``event``, or None when it may."""
    return _write_policy(user, auth, event)
