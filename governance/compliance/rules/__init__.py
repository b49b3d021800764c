"""Audit rules: small classes with an ``id``, a ``severity`` and ``evaluate(context)`` yielding
:class:`Hit` objects. Built-ins live in :mod:`.builtin`; third-party rules are found through the
entry-point group ``custody.audit_rules`` (each entry point names a Rule subclass, an instance, or a
callable returning a list of either)::

    # pyproject.toml of a plugin package
    [project.entry-points."custody.audit_rules"]
    my_rule = "my_package.rules:MyRule"
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any, ClassVar

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "custody.audit_rules"


@dataclass
class Hit:
    """One thing a rule found. ``subject`` identifies it stably across runs (dedup key with the rule)."""

    subject: str
    title: str
    namespace_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    severity: str | None = None  # defaults to the rule's


@dataclass
class Context:
    now: datetime
    cache: dict[str, Any] = field(default_factory=dict)


class Rule:
    id: ClassVar[str] = ""
    severity: ClassVar[str] = "medium"
    description: ClassVar[str] = ""

    def evaluate(self, context: Context) -> Iterable[Hit]:
        raise NotImplementedError


def _as_rules(obj: Any) -> Iterator[Rule]:
    if isinstance(obj, type) and issubclass(obj, Rule):
        yield obj()
    elif isinstance(obj, Rule):
        yield obj
    elif callable(obj):
        for item in obj():
            yield from _as_rules(item)
    else:
        raise TypeError(f"not an audit rule: {obj!r}")


def all_rules() -> dict[str, Rule]:
    """Built-ins first, then plugins (a plugin cannot replace a built-in id)."""
    from governance.compliance.rules import builtin

    rules: dict[str, Rule] = {rule.id: rule for rule in (cls() for cls in builtin.BUILTIN_RULES)}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = list(_as_rules(ep.load()))
        except Exception:  # a broken plugin must not stop the built-ins
            logger.exception("audit rule plugin %s failed to load", ep.name)
            continue
        for rule in loaded:
            if not rule.id or rule.id in rules:
                logger.warning("audit rule plugin %s: id %r missing or taken; ignored", ep.name, rule.id)
                continue
            rules[rule.id] = rule
    return rules
