"""Top-level URL configuration."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from governance.core import views as core_views

urlpatterns = [
    path("healthz", core_views.healthz, name="healthz"),
    path("admin/evidence/", include("governance.evidence.admin_urls")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/", include("lineage.urls")),
    path("api/v1/", include("governance.evidence.urls")),
    path("api/v1/", include("governance.registry.urls")),
    path("api/v1/", include("governance.promotions.urls")),
    path("api/v1/audit/", include("governance.audit.urls")),
    path("api/v1/", include("governance.compliance.urls")),
]

handler400 = "governance.core.views.bad_request"
handler403 = "governance.core.views.permission_denied"
handler404 = "governance.core.views.not_found"
handler500 = "governance.core.views.server_error"
