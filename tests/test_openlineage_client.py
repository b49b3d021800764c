"""The real openlineage-python client, pointed at a live Custody server, lands its events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import schema_dataset, sql_job
from openlineage.client.transport.async_http import AsyncHttpConfig, AsyncHttpTransport
from openlineage.client.transport.http import HttpConfig, HttpTransport

from governance.accounts.models import ApiToken
from lineage.models import Dataset as DatasetRow
from lineage.models import JobDatasetEdge, RawEvent
from lineage.models import Run as RunRow

pytestmark = pytest.mark.django_db(transaction=True)
PRODUCER = "https://github.com/acme/pipelines/tree/v1"


def events(job_name: str) -> list[RunEvent]:
    run = Run(runId=str(uuid.uuid4()))
    job = Job(namespace="client-tests", name=job_name, facets={"sql": sql_job.SQLJobFacet(query="SELECT 1")})
    schema = schema_dataset.SchemaDatasetFacet(
        fields=[
            schema_dataset.SchemaDatasetFacetFields(name="id", type="BIGINT"),
            schema_dataset.SchemaDatasetFacetFields(name="email", type="VARCHAR"),
        ]
    )
    source = InputDataset(namespace="postgres://db:5432", name="crm.public.users", facets={"schema": schema})
    target = OutputDataset(namespace="s3://lake", name="users_clean", facets={"schema": schema})
    return [
        RunEvent(
            eventType=RunState.START,
            eventTime=datetime.now(UTC).isoformat(),
            run=run,
            job=job,
            producer=PRODUCER,
            inputs=[source],
        ),
        RunEvent(
            eventType=RunState.COMPLETE,
            eventTime=datetime.now(UTC).isoformat(),
            run=run,
            job=job,
            producer=PRODUCER,
            inputs=[source],
            outputs=[target],
        ),
    ]


@pytest.fixture
def token(make_user) -> str:
    user = make_user("airflow", roles=("data_scientist",))
    return ApiToken.issue(user, label="openlineage-client", scope="ingest")[1]


def assert_landed(job_name: str, run_id: str) -> None:
    run = RunRow.objects.get(run_id=run_id)
    assert run.job.name == job_name and run.state == RunRow.State.COMPLETED
    assert RawEvent.objects.filter(run_id=run_id).count() == 2
    assert RawEvent.objects.filter(run_id=run_id, submitted_by__username="airflow").count() == 2
    target = DatasetRow.objects.get(namespace__name="s3://lake", name="users_clean")
    assert [f["name"] for f in target.fields] == ["id", "email"]
    assert set(
        JobDatasetEdge.objects.filter(job=run.job, valid_to__isnull=True).values_list("dataset__name", "direction")
    ) == {("crm.public.users", 0), ("users_clean", 1)}


def test_sync_transport_with_api_key_and_gzip(live_server, token):
    config = HttpConfig.from_dict(
        {"url": live_server.url, "auth": {"type": "api_key", "apiKey": token}, "compression": "gzip"}
    )
    client = OpenLineageClient(transport=HttpTransport(config))
    start, complete = events("sync_job")
    client.emit(start)
    client.emit(complete)
    assert_landed("sync_job", start.run.runId)


def test_sync_transport_without_token_is_refused(live_server):
    client = OpenLineageClient(transport=HttpTransport(HttpConfig.from_dict({"url": live_server.url})))
    with pytest.raises(Exception, match="401"):
        client.emit(events("anonymous_job")[0])
    assert not RawEvent.objects.exists()


def test_async_transport(live_server, token):
    config = AsyncHttpConfig.from_dict(
        {"url": live_server.url, "auth": {"type": "api_key", "apiKey": token}, "compression": "gzip"}
    )
    transport = AsyncHttpTransport(config)
    client = OpenLineageClient(transport=transport)
    start, complete = events("async_job")
    client.emit(start)
    client.emit(complete)
    assert transport.wait_for_completion(timeout=30)
    transport.close(timeout=10)
    assert_landed("async_job", start.run.runId)
