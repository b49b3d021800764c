"""Turning what the caller recorded into OpenLineage RunEvents (on the sender thread).

One run produces: ``START`` (with git, environment and CI facets from the plugins), ``RUNNING``
events carrying what was logged since the previous event (datasets, params, models, metric points;
metric points are coalesced for up to ``metrics_interval`` seconds), and one terminal event
(``COMPLETE``, ``FAIL`` with the ``errorMessage`` facet, or ``ABORT``) that repeats the run's full
inputs, outputs, params and final metric values, as OpenLineage consumers expect.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from custody._util import custody_facet, iso, json_safe, metric_value, ol_facet
from custody._version import PRODUCER, __version__
from custody.config import Config

logger = logging.getLogger("custody")

RUN_EVENT_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
TERMINAL = ("COMPLETE", "FAIL", "ABORT")
MAX_POINTS_PER_EVENT = 20_000


def encode(event: Dict[str, Any]) -> bytes:
    """Compact JSON; NaN/Infinity and odd types are made JSON-safe; never raises."""
    try:
        text = json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (ValueError, TypeError):
        text = json.dumps(json_safe(event), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if "\\u0000" in text:  # NUL cannot be stored by the server's database
        text = text.replace("\\u0000", "\\ufffd")
    return text.encode("utf-8", "replace")


def dataset_key(dataset: Dict[str, Any]) -> Tuple[str, str]:
    return (dataset["namespace"], dataset["name"])


class _Acc:
    """What the sender knows about one open run."""

    __slots__ = (
        "inputs",
        "last_event_ts",
        "last_metrics_emit",
        "last_ts",
        "latest",
        "models",
        "new_inputs",
        "new_outputs",
        "outputs",
        "params",
        "params_changed",
        "point_offset",
        "points",
        "run",
    )

    def __init__(self, run: Any) -> None:
        self.run = run
        self.inputs: Dict[Tuple[str, str], Dict[str, Any]] = {}
        self.outputs: Dict[Tuple[str, str], Dict[str, Any]] = {}
        self.new_inputs: List[Tuple[str, str]] = []
        self.new_outputs: List[Tuple[str, str]] = []
        self.params: Dict[str, Any] = {}
        self.params_changed = False
        self.latest: Dict[str, Any] = {}
        self.points: List[Dict[str, Any]] = []
        self.point_offset = 0
        self.last_metrics_emit = time.monotonic()
        self.models: List[Tuple[str, str]] = []
        self.last_ts = 0.0  # latest caller time of anything recorded
        self.last_event_ts = 0.0  # eventTime of the run's previous event

    def stamp(self, ts: float) -> float:
        """Event times of one run strictly increase, so the server's merge-by-time is unambiguous."""
        ts = max(ts, self.last_event_ts + 1e-6)
        self.last_event_ts = ts
        return ts

    def touch(self, ts: float) -> None:
        if ts > self.last_ts:
            self.last_ts = ts

    @property
    def has_updates(self) -> bool:
        return bool(self.new_inputs or self.new_outputs or self.params_changed)


class EventBuilder:
    """Owns per-run state; every method runs on the sender thread (under the intake lock)."""

    def __init__(self, config: Config, plugins: Callable[[], Any]) -> None:
        self.config = config
        self._plugins = plugins
        self.runs: Dict[str, _Acc] = {}

    # --- helpers ---------------------------------------------------------------------------------
    def _event(self, run: Any, event_type: str, ts: float, run_facets: Dict[str, Any]) -> Dict[str, Any]:
        facets: Dict[str, Any] = {}
        parent = run.parent
        if parent is not None:
            root = run.root
            facets["parent"] = ol_facet(
                "1-2-0/ParentRunFacet",
                run={"runId": parent.run_id},
                job={"namespace": parent.namespace, "name": parent.name},
                root={"run": {"runId": root.run_id}, "job": {"namespace": root.namespace, "name": root.name}},
            )
        facets.update(run_facets)
        return {
            "eventType": event_type,
            "eventTime": iso(ts),
            "run": {"runId": run.run_id, "facets": facets},
            "job": {"namespace": run.namespace, "name": run.name, "facets": {}},
            "inputs": [],
            "outputs": [],
            "producer": PRODUCER,
            "schemaURL": RUN_EVENT_SCHEMA,
        }

    def _plugin_facets(self, hook: str, **kwargs: Any) -> Dict[str, Any]:
        try:
            host = self._plugins()
        except Exception as exc:  # pluggy missing or broken: record without plugins
            logger.debug("custody: plugins unavailable: %s", exc)
            return {}
        if host is None:
            return {}
        merged: Dict[str, Any] = host.merged(hook, **kwargs)
        return merged

    def _params_facet(self, acc: _Acc) -> Dict[str, Any]:
        return custody_facet("custody_params", "CustodyParamsRunFacet", params=acc.params)

    def _metric_facets(self, acc: _Acc, final: bool) -> Dict[str, Any]:
        facets: Dict[str, Any] = {}
        if acc.points:
            facets["custody_metric_points"] = custody_facet(
                "custody_metric_points",
                "CustodyMetricPointsRunFacet",
                offset=acc.point_offset,
                count=len(acc.points),
                points=acc.points,
            )
            acc.point_offset += len(acc.points)
            acc.points = []
        if facets or (final and (acc.latest or acc.point_offset)):
            facets["custody_metrics"] = custody_facet(
                "custody_metrics",
                "CustodyMetricsRunFacet",
                metrics=dict(acc.latest),
                pointCount=acc.point_offset,
                final=final,
            )
        acc.last_metrics_emit = time.monotonic()
        return facets

    # --- items -------------------------------------------------------------------------------------
    def start(self, run: Any, ts: float) -> Dict[str, Any]:
        acc = _Acc(run)
        self.runs[run.run_id] = acc
        ts = acc.stamp(ts)
        acc.touch(ts)
        run_facets: Dict[str, Any] = {
            "processing_engine": ol_facet(
                "1-1-1/ProcessingEngineRunFacet",
                version=platform.python_version(),
                name="python",
                openlineageAdapterVersion=__version__,
            )
        }
        run_facets.update(self._plugin_facets("custody_run_facets", run=run.info, event_type="START"))
        run_facets.update(run.run_facets)
        event = self._event(run, "START", ts, run_facets)
        job_facets: Dict[str, Any] = {
            "jobType": ol_facet("2-0-4/JobTypeJobFacet", processingType="BATCH", integration="CUSTODY", jobType="JOB")
        }
        if run.description:
            job_facets["documentation"] = ol_facet("1-1-0/DocumentationJobFacet", description=run.description)
        job_facets.update(self._plugin_facets("custody_job_facets", run=run.info))
        job_facets.update(run.job_facets)
        event["job"]["facets"] = job_facets
        return event

    def acc(self, run: Any) -> _Acc:
        acc = self.runs.get(run.run_id)
        if acc is None:  # logging to a run this process did not start (e.g. after fork): no START here
            acc = self.runs[run.run_id] = _Acc(run)
        return acc

    def params(self, run: Any, params: Dict[str, Any], ts: float) -> None:
        acc = self.acc(run)
        acc.touch(ts)
        acc.params.update(json_safe(params))
        acc.params_changed = True

    def metrics(self, run: Any, values: Dict[str, Any], step: Optional[int], ts: float) -> None:
        acc = self.acc(run)
        acc.touch(ts)
        stamp = iso(ts)
        for key, raw in values.items():
            try:
                value = metric_value(raw)
            except (TypeError, ValueError):
                logger.warning("custody: metric %r=%r is not a number; skipped", key, raw)
                continue
            key = str(key)
            acc.latest[key] = value
            point: Dict[str, Any] = {"key": key, "value": value, "timestamp": stamp}
            if step is not None:
                point["step"] = step
            acc.points.append(point)

    def dataset(self, run: Any, role: str, dataset: Dict[str, Any], lazy: Optional[Dict[str, Any]], ts: float) -> None:
        if lazy is not None:  # no data object: plugins (e.g. files) run here, off the caller's thread
            found = self._plugin_facets(
                "custody_dataset_facets",
                data=None,
                namespace=dataset["namespace"],
                name=dataset["name"],
                role=role,
                digest=lazy.get("digest"),
                config=self.config,
            )
            apply_dataset_facets(dataset, role, found, override=False)
        acc = self.acc(run)
        acc.touch(ts)
        key = dataset_key(dataset)
        table = acc.inputs if role == "input" else acc.outputs
        if key in table:
            previous = table[key]
            previous["facets"].update(dataset.get("facets", {}))
            io = "inputFacets" if role == "input" else "outputFacets"
            previous.setdefault(io, {}).update(dataset.get(io, {}))
        else:
            table[key] = dataset
        (acc.new_inputs if role == "input" else acc.new_outputs).append(key)

    def model(self, run: Any, dataset: Dict[str, Any], explicit_metrics: Dict[str, Any], ts: float) -> None:
        facet = dataset["facets"]["custody_model"]
        acc = self.acc(run)
        if not facet.get("environmentDigest"):
            digest = _environment_digest(self)
            if digest:
                facet["environmentDigest"] = digest
        facet["_explicitMetrics"] = explicit_metrics
        facet["metrics"] = {**acc.latest, **explicit_metrics}
        self.dataset(run, "output", dataset, None, ts)
        acc.models.append(dataset_key(dataset))

    # --- emitting ------------------------------------------------------------------------------------
    def running(self, acc: _Acc, with_metrics: bool) -> Optional[Dict[str, Any]]:
        if not acc.has_updates and not (with_metrics and acc.points):
            return None
        ts = acc.stamp(acc.last_ts)
        run_facets: Dict[str, Any] = {}
        if acc.params_changed:
            run_facets["custody_params"] = self._params_facet(acc)
            acc.params_changed = False
        if with_metrics and acc.points:
            run_facets.update(self._metric_facets(acc, final=False))
        event = self._event(acc.run, "RUNNING", ts, run_facets)
        event["inputs"] = [_public(acc.inputs[k]) for k in dict.fromkeys(acc.new_inputs)]
        event["outputs"] = [self._output(acc, k) for k in dict.fromkeys(acc.new_outputs)]
        acc.new_inputs.clear()
        acc.new_outputs.clear()
        return event

    def _output(self, acc: _Acc, key: Tuple[str, str]) -> Dict[str, Any]:
        dataset = acc.outputs[key]
        model = dataset["facets"].get("custody_model")
        if model is not None:
            model["metrics"] = {**acc.latest, **model.get("_explicitMetrics", {})}
        return _public(dataset)

    def end(self, run: Any, event_type: str, ts: float, error: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        acc = self.runs.pop(run.run_id, None) or _Acc(run)
        ts = acc.stamp(ts)
        run_facets: Dict[str, Any] = {}
        if acc.params:
            run_facets["custody_params"] = self._params_facet(acc)
        run_facets.update(self._metric_facets(acc, final=True))
        if error is not None:
            run_facets["errorMessage"] = error
        run_facets.update(self._plugin_facets("custody_run_facets", run=run.info, event_type=event_type))
        event = self._event(run, event_type, ts, run_facets)
        event["inputs"] = [_public(d) for d in acc.inputs.values()]
        event["outputs"] = [self._output(acc, k) for k in acc.outputs]
        return event

    def due_metrics(self, now: float, force: bool) -> List[_Acc]:
        interval = self.config.metrics_interval
        return [
            acc
            for acc in self.runs.values()
            if acc.points
            and (force or len(acc.points) >= MAX_POINTS_PER_EVENT or now - acc.last_metrics_emit >= interval)
        ]

    def next_metrics_deadline(self) -> Optional[float]:
        """Monotonic time when pending metric points must go out, None when there are none."""
        pending = [acc.last_metrics_emit for acc in self.runs.values() if acc.points]
        return min(pending) + self.config.metrics_interval if pending else None

    def open_runs(self) -> List[Dict[str, str]]:
        return [
            {"runId": acc.run.run_id, "namespace": acc.run.namespace, "name": acc.run.name}
            for acc in self.runs.values()
            if getattr(acc.run, "_pid", None) == os.getpid()
        ]


def _environment_digest(builder: EventBuilder) -> Optional[str]:
    try:
        host = builder._plugins()
        if host is None or not host.pm.has_plugin("environment"):
            return None
        from custody.plugins.environment import environment

        return str(environment()["environmentDigest"])
    except Exception:
        return None


def _public(dataset: Dict[str, Any]) -> Dict[str, Any]:
    out = {"namespace": dataset["namespace"], "name": dataset["name"], "facets": {}}
    for key, value in dataset.get("facets", {}).items():
        if key == "custody_model":
            value = {k: v for k, v in value.items() if not k.startswith("_explicit")}
        out["facets"][key] = value
    for io in ("inputFacets", "outputFacets"):
        if dataset.get(io):
            out[io] = dataset[io]
    return out


IO_FACETS = {"inputStatistics": "inputFacets", "outputStatistics": "outputFacets", "dataQualityMetrics": "inputFacets"}


def apply_dataset_facets(dataset: Dict[str, Any], role: str, found: Dict[str, Any], override: bool) -> None:
    """Route plugin facets to dataset facets or input/output facets; ``override`` False keeps the user's."""
    io_key = "inputFacets" if role == "input" else "outputFacets"
    for name, value in found.items():
        target = IO_FACETS.get(name)
        where = dataset.setdefault(io_key, {}) if target else dataset.setdefault("facets", {})
        if target and target != io_key:
            continue
        if override or name not in where:
            where[name] = value
