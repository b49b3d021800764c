"""Promotion, deployment and policy routes, included under ``api/v1/`` (trailing slash optional)."""

from django.urls import re_path

from governance.promotions import api

ID = r"(?P<pk>[0-9]+)"

urlpatterns = [
    re_path(r"^promotions/?$", api.PromotionListView.as_view(), name="promotions"),
    re_path(rf"^promotions/{ID}/?$", api.PromotionDetailView.as_view(), name="promotion"),
    re_path(rf"^promotions/{ID}/approve/?$", api.PromotionApproveView.as_view(), name="promotion-approve"),
    re_path(rf"^promotions/{ID}/reject/?$", api.PromotionRejectView.as_view(), name="promotion-reject"),
    re_path(rf"^promotions/{ID}/withdraw/?$", api.PromotionWithdrawView.as_view(), name="promotion-withdraw"),
    re_path(rf"^promotions/{ID}/comment/?$", api.PromotionCommentView.as_view(), name="promotion-comment"),
    re_path(r"^deployments/?$", api.DeploymentListView.as_view(), name="deployments"),
    re_path(rf"^deployments/{ID}/?$", api.DeploymentDetailView.as_view(), name="deployment"),
    re_path(rf"^deployments/{ID}/rollback/?$", api.DeploymentRollbackView.as_view(), name="deployment-rollback"),
    re_path(r"^policies/?$", api.PolicyListView.as_view(), name="policies"),
    re_path(rf"^policies/{ID}/?$", api.PolicyDetailView.as_view(), name="policy"),
]
