"""Evidence-pack routes, included under ``api/v1/`` before the registry's (model names may contain
'/': the name is matched lazily, as in governance/registry/urls.py)."""

from django.urls import re_path

from governance.evidence import views

urlpatterns = [
    re_path(
        r"^models/(?P<name>.+?)/versions/(?P<version>[^/]+)/evidence/pack/?$",
        views.EvidencePackView.as_view(),
        name="model-version-evidence-pack",
    ),
    re_path(
        r"^models/(?P<name>.+?)/versions/(?P<version>[^/]+)/evidence/?$",
        views.EvidenceView.as_view(),
        name="model-version-evidence",  # same name as the registry route it answers for
    ),
]
