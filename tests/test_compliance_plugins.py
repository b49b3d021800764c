"""A third-party rule in a separate package (tests/plugin_rules) is picked up through its entry point."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from governance.compliance.engine import run_rules
from governance.compliance.models import Finding
from governance.compliance.rules import ENTRY_POINT_GROUP, all_rules
from tests.test_compliance_graph import ago, model_version, run

PLUGIN = Path(__file__).parent / "plugin_rules"


@pytest.fixture(scope="module")
def installed_plugin() -> None:
    """Installed by requirements-dev.txt (editable); if not, install it now with pip."""
    if not any(ep.name == "undocumented_model" for ep in entry_points(group=ENTRY_POINT_GROUP)):
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", str(PLUGIN)],
            check=True,
        )
        import importlib

        importlib.invalidate_caches()
    assert any(ep.name == "undocumented_model" for ep in entry_points(group=ENTRY_POINT_GROUP))


@pytest.mark.django_db
def test_third_party_rule_found_through_its_entry_point(installed_plugin: None) -> None:
    rules = all_rules()
    assert "plugin.undocumented_model" in rules
    assert type(rules["plugin.undocumented_model"]).__module__ == "custody_plugin_rules"
    mv = model_version("nodoc", run("train", ago(1)))
    run_rules(["plugin.undocumented_model"])
    finding = Finding.objects.get(rule_id="plugin.undocumented_model")
    assert finding.subject == f"model:{mv.model_id}" and finding.severity == "low" and finding.status == "open"
    mv.model.description = "Churn model"
    mv.model.save()
    run_rules()  # every rule, plugins included
    assert Finding.objects.get(rule_id="plugin.undocumented_model").status == "resolved"
