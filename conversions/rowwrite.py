"""Writing many rows in one executemany: the worker's result writes, the import's new rows.

Django's bulk_update builds one CASE WHEN per field and row, and bulk_create compiles
every value of every row through its SQL compiler; at our widths that Python costs more
than the database's work. Here each statement is built once per call and every row is
one parameter list: plain columns go as they are, the others through their field's
get_db_prep_save (JSON, decimals, datetimes), as Django would send them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model

_PLAIN_FIELDS = {
    "CharField",
    "TextField",
    "BooleanField",
    "IntegerField",
    "PositiveIntegerField",
    "FloatField",
    "ForeignKey",
}

Prepare = Callable[[Any], Any] | None
_NOTHING = object()


def _preparer(field: Field, conn: BaseDatabaseWrapper) -> Prepare:
    """None for a column whose values go to the driver as they are; else the function
    that turns a value into the driver's (the field's get_db_prep_save). NULL is passed
    through without a call where the field itself sends None for None (checked here, once
    per statement, not assumed)."""
    if field.get_internal_type() in _PLAIN_FIELDS:
        return None
    prep = field.get_db_prep_save
    try:
        null_is_none = prep(None, conn) is None
    except Exception:  # noqa: BLE001 - a field that refuses None: every value goes through
        null_is_none = False
    if null_is_none:
        return lambda value: None if value is None else prep(value, conn)
    return lambda value: prep(value, conn)


def _field(model: type[Model], name: str) -> Field:
    field = model._meta.get_field(name)
    if not isinstance(field, Field) or not field.column:
        raise TypeError(f"{model.__name__}.{name} is not a column")
    return field


def _column(field: Field | None) -> str:
    if field is None or not field.column:
        raise TypeError(f"{field} is not a column")
    return connection.ops.quote_name(field.column)


def _prepared(rows: Iterable[Sequence[Any]], prepare: Sequence[Prepare]) -> list[list[Any]]:
    """The rows with their values prepared. A value that is the very object of the row
    before in its column (one `now` for every row, a shared default) is prepared once."""
    convert = [(n, p) for n, p in enumerate(prepare) if p is not None]
    previous: list[tuple[object, Any]] = [(_NOTHING, None)] * len(convert)
    out = []
    for values in rows:
        row = list(values)
        for k, (n, p) in enumerate(convert):
            value = row[n]
            last, prepared = previous[k]
            if value is not last:
                prepared = p(value)
                previous[k] = (value, prepared)
            row[n] = prepared
        out.append(row)
    return out


def values_update(
    model: type[Model],
    fields: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    where: str = "",
    params: Sequence[Any] = (),
) -> None:
    """Save these fields of these rows: one parametrised UPDATE per row, executemany.

    Each row is the fields' values in `fields` order (attribute values: a foreign key's
    id), then the primary key; `where` adds a condition with its `params`, the same for
    every row. Nothing is sent for no rows.
    """
    meta = model._meta
    columns = [_field(model, name) for name in fields]
    # The connection itself, not django.db.connection's per-thread proxy: every prepared
    # value asks it for its operations.
    conn = connections[DEFAULT_DB_ALIAS]
    prepare = [_preparer(c, conn) for c in columns]
    prepare.append(None)  # the primary key
    args = _prepared(rows, prepare)
    if not args:
        return
    sql = (
        f"UPDATE {connection.ops.quote_name(meta.db_table)} SET "
        + ", ".join(f"{_column(c)} = %s" for c in columns)
        + f" WHERE {_column(meta.pk)} = %s"
        + (f" AND {where}" if where else "")
    )
    if params:
        args = [[*row, *params] for row in args]
    with connection.cursor() as cursor:
        cursor.executemany(sql, args)


def rows_update(objs: Sequence, fields: Sequence[str], *, where: str = "", params=()) -> None:
    """Save these fields of these model objects (values_update with their attributes)."""
    if not objs:
        return
    meta = objs[0]._meta
    attnames = [_field(meta.model, name).attname for name in fields]
    values_update(
        meta.model,
        fields,
        ([*(getattr(obj, a) for a in attnames), obj.pk] for obj in objs),
        where=where,
        params=params,
    )


def rows_insert(objs: Sequence[Model]) -> None:
    """INSERT these new model objects (no primary key yet) in one executemany.

    What bulk_create writes for them, without its SQL compiler: every concrete column but
    the auto primary key, each value through its field's pre_save (auto_now_add and
    auto_now set the time, as in bulk_create) and get_db_prep_save. Unlike bulk_create,
    the objects get no primary key back; no signals are sent (bulk_create sends none).
    """
    if not objs:
        return
    if any(obj.pk is not None for obj in objs):
        raise ValueError("rows_insert writes new rows: these objects have a primary key")
    meta = objs[0]._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key and not f.generated]
    sql = (
        f"INSERT INTO {connection.ops.quote_name(meta.db_table)} "
        f"({', '.join(_column(f) for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    # A field whose pre_save is Field's just reads the attribute.
    plain_read = [type(f).pre_save is Field.pre_save for f in fields]
    prepare = [_preparer(f, connections[DEFAULT_DB_ALIAS]) for f in fields]
    read = list(zip(fields, plain_read, strict=True))
    rows = (
        [getattr(obj, f.attname) if plain else f.pre_save(obj, True) for f, plain in read]
        for obj in objs
    )
    args = _prepared(rows, prepare)
    with connection.cursor() as cursor:
        cursor.executemany(sql, args)
