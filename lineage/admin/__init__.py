"""Django admin of the lineage graph, for compliance officers and auditors.

Read-only evidence, role-based viewing and list pages that stay fast on million-row tables: see
:mod:`lineage.admin.base` for the rules every model admin here follows.
"""

from lineage.admin import datasets, edges, events, jobs, namespaces
from lineage.admin.base import LineageAdmin, can_edit_lineage, can_view_lineage

__all__ = ["LineageAdmin", "can_edit_lineage", "can_view_lineage", "datasets", "edges", "events", "jobs", "namespaces"]
