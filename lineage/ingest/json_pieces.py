"""Serialising a large JSON value a piece at a time.

A serialiser builds the whole text of a value at once (the standard library even builds one small
string per token first and then joins them): for a 32 MB document that is one or several copies
of its size beside the value. :func:`json_pieces` yields the text as consecutive pieces instead,
each the text of a subtree of at most :data:`PIECE_VALUES` values (a slice of a long array or of
a wide object): hash them, or send them to the database, one at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

PIECE_VALUES = 16_384  # values (containers and scalars) per piece, at most (one large value aside)

T = TypeVar("T", str, bytes)


def size(value: Any, limit: int = PIECE_VALUES) -> int:
    """How many values ``value`` holds (itself included), counted up to ``limit + 1``: whether it
    is a large document costs a walk of at most ``limit`` values."""
    if not isinstance(value, dict | list):
        return 1
    count, stack = 0, [value]
    while stack:
        item = stack.pop()
        count += 1
        if count > limit:
            break
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def json_pieces(
    value: Any, dumps: Callable[[Any], T], *, sort_keys: bool, piece_values: int = PIECE_VALUES
) -> Iterator[T]:
    """The pieces of ``dumps(value)``, for a compact ``dumps`` (no white space between tokens) that
    orders an object's keys as given (``sort_keys=False``) or sorted (``sort_keys=True``)."""
    yield from _Emitter(dumps, sort_keys, piece_values).emit(value)


class _Emitter(Generic[T]):
    def __init__(self, dumps: Callable[[Any], T], sort_keys: bool, piece_values: int) -> None:
        self.dumps: Callable[[Any], T] = dumps
        self.sort_keys = sort_keys
        self.limit = piece_values
        empty: T = dumps("")[:0]  # "" or b"": separators of the serialiser's type
        self.none: T = empty
        marks = _marks(empty, ",:{}[]")
        self.comma: T = marks[0]
        self.colon: T = marks[1]
        self.open_object: T = marks[2]
        self.close_object: T = marks[3]
        self.open_array: T = marks[4]
        self.close_array: T = marks[5]

    def separator(self, first: bool) -> T:
        return self.none if first else self.comma

    def emit(self, value: Any) -> Iterator[T]:
        if size(value, self.limit) <= self.limit:
            yield self.dumps(value)
        elif isinstance(value, dict):
            yield from self.emit_object(value)
        else:
            yield from self.emit_array(value)

    def emit_object(self, value: dict[str, Any]) -> Iterator[T]:
        yield self.open_object
        first = True
        group: list[str] = []  # consecutive keys whose values are small together
        count = 0
        for key in sorted(value) if self.sort_keys else value:
            child = value[key]
            child_size = size(child, self.limit)
            if group and (child_size > self.limit or count + child_size > self.limit):
                yield self.separator(first) + self.dumps({k: value[k] for k in group})[1:-1]
                first, group, count = False, [], 0
            if child_size > self.limit:
                yield self.separator(first) + self.dumps(key) + self.colon
                first = False
                yield from self.emit(child)
                continue
            group.append(key)
            count += child_size
        if group:
            yield self.separator(first) + self.dumps({k: value[k] for k in group})[1:-1]
        yield self.close_object

    def emit_array(self, value: list[Any]) -> Iterator[T]:
        yield self.open_array
        first = True
        start = 0  # the first item of the current group of small items
        count = 0
        for index, child in enumerate(value):
            child_size = size(child, self.limit)
            if index > start and (child_size > self.limit or count + child_size > self.limit):
                yield self.separator(first) + self.dumps(value[start:index])[1:-1]
                first, start, count = False, index, 0
            if child_size > self.limit:
                yield self.separator(first)
                first = False
                yield from self.emit(child)
                start = index + 1
                continue
            count += child_size
        if len(value) > start:
            yield self.separator(first) + self.dumps(value[start:])[1:-1]
        yield self.close_array


def _marks(empty: T, chars: str) -> list[T]:
    """``chars`` one by one, as the same type as ``empty``."""
    return [empty + (c if isinstance(empty, str) else c.encode()) for c in chars]  # type: ignore[operator]
