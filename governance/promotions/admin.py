"""Admin for approvers and compliance officers: promotion requests with their evidence (lineage
closure, schema changes, checks), approve / reject / comment with a reason through the same
service layer as the API, deployment history per environment and "what ran where as of T",
and promotion policies (new versions by admins only).

Nothing here writes rows directly: every action calls :mod:`governance.promotions.services`,
which checks roles, separation of duties and state under a row lock, and audits the action.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Case, IntegerField, Model, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from governance.core.errors import ApiError
from governance.permissions import access
from governance.promotions import clock, services
from governance.promotions.models import Comment, Decision, Deployment, PromotionPolicy, PromotionRequest
from governance.registry.admin import GovernanceReadAdmin, can_use_governance_admin, lineage_link
from governance.registry.apiutil import redact_evidence
from lineage.api.read_views import parse_instant
from lineage.graph import InvalidQuery

STATE_ORDER = Case(
    When(state="pending", then=Value(0)),
    When(state="approved", then=Value(1)),
    default=Value(2),
    output_field=IntegerField(),
)


def _table(headers: list[str], rows: list[list[Any]]) -> SafeString:
    if not rows:
        return format_html("<p>{}</p>", "none")
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "", "<tr>{}</tr>", ((format_html_join("", "<td>{}</td>", ((c,) for c in row)),) for row in rows)
    )
    return format_html(
        '<table class="custody-evidence"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', head, body
    )


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_use_governance_admin(request)


class DecisionInline(ReadOnlyInline):
    model = Decision
    fields = ("created_at", "user_name", "kind", "role", "reason", "stale", "policy_version")
    readonly_fields = fields


class CommentInline(ReadOnlyInline):
    model = Comment
    fields = ("created_at", "author_name", "text")
    readonly_fields = fields


class DecisionForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "cols": 80}), required=False)


class PendingFilter(admin.SimpleListFilter):
    title = "open"
    parameter_name = "open"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("pending", "pending"), ("live", "live approvals"), ("flagged", "flagged for review")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = clock.now()
        if self.value() == "pending":
            return queryset.filter(state="pending").exclude(expires_at__lte=now)
        if self.value() == "live":
            return queryset.filter(state="approved").exclude(expires_at__lte=now)
        if self.value() == "flagged":
            return queryset.filter(flagged_for_review=True)
        return queryset


@admin.register(PromotionRequest)
class PromotionRequestAdmin(GovernanceReadAdmin):
    change_form_template = "admin/promotions/promotionrequest/change_form.html"
    list_display = (
        "id",
        "model_version",
        "environment",
        "current_state",
        "approvals",
        "requested_by_name",
        "created_at",
        "expires_at",
        "flagged_for_review",
    )
    list_display_links = ("id", "model_version")
    list_select_related = ("model_version__model__namespace", "policy")
    list_filter = (PendingFilter, "state", "environment", "break_glass")
    search_fields = ("model_version__model__name", "model_version__version", "requested_by_name")
    inlines = [DecisionInline, CommentInline]
    fieldsets = [
        (
            None,
            {
                "fields": (
                    "model_version",
                    "environment",
                    "current_state",
                    "state_reason",
                    "approvals",
                    "policy_summary",
                    "requested_by_name",
                    "reason",
                    "created_at",
                    "approved_at",
                    "expires_at",
                    "break_glass",
                    "flagged_for_review",
                )
            },
        ),
        ("Checks", {"fields": ("checks_table",)}),
        ("Evidence", {"fields": ("evidence_digest", "closure_runs", "closure_inputs", "closure_schema_changes")}),
    ]
    readonly_fields = (
        "model_version",
        "environment",
        "current_state",
        "state_reason",
        "approvals",
        "policy_summary",
        "requested_by_name",
        "reason",
        "created_at",
        "approved_at",
        "expires_at",
        "break_glass",
        "flagged_for_review",
        "checks_table",
        "evidence_digest",
        "closure_runs",
        "closure_inputs",
        "closure_schema_changes",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        qs = super().get_queryset(request).annotate(open_first=STATE_ORDER).order_by("open_first", "-created_at")
        return access.filter_models(request.user, qs, "model_version__model__")

    def get_urls(self) -> list[Any]:
        opts = self.model._meta
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:object_id>/decide/<str:verb>/",
                wrap(self.decide_view),
                name=f"{opts.app_label}_{opts.model_name}_decide",
            ),
            *super().get_urls(),
        ]

    def decide_view(self, request: HttpRequest, object_id: int, verb: str) -> HttpResponse:
        """Approve, reject or comment on one request, with a reason, through the service layer."""
        if verb not in ("approve", "reject", "comment"):
            return HttpResponseRedirect(reverse("admin:index"))
        obj = self.get_object(request, str(object_id))
        if obj is None or not self.has_view_permission(request, obj):
            messages.error(request, "No such promotion request.")
            return HttpResponseRedirect(reverse("admin:promotions_promotionrequest_changelist"))
        change_url = reverse("admin:promotions_promotionrequest_change", args=[obj.pk])
        form = DecisionForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            reason = form.cleaned_data["reason"]
            try:
                if verb == "approve":
                    services.approve(request.user, obj.pk, reason, evidence_digest=request.POST.get("evidence_digest"))
                    messages.success(request, f"You approved promotion request #{obj.pk}.")
                elif verb == "reject":
                    services.reject(request.user, obj.pk, reason)
                    messages.success(request, f"You rejected promotion request #{obj.pk}.")
                else:
                    services.comment(request.user, obj.pk, reason)
                    messages.success(request, "Comment added.")
                return HttpResponseRedirect(change_url)
            except ApiError as exc:
                messages.error(request, str(exc.detail))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": obj,
            "verb": verb,
            "form": form,
            "change_url": change_url,
            "title": f"{verb.capitalize()} promotion request #{obj.pk}",
        }
        return render(request, "admin/promotions/promotionrequest/decide.html", context)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        extra = dict(extra_context or {})
        obj = self.get_object(request, object_id)
        if obj is not None:
            extra["decide_urls"] = {
                verb: reverse("admin:promotions_promotionrequest_decide", args=[obj.pk, verb])
                for verb in ("approve", "reject", "comment")
            }
            extra["can_decide"] = obj.effective_state(clock.now()) == "pending" and not services.is_read_only(
                request.user
            )
            extra["lineage"] = lineage_link(
                f"model:{obj.model_version.model.namespace.name}:{obj.model_version.model.name}:"
                f"{obj.model_version.version}"
            )
        return super().change_view(request, object_id, form_url, extra)

    @admin.display(description="state")
    def current_state(self, obj: PromotionRequest) -> str:
        return obj.effective_state(clock.now())

    @admin.display(description="approvals")
    def approvals(self, obj: PromotionRequest) -> str:
        return f"{obj.approvals_count} of {obj.policy.approvals_required}"

    @admin.display(description="policy")
    def policy_summary(self, obj: PromotionRequest) -> str:
        p = obj.policy
        roles = ", ".join(p.eligible_roles) or "-"
        sod = "separation of duties" if p.separation_of_duties else "no separation of duties"
        return f"{p} — {p.approvals_required} approval(s) by {roles}; {sod}"

    @admin.display(description="required checks")
    def checks_table(self, obj: PromotionRequest) -> SafeString:
        return _table(
            ["check", "result", "detail"],
            [[c.get("name"), "pass" if c.get("passed") else "FAIL", c.get("detail")] for c in obj.checks or []],
        )

    def _evidence(self, obj: PromotionRequest) -> dict[str, Any]:
        viewer = getattr(obj, "_custody_viewer", None)  # set per request by get_object
        return redact_evidence(viewer, obj.evidence or {}) if viewer is not None else {}

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            obj._custody_viewer = request.user
        return obj

    @admin.display(description="runs and code commits")
    def closure_runs(self, obj: PromotionRequest) -> SafeString:
        rows = []
        for run in self._evidence(obj).get("runs", []):
            if run.get("redacted"):
                rows.append([run.get("run_id"), "(hidden)", "", ""])
                continue
            commit = run.get("code_commit") or {}
            sha = (commit.get("sha") or "")[:12]
            dirty = "dirty" if commit.get("dirty") else "clean" if commit.get("dirty") is False else ""
            job = run.get("job", {})
            rows.append(
                [
                    run["run_id"],
                    f"{job.get('namespace')}:{job.get('name')}",
                    f"{sha} {dirty}",
                    commit.get("author") or "",
                ]
            )
        return _table(["run", "job", "commit", "author"], rows)

    @admin.display(description="consumed dataset versions")
    def closure_inputs(self, obj: PromotionRequest) -> SafeString:
        rows = []
        for item in self._evidence(obj).get("inputs", []):
            ds = item.get("dataset", {})
            rows.append(
                [
                    f"{ds.get('namespace')}:{ds.get('name')}",
                    item.get("version") or "?",
                    (item.get("schema_digest") or "")[:16],
                    item.get("resolution") or "",
                    item.get("run_id"),
                ]
            )
        return _table(["dataset", "version", "schema", "resolution", "read by run"], rows)

    @admin.display(description="schema changes")
    def closure_schema_changes(self, obj: PromotionRequest) -> SafeString:
        rows = [
            [
                f"{c['dataset']['namespace']}:{c['dataset']['name']}",
                c.get("version"),
                c.get("level"),
                c.get("explanation"),
            ]
            for c in self._evidence(obj).get("schema_changes", [])
        ]
        return _table(["dataset", "version", "level", "explanation"], rows)


@admin.register(Deployment)
class DeploymentAdmin(GovernanceReadAdmin):
    change_list_template = "admin/promotions/deployment/change_list.html"
    list_display = (
        "deployed_at",
        "environment",
        "target",
        "model_version",
        "deployed_by_name",
        "promotion",
        "rollback_of",
        "break_glass",
        "flagged_for_review",
    )
    list_select_related = ("model_version__model__namespace",)
    list_filter = ("environment", "break_glass", "flagged_for_review")
    search_fields = ("model_version__model__name", "model_version__version", "target")
    ordering = ("-deployed_at", "-id")
    readonly_fields = (
        "model_version",
        "environment",
        "target",
        "deployed_at",
        "recorded_at",
        "deployed_by_name",
        "replaces",
        "rollback_of",
        "promotion",
        "approval_required",
        "break_glass",
        "flagged_for_review",
        "reason",
        "metadata",
        "lineage",
    )
    fields = readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return access.filter_models(request.user, super().get_queryset(request), "model_version__model__")

    @admin.display(description="lineage")
    def lineage(self, obj: Deployment) -> SafeString:
        return lineage_link(f"deployment:{obj.pk}")

    def get_urls(self) -> list[Any]:
        opts = self.model._meta
        return [
            path(
                "as-of/", self.admin_site.admin_view(self.as_of_view), name=f"{opts.app_label}_{opts.model_name}_asof"
            ),
            *super().get_urls(),
        ]

    def as_of_view(self, request: HttpRequest) -> HttpResponse:
        """What was deployed where at an instant, per environment and target."""
        if not self.has_view_permission(request):
            return HttpResponseRedirect(reverse("admin:index"))
        raw = (request.GET.get("at") or "").strip()
        error = ""
        at = clock.now()
        if raw:
            try:
                at = parse_instant(raw, "at")
            except InvalidQuery as exc:
                error = exc.detail
        rows = services.deployments_as_of(at).select_related("model_version__model__namespace")
        rows = access.filter_models(request.user, rows, "model_version__model__")
        environment = request.GET.get("environment")
        if environment:
            rows = rows.filter(environment=environment)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "What was deployed where",
            "at": at,
            "raw": raw,
            "error": error,
            "rows": list(rows),
            "environments": sorted(set(Deployment.objects.values_list("environment", flat=True))),
            "environment": environment or "",
        }
        return TemplateResponse(request, "admin/promotions/deployment/as_of.html", context)


class PolicyForm(forms.ModelForm):
    approval_ttl_hours = forms.FloatField(required=False, min_value=0.01, help_text="Empty: approvals do not expire.")
    request_ttl_hours = forms.FloatField(required=False, min_value=0.01, help_text="Empty: requests do not expire.")

    class Meta:
        model = PromotionPolicy
        fields = (
            "environment",
            "namespace",
            "model",
            "approvals_required",
            "eligible_roles",
            "separation_of_duties",
            "required_checks",
            "require_approval_to_deploy",
            "description",
        )


@admin.register(PromotionPolicy)
class PromotionPolicyAdmin(GovernanceReadAdmin):
    """Policies are versioned: "add" creates a new version of a scope's policy (admins only)."""

    form = PolicyForm
    list_display = (
        "environment",
        "scope_label",
        "version",
        "active",
        "approvals_required",
        "roles",
        "separation_of_duties",
        "require_approval_to_deploy",
        "created_at",
    )
    list_filter = ("environment", "active")
    list_select_related = ("namespace", "model__namespace")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return can_use_governance_admin(request) and access.is_admin(request.user)

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        if obj is None:
            return ()
        return [f.name for f in PromotionPolicy._meta.concrete_fields if f.name != "id"]

    def get_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        if obj is None:
            return [*PolicyForm.Meta.fields, "approval_ttl_hours", "request_ttl_hours"]
        return self.get_readonly_fields(request, obj)

    def save_model(self, request: HttpRequest, obj: PromotionPolicy, form: Any, change: bool) -> None:
        data = form.cleaned_data
        policy = services.create_policy(
            request.user,
            environment=data["environment"],
            namespace=data.get("namespace"),
            model=data.get("model"),
            approvals_required=data["approvals_required"],
            eligible_roles=data.get("eligible_roles"),
            separation_of_duties=data.get("separation_of_duties", True),
            approval_ttl_hours=data.get("approval_ttl_hours"),
            request_ttl_hours=data.get("request_ttl_hours"),
            required_checks=data.get("required_checks") or [],
            require_approval_to_deploy=data.get("require_approval_to_deploy", True),
            description=data.get("description") or "",
        )
        obj.pk = policy.pk
        obj.__dict__.update({k: v for k, v in policy.__dict__.items() if not k.startswith("_")})

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> Any:
        try:
            return super().add_view(request, form_url, extra_context)
        except ApiError as exc:
            messages.error(request, str(exc.detail))
            return HttpResponseRedirect(request.path)

    @admin.display(description="scope")
    def scope_label(self, obj: PromotionPolicy) -> str:
        if obj.model_id:
            return f"model {obj.model}"
        if obj.namespace_id:
            return f"namespace {obj.namespace}"
        return "everywhere"

    @admin.display(description="eligible roles")
    def roles(self, obj: PromotionPolicy) -> str:
        return ", ".join(obj.eligible_roles)
