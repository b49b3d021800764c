"""The ingestion path's shortcuts around the ORM give what the ORM gives: model instances built
from stored rows, and column values prepared as query parameters."""

from __future__ import annotations

import uuid
import warnings
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from django.apps import apps
from django.db import connection, models
from django.db.models.signals import post_init
from django.utils import timezone

from lineage.ingest.rows import Table, _prep, prepared_values
from lineage.models import Job, Namespace, Run

AT = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
MODELS = sorted(apps.get_app_config("lineage").get_models(), key=lambda model: model.__name__)


def _samples(field: models.Field) -> list[Any]:  # type: ignore[type-arg]
    """Values of the kinds ingestion assigns to such a field, the awkward ones included."""
    nulls = [None] if field.null else []
    if isinstance(field, models.JSONField):
        return [{"a": [1, "x", None]}, ["b"], *nulls]
    if isinstance(field, models.ForeignKey):
        return [7, *nulls]
    if isinstance(field, models.DateTimeField):
        return [AT, datetime(2025, 3, 1, 12, 30), *nulls]  # aware, naive
    if isinstance(field, models.BooleanField):
        return [True, False]
    if isinstance(field, models.IntegerField | models.BigIntegerField):
        return [3, True, *nulls]  # a bool in an integer column becomes 1
    if isinstance(field, models.UUIDField):
        return [uuid.UUID(int=5), str(uuid.UUID(int=6)), *nulls]
    if isinstance(field, models.CharField | models.TextField):
        choices = [c for c, _ in field.flatchoices][:1]
        enum = [Run.State.RUNNING] if field.choices else []
        return ["text", "", *choices, *enum, *nulls]
    return [*nulls]


def _comparable(value: Any) -> Any:
    """Parameters compare by type and content (a JSON parameter is a wrapper without equality)."""
    inner = getattr(value, "obj", value)
    return type(value), type(inner), inner


@pytest.mark.django_db
@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_prepared_values_are_what_django_prepares(model: type[models.Model]) -> None:
    table = Table.of(model)
    fields = table.insert_fields
    samples = {f.attname: _samples(f) for f in fields}
    rounds = max(len(values) for values in samples.values())
    for i in range(rounds):
        obj = model()
        for f in fields:
            if samples[f.attname]:
                obj.__dict__[f.attname] = samples[f.attname][i % len(samples[f.attname])]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # naive datetimes warn, either way
            expected = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
            inserted: list[Any] = []
            prepared_values(obj, table.insert_preps, connection, inserted, add=True)
            updated: list[Any] = []
            prepared_values(obj, table.preps(tuple(f.attname for f in fields)), connection, updated, add=False)
        assert [_comparable(v) for v in inserted] == [_comparable(v) for v in expected]
        assert [_comparable(v) for v in updated] == [_comparable(v) for v in expected]


@pytest.mark.postgres
@pytest.mark.django_db
def test_values_pass_through_unchanged_only_where_django_would_not_touch_them() -> None:
    """On PostgreSQL the shortcut really is taken for plain values, and not for the others."""
    passed = {attname: kinds for _, attname, kinds, _ in Table.of(Run).insert_preps}
    assert passed["run_id"] == {str, type(None)}
    assert passed["job_id"] == {int, type(None)}
    assert passed["first_event_time"] == {datetime, type(None)}
    assert passed["facets"] == set()  # JSON goes through the field (Jsonb, orjson)


def test_auto_now_columns_take_their_value_from_pre_save_on_insert_only() -> None:
    stamp = models.DateTimeField(auto_now=True)
    stamp.set_attributes_from_name("stamp")
    obj = SimpleNamespace(stamp=AT)
    before = timezone.now()
    inserted: list[Any] = []
    prepared_values(obj, [_prep(stamp, connection, add=True)], connection, inserted, add=True)
    assert obj.stamp >= before and inserted == [stamp.get_db_prep_save(obj.stamp, connection)]
    written: list[Any] = []
    obj.stamp = AT
    prepared_values(obj, [_prep(stamp, connection, add=None)], connection, written, add=False)
    assert written == [
        stamp.get_db_prep_save(AT, connection)
    ]  # an UPDATE of chosen columns writes the attribute as it is


@pytest.mark.django_db
def test_rows_read_through_a_table_equal_the_orms_instances() -> None:
    namespace = Namespace.objects.create(name="ns", created_at=AT, updated_at=AT)
    job = Job.objects.create(namespace=namespace, name="job", created_at=AT, updated_at=AT, facets={"k": [1]})
    run = Run.objects.create(
        run_id="r-1", job=job, first_event_time=AT, last_event_time=AT, created_at=AT, updated_at=AT
    )
    for model, pk in ((Job, job.pk), (Run, run.pk)):
        table = Table.of(model)
        (read,) = table.select(*table.any_of("id", [pk]))
        orm = model.objects.get(pk=pk)
        assert type(read) is model
        assert {k: v for k, v in read.__dict__.items() if not k.startswith("_")} == {
            k: v for k, v in orm.__dict__.items() if not k.startswith("_")
        }
        assert (read._state.adding, read._state.db) == (False, orm._state.db)
        assert read == orm and read.pk == pk


@pytest.mark.django_db
def test_a_model_with_init_receivers_is_built_by_django() -> None:
    namespace = Namespace.objects.create(name="ns", created_at=AT, updated_at=AT)
    seen: list[int] = []

    def receiver(sender: Any, instance: Any, **kwargs: Any) -> None:
        seen.append(instance.pk)

    post_init.connect(receiver, sender=Namespace)
    try:
        table = Table(Namespace, "default")  # not the process-wide one: that one was made without receivers
        assert not table.plain_init
        (read,) = table.select(*table.any_of("id", [namespace.pk]))
        assert read.name == "ns" and seen == [namespace.pk]
    finally:
        post_init.disconnect(receiver, sender=Namespace)


def _state_of(obj: models.Model) -> tuple[dict[str, Any], dict[str, Any], bool, str | None]:
    """An instance's field values (by type only where the default is new each time, like a
    uuid4), its cached related objects and its state."""
    fresh = {f.attname for f in obj._meta.concrete_fields if callable(f.default) and f.default not in (dict, list)}
    values = {k: type(v) if k in fresh else v for k, v in obj.__dict__.items() if not k.startswith("_")}
    return values, dict(obj._state.fields_cache), obj._state.adding, obj._state.db


@pytest.mark.django_db
@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_new_instances_are_what_the_model_constructor_builds(model: type[models.Model]) -> None:
    namespace = Namespace.objects.create(name="ns", created_at=AT, updated_at=AT)
    job = Job(namespace=namespace, name="unsaved", created_at=AT, updated_at=AT)  # no key yet
    table = Table.of(model)
    fields = [f for f in table.fields if f is not model._meta.auto_field]
    # Defaults only; then every field by value (relations by key); then relations by object.
    by_value = {f.attname: s[0] for f in fields if (s := _samples(f))}
    related: dict[str, Any] = {}
    for f in fields:
        if f.is_relation and f.many_to_one:
            related[f.name] = namespace if f.related_model is Namespace else job if f.related_model is Job else None
    for values in ({}, by_value, related):
        assert _state_of(table.new(**values)) == _state_of(model(**values)), values


@pytest.mark.django_db
def test_new_leaves_what_it_does_not_build_itself_to_the_model() -> None:
    table = Table.of(Run)
    with pytest.raises(TypeError, match="unexpected keyword"):
        table.new(run_id="r", no_such_field=1)
    with pytest.raises(ValueError, match='must be a "Job" instance'):
        table.new(run_id="r", job=Namespace(name="not a job"))
