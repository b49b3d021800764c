"""Plugins: pluggy hooks discovered through the entry-point group ``custody``.

Write one with :data:`hookimpl` (see :mod:`custody.plugins.hookspecs` for the hooks)::

    from custody.plugins import hookimpl

    @hookimpl
    def custody_run_facets(run, event_type):
        if event_type == "START":
            return {"acme_cluster": {"_producer": "...", "_schemaURL": "...", "node": "gpu-17"}}

Built-ins (each can be disabled by name with ``CUSTODY_DISABLE_PLUGINS``): ``git``,
``environment``, ``ci``, ``files``, ``pandas``, ``pyarrow``, ``numpy``, ``sklearn``, ``torch``.
The data and model plugins never import their library: they only look at objects of a library
the program has already imported.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import threading
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, List, Optional, Set, Tuple

import pluggy

from custody.plugins import hookspecs

logger = logging.getLogger("custody")

hookimpl = pluggy.HookimplMarker("custody")
ENTRY_POINT_GROUP = "custody"

BUILTINS: Tuple[Tuple[str, str], ...] = (
    ("git", "custody.plugins.git"),
    ("environment", "custody.plugins.environment"),
    ("ci", "custody.plugins.ci"),
    ("files", "custody.plugins.files"),
    ("pandas", "custody.plugins.pandas_data"),
    ("pyarrow", "custody.plugins.pyarrow_data"),
    ("numpy", "custody.plugins.numpy_data"),
    ("sklearn", "custody.plugins.sklearn_model"),
    ("torch", "custody.plugins.torch_model"),
)


@dataclass(frozen=True)
class RunInfo:
    """What plugins learn about a run."""

    run_id: str
    namespace: str
    job_name: str
    parent_run_id: Optional[str]
    root_run_id: str
    started_at: float

    @property
    def is_root(self) -> bool:
        return self.parent_run_id is None


def _entry_points() -> List[Any]:
    from importlib.metadata import entry_points

    eps = entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group=ENTRY_POINT_GROUP))
    return list(eps.get(ENTRY_POINT_GROUP, []))  # Python 3.9


class PluginHost:
    """Owns the plugin manager and calls hooks so that one failing plugin never stops the others."""

    def __init__(self, disabled: FrozenSet[str] = frozenset(), entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager("custody")
        self.pm.add_hookspecs(hookspecs)
        self.load_errors: Dict[str, str] = {}
        self._reported: Set[Tuple[str, str]] = set()
        self._lock = threading.Lock()
        for name, module in BUILTINS:
            if name in disabled:
                continue
            try:
                self.pm.register(importlib.import_module(module), name=name)
            except Exception as exc:  # a broken built-in must not stop the others
                self._load_failed(name, exc)
        if entry_points:
            try:
                eps = _entry_points()
            except Exception as exc:
                logger.warning("custody: could not list entry points of group %r: %s", ENTRY_POINT_GROUP, exc)
                eps = []
            for ep in eps:
                if ep.name in disabled or self.pm.has_plugin(ep.name):
                    continue
                try:
                    plugin = ep.load()
                    if inspect.isclass(plugin):
                        plugin = plugin()
                    self.pm.register(plugin, name=ep.name)
                except Exception as exc:
                    self._load_failed(ep.name, exc)

    def _load_failed(self, name: str, exc: BaseException) -> None:
        self.load_errors[name] = f"{type(exc).__name__}: {exc}"
        logger.warning("custody: plugin %r could not be loaded and is skipped: %s: %s", name, type(exc).__name__, exc)

    def register(self, plugin: Any, name: Optional[str] = None) -> None:
        self.pm.register(plugin, name=name)

    def names(self) -> List[str]:
        return [name for name, _ in self.pm.list_name_plugin()]

    def call(self, hook_name: str, **kwargs: Any) -> List[Tuple[str, Dict[str, Any]]]:
        """``[(plugin name, result)]`` in registration order, skipping None and failures."""
        hook = getattr(self.pm.hook, hook_name)
        out: List[Tuple[str, Dict[str, Any]]] = []
        for impl in hook.get_hookimpls():
            if getattr(impl, "hookwrapper", False) or getattr(impl, "wrapper", False):
                continue
            try:
                result = impl.function(*[kwargs[arg] for arg in impl.argnames])
            except Exception as exc:
                self._report(impl.plugin_name, hook_name, f"raised {type(exc).__name__}: {exc}", exc)
                continue
            if result is None:
                continue
            if not isinstance(result, dict):
                self._report(impl.plugin_name, hook_name, f"returned a {type(result).__name__}, not a dict", None)
                continue
            out.append((impl.plugin_name, result))
        return out

    def merged(self, hook_name: str, **kwargs: Any) -> Dict[str, Any]:
        merged: Dict[str, Any] = {}
        for _, result in self.call(hook_name, **kwargs):
            merged.update(result)
        return merged

    def _report(self, plugin: str, hook: str, what: str, exc: Optional[BaseException]) -> None:
        with self._lock:
            first = (plugin, hook) not in self._reported
            self._reported.add((plugin, hook))
        if first:
            logger.warning(
                "custody: plugin %r %s in %s; its facets are skipped (reported once)",
                plugin,
                what,
                hook,
                exc_info=exc if exc is not None else None,
            )
        else:
            logger.debug("custody: plugin %r %s in %s", plugin, what, hook)


__all__ = ["BUILTINS", "ENTRY_POINT_GROUP", "PluginHost", "RunInfo", "hookimpl"]
