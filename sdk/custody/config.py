"""Configuration: arguments to :func:`custody.init`, else environment variables, else defaults.

=========================  =============================================  =========================
argument                   environment variable                           default
=========================  =============================================  =========================
``url``                    ``CUSTODY_URL``                                ``http://127.0.0.1:8000``
``token``                  ``CUSTODY_TOKEN``                              none
``namespace``              ``CUSTODY_NAMESPACE``                          ``default``
``disabled``               ``CUSTODY_DISABLED`` (1/true/yes)              false
``spool_dir``              ``CUSTODY_SPOOL_DIR``                          ``$XDG_CACHE_HOME/custody``
                                                                          or ``~/.cache/custody``
``exit_timeout``           ``CUSTODY_EXIT_TIMEOUT`` (seconds)             5
``timeout``                ``CUSTODY_TIMEOUT`` (seconds per request)      10
``disable_plugins``        ``CUSTODY_DISABLE_PLUGINS`` (comma list)       none
``data_digest_max_cells``  ``CUSTODY_DATA_DIGEST_MAX_CELLS``              5,000,000
``file_digest_max_bytes``  ``CUSTODY_FILE_DIGEST_MAX_BYTES``              268,435,456 (256 MiB)
=========================  =============================================  =========================
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, FrozenSet, Mapping, Optional

from custody.errors import ConfigurationError

DEFAULT_URL = "http://127.0.0.1:8000"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def _flag(value: str, name: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(f"{name}={value!r} is not a boolean (use 1/0, true/false, yes/no).")


def _number(value: str, name: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigurationError(f"{name}={value!r} is not a number.")
    if number < 0:
        raise ConfigurationError(f"{name}={value!r} must not be negative.")
    return number


def default_spool_root() -> str:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "custody")


_DEFAULTS: Dict[str, Any] = {
    "url": DEFAULT_URL,
    "token": None,
    "namespace": "default",
    "disabled": False,
    "spool_dir": None,  # default_spool_root()
    "exit_timeout": 5.0,
    "timeout": 10.0,
    "disable_plugins": frozenset(),
    "data_digest_max_cells": 5_000_000,
    "file_digest_max_bytes": 256 * 1024 * 1024,
    # batching and memory bounds of the background sender
    "max_batch_events": 1000,
    "max_batch_bytes": 4 * 1024 * 1024,
    "max_memory_bytes": 64 * 1024 * 1024,
    "metrics_interval": 0.5,
}


class Config:
    """Immutable settings (see the module docstring); build with :meth:`resolve`."""

    url: str
    token: Optional[str]
    namespace: str
    disabled: bool
    spool_dir: str
    exit_timeout: float
    timeout: float
    disable_plugins: FrozenSet[str]
    data_digest_max_cells: int
    file_digest_max_bytes: int
    max_batch_events: int
    max_batch_bytes: int
    max_memory_bytes: int
    metrics_interval: float

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - set(_DEFAULTS)
        if unknown:
            raise ConfigurationError(f"unknown option(s): {', '.join(sorted(unknown))}")
        merged = {**_DEFAULTS, **values}
        if merged["spool_dir"] is None:
            merged["spool_dir"] = default_spool_root()
        for key, value in merged.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Config is immutable; use with_()")

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={getattr(self, k)!r}" for k in _DEFAULTS if k != "token")
        return f"Config({shown}, token={'set' if self.token else None})"

    @classmethod
    def resolve(cls, env: Optional[Mapping[str, str]] = None, **overrides: Any) -> Config:
        """Arguments win over environment variables, which win over defaults."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if env.get("CUSTODY_URL"):
            values["url"] = env["CUSTODY_URL"]
        if env.get("CUSTODY_TOKEN"):
            values["token"] = env["CUSTODY_TOKEN"]
        if env.get("CUSTODY_NAMESPACE"):
            values["namespace"] = env["CUSTODY_NAMESPACE"]
        if "CUSTODY_DISABLED" in env:
            values["disabled"] = _flag(env["CUSTODY_DISABLED"], "CUSTODY_DISABLED")
        if env.get("CUSTODY_SPOOL_DIR"):
            values["spool_dir"] = env["CUSTODY_SPOOL_DIR"]
        if env.get("CUSTODY_EXIT_TIMEOUT"):
            values["exit_timeout"] = _number(env["CUSTODY_EXIT_TIMEOUT"], "CUSTODY_EXIT_TIMEOUT")
        if env.get("CUSTODY_TIMEOUT"):
            values["timeout"] = _number(env["CUSTODY_TIMEOUT"], "CUSTODY_TIMEOUT")
        if env.get("CUSTODY_DISABLE_PLUGINS"):
            values["disable_plugins"] = env["CUSTODY_DISABLE_PLUGINS"]
        if env.get("CUSTODY_DATA_DIGEST_MAX_CELLS"):
            values["data_digest_max_cells"] = int(
                _number(env["CUSTODY_DATA_DIGEST_MAX_CELLS"], "CUSTODY_DATA_DIGEST_MAX_CELLS")
            )
        if env.get("CUSTODY_FILE_DIGEST_MAX_BYTES"):
            values["file_digest_max_bytes"] = int(
                _number(env["CUSTODY_FILE_DIGEST_MAX_BYTES"], "CUSTODY_FILE_DIGEST_MAX_BYTES")
            )
        values.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(values.get("disable_plugins"), str):
            values["disable_plugins"] = frozenset(p.strip() for p in values["disable_plugins"].split(",") if p.strip())
        elif "disable_plugins" in values:
            values["disable_plugins"] = frozenset(values["disable_plugins"])
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        if not re.match(r"^https?://[^/\s]+", self.url):
            raise ConfigurationError(f"CUSTODY_URL {self.url!r} must be an http:// or https:// URL.")
        if not self.namespace.strip() or re.search(r"[\s\x00-\x1f\x7f<>\"'`{}|\\^]", self.namespace):
            raise ConfigurationError(
                f"namespace {self.namespace!r} must be non-empty and contain no white space "
                "or any of < > \" ' ` { } | \\ ^"
            )

    def with_(self, **changes: Any) -> Config:
        return Config(**{**{k: getattr(self, k) for k in _DEFAULTS}, **changes})

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/")

    @property
    def spool_key(self) -> str:
        """Spooled events belong to one server: they are kept under a directory named after its URL."""
        base = self.base_url
        host = re.sub(r"[^A-Za-z0-9.-]+", "_", base.split("://", 1)[1])[:60]
        import hashlib

        return f"{host}-{hashlib.sha256(base.encode()).hexdigest()[:10]}"

    @property
    def spool_path(self) -> str:
        return os.path.join(self.spool_dir, "spool", self.spool_key)
