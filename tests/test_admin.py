"""The lineage admin: who sees what, that evidence cannot be changed, search and filters, and that list
pages issue a small, bounded number of queries (no COUNT or DISTINCT over a whole table)."""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from django.apps import apps
from django.db import connection
from django.db.models import Model
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from lineage.models import (
    CodeCommit,
    ColumnLineage,
    Dataset,
    DatasetSymlink,
    DatasetVersion,
    Job,
    JobDatasetEdge,
    Namespace,
    RawEvent,
    Run,
    RunInput,
    RunOutput,
    SchemaChange,
)
from tests.conftest import EXAMPLES, complete_example_files, load_example, require_shared

pytestmark = pytest.mark.django_db

M = TypeVar("M", bound=Model)
LINEAGE_MODELS: list[type[Model]] = list(apps.get_app_config("lineage").get_models())
FULL_EVENT = "marquez/open_lineage/event_full.json"
VIEWER_ROLES = ("compliance_officer", "auditor", "approver")
COMMIT_SHA = "4f1c2a9be0d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3"


def url(model: type[Model], view: str, *args: Any) -> str:
    return reverse(f"admin:lineage_{model._meta.model_name}_{view}", args=args)


def evidence_events() -> list[dict[str, Any]]:
    """Every complete example event, plus two derived from event_full.json: a later run that adds a
    column to its output (a schema change) and that ran a known git commit (a code commit)."""
    require_shared(EXAMPLES)
    events = [json.loads(path.read_text()) for path in complete_example_files()]
    later = copy.deepcopy(load_example(FULL_EVENT))
    later["run"]["runId"] = str(uuid.uuid4())
    later["eventTime"] = "2021-01-05T10:00:00.000Z"
    later["run"]["facets"].pop("parent", None)
    later["job"]["facets"]["sourceCodeLocation"].update({"version": COMMIT_SHA, "repoUrl": "https://git.example/etl"})
    for output in later["outputs"]:
        output["facets"]["schema"]["fields"].append({"name": "column2", "type": "BIGINT"})
    events.append(later)
    return events


def bulk_rows(count: int) -> None:
    """``count`` rows in every big lineage table, written directly (ingesting them through the API would
    test ingestion, not the admin, and take far longer)."""
    at = datetime(2024, 3, 1, tzinfo=UTC)
    stamps = {"created_at": at, "updated_at": at}
    namespaces = Namespace.objects.bulk_create([Namespace(name=f"bulk-{i}", **stamps) for i in range(3)])
    jobs = Job.objects.bulk_create(
        [Job(namespace=namespaces[i % 3], name=f"bulk.job_{i}", **stamps) for i in range(20)]
    )
    datasets = Dataset.objects.bulk_create(
        [Dataset(namespace=namespaces[i % 3], name=f"bulk.table_{i}", **stamps) for i in range(count)]
    )
    commit = CodeCommit.objects.create(repo_url="https://git.example/bulk", sha="ab" * 20, first_seen_at=at)
    runs = Run.objects.bulk_create(
        [
            Run(
                run_id=str(uuid.UUID(int=i + 1)),
                job=jobs[i % 20],
                state=Run.State.COMPLETED,
                first_event_time=at + timedelta(minutes=i),
                last_event_time=at + timedelta(minutes=i),
                code_commit=commit,
                **stamps,
            )
            for i in range(count)
        ]
    )
    Run.objects.bulk_update([Run(pk=run.pk, parent=runs[0]) for run in runs[1:]], ["parent"])
    versions = DatasetVersion.objects.bulk_create(
        [
            DatasetVersion(dataset=d, version=f"v{v}", created_at=at, run=r)
            for d, r in zip(datasets, runs, strict=True)
            for v in (1, 2)
        ]
    )
    SchemaChange.objects.bulk_create(
        [
            SchemaChange(
                dataset=old.dataset, from_version=old, to_version=new, level="MINOR", explanation="added", created_at=at
            )
            for old, new in zip(versions[::2], versions[1::2], strict=True)
        ]
    )
    edges = [(run, dataset, version) for run, dataset, version in zip(runs, datasets, versions[1::2], strict=True)]
    RunInput.objects.bulk_create([RunInput(run=r, dataset=d, version=v, first_seen_at=at) for r, d, v in edges])
    RunOutput.objects.bulk_create([RunOutput(run=r, dataset=d, version=v, first_seen_at=at) for r, d, v in edges])
    JobDatasetEdge.objects.bulk_create(
        [JobDatasetEdge(job=r.job, dataset=d, direction=i % 2, valid_from=at) for i, (r, d, _) in enumerate(edges)]
    )
    ColumnLineage.objects.bulk_create(
        [
            ColumnLineage(dataset=d, field="id", input_dataset=datasets[0], input_field="id", event_time=at, run=r)
            for r, d, _ in edges
        ]
    )
    DatasetSymlink.objects.bulk_create(
        [DatasetSymlink(dataset=d, namespace="hive://bulk", name=d.name, type="TABLE") for d in datasets]
    )
    RawEvent.objects.bulk_create(
        [
            RawEvent(
                digest=f"{i:064x}",
                kind="RunEvent",
                event_type="COMPLETE",
                event_time=run.first_event_time,
                received_at=run.first_event_time,
                run_id=run.run_id,
                job_namespace=run.job.namespace.name,
                job_name=run.job.name,
                size_bytes=2,
                payload={"run": {"runId": run.run_id}},
            )
            for i, run in enumerate(runs)
        ]
    )


@pytest.fixture
def evidence(post_event: Callable[..., Any]) -> None:
    for event in evidence_events():
        response = post_event(event)
        assert response.status_code == 201, response.content


@pytest.fixture
def bulk(db: None) -> int:
    bulk_rows(300)
    return 300


def login(make_user: Callable[..., Any], username: str, roles: tuple[str, ...], **extra: Any) -> Client:
    client = Client()
    client.force_login(make_user(username, roles=roles, **extra))
    return client


@pytest.fixture
def officer(make_user: Callable[..., Any]) -> Client:
    return login(make_user, "olga", ("compliance_officer",), is_staff=True)


@pytest.fixture
def superuser(make_user: Callable[..., Any]) -> Client:
    return login(make_user, "root", ("admin",), is_staff=True, is_superuser=True)


def first(model: type[M]) -> M:
    obj = model._default_manager.order_by("pk").first()
    assert obj is not None, f"the example events produced no {model.__name__}"
    return obj


# --- who sees what -----------------------------------------------------------------------------


def test_every_lineage_model_is_registered() -> None:
    from django.contrib import admin

    assert {m for m in LINEAGE_MODELS if m in admin.site._registry} == set(LINEAGE_MODELS)


def test_officer_sees_the_lineage_app_without_add_links(evidence: None, officer: Client) -> None:
    page = officer.get("/admin/").content.decode()
    assert "Lineage" in page
    for model in LINEAGE_MODELS:
        assert url(model, "changelist") in page
    assert url(Dataset, "add") not in page and "addlink" not in page


def test_viewer_roles_see_every_list_and_detail_read_only(
    evidence: None, make_user: Callable[..., Any], subtests: Any
) -> None:
    clients = {role: login(make_user, f"viewer-{role}", (role,), is_staff=True) for role in VIEWER_ROLES}
    for model in LINEAGE_MODELS:
        for role, client in clients.items():
            with subtests.test(model=model.__name__, role=role):
                listing = client.get(url(model, "changelist"))
                assert listing.status_code == 200
                page = listing.content.decode()
                assert "addlink" not in page and 'name="action"' not in page
                detail = client.get(url(model, "change", first(model).pk))
                assert detail.status_code == 200
                page = detail.content.decode()
                assert 'name="_save"' not in page and 'name="_continue"' not in page and "deletelink" not in page


def test_nobody_can_add_change_or_delete_evidence(
    evidence: None, officer: Client, superuser: Client, subtests: Any
) -> None:
    """Compliance officers change nothing; superusers cannot change evidence either (all but Namespace)."""
    for model in LINEAGE_MODELS:
        with subtests.test(model=model.__name__):
            obj = first(model)
            before = model._default_manager.count()
            for client in [officer] if model is Namespace else [officer, superuser]:
                change = url(model, "change", obj.pk)
                assert client.get(url(model, "add")).status_code == 403
                assert client.post(url(model, "add"), {}).status_code == 403
                assert client.post(change, {"name": "tampered", "owner_name": "x"}).status_code == 403
                assert client.get(url(model, "delete", obj.pk)).status_code == 403
                assert client.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
                page = client.get(change).content.decode()
                assert 'name="_save"' not in page and "deletelink" not in page
            assert model._default_manager.count() == before
            fresh = model._default_manager.get(pk=obj.pk)
            fields = model._meta.concrete_fields
            assert [getattr(fresh, f.attname) for f in fields] == [getattr(obj, f.attname) for f in fields]


def test_only_admins_edit_a_namespace_owner_and_description(
    evidence: None, officer: Client, make_user: Callable[..., Any]
) -> None:
    namespace = first(Namespace)
    change = url(Namespace, "change", namespace.pk)
    form = {"owner_name": "data-platform", "description": "Nightly ETL", "name": "renamed"}
    assert officer.post(change, form).status_code == 403
    admin_client = login(make_user, "ada", ("admin",), is_staff=True)  # in the admin group, not superuser
    page = admin_client.get(change).content.decode()
    assert 'name="_save"' in page and 'name="owner_name"' in page and 'name="name"' not in page
    assert "deletelink" not in page
    response = admin_client.post(change, form)
    assert response.status_code == 302, response.content
    namespace.refresh_from_db()
    assert (namespace.owner_name, namespace.description) == ("data-platform", "Nightly ETL")
    assert namespace.name != "renamed"  # the name is the OpenLineage identifier: read-only
    assert admin_client.get(url(Namespace, "add")).status_code == 403
    assert admin_client.post(url(Namespace, "delete", namespace.pk), {"post": "yes"}).status_code == 403


def test_staff_without_a_viewing_role_gets_403(evidence: None, make_user: Callable[..., Any]) -> None:
    client = login(make_user, "dan", ("data_scientist",), is_staff=True)
    assert "Lineage" not in client.get("/admin/").content.decode()
    for model in LINEAGE_MODELS:
        assert client.get(url(model, "changelist")).status_code == 403
        assert client.get(url(model, "change", first(model).pk)).status_code == 403
    assert client.get(reverse("admin:lineage_rawevent_payload", args=[first(RawEvent).pk])).status_code == 403


def test_anonymous_is_sent_to_the_login_page(evidence: None, client: Client) -> None:
    for target in [url(Dataset, "changelist"), url(RawEvent, "change", first(RawEvent).pk)]:
        response = client.get(target)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/") and "next=" in response["Location"]


def test_lists_and_details_follow_the_namespace_visibility_policy(evidence: None, officer: Client) -> None:
    """The admin asks the same visibility registry as the read API (lineage.access)."""
    from lineage.access import visibility_policy

    visible = Namespace.objects.get(name="my-datasource-namespace")
    hidden = Dataset.objects.exclude(namespace=visible).select_related("namespace").first()
    assert hidden is not None
    with visibility_policy(lambda user: [visible.pk]):
        page = officer.get(url(Dataset, "changelist")).content.decode()
        assert result_count(page) == Dataset.objects.filter(namespace=visible).count() > 0
        assert hidden.namespace.name not in page  # not in the rows, nor in the namespace filter
        response = officer.get(url(Dataset, "change", hidden.pk))
        assert response.status_code == 302 and response["Location"] == reverse("admin:index")
        assert result_count(officer.get(url(Namespace, "changelist")).content.decode()) == 1
        raw_events = officer.get(url(RawEvent, "changelist")).content.decode()
        assert result_count(raw_events) == RawEvent.objects.filter(job_namespace=visible.name).count()
        edges = officer.get(url(JobDatasetEdge, "changelist")).content.decode()  # their jobs are elsewhere
        assert result_count(edges) == 0
    page = officer.get(url(Dataset, "changelist")).content.decode()
    assert result_count(page) == Dataset.objects.count()


# --- what the pages show ----------------------------------------------------------------------


def test_raw_event_detail_shows_the_pretty_printed_payload(evidence: None, officer: Client) -> None:
    event = RawEvent.objects.filter(run_id="ea041791-68bc-4ae1-bd89-4c8106a157e4").order_by("pk").first()
    assert event is not None
    page = officer.get(url(RawEvent, "change", event.pk)).content.decode()
    assert '<pre class="custody-json">' in page
    assert "&quot;runId&quot;: &quot;ea041791-68bc-4ae1-bd89-4c8106a157e4&quot;" in page
    assert event.digest in page
    run = Run.objects.get(run_id=event.run_id)
    assert url(Run, "change", run.pk) in page  # a link to the run it describes
    download = officer.get(reverse("admin:lineage_rawevent_payload", args=[event.pk]))
    assert download.status_code == 200 and download["Content-Type"] == "application/json"
    assert download.json() == RawEvent.objects.get(pk=event.pk).payload


def test_dataset_links_to_its_versions_schema_changes_and_jobs(evidence: None, officer: Client) -> None:
    dataset = Dataset.objects.get(namespace__name="my-datasource-namespace", name="instance.schema.table")
    page = officer.get(url(Dataset, "change", dataset.pk)).content.decode()
    versions_url = f"{url(DatasetVersion, 'changelist')}?dataset__id__exact={dataset.pk}"
    for target in (versions_url, f"{url(SchemaChange, 'changelist')}?dataset__id__exact={dataset.pk}"):
        assert target in page
    assert f"{url(JobDatasetEdge, 'changelist')}?dataset__id__exact={dataset.pk}" in page
    assert '<pre class="custody-json">' in page and "column2" in page  # schema fields, pretty-printed

    versions = officer.get(versions_url).content.decode()
    assert versions.count('class="field-version"') == dataset.versions.count() >= 2
    assert f"dataset: {dataset}" in versions  # says what the list is narrowed to

    change = SchemaChange.objects.get(dataset=dataset)
    assert change.level == SchemaChange.Level.MINOR
    changes = officer.get(f"{url(SchemaChange, 'changelist')}?dataset__id__exact={dataset.pk}").content.decode()
    assert url(SchemaChange, "change", change.pk) in changes and "MINOR" in changes


def test_run_links_to_job_parent_inputs_outputs_and_commit(evidence: None, officer: Client) -> None:
    child = Run.objects.exclude(parent=None).select_related("parent", "job").first()
    assert child is not None
    page = officer.get(url(Run, "change", child.pk)).content.decode()
    assert url(Job, "change", child.job_id) in page
    assert url(Run, "change", child.parent_id) in page
    assert f"?run__id__exact={child.pk}" in page
    assert f"{url(RawEvent, 'changelist')}?run_id={child.run_id}" in page

    commit = CodeCommit.objects.get(sha=COMMIT_SHA)
    run = Run.objects.get(code_commit=commit)
    assert url(CodeCommit, "change", commit.pk) in officer.get(url(Run, "change", run.pk)).content.decode()
    runs = officer.get(f"{url(Run, 'changelist')}?code_commit__id__exact={commit.pk}").content.decode()
    assert run.run_id in runs


def result_count(page: str) -> int:
    """The number of rows of a change list page."""
    return len(re.findall(r'<tr[^>]*>\s*<t[hd] class="field-', page))


SEARCHES: list[tuple[type[Model], str, dict[str, Any]]] = [
    (Dataset, "instance.schema.", {"name__startswith": "instance.schema."}),
    (Dataset, "no.such.prefix", {"pk": -1}),
    (Job, "myjob.", {"name__startswith": "myjob."}),
    (Run, "ea041791-68bc-4ae1-bd89-4c8106a157e4", {"run_id": "ea041791-68bc-4ae1-bd89-4c8106a157e4"}),
    (Run, "myjob.mytask", {"job__name__startswith": "myjob.mytask"}),
    (Run, "00000000-0000-0000-0000-000000000000", {"pk": -1}),
    (RawEvent, "ea041791-68bc-4ae1-bd89-4c8106a157e4", {"run_id": "ea041791-68bc-4ae1-bd89-4c8106a157e4"}),
    (CodeCommit, COMMIT_SHA[:10], {"sha": COMMIT_SHA}),
    (JobDatasetEdge, "job:myjob.", {"job__name__startswith": "myjob."}),
    (ColumnLineage, "field:a", {"field": "a"}),
]


def test_search(evidence: None, officer: Client, subtests: Any) -> None:
    for model, query, expected in SEARCHES:
        with subtests.test(model=model.__name__, query=query):
            response = officer.get(url(model, "changelist"), {"q": query})
            assert response.status_code == 200
            count = model._default_manager.filter(**expected).count()
            assert result_count(response.content.decode()) == count
            if "pk" not in expected:
                assert count > 0, f"the example events should give {model.__name__} rows matching {query!r}"


def test_search_by_digest_and_by_quoted_word(evidence: None, officer: Client) -> None:
    event = first(RawEvent)
    page = officer.get(url(RawEvent, "changelist"), {"q": event.digest}).content.decode()
    assert result_count(page) == 1 and url(RawEvent, "change", event.pk) in page
    page = officer.get(url(RawEvent, "changelist"), {"q": f"sha256:{event.digest}"}).content.decode()
    assert result_count(page) == 1
    page = officer.get(url(Dataset, "changelist"), {"q": '"instance.schema.table"'}).content.decode()
    assert result_count(page) == 1


def test_filters(evidence: None, officer: Client) -> None:
    def rows(model: type[Model], **params: Any) -> int:
        response = officer.get(url(model, "changelist"), params)
        assert response.status_code == 200, response.content
        assert "?e=1" not in response.get("Location", "")
        return result_count(response.content.decode())

    namespace = Namespace.objects.get(name="my-datasource-namespace")
    assert rows(Dataset, namespace__id__exact=namespace.pk) == Dataset.objects.filter(namespace=namespace).count()
    assert rows(Run, state="COMPLETED") == Run.objects.filter(state="COMPLETED").count() > 0
    assert rows(Run, state="FAILED") == Run.objects.filter(state="FAILED").count()
    assert rows(RawEvent, kind="DatasetEvent") == RawEvent.objects.filter(kind="DatasetEvent").count() > 0
    assert rows(RawEvent, event_type="START") == RawEvent.objects.filter(event_type="START").count() > 0
    in_namespace = RawEvent.objects.filter(job_namespace="my-scheduler-namespace").count()
    assert rows(RawEvent, job_namespace="my-scheduler-namespace") == in_namespace > 0
    assert rows(SchemaChange, level="MINOR") == 1 and rows(SchemaChange, level="MAJOR") == 0
    assert rows(JobDatasetEdge, open="yes") == JobDatasetEdge.objects.filter(valid_to__isnull=True).count() > 0
    assert rows(JobDatasetEdge, direction="1") == JobDatasetEdge.objects.filter(direction=1).count() > 0
    assert rows(Dataset, lifecycle_state="CREATE") == Dataset.objects.filter(lifecycle_state="CREATE").count() > 0
    assert rows(RawEvent, received_at__gte="2000-01-01T00:00:00+00:00") == RawEvent.objects.count()


# --- fast lists ---------------------------------------------------------------------------------

UNBOUNDED = re.compile(r"\bDISTINCT\b", re.IGNORECASE)


def assert_bounded(queries: list[dict[str, Any]]) -> None:
    for query in queries:
        sql = query["sql"]
        assert not UNBOUNDED.search(sql), f"DISTINCT in an admin list query: {sql}"
        if re.search(r"\bCOUNT\(", sql, re.IGNORECASE):
            assert re.search(r"\bLIMIT\s+\d+", sql, re.IGNORECASE), f"unbounded COUNT in an admin list query: {sql}"


LIST_QUERIES = [
    (RawEvent, {}),
    (RawEvent, {"q": "bulk.job_1", "kind": "RunEvent", "job_namespace": "bulk-1"}),
    (Run, {}),
    (Run, {"state": "COMPLETED", "job__namespace__id__exact": "1"}),
    (Dataset, {}),
    (Dataset, {"q": "bulk.table_1", "is_deleted__exact": "0"}),
    (DatasetVersion, {"dataset__id__exact": "1"}),
    (SchemaChange, {"level": "MINOR"}),
    (RunInput, {"q": "00000000-0000-0000-0000-000000000001"}),
    (DatasetVersion, {}),
    (Job, {}),
    (JobDatasetEdge, {"open": "yes"}),
    (ColumnLineage, {}),
    (Namespace, {}),
]

#: Queries a list page may add to those of the admin index page (session, user, roles, the navigation
#: sidebar of every registered app): the bounded count, the page of rows, filter choices (namespaces),
#: and the object a "see also" link narrows the list to (and its namespace, for its name).
LIST_QUERY_BUDGET = 5


def index_queries(client: Client) -> int:
    client.get("/admin/")  # warm the session
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/admin/").status_code == 200
    return len(captured.captured_queries)


@pytest.mark.parametrize(("model", "params"), LIST_QUERIES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_list_pages_issue_few_bounded_queries(
    bulk: int, officer: Client, django_assert_max_num_queries: Any, model: type[Model], params: dict[str, str]
) -> None:
    """A page of 50 of 300 rows: no query per row, no COUNT or DISTINCT over the table."""
    budget = index_queries(officer) + LIST_QUERY_BUDGET
    with django_assert_max_num_queries(budget), CaptureQueriesContext(connection) as captured:
        response = officer.get(url(model, "changelist"), params)
    assert response.status_code == 200
    assert "?e=1" not in response.get("Location", "")
    assert_bounded(captured.captured_queries)


def test_every_list_page_is_bounded_and_does_not_query_per_row(bulk: int, officer: Client, subtests: Any) -> None:
    budget = index_queries(officer) + LIST_QUERY_BUDGET
    for model in LINEAGE_MODELS:
        rows = min(50, model._default_manager.count())
        with subtests.test(model=model.__name__):
            with CaptureQueriesContext(connection) as captured:
                response = officer.get(url(model, "changelist"))
            assert response.status_code == 200
            assert result_count(response.content.decode()) == rows
            assert len(captured.captured_queries) <= budget, "\n".join(q["sql"] for q in captured.captured_queries)
            assert_bounded(captured.captured_queries)


def test_list_defers_json_columns(evidence: None, officer: Client) -> None:
    with CaptureQueriesContext(connection) as captured:
        officer.get(url(RawEvent, "changelist"))
    listing = [q["sql"] for q in captured.captured_queries if "lineage_rawevent" in q["sql"] and "LIMIT" in q["sql"]]
    assert listing and not any('"payload"' in sql for sql in listing), listing


def test_counts_stop_at_the_cap(bulk: int, officer: Client, settings: Any) -> None:
    settings.CUSTODY_ADMIN_COUNT_CAP = 100
    page = officer.get(url(RawEvent, "changelist")).content.decode()
    assert "more than 100 raw events" in page  # on PostgreSQL too: an unanalysed table has no estimate
    page = officer.get(url(RawEvent, "changelist"), {"q": "bulk.job_"}).content.decode()
    assert "more than 100 results" in page and "more than 100 raw events" in page
    page = officer.get(url(RawEvent, "changelist"), {"q": "bulk.job_2"}).content.decode()
    exact = RawEvent.objects.filter(job_name__startswith="bulk.job_2").count()
    assert 0 < exact <= 100
    assert f"{exact} results" in page and f"{exact} raw events" in page


@pytest.mark.postgres
def test_unfiltered_count_is_the_planner_estimate_on_postgresql(bulk: int, officer: Client, settings: Any) -> None:
    settings.CUSTODY_ADMIN_COUNT_CAP = 100
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {RawEvent._meta.db_table}")
    with CaptureQueriesContext(connection) as captured:
        page = officer.get(url(RawEvent, "changelist")).content.decode()
    sqls = [q["sql"] for q in captured.captured_queries]
    assert any("pg_class" in sql for sql in sqls)
    assert not any(re.search(r"\bCOUNT\(", sql, re.IGNORECASE) for sql in sqls), sqls
    match = re.search(r"about (\d+) raw events", page)
    assert match and abs(int(match.group(1)) - RawEvent.objects.count()) <= 5
