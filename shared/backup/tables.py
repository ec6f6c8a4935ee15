"""Validation of table names and their lookup among the tables a database or backup contains.

Table names reach SQL statements and command lines, so they are restricted to letters, digits
and ``_`` (at most 63 characters, not starting with a digit), optionally qualified by a schema
in the same form (``schema.table``, PostgreSQL only).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from shared.backup.errors import TableNotFoundError
from shared.errors import InvalidName

IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def validate_table_name(value: str) -> str:
    """Return ``value`` if it is ``table`` or ``schema.table`` in the safe form, else raise."""
    parts = value.split(".") if isinstance(value, str) else []
    if not 1 <= len(parts) <= 2 or not all(IDENTIFIER_PATTERN.match(part) for part in parts):
        raise InvalidName(
            "table",
            value,
            "use TABLE or SCHEMA.TABLE, each 1-63 letters, digits or '_', "
            "not starting with a digit",
        )
    return value


def split_table_name(value: str, default_schema: str) -> tuple[str, str]:
    """Return ``(schema, table)`` of a validated name, with ``default_schema`` when unqualified."""
    schema, _, table = value.rpartition(".")
    return schema or default_schema, table


def resolve_table(requested: str, available: Sequence[str], where: str) -> str:
    """Return the one name in ``available`` that ``requested`` means, else raise.

    ``available`` contains names as the database spells them (``schema.table`` for PostgreSQL,
    ``table`` for SQLite). An exact match wins. Next, an unqualified name matches the table of
    that name in any schema. When neither matches, both comparisons are repeated ignoring case,
    as SQL does for unquoted names. ``where`` (e.g. "the database postgresql://app@db/app") goes
    into the error message.
    """
    validate_table_name(requested)
    for fold in (str, str.casefold):
        matches = _matches(fold(requested), available, fold)
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise TableNotFoundError(
                f"table {requested!r} is ambiguous in {where}: it matches {', '.join(matches)}; "
                "qualify it with its schema"
            )
    listed = ", ".join(available) if available else "none"
    raise TableNotFoundError(
        f"table {requested!r} not found in {where} (tables: {listed}); check the spelling"
    )


def _matches(requested: str, available: Sequence[str], fold: Callable[[str], str]) -> list[str]:
    exact = [name for name in available if fold(name) == requested]
    if exact or "." in requested:
        return exact
    return [name for name in available if fold(name.rpartition(".")[2]) == requested]


def quote_identifier(name: str) -> str:
    """Return ``name`` (``table`` or ``schema.table``) quoted for SQL, each part in ``"``."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))
