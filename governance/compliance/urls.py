from django.urls import path

from governance.compliance import api

urlpatterns = [
    path("findings/", api.FindingList.as_view(), name="findings"),
    path("findings/<int:pk>", api.FindingDetail.as_view(), name="finding"),
    path("legal-holds/", api.LegalHoldList.as_view(), name="legal-holds"),
    path("legal-holds/<int:pk>/release", api.LegalHoldRelease.as_view(), name="legal-hold-release"),
]
