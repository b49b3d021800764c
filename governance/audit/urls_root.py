"""The project's URLs plus the audit routes, for tests until ``governance/urls.py`` includes
``path("api/v1/audit/", include("governance.audit.urls"))`` itself (then this adds nothing)."""

from django.urls import include, path

from governance import urls as project

urlpatterns = [path("api/v1/audit/", include("governance.audit.urls")), *project.urlpatterns]

handler400 = project.handler400
handler403 = project.handler403
handler404 = project.handler404
handler500 = project.handler500
