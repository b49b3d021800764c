"""Registry routes, included under ``api/v1/``. Model names may contain '/': the version routes
come first and the name is matched lazily."""

from django.urls import re_path

from governance.registry import api

urlpatterns = [
    re_path(r"^models/?$", api.ModelListView.as_view(), name="models"),
    re_path(
        r"^models/(?P<name>.+?)/versions/(?P<version>[^/]+)/evidence/?$",
        api.VersionEvidenceView.as_view(),
        name="model-version-evidence",
    ),
    re_path(
        r"^models/(?P<name>.+?)/versions/(?P<version>[^/]+)/?$", api.VersionDetailView.as_view(), name="model-version"
    ),
    re_path(r"^models/(?P<name>.+?)/versions/?$", api.VersionListView.as_view(), name="model-versions"),
    re_path(r"^models/(?P<name>.+?)/?$", api.ModelDetailView.as_view(), name="model"),
]
