"""Custody SDK: record the chain of custody of data and models from training code.

::

    import custody
    custody.init(url="http://127.0.0.1:8000", token="...", namespace="fraud")
    with custody.run("train-fraud-model") as run:
        run.input("s3://bank/raw", "transactions", data=df)
        run.log_params({"max_depth": 6}); run.log_metrics({"auc": 0.91})
        mv = run.log_model("fraud-detector", path="model.pkl")
    custody.request_promotion("fraud-detector", mv.version, to="production", reason="Q3 retrain")

Calls return at once: a background thread builds OpenLineage RunEvents, spools them to a local
file and sends them in batches. Configuration comes from :func:`init` arguments or the
``CUSTODY_URL`` / ``CUSTODY_TOKEN`` / ``CUSTODY_NAMESPACE`` / ``CUSTODY_DISABLED`` variables.
"""

from __future__ import annotations

import _thread

from custody._version import PRODUCER, __version__

# ``import custody`` stays cheap (a fraction of a millisecond): the client, the sender and the
# plugins are imported on first use (``init``, ``run``...). TYPE_CHECKING is the idiom mypy and
# pyright understand without importing ``typing``.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Mapping, Optional, TypeVar, Union, overload

    from custody.client import Client, DatasetRef, ModelVersion, ParentRef, Run
    from custody.config import Config
    from custody.errors import (
        AuthenticationError,
        ConfigurationError,
        Conflict,
        CustodyError,
        FeatureUnavailable,
        HTTPError,
        NotFound,
        PermissionDenied,
        ServerUnreachable,
    )

    F = TypeVar("F", bound=Callable[..., Any])
else:

    def overload(func):
        return func


_LAZY = {
    "Client": "custody.client",
    "DatasetRef": "custody.client",
    "ModelVersion": "custody.client",
    "ParentRef": "custody.client",
    "Run": "custody.client",
    "Config": "custody.config",
    "AuthenticationError": "custody.errors",
    "ConfigurationError": "custody.errors",
    "Conflict": "custody.errors",
    "CustodyError": "custody.errors",
    "FeatureUnavailable": "custody.errors",
    "HTTPError": "custody.errors",
    "NotFound": "custody.errors",
    "PermissionDenied": "custody.errors",
    "ServerUnreachable": "custody.errors",
    "hookimpl": "custody.plugins",
}

_client: Optional[Client] = None
_lock = _thread.allocate_lock()
_auto_lock = _thread.allocate_lock()  # first use from several threads at once configures one client
_hooks_installed = False


def init(
    url: Optional[str] = None,
    token: Optional[str] = None,
    namespace: Optional[str] = None,
    *,
    disabled: Optional[bool] = None,
    spool_dir: Optional[str] = None,
    **options: Any,
) -> Client:
    """Configure the shared client (arguments win over ``CUSTODY_*`` variables) and start its
    sender, which first replays events earlier processes left in the spool. Calling it again
    replaces the client (the previous one delivers or spools what it holds)."""
    global _client, _hooks_installed
    from custody.client import Client
    from custody.config import Config

    config = Config.resolve(
        url=url, token=token, namespace=namespace, disabled=disabled, spool_dir=spool_dir, **options
    )
    with _lock:
        previous = _client
        _client = Client(config)
        if not _hooks_installed:
            import atexit
            import os

            atexit.register(_at_exit)
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(
                    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
                )
            _hooks_installed = True
        client = _client
    if previous is not None:
        previous.shutdown()
    client.start()
    return client


def get_client() -> Client:
    """The shared client, configured from the environment on first use if :func:`init` was not called."""
    client = _client
    if client is None:
        with _auto_lock:
            client = _client
            if client is None:
                client = init()
    return client


def run(
    name: Optional[str] = None,
    *,
    namespace: Optional[str] = None,
    run_id: Optional[str] = None,
    parent: Union[Run, ParentRef, str, None] = None,
    description: Optional[str] = None,
    facets: Optional[Mapping[str, Any]] = None,
    job_facets: Optional[Mapping[str, Any]] = None,
) -> Run:
    """A run of job ``name`` (default: the script's name). ``with custody.run("train") as run:``
    sends START, then COMPLETE, or FAIL with the error message and stack trace. Started inside
    another run, it becomes a child run (the ``parent`` facet)."""
    return get_client().run(
        name,
        namespace=namespace,
        run_id=run_id,
        parent=parent,
        description=description,
        facets=facets,
        job_facets=job_facets,
    )


@overload
def track(func: F) -> F: ...
@overload
def track(  # noqa: F811
    func: None = None, *, name: Optional[str] = None, namespace: Optional[str] = None, description: Optional[str] = None
) -> Callable[[F], F]: ...
def track(  # noqa: F811
    func: Optional[F] = None,
    *,
    name: Optional[str] = None,
    namespace: Optional[str] = None,
    description: Optional[str] = None,
) -> Any:
    """Decorator: every call of the function is a run of the job ``name`` (default: its qualified
    name). Works on plain and ``async`` functions; ``@custody.track`` or ``@custody.track(name=...)``."""

    def decorate(f: F) -> F:
        import functools

        job = name or f.__qualname__
        doc = description

        if getattr(f, "__code__", None) is not None and f.__code__.co_flags & 0x80:  # CO_COROUTINE

            @functools.wraps(f)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with run(job, namespace=namespace, description=doc):
                    return await f(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with run(job, namespace=namespace, description=doc):
                return f(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate


def active_run() -> Optional[Run]:
    """The run active in this thread or task, if any."""
    from custody.client import current_run

    return current_run()


# --- the active run's methods, MLflow-style ------------------------------------------------------
def _require_run(what: str) -> Run:
    from custody.client import require_run

    return require_run(what)


def log_params(params: Mapping[str, Any]) -> None:
    _require_run("log_params").log_params(params)


def log_param(key: str, value: Any) -> None:
    _require_run("log_param").log_param(key, value)


def log_metrics(metrics: Mapping[str, Any], step: Optional[int] = None) -> None:
    _require_run("log_metrics").log_metrics(metrics, step)


def log_metric(key: str, value: Any, step: Optional[int] = None) -> None:
    _require_run("log_metric").log_metric(key, value, step)


def input(namespace: Any, name: Optional[str] = None, **kwargs: Any) -> DatasetRef:
    return _require_run("input").input(namespace, name, **kwargs)


def output(namespace: Any, name: Optional[str] = None, **kwargs: Any) -> DatasetRef:
    return _require_run("output").output(namespace, name, **kwargs)


def log_model(name: str, path: Any = None, **kwargs: Any) -> ModelVersion:
    return _require_run("log_model").log_model(name, path, **kwargs)


def emit(event: Dict[str, Any]) -> None:
    """Send a ready-made OpenLineage event through the SDK's queue, spool and batches."""
    get_client().emit(event)


def flush(timeout: Optional[float] = 30.0) -> bool:
    """Wait until everything recorded so far has reached the server (True) or ``timeout`` passes."""
    return get_client().flush(timeout)


def status() -> Dict[str, Any]:
    return get_client().status()


def request_promotion(
    model: Union[str, ModelVersion],
    version: Any = None,
    *,
    to: str,
    reason: Optional[str] = None,
    namespace: Optional[str] = None,
    **extra: Any,
) -> Any:
    """``POST /api/v1/promotions/``: ask for a model version to enter environment ``to``.
    Flushes recorded lineage first. Raises :class:`FeatureUnavailable` on a server without governance."""
    return get_client().request_promotion(model, version, to=to, reason=reason, namespace=namespace, **extra)


def record_deployment(
    model: Union[str, ModelVersion],
    version: Any = None,
    *,
    environment: str,
    target: Optional[str] = None,
    namespace: Optional[str] = None,
    **extra: Any,
) -> Any:
    """``POST /api/v1/deployments/``; raises :class:`Conflict` when the server refuses (e.g. no live approval)."""
    return get_client().record_deployment(
        model, version, environment=environment, target=target, namespace=namespace, **extra
    )


def shutdown(timeout: Optional[float] = None) -> bool:
    """Deliver (within ``timeout``) or spool everything, and stop the sender; done at exit anyway."""
    global _client
    with _lock:
        client, _client = _client, None
    return client.shutdown(timeout) if client is not None else True


def _at_exit() -> None:
    client = _client
    if client is not None:
        try:
            client.shutdown()
        except Exception:  # never turn a clean exit into a traceback
            import logging

            logging.getLogger("custody").exception("custody: error while flushing at exit")


def _before_fork() -> None:
    # Never fork while the spooler is building events: it may be importing a module (plugins load
    # lazily), and a child would inherit it half-initialised.
    client = _client
    if client is not None and client.sender is not None:
        client.sender.pause_for_fork()


def _after_fork_in_parent() -> None:
    client = _client
    if client is not None and client.sender is not None:
        client.sender.resume_after_fork()


def _after_fork_in_child() -> None:
    client = _client
    if client is not None:
        client._open.clear()  # the parent ends its runs
        if client.sender is not None:
            client.sender.reset_after_fork()


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'custody' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "PRODUCER",
    "AuthenticationError",
    "Client",
    "Config",
    "ConfigurationError",
    "Conflict",
    "CustodyError",
    "DatasetRef",
    "FeatureUnavailable",
    "HTTPError",
    "ModelVersion",
    "NotFound",
    "ParentRef",
    "PermissionDenied",
    "Run",
    "ServerUnreachable",
    "__version__",
    "active_run",
    "emit",
    "flush",
    "get_client",
    "init",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_param",
    "log_params",
    "output",
    "record_deployment",
    "request_promotion",
    "run",
    "shutdown",
    "status",
    "track",
]
