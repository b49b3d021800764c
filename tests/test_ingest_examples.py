"""Every complete real-world OpenLineage event is accepted, and what it says lands in the graph."""

from __future__ import annotations

import json

import pytest

from lineage.models import (
    CodeCommit,
    ColumnLineage,
    Dataset,
    DatasetSymlink,
    DatasetVersion,
    Job,
    JobDatasetEdge,
    RawEvent,
    Run,
    RunInput,
    RunOutput,
)
from tests.conftest import EXAMPLES, complete_example_files, load_example, require_shared

pytestmark = pytest.mark.django_db


def post_files(post_event, *relative: str) -> None:
    for rel in relative:
        response = post_event(load_example(rel))
        assert response.status_code == 201, (rel, response.content)


def dataset(ns: str, name: str) -> Dataset:
    return Dataset.objects.get(namespace__name=ns, name=name)


def test_examples_folder_is_there():
    require_shared(EXAMPLES)
    assert len(complete_example_files()) >= 30


@pytest.mark.parametrize("path", complete_example_files(), ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_each_complete_example_is_accepted_and_stored_verbatim(post_event, path):
    event = json.loads(path.read_text())
    response = post_event(event)
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "created"
    raw = RawEvent.objects.get(digest=response.json()["digest"])
    assert raw.payload == event
    # Re-sending the same event is accepted and changes nothing.
    again = post_event(event)
    assert again.status_code == 201
    assert again.json() == {"status": "duplicate", "digest": raw.digest}
    assert RawEvent.objects.count() == 1


def test_all_examples_together_in_one_database(post_event):
    statuses = {}
    for path in complete_example_files():
        response = post_event(json.loads(path.read_text()))
        assert response.status_code == 201, (path, response.content)
        statuses[path.relative_to(EXAMPLES).as_posix()] = response.json()["status"]
    # Two fixtures are the same event formatted differently: the canonical digest sees one event.
    assert statuses["openlineage/proxy-fluentd/event_simple.json"] == "duplicate"
    assert statuses["marquez/open_lineage/event_simple.json"] == "created"
    assert RawEvent.objects.count() == len(complete_example_files()) - 1


def test_airflow_task_has_parent_dag_run_schema_and_column_lineage(post_event):
    post_files(
        post_event,
        "compatibility-tests/airflow/line_01.json",
        "compatibility-tests/airflow/line_02.json",
        "compatibility-tests/airflow/line_03.json",
    )
    task_run = Run.objects.get(run_id="01936893-9751-7b3c-8f76-8ac6d0e5f8a3")
    assert task_run.job.name == "BQ.upload" and task_run.job.namespace.name == "airflow"
    assert task_run.state == Run.State.COMPLETED
    assert task_run.started_at is not None and task_run.ended_at is not None
    assert task_run.parent_run_id == "01936893-9751-7a91-a2a0-a51101a3970c"
    assert task_run.parent is not None and task_run.parent.job.name == "BQ"
    assert task_run.job.parent is not None and task_run.job.parent.name == "BQ"
    assert "externalQuery" in task_run.facets and "airflow" in task_run.facets  # custom facet kept

    output = dataset("bigquery", "mock-project.test.upload")
    assert [f["name"] for f in output.fields] == ["a", "b", "c", "d"]
    sources = set(
        ColumnLineage.objects.filter(dataset=output, field="a").values_list(
            "input_dataset__namespace__name", "input_dataset__name", "input_field"
        )
    )
    assert sources == {("gs://mock-bucket", "copied.csv", "a"), ("gs://mock-bucket", "test.csv", "a")}

    edges = set(
        JobDatasetEdge.objects.filter(job=task_run.job, valid_to__isnull=True).values_list("dataset__name", "direction")
    )
    assert edges == {
        ("copied.csv", JobDatasetEdge.Direction.IN),
        ("test.csv", JobDatasetEdge.Direction.IN),
        ("mock-project.test.upload", JobDatasetEdge.Direction.OUT),
    }
    produced = RunOutput.objects.get(run=task_run)
    assert produced.version.run == task_run
    assert produced.version.fields == output.fields
    assert RunInput.objects.filter(run=task_run).count() == 2


def test_spark_column_lineage_symlinks_and_lifecycle(post_event):
    post_files(
        post_event,
        "compatibility-tests/CLL/1.json",
        "compatibility-tests/CLL/3.json",
        "compatibility-tests/CLL/5.json",
        "compatibility-tests/CLL/7.json",
        "compatibility-tests/CLL/8.json",
        "compatibility-tests/CLL/9.json",
    )
    source1 = dataset("file", "/tmp/cll_test/cll_source1")
    assert [f["name"] for f in source1.fields] == ["a", "b"]
    assert source1.lifecycle_state == "CREATE" and not source1.is_deleted
    assert DatasetSymlink.objects.filter(
        dataset=source1, namespace="file:/tmp/cll_test", name="default.cll_source1", type="TABLE"
    ).exists()

    tbl1 = dataset("file", "/tmp/cll_test/tbl1")
    agg_inputs = set(
        ColumnLineage.objects.filter(dataset=tbl1, field="agg").values_list("input_dataset__name", "input_field")
    )
    assert agg_inputs == {
        ("/tmp/cll_test/cll_source1", "a"),
        ("/tmp/cll_test/cll_source1", "b"),
        ("/tmp/cll_test/cll_source2", "c"),
        ("/tmp/cll_test/cll_source2", "a"),
    }
    transformations = ColumnLineage.objects.filter(dataset=tbl1, field="agg").first().transformations
    assert transformations and all("type" in t for t in transformations)

    app_run = Run.objects.get(run_id="019127de-fd25-7707-bfa4-3ec02693a531")
    assert app_run.state == Run.State.COMPLETED
    children = set(app_run.children.values_list("run_id", flat=True))
    assert {"019127df-00a2-743c-b714-df7e6dcadb2b", "019127df-0850-72bc-b214-b255290588a6"} <= children


def test_late_parent_is_linked_when_it_arrives(post_event):
    # The child (Spark SQL job) arrives before its parent application run.
    post_files(post_event, "compatibility-tests/CLL/3.json")
    child = Run.objects.get(run_id="019127df-00a2-743c-b714-df7e6dcadb2b")
    assert child.parent is None and child.parent_run_id == "019127de-fd25-7707-bfa4-3ec02693a531"
    post_files(post_event, "compatibility-tests/CLL/1.json")
    child.refresh_from_db()
    assert child.parent is not None and child.parent.run_id == "019127de-fd25-7707-bfa4-3ec02693a531"


def test_marquez_full_event_keeps_custom_facets_and_code_location(post_event):
    post_files(post_event, "marquez/open_lineage/event_full.json")
    run = Run.objects.get(run_id="ea041791-68bc-4ae1-bd89-4c8106a157e4")
    assert {"additionalProp1", "additionalProp2", "additionalProp3", "nominalTime", "parent"} <= set(run.facets)
    assert run.nominal_start_time is not None
    job = run.job
    assert {"additionalProp1", "sourceCodeLocation", "sql", "documentation"} <= set(job.facets)
    assert job.location == "http://example.com"
    table = dataset("my-datasource-namespace", "instance.schema.table")
    assert {"additionalProp1", "additionalProp2", "additionalProp3"} <= set(table.facets)
    assert table.source_name == table.facets["dataSource"]["name"]
    assert table.description == table.facets["documentation"]["description"]
    inp = RunInput.objects.get(run=run)
    assert {"dataQualityMetrics", "dataQualityAssertions"} <= set(inp.facets)
    out = RunOutput.objects.get(run=run)
    assert "outputStatistics" in out.facets


def test_dataset_event_creates_dataset_with_schema_version(post_event):
    post_files(post_event, "marquez/open_lineage/event_dataset_event.json")
    ds = dataset("my-dataset-namespace", "my-dataset-name")
    assert ds.fields
    version = DatasetVersion.objects.get(dataset=ds)
    assert version.run is None and version.fields == ds.fields
    assert ds.current_version == version
    assert not Run.objects.exists()


def test_job_event_declares_static_lineage(post_event):
    post_files(post_event, "marquez/open_lineage/event_job_event.json")
    job = Job.objects.get(namespace__name="my-scheduler-namespace", name="myjob")
    edges = set(JobDatasetEdge.objects.filter(job=job).values_list("dataset__name", "direction", "source"))
    assert edges == {
        ("instance.schema.input-1", JobDatasetEdge.Direction.IN, JobDatasetEdge.Source.STATIC),
        ("instance.schema.output-1", JobDatasetEdge.Direction.OUT, JobDatasetEdge.Source.STATIC),
    }
    assert not Run.objects.exists()


def test_unicode_names_and_lenient_fields(post_event):
    post_files(
        post_event,
        "marquez/open_lineage/event_unicode.json",
        "marquez/open_lineage/event_required_no_timezone.json",
        "marquez/open_lineage/event_without_schema_url.json",
        "marquez/open_lineage/listener/1.json",
        "marquez/open_lineage/null_nominal_end_time.json",
    )
    event = load_example("marquez/open_lineage/event_unicode.json")
    assert Job.objects.filter(name=event["job"]["name"]).exists()
    no_tz = load_example("marquez/open_lineage/event_required_no_timezone.json")
    run = Run.objects.get(run_id=no_tz["run"]["runId"])
    assert run.first_event_time.isoformat().startswith(no_tz["eventTime"][:19])  # taken as UTC
    nominal = load_example("marquez/open_lineage/null_nominal_end_time.json")
    nominal_run = Run.objects.get(run_id=nominal["run"]["runId"])
    assert nominal_run.nominal_start_time is not None and nominal_run.nominal_end_time is None


def test_source_code_location_with_version_records_a_commit(post_event):
    event = load_example("marquez/open_lineage/event_simple.json")
    event["job"]["facets"] = {
        "sourceCodeLocation": {
            "_producer": "https://example.com/p",
            "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/SourceCodeLocationJobFacet.json",
            "type": "git",
            "url": "https://github.com/acme/etl/blob/abc123/jobs/load.py",
            "repoUrl": "git@github.com:acme/etl.git",
            "path": "jobs/load.py",
            "version": "abc123def456",
            "branch": "main",
        }
    }
    assert post_event(event).status_code == 201
    run = Run.objects.get(run_id=event["run"]["runId"])
    assert run.code_commit == CodeCommit.objects.get(repo_url="git@github.com:acme/etl.git", sha="abc123def456")
    assert run.code_commit.branch == "main" and run.code_commit.path == "jobs/load.py"
