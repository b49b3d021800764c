"""The client: configuration, the background sender, plugins, and runs.

Everything on the caller's thread is an enqueue (a few microseconds), except describing data or a
model handed over as an object (``input(data=df)``, ``log_model(model=...)``), which plugins do on
the spot so that what is recorded is the object as it was at the call.
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import threading
import time
from types import TracebackType
from typing import Any, Dict, Mapping, NamedTuple, Optional, Type, Union

from custody._util import custody_facet, iso, json_safe, ol_facet, path_digest, split_dataset, uuid7
from custody.config import Config
from custody.errors import ConfigurationError

logger = logging.getLogger("custody")

_current: contextvars.ContextVar[Optional[Run]] = contextvars.ContextVar("custody_run", default=None)
MAX_STACK = 64 * 1024


class DatasetRef(NamedTuple):
    """A dataset recorded as a run's input or output."""

    namespace: str
    name: str
    version: Optional[str] = None


class ModelVersion(NamedTuple):
    """A model version recorded by :meth:`Run.log_model`; ``version`` is what governance calls use."""

    name: str
    version: str
    artifact_digest: str
    artifact_uri: Optional[str]
    run_id: str
    namespace: str
    framework: Optional[str] = None


class ParentRef:
    """A parent run known only by id (e.g. from an orchestrator, via ``OPENLINEAGE_PARENT_ID``)."""

    def __init__(self, namespace: str, name: str, run_id: str) -> None:
        self.namespace = namespace
        self.name = name
        self.run_id = run_id
        self.root = self

    @classmethod
    def parse(cls, text: str) -> ParentRef:
        """``namespace/name/runId`` (the ``OPENLINEAGE_PARENT_ID`` format)."""
        namespace, rest = text.split("/", 1)
        name, run_id = rest.rsplit("/", 1)
        if not namespace or not name or not run_id:
            raise ValueError(text)
        return cls(namespace, name, run_id)


def _error_facet(exc: BaseException) -> Dict[str, Any]:
    import traceback

    stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if len(stack) > MAX_STACK:
        stack = stack[: MAX_STACK // 4] + "\n[... truncated ...]\n" + stack[-(MAX_STACK * 3 // 4) :]
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return ol_facet("1-0-1/ErrorMessageRunFacet", message=message, programmingLanguage="python", stackTrace=stack)


class Run:
    """One execution of a job. Use as a context manager, or call :meth:`start` and :meth:`end`.

    Runs started while another run is active (in the same thread or task) become its children.
    """

    def __init__(
        self,
        client: Client,
        name: str,
        namespace: str,
        *,
        run_id: Optional[str] = None,
        parent: Union[Run, ParentRef, None] = None,
        description: Optional[str] = None,
        facets: Optional[Mapping[str, Any]] = None,
        job_facets: Optional[Mapping[str, Any]] = None,
    ) -> None:
        self._client = client
        self.name = name
        self.namespace = namespace
        self.run_id = run_id or uuid7()
        self.parent = parent
        self.root: Union[Run, ParentRef] = parent.root if parent is not None else self
        self.description = description
        self.run_facets: Dict[str, Any] = dict(facets or {})
        self.job_facets: Dict[str, Any] = dict(job_facets or {})
        self.state = "NEW"
        self.started_at: Optional[float] = None
        self.ended_at: Optional[float] = None
        self.info: Any = None
        self.params: Dict[str, Any] = {}
        self._token: Optional[contextvars.Token[Optional[Run]]] = None
        self._pid = 0  # the process that started the run (a forked child may log to it, not end it)

    def __repr__(self) -> str:
        return f"<custody.Run {self.namespace}:{self.name} {self.run_id} {self.state}>"

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Run:
        if self.state != "NEW":
            raise RuntimeError(f"run {self.run_id} was already started")
        from custody.plugins import RunInfo

        self.started_at = time.time()
        self.info = RunInfo(
            run_id=self.run_id,
            namespace=self.namespace,
            job_name=self.name,
            parent_run_id=self.parent.run_id if self.parent is not None else None,
            root_run_id=self.root.run_id,
            started_at=self.started_at,
        )
        self.state = "RUNNING"
        self._pid = os.getpid()
        self._token = _current.set(self)
        self._client._opened(self)
        self._client._put(("start", self, self.started_at))
        return self

    def end(self, state: str = "COMPLETE", error: Optional[BaseException] = None) -> None:
        """Finish the run: ``COMPLETE`` (default), ``FAIL`` or ``ABORT``; ``error`` adds the
        ``errorMessage`` facet (message and stack trace). Ending twice does nothing."""
        if self.state != "RUNNING":
            return
        state = state.upper()
        if state not in ("COMPLETE", "FAIL", "ABORT"):
            raise ValueError(f"state must be COMPLETE, FAIL or ABORT, not {state!r}")
        self.ended_at = time.time()
        self.state = state
        facet = _error_facet(error) if error is not None else None
        self._client._put(("end", self, state, self.ended_at, facet))
        self._client._closed(self)
        if self._token is not None:
            try:
                _current.reset(self._token)
            except ValueError:  # ended from another context: just stop being current there
                if _current.get() is self:
                    _current.set(self.parent if isinstance(self.parent, Run) else None)
            self._token = None

    def __enter__(self) -> Run:
        return self.start() if self.state == "NEW" else self

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        if exc is None or (isinstance(exc, SystemExit) and exc.code in (None, 0)):
            self.end("COMPLETE")
        elif isinstance(exc, (KeyboardInterrupt, GeneratorExit)):
            self.end("ABORT", exc)
        else:
            self.end("FAIL", exc)

    # --- datasets --------------------------------------------------------------------------------
    def input(
        self,
        namespace: Any,
        name: Optional[str] = None,
        *,
        data: Any = None,
        facets: Optional[Mapping[str, Any]] = None,
        version: Optional[str] = None,
        digest: Optional[bool] = None,
    ) -> DatasetRef:
        """Record a dataset this run read: ``run.input("s3://bank/raw", "transactions", data=df)``,
        or one URI / local path (``run.input("data/train.csv")``). With ``data``, plugins derive
        the schema, row count and (``digest``: True, False, or None for "if small enough") a
        content digest, which becomes the dataset version."""
        return self._dataset("input", namespace, name, data, facets, version, digest)

    def output(
        self,
        namespace: Any,
        name: Optional[str] = None,
        *,
        data: Any = None,
        facets: Optional[Mapping[str, Any]] = None,
        version: Optional[str] = None,
        digest: Optional[bool] = None,
    ) -> DatasetRef:
        """Record a dataset this run wrote (same arguments as :meth:`input`)."""
        return self._dataset("output", namespace, name, data, facets, version, digest)

    def _dataset(
        self,
        role: str,
        namespace: Any,
        name: Optional[str],
        data: Any,
        facets: Optional[Mapping[str, Any]],
        version: Optional[str],
        digest: Optional[bool],
    ) -> DatasetRef:
        from custody.events import apply_dataset_facets

        ns, nm = split_dataset(namespace, name)
        dataset: Dict[str, Any] = {"namespace": ns, "name": nm, "facets": {}}
        lazy: Optional[Dict[str, Any]] = None
        client = self._client
        if client.sender is None:
            return DatasetRef(ns, nm, version)
        if data is not None:
            host = client.plugins()
            if host is not None:
                found = host.merged(
                    "custody_dataset_facets",
                    data=data,
                    namespace=ns,
                    name=nm,
                    role=role,
                    digest=digest,
                    config=client.config,
                )
                if not found:
                    logger.debug("custody: no plugin describes data of type %s", type(data).__name__)
                apply_dataset_facets(dataset, role, found, override=True)
        else:
            lazy = {"digest": digest}
        if facets:
            apply_dataset_facets(dataset, role, _with_base(dict(facets)), override=True)
        if version is not None:
            dataset["facets"]["version"] = ol_facet("1-0-1/DatasetVersionDatasetFacet", datasetVersion=str(version))
        label = (dataset["facets"].get("version") or {}).get("datasetVersion")
        client._put(("dataset", self, role, dataset, lazy, time.time()))
        return DatasetRef(ns, nm, label)

    # --- params and metrics ----------------------------------------------------------------------------
    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record hyperparameters (JSON-safe copies; later values for a key win)."""
        copy = dict(params)
        self.params.update(copy)
        self._client._put(("params", self, copy, time.time()))

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_metrics(self, metrics: Mapping[str, Any], step: Optional[int] = None) -> None:
        """Record metric values (numbers; NaN and infinities are kept as strings). Every call is
        kept as a point with its time and ``step``; the run's final facet has the latest values."""
        self._client._put(("metrics", self, dict(metrics), step, time.time()))

    def log_metric(self, key: str, value: Any, step: Optional[int] = None) -> None:
        self._client._put(("metrics", self, {key: value}, step, time.time()))

    # --- models ------------------------------------------------------------------------------------------
    def log_model(
        self,
        name: str,
        path: Optional[Union[str, os.PathLike[str]]] = None,
        *,
        model: Any = None,
        version: Optional[str] = None,
        uri: Optional[str] = None,
        digest: Optional[str] = None,
        framework: Optional[str] = None,
        params: Optional[Mapping[str, Any]] = None,
        metrics: Optional[Mapping[str, Any]] = None,
        description: Optional[str] = None,
    ) -> ModelVersion:
        """Record a model version produced by this run (the ``custody_model`` facet on an output).

        ``path`` is the saved artifact (file or directory): its sha256 is the artifact digest.
        ``model`` (the object) lets plugins add framework, class and hyperparameters, and a digest
        when there is no ``path``. ``version`` defaults to the first 12 hex digits of the digest:
        the same bytes are the same version. The facet carries the run's params and its metrics
        (the latest values at the end of the run, plus ``metrics`` given here)."""
        client = self._client
        info: Dict[str, Any] = {}
        local = os.path.abspath(os.fspath(path)) if path is not None else None
        if model is not None and client.sender is not None:
            host = client.plugins()
            if host is not None:
                info = host.merged("custody_model_info", model=model, path=local)
        size = info.get("artifactSize")
        artifact_digest = digest
        if artifact_digest is None and local is not None:
            if os.path.exists(local):
                artifact_digest, size = path_digest(local)
            else:
                logger.warning("custody: log_model(%r): %s does not exist; no artifact digest", name, local)
        if artifact_digest is None:
            artifact_digest = info.get("artifactDigest")
        if not artifact_digest:
            raise ValueError(
                f"log_model({name!r}) needs the saved artifact (path=), a model object a plugin understands "
                "(model=), or digest='sha256:...'"
            )
        label = str(version) if version is not None else artifact_digest.split(":")[-1][:12]
        artifact_uri = uri or (_file_uri(local) if local else None)
        model_facet = custody_facet(
            "custody_model",
            "CustodyModelDatasetFacet",
            name=name,
            version=label,
            artifactUri=artifact_uri,
            artifactDigest=artifact_digest,
            artifactSize=size,
            artifactFormat=info.get("artifactFormat"),
            framework=framework or info.get("framework"),
            frameworkVersion=info.get("frameworkVersion"),
            modelClass=info.get("modelClass"),
            hyperparameters=info.get("hyperparameters"),
            params=json_safe({**self.params, **dict(params or {})}),
            description=description,
        )
        result = ModelVersion(
            name=name,
            version=label,
            artifact_digest=artifact_digest,
            artifact_uri=artifact_uri,
            run_id=self.run_id,
            namespace=self.namespace,
            framework=model_facet.get("framework"),
        )
        if client.sender is None:
            return result
        facets: Dict[str, Any] = {
            "custody_model": model_facet,
            "version": ol_facet("1-0-1/DatasetVersionDatasetFacet", datasetVersion=label),
        }
        if artifact_uri:
            ns, nm = split_dataset(uri if uri else local, None)
            facets["symlinks"] = ol_facet(
                "1-0-1/SymlinksDatasetFacet", identifiers=[{"namespace": ns, "name": nm, "type": "FILE"}]
            )
        dataset: Dict[str, Any] = {"namespace": self.namespace, "name": f"models/{name}", "facets": facets}
        if size is not None:
            dataset["outputFacets"] = {
                "outputStatistics": ol_facet("1-0-2/OutputStatisticsOutputDatasetFacet", size=size)
            }
        client._put(("model", self, dataset, json_safe(dict(metrics or {})), time.time()))
        return result


def _file_uri(path: str) -> str:
    from urllib.parse import quote

    return "file://" + quote(path.replace(os.sep, "/"))


def _with_base(facets: Dict[str, Any]) -> Dict[str, Any]:
    """User facets get the base fields OpenLineage requires when they lack them."""
    from custody._version import PRODUCER

    out = {}
    for key, value in facets.items():
        if isinstance(value, dict):
            value = dict(value)
            value.setdefault("_producer", PRODUCER)
            value.setdefault("_schemaURL", "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetFacet")
        out[key] = value
    return out


class Client:
    """Holds the configuration, the sender and the plugins. Most programs use the module-level
    functions (``custody.init``, ``custody.run``...), which share one client."""

    def __init__(self, config: Optional[Config] = None, **overrides: Any) -> None:
        self.config = config if config is not None else Config.resolve(**overrides)
        self.sender: Any = None
        if not self.config.disabled:
            from custody.sender import Sender

            self.sender = Sender(self.config, self.plugins)
        self._plugins: Any = None
        self._plugins_failed = False
        self._plugins_lock = threading.Lock()
        self._open: Dict[str, Run] = {}
        self._closed_flag = False

    # --- plumbing ----------------------------------------------------------------------------------------
    def _put(self, item: Any) -> None:
        sender = self.sender
        if sender is not None:
            sender.put(item)

    def _opened(self, run: Run) -> None:
        self._open[run.run_id] = run

    def _closed(self, run: Run) -> None:
        self._open.pop(run.run_id, None)

    def plugins(self) -> Any:
        """The :class:`custody.plugins.PluginHost`, created on first use (None if pluggy is broken)."""
        if self._plugins is None and not self._plugins_failed:
            with self._plugins_lock:
                if self._plugins is None and not self._plugins_failed:
                    try:
                        from custody.plugins import PluginHost

                        self._plugins = PluginHost(self.config.disable_plugins)
                    except Exception as exc:
                        self._plugins_failed = True
                        logger.warning(
                            "custody: plugins are unavailable (%s: %s); recording without them", type(exc).__name__, exc
                        )
        return self._plugins

    def start(self) -> None:
        """Start the sender now (it replays what earlier processes left in the spool)."""
        if self.sender is not None:
            self.sender.start()

    # --- runs ----------------------------------------------------------------------------------------------
    def run(
        self,
        name: Optional[str] = None,
        *,
        namespace: Optional[str] = None,
        run_id: Optional[str] = None,
        parent: Union[Run, ParentRef, str, None] = None,
        description: Optional[str] = None,
        facets: Optional[Mapping[str, Any]] = None,
        job_facets: Optional[Mapping[str, Any]] = None,
    ) -> Run:
        if name is None:
            main = sys.modules.get("__main__")
            path = getattr(main, "__file__", None)
            name = os.path.splitext(os.path.basename(path))[0] if path else "notebook"
        if isinstance(parent, str):
            parent = ParentRef.parse(parent)
        if parent is None:
            parent = _current.get()
        if parent is None and os.environ.get("OPENLINEAGE_PARENT_ID"):
            try:
                parent = ParentRef.parse(os.environ["OPENLINEAGE_PARENT_ID"])
            except ValueError:
                logger.warning(
                    "custody: OPENLINEAGE_PARENT_ID=%r is not namespace/name/runId; ignored",
                    os.environ["OPENLINEAGE_PARENT_ID"],
                )
        return Run(
            self,
            name,
            namespace or self.config.namespace,
            run_id=run_id,
            parent=parent,
            description=description,
            facets=facets,
            job_facets=job_facets,
        )

    def emit(self, event: Dict[str, Any]) -> None:
        """Send a ready-made OpenLineage event through the same queue, spool and batches."""
        self._put(("emit", event))

    def flush(self, timeout: Optional[float] = 30.0) -> bool:
        """Block until everything recorded so far is delivered (True), or ``timeout`` passes."""
        if self.sender is None:
            return True
        return bool(self.sender.flush(timeout))

    def status(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "url": self.config.base_url,
            "namespace": self.config.namespace,
            "disabled": self.config.disabled,
        }
        if self.sender is not None:
            out.update(self.sender.status())
        return out

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """End runs still open (ABORT), deliver within ``timeout`` (default ``exit_timeout``), spool
        the rest. Called at interpreter exit for the shared client."""
        if self._closed_flag:
            return True
        self._closed_flag = True
        for run in list(self._open.values()):
            run.end(
                "ABORT",
                UnfinishedRun(
                    f"the program ended while run {run.name!r} was still open (call run.end() or use `with`)"
                ),
            )
        if self.sender is None:
            return True
        return bool(self.sender.shutdown(self.config.exit_timeout if timeout is None else timeout))

    # --- governance ------------------------------------------------------------------------------------------
    def request_promotion(
        self,
        model: Union[str, ModelVersion],
        version: Any = None,
        *,
        to: str,
        reason: Optional[str] = None,
        namespace: Optional[str] = None,
        **extra: Any,
    ) -> Any:
        from custody import governance

        return governance.request_promotion(self, model, version, to=to, reason=reason, namespace=namespace, **extra)

    def record_deployment(
        self,
        model: Union[str, ModelVersion],
        version: Any = None,
        *,
        environment: str,
        target: Optional[str] = None,
        namespace: Optional[str] = None,
        **extra: Any,
    ) -> Any:
        from custody import governance

        return governance.record_deployment(
            self, model, version, environment=environment, target=target, namespace=namespace, **extra
        )


class UnfinishedRun(Exception):
    """The error recorded on runs still open when the program ends."""


def current_run() -> Optional[Run]:
    return _current.get()


def require_run(what: str) -> Run:
    run = _current.get()
    if run is None:
        raise ConfigurationError(
            f"custody.{what}() needs an active run: use `with custody.run(...):` or @custody.track"
        )
    return run


__all__ = ["Client", "DatasetRef", "ModelVersion", "ParentRef", "Run", "current_run", "iso"]
