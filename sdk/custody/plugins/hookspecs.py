"""The hooks a Custody plugin may implement (pluggy project name ``custody``).

A plugin is a module or an object with functions marked ``@custody.plugins.hookimpl``, registered
through the entry-point group ``custody``::

    [project.entry-points.custody]
    my_plugin = "my_package.custody_plugin"

Each hook returns a dict of OpenLineage facets (or None to add nothing). Facets from several
plugins are merged; for the same facet name, a plugin registered later wins (entry-point plugins
come after the built-ins). A plugin that raises is logged once and skipped; recording goes on.
Implementations may accept any subset of the arguments, by name.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import pluggy

hookspec = pluggy.HookspecMarker("custody")


@hookspec
def custody_run_facets(run: Any, event_type: str) -> Optional[Dict[str, Any]]:
    """Run facets for the run's ``START`` event and its terminal event (``COMPLETE``/``FAIL``/``ABORT``).

    ``run`` is a :class:`custody.plugins.RunInfo`. Called on the SDK's background thread, so it may
    take a few milliseconds (the git plugin runs ``git``); it must not touch the caller's data.
    """


@hookspec
def custody_job_facets(run: Any) -> Optional[Dict[str, Any]]:
    """Job facets for the run's ``START`` event (e.g. ``sourceCodeLocation``). Background thread."""


@hookspec
def custody_dataset_facets(
    data: Any, namespace: str, name: str, role: str, digest: Optional[bool], config: Any
) -> Optional[Dict[str, Any]]:
    """Dataset facets for ``run.input(...)`` / ``run.output(...)``; ``role`` is ``"input"`` or ``"output"``.

    With ``data`` (a DataFrame, a table...) this runs on the caller's thread, so that what is
    recorded is the data as it was at the call: derive the ``schema`` facet and, when ``digest`` is
    true (or None and the data is small enough, see ``config.data_digest_max_cells``), a content
    digest as the ``version`` facet. Without ``data`` it runs on the background thread.
    Facets named ``inputStatistics`` / ``outputStatistics`` go to the input/output facets.
    Return None for data you do not recognise.
    """


@hookspec
def custody_model_info(model: Any, path: Optional[str]) -> Optional[Dict[str, Any]]:
    """What a plugin knows about a model passed to ``run.log_model(model=...)``: keys of the
    ``custody_model`` facet such as ``framework``, ``frameworkVersion``, ``modelClass``,
    ``hyperparameters``, and ``artifactDigest`` (``sha256:<hex>``) when no ``path`` was given.
    Caller's thread. Return None for models you do not recognise."""
