"""Parsing and validating one OpenLineage event into a typed, trusted shape.

Strict where a wrong value would corrupt the graph (identifiers, times, types of structural
fields), lenient where Marquez is lenient: a missing ``schemaURL`` (RunEvent), an ``eventTime``
without offset (taken as UTC), a non-UUID ``runId``, unknown facets (kept verbatim).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lineage.ingest.errors import InvalidEvent

EVENT_KINDS = ("RunEvent", "DatasetEvent", "JobEvent")
EVENT_TYPES = ("START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER")
MAX_NAME = 1024
MAX_RUN_ID = 255
# Namespaces are identifiers that also appear in URLs and node ids: no white space, control
# characters, or characters that cannot appear unescaped in a URI.
_NAMESPACE_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f<>\"'`{}|\\^]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FRACTION = re.compile(r"(\.\d{6})\d+")


@dataclass(frozen=True)
class ColumnInput:
    """One input field of one output field, from the `columnLineage` facet."""

    field: str
    namespace: str
    name: str
    input_field: str
    transformations: list[Any]
    description: str
    type: str


@dataclass(frozen=True)
class DatasetMention:
    namespace: str
    name: str
    facets: dict[str, Any]
    io_facets: dict[str, Any]  # inputFacets / outputFacets
    column_inputs: tuple[ColumnInput, ...] = ()
    previous: tuple[str, str] | None = None  # the identifier before a RENAME

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def referenced(self) -> list[tuple[str, str]]:
        """Other datasets this mention names (column-lineage inputs, the name before a rename)."""
        keys = [(c.namespace, c.name) for c in self.column_inputs]
        if self.previous is not None:
            keys.append(self.previous)
        return keys


@dataclass
class ParsedEvent:
    kind: str
    event_type: str
    event_time: datetime
    producer: str
    schema_url: str
    payload: dict[str, Any]
    run_id: str = ""
    run_facets: dict[str, Any] = field(default_factory=dict)
    job_namespace: str = ""
    job_name: str = ""
    job_facets: dict[str, Any] = field(default_factory=dict)
    inputs: list[DatasetMention] = field(default_factory=list)
    outputs: list[DatasetMention] = field(default_factory=list)
    dataset: DatasetMention | None = None
    parent_job: tuple[str, str] | None = None  # from the run's `parent` facet

    @property
    def mentions(self) -> list[DatasetMention]:
        return [*self.inputs, *self.outputs, *([self.dataset] if self.dataset else [])]


def kind_from_schema_url(schema_url: str | None) -> str:
    """The event kind named by the last segment of ``schemaURL`` (RunEvent when it names none)."""
    if not schema_url:
        return "RunEvent"
    last = re.split(r"[/#]", schema_url.rstrip("/"))[-1]
    if last in EVENT_KINDS:
        return last
    if last.endswith("Event"):
        raise InvalidEvent(f"unknown event type {last!r}; expected one of {', '.join(EVENT_KINDS)}", field="schemaURL")
    return "RunEvent"


def parse_event_time(value: Any, path: str = "eventTime") -> datetime:
    if not isinstance(value, str) or not value:
        raise InvalidEvent("must be an ISO 8601 date-time string", field=path)
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    text = _FRACTION.sub(r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidEvent(f"{value!r} is not an ISO 8601 date-time", field=path) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _require_obj(parent: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    if key not in parent or parent[key] is None:
        raise InvalidEvent("required field is missing", field=path)
    value = parent[key]
    if not isinstance(value, dict):
        raise InvalidEvent(f"must be an object, not {type(value).__name__}", field=path)
    return value


def _optional_obj(parent: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent(f"must be an object, not {type(value).__name__}", field=path)
    return value


def _require_str(parent: dict[str, Any], key: str, path: str, max_len: int = MAX_NAME) -> str:
    if key not in parent or parent[key] is None:
        raise InvalidEvent("required field is missing", field=path)
    value = parent[key]
    if not isinstance(value, str):
        raise InvalidEvent(f"must be a string, not {type(value).__name__}", field=path)
    if not value.strip():
        raise InvalidEvent("must not be empty", field=path)
    if len(value) > max_len:
        raise InvalidEvent(f"is {len(value)} characters long; the limit is {max_len}", field=path)
    if _CONTROL.search(value):
        raise InvalidEvent("contains control characters", field=path)
    return value


def _identifier(value: Any, path: str) -> tuple[str, str]:
    if not isinstance(value, dict):
        raise InvalidEvent("must be an object with namespace and name", field=path)
    return _namespace(value, f"{path}.namespace"), _require_str(value, "name", f"{path}.name")


def _column_inputs(facets: dict[str, Any], path: str) -> tuple[ColumnInput, ...]:
    facet = facets.get("columnLineage")
    fields = facet.get("fields") if isinstance(facet, dict) else None
    if not isinstance(fields, dict):
        return ()
    found = []
    for out_field, spec in fields.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("inputFields"), list):
            continue
        for j, item in enumerate(spec["inputFields"]):
            where = f"{path}.facets.columnLineage.fields.{out_field}.inputFields[{j}]"
            namespace, name = _identifier(item, where)
            input_field = _require_str(item, "field", f"{where}.field")
            transformations = item.get("transformations")
            description, kind = spec.get("transformationDescription"), spec.get("transformationType")
            found.append(
                ColumnInput(
                    field=out_field[:MAX_NAME],
                    namespace=namespace,
                    name=name,
                    input_field=input_field,
                    transformations=transformations if isinstance(transformations, list) else [],
                    description=description if isinstance(description, str) else "",
                    type=kind[:64] if isinstance(kind, str) else "",
                )
            )
    return tuple(found)


def _previous_identifier(facets: dict[str, Any], path: str) -> tuple[str, str] | None:
    lifecycle = facets.get("lifecycleStateChange")
    if not isinstance(lifecycle, dict) or str(lifecycle.get("lifecycleStateChange", "")).upper() != "RENAME":
        return None
    previous = lifecycle.get("previousIdentifier")
    if previous is None:
        return None
    return _identifier(previous, f"{path}.facets.lifecycleStateChange.previousIdentifier")


def _mention(item: dict[str, Any], path: str, io_key: str | None) -> DatasetMention:
    facets = _optional_obj(item, "facets", f"{path}.facets")
    return DatasetMention(
        namespace=_namespace(item, f"{path}.namespace"),
        name=_require_str(item, "name", f"{path}.name"),
        facets=facets,
        io_facets=_optional_obj(item, io_key, f"{path}.{io_key}") if io_key else {},
        column_inputs=_column_inputs(facets, path),
        previous=_previous_identifier(facets, path),
    )


def _namespace(parent: dict[str, Any], path: str) -> str:
    value = _require_str(parent, "namespace", path)
    bad = _NAMESPACE_FORBIDDEN.search(value)
    if bad:
        raise InvalidEvent(
            f"contains the forbidden character {bad.group()!r}; namespaces may not contain white space, "
            "control characters or any of < > \" ' ` { } | \\ ^",
            field=path,
        )
    return value


def _datasets(event: dict[str, Any], key: str, io_key: str) -> list[DatasetMention]:
    raw = event.get(key)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidEvent(f"must be an array, not {type(raw).__name__}", field=key)
    mentions = []
    for index, item in enumerate(raw):
        path = f"{key}[{index}]"
        if not isinstance(item, dict):
            raise InvalidEvent(f"must be an object, not {type(item).__name__}", field=path)
        mentions.append(_mention(item, path, io_key))
    return mentions


def parse_event(event: Any) -> ParsedEvent:
    """Validate a decoded JSON value as an OpenLineage event; raise InvalidEvent naming the field."""
    if not isinstance(event, dict):
        raise InvalidEvent(f"an OpenLineage event must be a JSON object, not {type(event).__name__}")
    schema_url = event.get("schemaURL")
    if schema_url is not None and not isinstance(schema_url, str):
        raise InvalidEvent("must be a string", field="schemaURL")
    kind = kind_from_schema_url(schema_url)
    if "eventTime" not in event or event["eventTime"] is None:
        raise InvalidEvent("required field is missing", field="eventTime")
    event_time = parse_event_time(event["eventTime"])
    producer = _require_str(event, "producer", "producer", max_len=4096)
    parsed = ParsedEvent(
        kind=kind,
        event_type="",
        event_time=event_time,
        producer=producer,
        schema_url=schema_url or "",
        payload=event,
    )
    if kind == "DatasetEvent":
        parsed.dataset = _mention(_require_obj(event, "dataset", "dataset"), "dataset", None)
        return parsed

    job = _require_obj(event, "job", "job")
    parsed.job_namespace = _namespace(job, "job.namespace")
    parsed.job_name = _require_str(job, "name", "job.name")
    parsed.job_facets = _optional_obj(job, "facets", "job.facets")
    parsed.inputs = _datasets(event, "inputs", "inputFacets")
    parsed.outputs = _datasets(event, "outputs", "outputFacets")
    if kind == "JobEvent":
        return parsed

    event_type = event.get("eventType")
    if event_type is not None:
        if not isinstance(event_type, str):
            raise InvalidEvent("must be a string", field="eventType")
        if event_type.upper() not in EVENT_TYPES:
            raise InvalidEvent(f"{event_type!r} is not one of {', '.join(EVENT_TYPES)}", field="eventType")
        parsed.event_type = event_type.upper()
    run = _require_obj(event, "run", "run")
    parsed.run_id = _require_str(run, "runId", "run.runId", max_len=MAX_RUN_ID)
    parsed.run_facets = _optional_obj(run, "facets", "run.facets")
    for alias in ("parent", "parentRun"):
        parent = parsed.run_facets.get(alias)
        if isinstance(parent, dict) and parent.get("job") is not None:
            parsed.parent_job = _identifier(parent["job"], f"run.facets.{alias}.job")
            break
    return parsed
