"""A third-party audit rule, installed separately and found through ``custody.audit_rules``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from governance.compliance.rules import Hit, Rule


class UndocumentedModel(Rule):
    id = "plugin.undocumented_model"
    severity = "low"
    description = "A registered model without a description."

    def evaluate(self, context: Any) -> Iterator[Hit]:
        from governance.registry.models import RegisteredModel

        for model in RegisteredModel.objects.filter(description=""):
            yield Hit(subject=f"model:{model.pk}", title=f"{model} has no description", namespace_id=model.namespace_id)
