"""A JSON renderer for large read answers.

A depth-20 lineage answer is ~0.5 MB of JSON; the standard library's encoder spent a third of the
request's CPU writing it. orjson writes the same JSON (compact, UTF-8, no NaN) several times faster.
Anything orjson refuses (a non-string key, an integer beyond 64 bits, a datetime, which DRF formats
its own way) and an indented rendering asked for in the Accept header go through DRF's renderer.
"""

from __future__ import annotations

from typing import Any

import orjson
from rest_framework.renderers import JSONRenderer


class FastJSONRenderer(JSONRenderer):
    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        if data is None:
            return b""
        if self.get_indent(accepted_media_type or "", renderer_context or {}) is None:
            try:
                return orjson.dumps(data, option=orjson.OPT_PASSTHROUGH_DATETIME)
            except (TypeError, orjson.JSONEncodeError):
                pass
        return super().render(data, accepted_media_type, renderer_context)
