"""The admin's evidence-pack download, mounted at ``admin/evidence/`` before the admin site."""

from django.urls import path

from governance.evidence import views

urlpatterns = [
    path("modelversion/<int:pk>/<str:fmt>/", views.admin_download_view, name="evidence-admin-download"),
]
