"""Hot reads: one SELECT, compiled once per dialect, sent on a pooled driver connection.

The reads apps make on every page ("is this user premium?", "what is the balance?") are one
statement each. A `Database.read()` unit of work around one statement costs more than the
statement: an ORM session, BEGIN (READ ONLY) and COMMIT round trips on PostgreSQL, SQLAlchemy's
execution and result machinery. A `PreparedRead` is compiled once per dialect to the driver's
own SQL, and `Database.read_rows` sends it on a connection of the read pool with no transaction
around it: one statement is one snapshot on both databases (SQLite's implicit read transaction
in WAL mode, PostgreSQL's statement snapshot) and a SELECT writes nothing. Its values are
decoded by the columns' own result processors (SQLite's datetimes and JSON), as a session
would decode them. Parameters must be plain strings and integers (no bind processing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select
from sqlalchemy.engine import Dialect


@dataclass(frozen=True, slots=True)
class CompiledRead:
    sql: str
    names: tuple[str, ...]  # the positional parameters' names, in order
    constants: dict[str, Any]  # the values the statement itself binds (an IN list's)
    processors: tuple[Callable[[Any], Any] | None, ...]

    def arguments(self, params: dict[str, Any]) -> list[Any]:
        return [params[n] if n in params else self.constants[n] for n in self.names]

    def rows(self, fetched: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        processors = self.processors
        if not any(processors):
            return [tuple(row) for row in fetched]
        return [
            tuple(
                v if p is None or v is None else p(v) for p, v in zip(processors, row, strict=True)
            )
            for row in fetched
        ]


class PreparedRead:
    """A SELECT whose parameters are `bindparam(name, None)`s, compiled per dialect on first use."""

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, str, str], CompiledRead] = {}

    def compiled(self, dialect: Dialect) -> CompiledRead:
        key = (dialect.name, dialect.driver, dialect.paramstyle)
        found = self._compiled.get(key)
        if found is None:
            compiled = self.statement.compile(
                dialect=dialect, compile_kwargs={"render_postcompile": True}
            )
            names = tuple(compiled.positiontup or ())
            processors = tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in self.statement.selected_columns
            )
            found = CompiledRead(str(compiled), names, dict(compiled.params), processors)
            self._compiled[key] = found
        return found
