"""Plain-SQL reads and inserts of whole model rows, for the ingestion hot path.

Building and compiling a Django queryset costs a few hundred microseconds of CPU, more than the
indexed lookup it runs; one event needs a dozen of them. :class:`Table` keeps the SQL pieces and
the value converters of one model, computed once per process, and turns result rows into model
instances exactly as the ORM does (backend and field converters, ``Model.from_db``), so the rest
of the ingestion code works on ordinary model objects.
"""

from __future__ import annotations

import functools
import itertools
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import Any, Generic, TypeVar

from django.db import connections, models, router
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init

from lineage.ingest.staging import can_stage, large_expected, placeholder, stage_large

M = TypeVar("M", bound=models.Model)
Converter = tuple[int, list[Any], Any]
# How one column's value becomes a parameter: (field, attname, types passed as they are, whether
# the value comes from ``pre_save``); see :func:`prepared_values`.
Prep = tuple[models.Field, str, frozenset[type], bool]  # type: ignore[type-arg]

# Other integer fields are typed for psycopg (Int2, Int4, Int8) by the backend: not passed through.
_AUTO_FIELDS = (models.AutoField, models.BigAutoField, models.SmallAutoField)
_NONE = type(None)

INSERT_CHUNK = 500


@contextmanager
def bound_cursor(connection: Any, *, native_placeholders: bool = False) -> Iterator[Any]:
    """A cursor that sends parameters apart from the SQL text on PostgreSQL (server-side binding).

    Django's default psycopg cursor interpolates parameters into the text client-side, so every
    statement is parsed and planned anew. With the parameters apart, psycopg prepares a statement
    the connection has run a few times (its ``prepare_threshold``), and PostgreSQL skips parsing
    and planning it from then on (the ingestion path runs the same two dozen statements for every
    event, over persistent connections); psycopg also adapts the parameters in C instead of quoting
    them into the text. The cursor is wrapped like Django's own (error translation, query logging);
    elsewhere it is Django's cursor.

    ``native_placeholders``: the SQL uses PostgreSQL's ``$1, $2...`` (see :func:`placeholders`), so
    psycopg need not scan it for ``%s`` (which costs milliseconds on a multi-row INSERT).
    """
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    import psycopg

    connection.ensure_connection()
    with connection.wrap_database_errors:
        factory = psycopg.RawCursor if native_placeholders else psycopg.Cursor
        raw = factory(connection.connection)
    connection.validate_thread_sharing()
    cursor = _LoggedCursor(raw, connection) if connection.queries_logged else connection.make_cursor(raw)
    with cursor:
        yield cursor


@contextmanager
def pipelined(connection: Any) -> Iterator[None]:
    """Statements sent inside go out without waiting for one another's results (psycopg's pipeline
    mode, PostgreSQL only): a statement whose rows are fetched waits for everything before it, one
    that returns nothing waits for nothing. A round trip costs the web worker and PostgreSQL two
    context switches and a few system calls, more than a small indexed write itself; writing one
    event's rows used to take a dozen of them.

    An error surfaces at the next fetch or when the block ends, and the transaction around it is
    lost whole, so use it only where every statement belongs to one all-or-nothing unit. Not while
    large documents may be staged (``COPY`` is refused in a pipeline), nor around reads that look
    at a cursor's description before fetching (Django's raw querysets do).
    """
    if connection.vendor != "postgresql" or large_expected():
        yield
        return
    connection.ensure_connection()
    with connection.wrap_database_errors, connection.connection.pipeline():
        yield


class _LoggedCursor(CursorDebugWrapper):
    """Django's query logging (DEBUG, ``CaptureQueriesContext``) asks the driver for the text it
    sent, which a server-side-binding cursor may not have: log the statement as written."""

    def execute(self, sql: Any, params: Any = None) -> Any:
        with self.debug_sql(sql, params, use_last_executed_query=False):
            return CursorWrapper.execute(self, sql, params)


def placeholders(connection: Any, rows: int, columns: int, staged: Sequence[Any] = ()) -> str:
    """``(%s, %s), (%s, %s)`` for ``rows`` x ``columns`` values; ``($1, $2), ($3, $4)`` on PostgreSQL,
    for a :func:`bound_cursor` with ``native_placeholders``. ``staged``: the parameters, when some
    are staged documents (see :mod:`lineage.ingest.staging`)."""
    if connection.vendor != "postgresql":
        row = "(" + ", ".join(["%s"] * columns) + ")"
        return ", ".join([row] * rows)
    if staged:
        numbers = iter(range(1, rows * columns + 1))
        return ", ".join(
            "(" + ", ".join(placeholder(f"${n}", staged[n - 1]) for n in itertools.islice(numbers, columns)) + ")"
            for _ in range(rows)
        )
    return _numbered(rows, columns)


@functools.lru_cache(maxsize=256)
def _numbered(rows: int, columns: int) -> str:
    """``($1, $2), ($3, $4)``: the same few shapes recur on every batch."""
    numbers = iter(range(1, rows * columns + 1))
    return ", ".join("(" + ", ".join(f"${next(numbers)}" for _ in range(columns)) + ")" for _ in range(rows))


class Table(Generic[M]):
    """SQL of one model's table, bound to the database that model writes to."""

    _cache: dict[tuple[type[models.Model], str], Table[Any]] = {}

    def __init__(self, model: type[M], alias: str) -> None:
        self.model = model
        self.alias = alias
        connection = connections[alias]
        quote = connection.ops.quote_name
        meta = model._meta
        self.name = quote(meta.db_table)
        self.fields = list(meta.concrete_fields)
        self.attnames = [f.attname for f in self.fields]
        self.by_attname = {f.attname: f for f in self.fields}
        self.quoted = {f.attname: quote(str(f.column)) for f in self.fields}
        self.columns = ", ".join(f"{self.name}.{self.quoted[f.attname]}" for f in self.fields)
        self.quote = quote
        self.position = {f.attname: i for i, f in enumerate(self.fields)}
        self.json_positions = {i for i, f in enumerate(self.fields) if isinstance(f, models.JSONField)}
        # What an INSERT writes: every column but an auto primary key; and which of them are JSON.
        self.insert_fields = [f for f in self.fields if f is not meta.auto_field]
        self.insert_columns = ", ".join(self.quoted[f.attname] for f in self.insert_fields)
        self.insert_documents = [i for i, f in enumerate(self.insert_fields) if isinstance(f, models.JSONField)]
        self.insert_preps = [_prep(f, connection) for f in self.insert_fields]
        self.update_preps: dict[tuple[str, ...], list[Prep]] = {}  # by the columns an UPDATE sets
        self.foreign_keys = [(f.cache_name, f.attname) for f in self.fields if f.is_relation]  # type: ignore[attr-defined]
        # Whether rows can be built without Model.__init__ (see :meth:`build` and :meth:`new`).
        self.plain_init = not (pre_init.has_listeners(model) or post_init.has_listeners(model))
        # (field, whether it is a many-to-one relation, which may be given a related object)
        self.init_fields = [(f, bool(f.is_relation and f.many_to_one)) for f in self.fields]
        self.init_names = frozenset(f.attname for f in self.fields) | frozenset(
            f.name for f, relation in self.init_fields if relation
        )
        self.converters: list[Converter] = []
        for index, field in enumerate(self.fields):
            col = field.get_col(meta.db_table)
            convs = connection.ops.get_db_converters(col) + field.get_db_converters(connection)
            if convs:
                self.converters.append((index, convs, col))

    @classmethod
    def of(cls, model: type[M]) -> Table[M]:
        alias = router.db_for_write(model)
        key = (model, alias)
        table = cls._cache.get(key)
        if table is None:
            table = cls._cache[key] = cls(model, alias)
        return table

    @property
    def connection(self) -> Any:
        return connections[self.alias]

    # --- reads --------------------------------------------------------------------------------------
    def select(self, where: str, params: Sequence[Any], *, lock: bool = False, order_by: str = "") -> list[M]:
        """Model instances of ``SELECT <all columns> FROM <table> WHERE <where>``."""
        return self.select_later(where, params, lock=lock, order_by=order_by)()

    def select_later(
        self, where: str, params: Sequence[Any], *, lock: bool = False, order_by: str = ""
    ) -> Callable[[], list[M]]:
        """:meth:`select`, sent now and read when the returned function is called: inside
        :func:`pipelined`, several reads sent one after another share one round trip."""
        sql = f"SELECT {self.columns} FROM {self.name} WHERE {where}"
        if order_by:
            sql += f" ORDER BY {order_by}"
        connection = self.connection
        if lock and connection.features.has_select_for_update:
            # Ours to change until the transaction ends. Not FOR UPDATE: no key changes, so other
            # transactions may meanwhile insert rows that refer to these (their foreign-key checks
            # take KEY SHARE locks, which FOR UPDATE would make wait for this transaction).
            no_key = connection.features.has_select_for_no_key_update
            sql += " FOR NO KEY UPDATE" if no_key else " FOR UPDATE"
        opened = ExitStack()
        cursor = opened.enter_context(bound_cursor(connection))
        try:
            cursor.execute(sql, params)
        except BaseException:
            opened.close()
            raise

        def read() -> list[M]:
            with opened:
                rows = cursor.fetchall()
            return self.instances(rows)

        return read

    def instances(self, rows: Iterable[Sequence[Any]], *, track: bool = True) -> list[M]:
        """Model instances of result rows holding every column in table order; ``track`` keeps
        what was read, for :meth:`changed`."""
        connection = self.connection
        converters = self.converters
        build = self.build
        result = []
        for row in rows:
            values = list(row)
            for index, convs, col in converters:
                value = values[index]
                for convert in convs:
                    value = convert(value, col, connection)
                values[index] = value
            obj = build(values)
            if track:
                self.remember(obj)
            result.append(obj)
        return result

    def build(self, values: Sequence[Any]) -> M:
        """The model instance of one stored row (every column, converted, in table order): what
        ``Model.from_db`` returns. ``Model.__init__`` costs more than the rest of reading a row; with
        no ``pre_init``/``post_init`` receivers for the model, all it does for a row read back whole
        is set each column's attribute and a fresh state, which is done here directly (no column
        attribute is a data descriptor with a cached related object to reset on a new instance)."""
        if not self.plain_init:
            return self.model.from_db(self.alias, self.attnames, list(values))
        obj = self.model.__new__(self.model)
        obj.__dict__.update(zip(self.attnames, values, strict=True))
        state = obj._state = ModelState()
        state.adding = False
        state.db = self.alias
        return obj

    def new(self, **values: Any) -> M:
        """A new, unsaved instance with the given field values and every other field's default:
        what ``Model(**values)`` builds, for less than half its cost (the ingestion creates a
        dozen rows per event). A relation may be given as the related object (by field name,
        cached as the ORM caches it) or as its key (by attname). The model's own constructor
        builds it where that would differ: init signal receivers, or a name that is not a
        concrete field (a property, or a mistake the ORM reports)."""
        if not self.plain_init or not values.keys() <= self.init_names:
            return self.model(**values)
        obj = self.model.__new__(self.model)
        obj._state = ModelState()
        state = obj.__dict__
        for field, relation in self.init_fields:
            if relation and field.name in values:
                # The ORM's descriptor, as Model.__init__ uses it: checks the model, sets the key,
                # caches the object, takes its database.
                setattr(obj, field.name, values[field.name])
            elif field.attname in values:
                state[field.attname] = values[field.attname]
            else:
                state[field.attname] = field.get_default()
        return obj

    # --- what changed since a row was read ------------------------------------------------------------
    def remember(self, obj: M) -> None:
        """Note the object's column values as stored, for :meth:`changed`. A JSON document is
        remembered by identity: the object itself and, one level down, its items (merging facets
        replaces items; nothing on the ingestion path edits a stored document deeper in place)."""
        state = obj.__dict__
        values = list(map(state.get, self.attnames))
        shapes: dict[int, tuple[Any, ...]] = {}
        for i in self.json_positions:
            value = values[i]
            if isinstance(value, dict):
                shapes[i] = tuple(value.items())
            elif isinstance(value, list):
                shapes[i] = tuple(value)
        state["_custody_stored"] = (values, shapes)

    def changed(self, obj: M, attnames: Sequence[str]) -> tuple[str, ...]:
        """Which of ``attnames`` differ from what was read (all of them for an object not read
        through this table)."""
        state = obj.__dict__
        stored = state.get("_custody_stored")
        if stored is None:
            return tuple(attnames)
        values, shapes = stored
        out = []
        for name in attnames:
            i = self.position[name]
            current, before = state.get(name), values[i]
            if i not in self.json_positions:
                if current != before:
                    out.append(name)
            elif current is not before or _reshaped(current, shapes.get(i)):
                out.append(name)
        return tuple(out)

    def column(self, attname: str) -> str:
        return f"{self.name}.{self.quoted[attname]}"

    def any_of(self, attname: str, values: Iterable[Any]) -> tuple[str, list[Any]]:
        """``column IN (...)`` as SQL and parameters (``= ANY(array)`` on PostgreSQL)."""
        return any_of(self.connection, self.column(attname), values)

    def prep(self, attname: str, value: Any) -> Any:
        """A Python value of one column as a query parameter."""
        return self.by_attname[attname].get_db_prep_value(value, self.connection)

    def preps(self, attnames: tuple[str, ...]) -> list[Prep]:
        """How the columns ``attnames`` become parameters of an UPDATE that writes the attributes as
        they are (see :func:`prepared_values`)."""
        preps = self.update_preps.get(attnames)
        if preps is None:
            connection = self.connection
            preps = self.update_preps[attnames] = [_prep(self.by_attname[n], connection, add=None) for n in attnames]
        return preps

    # --- writes -------------------------------------------------------------------------------------
    def insert(self, objs: Sequence[M], *, conflicts: str = "raise", returning: str = "") -> list[M]:
        """INSERT the objects (every column but an auto primary key) in chunks; returns the objects
        inserted.

        ``conflicts="ignore"`` skips rows that collide with a unique constraint (``ON CONFLICT DO
        NOTHING``). ``returning`` names a unique column (``"pk"`` or another): the new primary keys
        are set on the objects, matched by that column, and only the inserted objects returned.
        ``returning="*"``: the inserted rows are read back whole and returned as new instances, as
        :meth:`select` would have read them (the objects passed in are left as they are)."""
        if not objs:
            return []
        assert conflicts in {"raise", "ignore"}
        assert not (conflicts == "ignore" and returning == "pk"), "skipped rows cannot be matched by position"
        connection = self.connection
        fields, columns, preps = self.insert_fields, self.insert_columns, self.insert_preps
        suffix = " ON CONFLICT DO NOTHING" if conflicts == "ignore" else ""
        pk_name: str = self.model._meta.pk.attname  # type: ignore[union-attr]
        key = pk_name if returning == "pk" else returning
        if returning == "*":
            suffix += " RETURNING " + ", ".join(self.quoted[name] for name in self.attnames)
        elif returning:
            suffix += f" RETURNING {self.quoted[pk_name]}, {self.quoted[key]}"
        inserted: list[M] = []
        staging = can_stage(connection)
        documents = self.insert_documents
        with bound_cursor(connection, native_placeholders=True) as cursor:
            for start in range(0, len(objs), INSERT_CHUNK):
                chunk = objs[start : start + INSERT_CHUNK]
                params: list[Any] = []
                staged = False
                for obj in chunk:
                    self.link_related(obj)
                    offset = len(params)
                    prepared_values(obj, preps, connection, params, add=True)
                    if staging:
                        staged = stage_large(connection, params, (offset + i for i in documents)) or staged
                values = placeholders(connection, len(chunk), len(fields), params if staged else ())
                sql = f"INSERT INTO {self.name} ({columns}) VALUES {values}{suffix}"
                cursor.execute(sql, params)
                if not returning:
                    inserted.extend(chunk)
                    continue
                returned = cursor.fetchall()
                if returning == "*":
                    inserted.extend(self.instances(returned))
                    continue
                if key == pk_name:  # rows come back in VALUES order
                    pairs = list(zip(chunk, (pk for pk, _ in returned), strict=True))
                else:
                    by_key = {value: pk for pk, value in returned}
                    pairs = [(obj, by_key[getattr(obj, key)]) for obj in chunk if getattr(obj, key) in by_key]
                for obj, pk in pairs:
                    obj.pk = pk
                    obj._state.adding = False
                    obj._state.db = self.alias
                    inserted.append(obj)
        return inserted

    def link_related(self, obj: M) -> None:
        """Copy the primary keys of related objects assigned before they were saved (what
        ``Model.save`` does in ``_prepare_related_fields_for_save``, without its checks)."""
        cache = obj._state.fields_cache
        for cache_name, attname in self.foreign_keys:
            related = cache.get(cache_name)
            if related is not None and related.pk is not None:
                obj.__dict__[attname] = related.pk  # not setattr: that would drop the cached object


def _prep(field: models.Field, connection: Any, add: bool | None = True) -> Prep:  # type: ignore[type-arg]
    """The value types that ``field.get_db_prep_save`` returns unchanged on ``connection``, for
    fields of Django's own classes (a subclass may prepare values its own way), and whether the
    value must come from ``field.pre_save`` (``auto_now`` and the like) rather than the attribute
    (``add``: for an INSERT or not; None: the attribute as it is, as an UPDATE of chosen columns
    writes it).

    On PostgreSQL, strings, primary and foreign keys, booleans, UUIDs and None go to psycopg as they
    are; an aware datetime too (``adapt_datetimefield_value`` returns it; a naive one takes the slow
    path, which warns). Preparing a value the general way costs four or five calls, and an event's
    rows have some sixty values."""
    kind = type(field)
    target = field.target_field if field.is_relation and field.many_to_one else field  # type: ignore[attr-defined]
    target_kind = type(target)
    passed: set[type] = set()
    if connection.vendor == "postgresql" and (kind is target_kind or kind is models.ForeignKey):
        if target_kind in (models.CharField, models.TextField):
            passed = {str, _NONE}
        elif target_kind in _AUTO_FIELDS:
            passed = {int, _NONE}
        elif target_kind is models.BooleanField:
            passed = {bool, _NONE}
        elif target_kind is models.UUIDField:
            passed = {uuid.UUID, _NONE}
        elif target_kind is models.DateTimeField:
            passed = {datetime, _NONE}
    if add is None:
        via_pre_save = False
    else:
        auto = isinstance(field, models.DateField) and (field.auto_now or (add and field.auto_now_add))
        via_pre_save = auto or type(field).pre_save not in _PLAIN_PRE_SAVE
    return field, field.attname, frozenset(passed), via_pre_save


# pre_save methods that return the attribute unless the field is auto_now/auto_now_add.
_PLAIN_PRE_SAVE = (models.Field.pre_save, models.DateField.pre_save, models.DateTimeField.pre_save)


def prepared_values(obj: Any, preps: Sequence[Prep], connection: Any, out: list[Any], *, add: bool) -> None:
    """Append the parameters of ``obj``'s columns (``preps``, from :func:`_prep`) to ``out``:
    what ``field.get_db_prep_save(value, connection)`` gives for each, the value being
    ``field.pre_save(obj, add)`` where the prep says so and the attribute otherwise."""
    state = obj.__dict__
    for field, attname, passed, via_pre_save in preps:
        if via_pre_save:
            value = field.pre_save(obj, add)
        else:
            value = state[attname] if attname in state else getattr(obj, attname)
        kind = type(value)
        if kind in passed and (kind is not datetime or value.tzinfo is not None):
            out.append(value)
        else:
            out.append(field.get_db_prep_save(value, connection))


def _reshaped(value: Any, shape: tuple[Any, ...] | None) -> bool:
    if shape is None:
        return False
    if len(shape) != len(value):
        return True
    if isinstance(value, dict):
        return any(value.get(key, _MISSING) is not item for key, item in shape)
    return any(a is not b for a, b in zip(value, shape, strict=True))


_MISSING = object()


def any_of(connection: Any, column: str, values: Iterable[Any]) -> tuple[str, list[Any]]:
    items = list(values)
    if not items:
        return "1 = 0", []
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s)", [items]
    return f"{column} IN ({', '.join(['%s'] * len(items))})", items
