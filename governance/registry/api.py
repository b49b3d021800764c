"""``/api/v1/models/``: registered models and their versions.

- ``GET /models/?namespace=&q=`` lists the models the caller may see; ``POST /models/``
  ``{"namespace", "name", "description"}`` registers one (write access to the namespace).
- ``GET /models/{name}`` (``?namespace=`` when the name exists in several visible namespaces).
- ``GET /models/{name}/versions/``; ``POST`` ``{"version", "artifact_uri", "artifact_digest",
  "framework", "framework_version", "model_class", "hyperparameters", "params", "metrics",
  "environment_digest", "description", "run_id"}`` registers a version (write access to the
  model); versions also come from ingested ``custody_model`` facets.
- ``GET /models/{name}/versions/{version}``: the version, its producing run, its promotion
  requests and where it is deployed; ``.../evidence``: its lineage closure (evidence digest,
  runs, consumed dataset versions and schemas, schema changes), checks and history.

Models the caller cannot see answer 404, as if they did not exist.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, OuterRef, Subquery
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from governance.permissions import access
from governance.registry import services
from governance.registry.apiutil import (
    ERRORS,
    LIMIT,
    NAMESPACE,
    OFFSET,
    GovernanceView,
    body,
    page,
    paging,
    path_param,
    query,
    run_ref,
)
from governance.registry.models import ModelVersion, RegisteredModel
from lineage.api.marquez import ts

NAME = path_param("name", OpenApiTypes.STR, "The registered model's name.")
VERSION = path_param("version", OpenApiTypes.STR, "The version label.")


def model_json(model: RegisteredModel, latest: str | None = None, count: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": model.pk,
        "namespace": model.namespace.name,
        "name": model.name,
        "description": model.description,
        "created_at": ts(model.created_at),
        "updated_at": ts(model.updated_at),
    }
    if latest is not None or count is not None:
        data["latest_version"] = latest
        data["versions_count"] = count or 0
    return data


def version_json(user: Any, version: ModelVersion) -> dict[str, Any]:
    model = version.model
    return {
        "id": version.pk,
        "namespace": model.namespace.name,
        "model": model.name,
        "version": version.version,
        "artifact_uri": version.artifact_uri or None,
        "artifact_digest": version.artifact_digest or None,
        "artifact_size": version.artifact_size,
        "framework": version.framework or None,
        "framework_version": version.framework_version or None,
        "model_class": version.model_class or None,
        "hyperparameters": version.hyperparameters,
        "params": version.params,
        "metrics": version.metrics,
        "environment_digest": version.environment_digest or None,
        "description": version.description,
        "source": version.source,
        "run": run_ref(user, version.run),
        "lineage_node_id": f"model:{model.namespace.name}:{model.name}:{version.version}",
        "created_at": ts(version.created_at),
        "updated_at": ts(version.updated_at),
    }


MODEL_BODY = inline_serializer(
    "RegisterModel",
    fields={
        "namespace": serializers.CharField(),
        "name": serializers.CharField(),
        "description": serializers.CharField(required=False),
    },
)
VERSION_BODY = inline_serializer(
    "RegisterModelVersion",
    fields={
        "version": serializers.CharField(),
        "artifact_uri": serializers.CharField(required=False),
        "artifact_digest": serializers.CharField(required=False, help_text="sha256:<64 hex>"),
        "artifact_size": serializers.IntegerField(required=False),
        "framework": serializers.CharField(required=False),
        "framework_version": serializers.CharField(required=False),
        "model_class": serializers.CharField(required=False),
        "hyperparameters": serializers.DictField(required=False),
        "params": serializers.DictField(required=False),
        "metrics": serializers.DictField(required=False),
        "environment_digest": serializers.CharField(required=False, help_text="sha256:<64 hex>"),
        "description": serializers.CharField(required=False),
        "run_id": serializers.CharField(required=False, help_text="The producing run's OpenLineage runId."),
    },
)


class ModelListView(GovernanceView):
    @extend_schema(
        operation_id="models_list",
        summary="Registered models the caller may see",
        parameters=[
            query("namespace", OpenApiTypes.STR, "Only this namespace."),
            query("q", OpenApiTypes.STR, "Name contains."),
            LIMIT,
            OFFSET,
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        limit, offset = paging(request)
        qs = access.filter_models(request.user, RegisteredModel.objects.select_related("namespace"))
        namespace = request.query_params.get("namespace")
        if namespace:
            qs = qs.filter(namespace__name=namespace)
        text = (request.query_params.get("q") or "").strip()
        if text:
            qs = qs.filter(name__icontains=text[:512])
        latest = ModelVersion.objects.filter(model=OuterRef("pk")).order_by("-created_at", "-pk").values("version")[:1]
        rows = qs.order_by("namespace__name", "name").annotate(
            latest=Subquery(latest), count=Count("versions", distinct=True)
        )
        items = [model_json(m, m.latest, m.count) for m in rows[offset : offset + limit]]
        return Response(page(items, qs.count(), limit, offset))

    @extend_schema(
        operation_id="models_create",
        summary="Register a model",
        request=MODEL_BODY,
        responses={201: OpenApiTypes.OBJECT, 409: OpenApiResponse(description="It exists already."), **ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = body(request)
        model = services.create_model(request.user, data.get("namespace"), data.get("name"), data.get("description"))
        return Response(model_json(model, None, 0), status=201)


class ModelDetailView(GovernanceView):
    @extend_schema(
        operation_id="models_retrieve",
        summary="A registered model",
        parameters=[NAME, NAMESPACE],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request, name: str) -> Response:
        model = services.find_model(request.user, name, request.query_params.get("namespace"))
        versions = ModelVersion.objects.filter(model=model).order_by("-created_at", "-pk")
        latest = versions.values_list("version", flat=True).first()
        return Response(model_json(model, latest, versions.count()))


class VersionListView(GovernanceView):
    @extend_schema(
        operation_id="model_versions_list",
        summary="Versions of a registered model, newest first",
        parameters=[NAME, NAMESPACE, LIMIT, OFFSET],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request, name: str) -> Response:
        model = services.find_model(request.user, name, request.query_params.get("namespace"))
        limit, offset = paging(request)
        qs = (
            ModelVersion.objects.filter(model=model)
            .select_related("model__namespace", "run__job__namespace")
            .order_by("-created_at", "-pk")
        )
        items = [version_json(request.user, v) for v in qs[offset : offset + limit]]
        return Response(page(items, qs.count(), limit, offset))

    @extend_schema(
        operation_id="model_versions_create",
        summary="Register a model version",
        parameters=[NAME, NAMESPACE],
        request=VERSION_BODY,
        responses={201: OpenApiTypes.OBJECT, 409: OpenApiResponse(description="The version exists."), **ERRORS},
    )
    def post(self, request: Request, name: str) -> Response:
        data = body(request)
        namespace = request.query_params.get("namespace") or data.get("namespace")
        model = services.find_model(request.user, name, namespace)
        version = services.register_version(request.user, model, data)
        version = ModelVersion.objects.select_related("model__namespace", "run__job__namespace").get(pk=version.pk)
        return Response(version_json(request.user, version), status=201)


def _version(request: Request, name: str, label: str) -> ModelVersion:
    model = services.find_model(request.user, name, request.query_params.get("namespace"))
    version = services.find_version(model, label)
    return ModelVersion.objects.select_related("model__namespace", "run__job__namespace", "run__code_commit").get(
        pk=version.pk
    )


class VersionDetailView(GovernanceView):
    @extend_schema(
        operation_id="model_versions_retrieve",
        summary="A model version, its producing run, promotions and deployments",
        parameters=[NAME, VERSION, NAMESPACE],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request, name: str, version: str) -> Response:
        from governance.promotions.api import version_governance

        row = _version(request, name, version)
        return Response({**version_json(request.user, row), **version_governance(request.user, row)})


class VersionEvidenceView(GovernanceView):
    @extend_schema(
        operation_id="model_versions_evidence",
        summary="Evidence of a model version: lineage closure and digest, checks, promotions, deployments",
        parameters=[NAME, VERSION, NAMESPACE],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request, name: str, version: str) -> Response:
        from governance.promotions.api import version_evidence

        row = _version(request, name, version)
        return Response(version_evidence(request.user, row))
