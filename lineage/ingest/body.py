"""Reading a request body with a hard size limit, gzip/deflate decompression and bomb protection."""

from __future__ import annotations

import zlib
from typing import Protocol

from lineage.ingest.errors import BodyTooLarge, MalformedBody, UnsupportedEncoding

CHUNK = 256 * 1024
# Decompressed bytes per step. A 256 KiB read of JSON can inflate to several MiB, and zlib builds
# each step's output in blocks and then copies it: small steps keep those transients small.
OUT_CHUNK = 1024 * 1024


class Readable(Protocol):
    def read(self, size: int = ...) -> bytes: ...


def _too_large(limit: int, what: str = "Request body") -> BodyTooLarge:
    return BodyTooLarge(f"{what} exceeds the limit of {limit} bytes ({limit // (1024 * 1024)} MiB).")


def read_limited(
    stream: Readable, limit: int, content_encoding: str = "", content_length: int | None = None
) -> bytearray:
    """Read at most ``limit`` bytes of (decompressed) body; raise BodyTooLarge beyond it.

    Decompression is streamed with ``max_length`` so a gzip bomb is stopped at the limit instead
    of being inflated into memory.
    """
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        decompressor = None
    elif encoding in ("gzip", "x-gzip"):
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        decompressor = zlib.decompressobj(zlib.MAX_WBITS)
    else:
        raise UnsupportedEncoding(f"Content-Encoding {content_encoding!r} is not supported; use gzip, deflate or none.")
    if content_length is not None and content_length > limit:
        raise _too_large(limit)
    out = bytearray()
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        if decompressor is None:
            out += chunk
        else:
            try:
                data = decompressor.decompress(chunk, min(OUT_CHUNK, limit + 1 - len(out)))
                out += data
                # Drain what the step size held back: input left over, or (after a full step)
                # output zlib may still owe for input it has already consumed. Bytes after the
                # end of the stream are ignored, as before.
                while (
                    (decompressor.unconsumed_tail or len(data) == OUT_CHUNK)
                    and not decompressor.eof
                    and len(out) <= limit
                ):
                    data = decompressor.decompress(decompressor.unconsumed_tail, min(OUT_CHUNK, limit + 1 - len(out)))
                    out += data
            except zlib.error as exc:
                raise MalformedBody(f"Body is not valid {encoding} data: {exc}.") from exc
        if len(out) > limit:
            raise _too_large(limit, "Request body (decompressed)" if decompressor else "Request body")
    if decompressor is not None and not decompressor.eof:
        raise MalformedBody(f"Body is truncated {encoding} data.")
    return out
