"""Registering models and model versions (from the API, the admin and ingested lineage).

Each change is recorded on the audit trail in the transaction that makes it. Errors are
:class:`governance.core.errors.ApiError` with the HTTP status the API answers.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.dispatch import Signal
from django.utils import timezone

from governance.audit.services import record, snapshot
from governance.core.errors import ApiError
from governance.permissions import access
from governance.registry.models import ModelVersion, RegisteredModel
from lineage.models import DatasetVersion, Namespace, Run

logger = logging.getLogger(__name__)

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
MAX_NAME = 512
MAX_LABEL = 255

#: Sent (inside the transaction) when a model version's artifact or environment digest, or its
#: producing run, changed after it was registered: kwargs ``version`` (ModelVersion). Promotions
#: listen, to recompute the evidence of open requests.
version_changed = Signal()

VERSION_FIELDS = (
    "artifact_uri",
    "artifact_digest",
    "artifact_size",
    "framework",
    "framework_version",
    "model_class",
    "hyperparameters",
    "params",
    "metrics",
    "environment_digest",
    "description",
)
#: Fields whose change alters the version's evidence (and so makes open promotions stale).
EVIDENCE_FIELDS = ("artifact_digest", "environment_digest", "run_id")


# --- validation ---------------------------------------------------------------------------------


def clean_name(value: Any, what: str = "name") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"{what} is required and must be a non-empty string.")
    if value != value.strip():
        raise ApiError(400, f"{what} must not start or end with white space.")
    if len(value) > MAX_NAME:
        raise ApiError(400, f"{what} must be at most {MAX_NAME} characters.")
    if "\x00" in value:
        raise ApiError(400, f"{what} must not contain NUL characters.")
    return value


def clean_label(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise ApiError(400, "version is required: a non-empty string without surrounding white space.")
    if len(value) > MAX_LABEL or "/" in value or "\x00" in value:
        raise ApiError(400, f"version must be at most {MAX_LABEL} characters, without '/'.")
    return value


def clean_version_fields(data: dict[str, Any]) -> dict[str, Any]:
    """Validated ModelVersion field values from an API body (snake_case or the facet's camelCase)."""
    aliases = {
        "artifactUri": "artifact_uri",
        "artifactDigest": "artifact_digest",
        "artifactSize": "artifact_size",
        "frameworkVersion": "framework_version",
        "modelClass": "model_class",
        "environmentDigest": "environment_digest",
    }
    values = {aliases.get(key, key): value for key, value in data.items()}
    out: dict[str, Any] = {}
    for key in ("artifact_uri", "framework", "framework_version", "model_class", "description"):
        value = values.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ApiError(400, f"{key} must be a string.")
        limit = {"artifact_uri": 2048, "model_class": 512, "description": 100_000}.get(key, 128)
        if len(value) > limit:
            raise ApiError(400, f"{key} must be at most {limit} characters.")
        out[key] = value
    for key in ("artifact_digest", "environment_digest"):
        value = values.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str) or not DIGEST.match(value):
            raise ApiError(400, f"{key} must look like sha256:<64 lower-case hex digits>.")
        out[key] = value
    size = values.get("artifact_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ApiError(400, "artifact_size must be a non-negative integer.")
        out["artifact_size"] = size
    for key in ("hyperparameters", "params", "metrics"):
        value = values.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ApiError(400, f"{key} must be a JSON object.")
        out[key] = value
    return out


# --- lookups ------------------------------------------------------------------------------------


def find_namespace(user: Any, name: Any) -> Namespace:
    if not isinstance(name, str) or not name:
        raise ApiError(400, "namespace is required.")
    namespace = Namespace.objects.filter(name=name).first()
    if namespace is None or not access.sees_namespace(user, namespace.pk):
        raise ApiError(404, f"No namespace {name!r}.")
    return namespace


def find_model(user: Any, name: Any, namespace: Any = None, *, for_write: bool = False) -> RegisteredModel:
    """The registered model called ``name`` that ``user`` may see (404 otherwise, as if it did not
    exist). Names are unique per namespace; when several visible namespaces hold one, the
    ``namespace`` is required (400)."""
    if not isinstance(name, str) or not name:
        raise ApiError(400, "model is required: the registered model's name.")
    qs = RegisteredModel.objects.filter(name=name).select_related("namespace")
    if namespace:
        if not isinstance(namespace, str):
            raise ApiError(400, "namespace must be a string.")
        qs = qs.filter(namespace__name=namespace)
    candidates = [m for m in access.filter_models(user, qs)]
    if not candidates:
        where = f" in namespace {namespace!r}" if namespace else ""
        raise ApiError(404, f"No registered model {name!r}{where}.")
    if len(candidates) > 1:
        names = ", ".join(sorted(m.namespace.name for m in candidates))
        raise ApiError(400, f"Model {name!r} exists in several namespaces ({names}); add namespace=.")
    model = candidates[0]
    if for_write and not access.writes_model(user, model):
        raise ApiError(403, f"You may not write to model {model.namespace.name}:{model.name}.")
    return model


def find_version(model: RegisteredModel, label: Any) -> ModelVersion:
    if isinstance(label, int) and not isinstance(label, bool):
        label = str(label)
    if not isinstance(label, str) or not label:
        raise ApiError(400, "version is required: the model version's label.")
    version = ModelVersion.objects.filter(model=model, version=label).select_related("model__namespace").first()
    if version is None:
        raise ApiError(404, f"Model {model.name!r} has no version {label!r}.")
    return version


def find_run(user: Any, run_id: Any) -> Run:
    if not isinstance(run_id, str) or not run_id:
        raise ApiError(400, "run_id must be the producing run's OpenLineage runId.")
    run = Run.objects.filter(run_id=run_id).select_related("job").first()
    if run is None or not access.sees_namespace(user, run.job.namespace_id):
        raise ApiError(404, f"No run {run_id!r}.")
    return run


# --- changes ------------------------------------------------------------------------------------


def create_model(user: Any, namespace_name: Any, name: Any, description: Any = "") -> RegisteredModel:
    namespace = find_namespace(user, namespace_name)
    name = clean_name(name)
    if description is None:
        description = ""
    if not isinstance(description, str):
        raise ApiError(400, "description must be a string.")
    if not access.writes_namespace(user, namespace.pk):
        raise ApiError(403, f"You may not register models in namespace {namespace.name!r}.")
    now = timezone.now()
    try:
        with transaction.atomic():
            model = RegisteredModel.objects.create(
                namespace=namespace,
                name=name,
                description=description,
                created_at=now,
                updated_at=now,
                created_by=user if access.authenticated(user) else None,
            )
            record("model.register", obj=model, after=snapshot(model), extra={"namespace": namespace.name})
    except IntegrityError:
        raise ApiError(409, f"Model {name!r} already exists in namespace {namespace.name!r}.")
    return model


def register_version(user: Any, model: RegisteredModel, data: dict[str, Any]) -> ModelVersion:
    """A new version of ``model`` through the API (the user must be allowed to write the model)."""
    if not access.writes_model(user, model):
        raise ApiError(403, f"You may not register versions of {model.namespace.name}:{model.name}.")
    label = clean_label(data.get("version"))
    fields = clean_version_fields(data)
    run = None
    run_id = data.get("run_id", data.get("runId"))
    if run_id is not None:
        run = find_run(user, run_id)
    now = timezone.now()
    try:
        with transaction.atomic():
            version = ModelVersion.objects.create(
                model=model,
                version=label,
                run=run,
                source=ModelVersion.Source.API,
                created_at=now,
                updated_at=now,
                created_by=user if access.authenticated(user) else None,
                **fields,
            )
            RegisteredModel.objects.filter(pk=model.pk).update(updated_at=now)
            record(
                "model_version.register",
                obj=version,
                after=snapshot(version),
                extra={"source": "api", "model": f"{model.namespace.name}:{model.name}"},
            )
    except IntegrityError:
        raise ApiError(409, f"Model {model.name!r} already has a version {label!r}; versions are immutable.")
    return version


def _facet_fields(facet: dict[str, Any]) -> dict[str, Any]:
    def text(key: str, limit: int) -> str:
        value = facet.get(key)
        return value[:limit] if isinstance(value, str) else ""

    def obj(key: str) -> dict[str, Any]:
        value = facet.get(key)
        return value if isinstance(value, dict) else {}

    size = facet.get("artifactSize")
    digest = text("artifactDigest", 71)
    env = text("environmentDigest", 71)
    return {
        "artifact_uri": text("artifactUri", 2048),
        "artifact_digest": digest if DIGEST.match(digest) else "",
        "artifact_size": size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
        "framework": text("framework", 128),
        "framework_version": text("frameworkVersion", 128),
        "model_class": text("modelClass", 512),
        "hyperparameters": obj("hyperparameters"),
        "params": obj("params"),
        "metrics": obj("metrics"),
        "environment_digest": env if DIGEST.match(env) else "",
        "description": text("description", 100_000),
    }


def upsert_from_facet(
    *, namespace: str, dataset_name: str, facet: dict[str, Any], run_id: str, event_time: datetime, user: Any
) -> ModelVersion | None:
    """Create or update the model version a ``custody_model`` facet describes (called inside the
    ingestion transaction). The newest facet by event time wins; a version label already produced
    by another run is left alone (versions are immutable) and logged."""
    name, label = facet.get("name"), facet.get("version")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        logger.warning("custody_model facet without a usable name on %s:%s", namespace, dataset_name)
        return None
    if not isinstance(label, str) or not label.strip() or len(label) > MAX_LABEL:
        logger.warning("custody_model facet without a usable version on %s:%s", namespace, dataset_name)
        return None
    ns = Namespace.objects.filter(name=namespace).first()
    run = Run.objects.filter(run_id=run_id).first() if run_id else None
    if ns is None:
        return None
    now = timezone.now()
    actor = user if access.authenticated(user) else None
    model, created = RegisteredModel.objects.get_or_create(
        namespace=ns, name=name, defaults={"created_at": now, "updated_at": now, "created_by": actor}
    )
    if created:
        record("model.register", obj=model, after=snapshot(model), extra={"source": "lineage"}, actor=actor)
    dataset_version = (
        DatasetVersion.objects.filter(dataset__namespace=ns, dataset__name=dataset_name, version=label)
        .values_list("pk", flat=True)
        .first()
    )
    fields = _facet_fields(facet)
    version = ModelVersion.objects.select_for_update().filter(model=model, version=label).first()
    if version is None:
        try:
            with transaction.atomic():  # a savepoint: a concurrent ingestion may create it first
                version = ModelVersion.objects.create(
                    model=model,
                    version=label,
                    run=run,
                    dataset_version_id=dataset_version,
                    facet=facet,
                    facet_event_time=event_time,
                    source=ModelVersion.Source.LINEAGE,
                    created_at=now,
                    updated_at=now,
                    created_by=actor,
                    **fields,
                )
        except IntegrityError:
            version = ModelVersion.objects.select_for_update().get(model=model, version=label)
            return _update_from_facet(version, fields, facet, run, run_id, dataset_version, event_time, actor)
        RegisteredModel.objects.filter(pk=model.pk).update(updated_at=now)
        record(
            "model_version.register",
            obj=version,
            after=snapshot(version, [*VERSION_FIELDS, "version", "run", "source"]),
            extra={"source": "lineage", "run_id": run_id},
            actor=actor,
        )
        return version
    return _update_from_facet(version, fields, facet, run, run_id, dataset_version, event_time, actor)


def _update_from_facet(
    version: ModelVersion,
    fields: dict[str, Any],
    facet: dict[str, Any],
    run: Run | None,
    run_id: str,
    dataset_version: int | None,
    event_time: datetime,
    actor: Any,
) -> ModelVersion:
    now = timezone.now()
    model = version.model
    if run is not None and version.run_id is not None and version.run_id != run.pk:
        logger.warning(
            "custody_model %s version %s is already produced by another run; the facet of run %s is ignored",
            model,
            version.version,
            run_id,
        )
        return version
    if version.facet_event_time is not None and event_time < version.facet_event_time:
        return version  # an older report of the same version: the newest wins
    before = snapshot(version, [*VERSION_FIELDS, "run"])
    old_evidence = {key: getattr(version, key) for key in EVIDENCE_FIELDS}
    for key, value in fields.items():
        setattr(version, key, value)
    if run is not None:
        version.run = run
    if dataset_version is not None:
        version.dataset_version_id = dataset_version
    version.facet, version.facet_event_time, version.updated_at = facet, event_time, now
    version.save()
    after = snapshot(version, [*VERSION_FIELDS, "run"])
    changed = sorted(key for key in after if after[key] != before.get(key))
    if changed:
        record(
            "model_version.update",
            obj=version,
            before={key: before.get(key) for key in changed},
            after={key: after[key] for key in changed},
            extra={"source": "lineage", "run_id": run_id},
            actor=actor,
        )
    if any(getattr(version, key) != old for key, old in old_evidence.items()):
        version_changed.send(sender=ModelVersion, version=version)
    return version
