"""The statements of the activation group commit (``postgres_batch.py``, whose docstring
says how a batch is one statement): the columns of an activation write, its kinds
(:class:`WriteKind`) and a batch's text, as arrays (``batch_statement``) or as a VALUES
list (``values_statement``).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import postgres
from psycopg.types.array import ListBinaryDumper

#: The columns every activation write gives, in the order of its row, with their types
#: (the casts of the batch statement's arrays).
COLUMNS = (
    "activation_id", "namespace", "name", "start", "body", "state", "message", "owner",
    "status", "duration", "init_time",
)  # fmt: skip
_ARRAY_TYPES = (
    "text", "text", "text", "bigint", "json", "text", "bytea", "text",
    "text", "float8", "float8",
)  # fmt: skip
_INSERT = f"INSERT INTO activations ({', '.join(COLUMNS)})"


def _typed_array(element: str) -> type[list[Any]]:
    """A list type whose binary dumper has its array and element types fixed: psycopg
    sends it as ``<element>[]`` without scanning the list for its elements' type (for a
    plain list it does so twice per array, a third of the batch's dumping). The same
    types it would find for these columns, so the wire is unchanged: a ``json`` column
    is sent as ``text`` and cast by the statement."""
    info = postgres.types[element]
    array = type(f"{element.capitalize()}Array", (list,), {"__slots__": ()})
    dumper = type(
        f"{element.capitalize()}ArrayDumper",
        (ListBinaryDumper,),
        {"oid": info.array_oid, "element_oid": info.oid},
    )
    # Global, before any connection is made (each copies the global map); a connection
    # made without it would only dump these as plain lists.
    psycopg.adapters.register_dumper(array, dumper)
    return array


_TEXT, _INT8, _FLOAT8, _BYTEA = (_typed_array(t) for t in ("text", "int8", "float8", "bytea"))
#: The list type each column's values are sent in (``COLUMNS`` order).
COLUMN_ARRAYS = (
    _TEXT, _TEXT, _TEXT, _INT8, _TEXT, _TEXT, _BYTEA, _TEXT,
    _TEXT, _FLOAT8, _FLOAT8,
)  # fmt: skip
_UNNEST = "SELECT * FROM unnest({})".format(", ".join(f"%b::{t}[]" for t in _ARRAY_TYPES))


class WriteKind:
    """One kind of activation write: an insert of one row (``COLUMNS``) and what it does
    when a row with that id is stored already (``on_conflict``: the text after ``ON
    CONFLICT (activation_id)``, which may read ``excluded`` and the stored row as
    ``activations``). ``answering``: its answer changes once its first attempt committed
    (False after True), so it is never sent again after a broken connection."""

    __slots__ = ("alone", "answering", "on_conflict")

    def __init__(self, on_conflict: str, *, answering: bool) -> None:
        self.on_conflict = on_conflict
        self.answering = answering
        values = ", ".join(["%s"] * len(COLUMNS))
        #: The statement of one write of this kind.
        self.alone = f"{_INSERT} VALUES ({values}) ON CONFLICT (activation_id) {on_conflict}"


def _written(ctes: list[str]) -> str:
    """The statement of one data-modifying CTE per kind (``w0``, ``w1``, …), returning
    ``(kind index, activation_id)`` of every row they wrote."""
    union = " UNION ALL ".join(f"SELECT {i}, activation_id FROM w{i}" for i in range(len(ctes)))
    return f"WITH {', '.join(ctes)} {union}"


def _cte(i: int, rows: str, kind: WriteKind) -> str:
    return (
        f"w{i} AS ({_INSERT} {rows} ON CONFLICT (activation_id) {kind.on_conflict}"
        " RETURNING activation_id)"
    )


def batch_statement(kinds: tuple[WriteKind, ...]) -> str:
    """One statement writing rows of each of ``kinds`` (its parameters: one array per
    column, per kind, in order), returning ``(kind index, activation_id)`` of every row
    it wrote."""
    return _written([_cte(i, _UNNEST, kind) for i, kind in enumerate(kinds)])


def values_statement(kinds: tuple[WriteKind, ...], counts: tuple[int, ...]) -> str:
    """:func:`batch_statement` with ``counts[i]`` rows of ``kinds[i]`` as a VALUES list
    (``$n`` placeholders, for a raw cursor; its parameters: every row's ``COLUMNS``, kind
    after kind, row after row)."""
    width = len(COLUMNS)
    ctes: list[str] = []
    n = 0
    for i, (kind, count) in enumerate(zip(kinds, counts, strict=True)):
        rows = []
        for _ in range(count):
            rows.append("(" + ", ".join(f"${n + j}" for j in range(1, width + 1)) + ")")
            n += width
        ctes.append(_cte(i, "VALUES " + ", ".join(rows), kind))
    return _written(ctes)
