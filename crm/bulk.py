"""Moving millions of rows between pandas and the CRM, fast, per dialect.

SQLAlchemy's row-by-row path costs about 1 µs a value; these paths keep the
per-row work in C: ``executemany`` on SQLite, ``COPY`` on PostgreSQL, with
SQLAlchemy as the fallback for any other database.
"""

from __future__ import annotations

import datetime
import importlib.util
import io
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

CHUNK_ROWS = 250_000


class epoch_seconds(FunctionElement):
    """Seconds since the Unix epoch of a timestamp column, computed by the database."""

    type = sa.BigInteger()
    inherit_cache = True
    name = "epoch_seconds"


@compiles(epoch_seconds, "sqlite")
def _epoch_sqlite(element, compiler, **kw) -> str:
    column = compiler.process(element.clauses, **kw)
    # unixepoch() (SQLite 3.38+) costs a tenth of strftime('%s') per row.
    if compiler.dialect.dbapi.sqlite_version_info >= (3, 38):
        return f"unixepoch({column})"
    return f"CAST(strftime('%s', {column}) AS INTEGER)"


@compiles(epoch_seconds, "postgresql")
def _epoch_postgresql(element, compiler, **kw) -> str:
    return f"CAST(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)}) AS BIGINT)"


@compiles(epoch_seconds, "mysql")
def _epoch_mysql(element, compiler, **kw) -> str:
    return f"TIMESTAMPDIFF(SECOND, '1970-01-01', {compiler.process(element.clauses, **kw)})"


# --- writing -----------------------------------------------------------------------


def write_frame(
    connection: sa.Connection,
    table: sa.Table,
    frame: pd.DataFrame,
    advance: Callable[[float], None] = lambda amount: None,
) -> int:
    """Insert every row of ``frame`` into ``table`` within the caller's transaction."""
    unknown = [column for column in frame.columns if column not in table.c]
    if unknown:
        raise ValueError(f"{table.name} has no columns {unknown}")
    dialect = connection.dialect.name
    for start in range(0, len(frame), CHUNK_ROWS):
        chunk = frame.iloc[start : start + CHUNK_ROWS]
        if dialect == "sqlite":
            _insert_sqlite(connection, table, chunk)
        elif dialect == "postgresql":
            _copy_postgresql(connection, table, chunk)
        else:
            _insert_generic(connection, table, chunk)
        advance(len(chunk))
    return len(frame)


def _python_values(series: pd.Series, times_as_text: bool) -> list:
    """Plain Python values with None for missing.

    ``times_as_text``: timestamps and dates as the schema's ISO text, for the
    raw SQLite driver; otherwise as datetime and date objects, for SQLAlchemy's types.
    """
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        seconds = series.to_numpy(dtype="datetime64[s]")
        if times_as_text:
            return _with_none(np.datetime_as_string(seconds, unit="s").tolist(), np.isnat(seconds))
        return _with_none(seconds.astype(datetime.datetime).tolist(), np.isnat(seconds))
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy()
        values = np.asarray(series.cat.categories, dtype=object)[codes]
        return _with_none(values.tolist(), codes < 0)
    if pd.api.types.is_integer_dtype(series.dtype) and not series.hasnans:
        return series.to_numpy().tolist()
    values = series.to_numpy(dtype=object)
    missing = pd.isna(series).to_numpy()
    present = values[~missing]
    if times_as_text and len(present) and isinstance(present[0], datetime.date):
        values = np.array([v.isoformat() if isinstance(v, datetime.date) else v for v in values], dtype=object)
    return _with_none(values.tolist(), missing)


def _with_none(values: list, missing: np.ndarray) -> list:
    for position in np.flatnonzero(missing):
        values[position] = None
    return values


@contextmanager
def raw_cursor(connection: sa.Connection, statement: str) -> Iterator:
    """A DBAPI cursor whose driver errors come out as SQLAlchemy's (IntegrityError, OperationalError...)."""
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        yield cursor
    except connection.dialect.loaded_dbapi.Error as error:
        raise sa.exc.DBAPIError.instance(statement, None, error, connection.dialect.loaded_dbapi.Error) from error
    finally:
        cursor.close()


def _insert_sqlite(connection: sa.Connection, table: sa.Table, chunk: pd.DataFrame) -> None:
    columns = list(chunk.columns)
    placeholders = ", ".join("?" for _ in columns)
    sql = f'INSERT INTO "{table.name}" ({", ".join(columns)}) VALUES ({placeholders})'
    rows = list(zip(*(_python_values(chunk[column], times_as_text=True) for column in columns)))
    with raw_cursor(connection, sql) as cursor:
        cursor.executemany(sql, rows)


def _copy_postgresql(connection: sa.Connection, table: sa.Table, chunk: pd.DataFrame) -> None:
    arrays = {}
    for column in chunk.columns:
        series = chunk[column]
        if isinstance(series.dtype, pd.CategoricalDtype):
            series = series.astype(object)
        arrays[column] = pa.array(series, from_pandas=True)
    buffer = io.BytesIO()
    # Quoting every value tells COPY an empty string from a NULL (left unquoted).
    pa_csv.write_csv(
        pa.table(arrays), buffer, pa_csv.WriteOptions(include_header=False, quoting_style="all_valid")
    )
    target = connection.dialect.identifier_preparer.format_table(table)
    sql = f"COPY {target} ({', '.join(chunk.columns)}) FROM STDIN (FORMAT csv)"
    with raw_cursor(connection, sql) as cursor, cursor.copy(sql) as copy:
        copy.write(buffer.getbuffer())


def _insert_generic(connection: sa.Connection, table: sa.Table, chunk: pd.DataFrame) -> None:
    """Any other database: SQLAlchemy's executemany, with its own type handling."""
    connection.execute(table.insert(), _records(chunk))


def _records(chunk: pd.DataFrame) -> list[dict]:
    values = {column: _python_values(chunk[column], times_as_text=False) for column in chunk.columns}
    return [dict(zip(values, row)) for row in zip(*values.values())]


# --- reading -----------------------------------------------------------------------


def read_frame(
    connection: sa.Connection,
    statement: sa.Select,
    categorical: tuple[str, ...] = (),
    advance: Callable[[float], None] = lambda amount: None,
) -> pd.DataFrame:
    """Run ``statement`` and return its rows as a DataFrame, ``categorical`` columns as category.

    Timestamps should be selected through ``epoch_seconds``: integers cross the
    driver boundary far faster than text or datetime objects.
    """
    names = [column.name for column in statement.selected_columns]
    dialect = connection.dialect.name
    if dialect == "postgresql":
        frame = _copy_out_postgresql(connection, statement, names)
        advance(len(frame))
        return _with_categories(frame, categorical)
    chunks = [
        _with_categories(chunk, categorical) for chunk in _fetch_chunks(connection, statement, names, advance)
    ]
    if not chunks:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in names})
    return _concat_categorical(chunks, categorical)


class ArrowReader:
    """Reads a file-based SQLite CRM through ADBC, which hands over Arrow columns without a Python object per value:
    35 million activities in about 20 s where the sqlite3 driver takes a minute. Other databases, and any
    statement whose columns come back in types other than its own (SQLite lets a text hide in an integer
    column), go through ``read_frame``, which leaves such values for ``conform`` to name.

    The driver runs in a process of its own (``arrow_worker`` says why: in this one it would unlink files
    Python's sqlite3 still uses). Every read of one reader happens in one read-only transaction, so the tables
    agree with each other.
    """

    def __init__(self, connection: sa.Connection, large: bool = True) -> None:
        self.connection = connection
        self.arrow = None
        path = _sqlite_file(connection)
        # A few leads' rows come faster through sqlite3 than a process takes to start; an install without the
        # driver still reads, more slowly.
        if large and path is not None and importlib.util.find_spec("adbc_driver_sqlite") is not None:
            self.arrow = _ArrowProcess(path)

    def __enter__(self) -> ArrowReader:
        return self

    def __exit__(self, *exc_info) -> None:
        if self.arrow is not None:
            self.arrow.close()

    def read(self, statement: sa.Select, categorical: tuple[str, ...] = (),
             advance: Callable[[float], None] = lambda amount: None) -> pd.DataFrame:
        table = self._arrow_table(statement) if self.arrow is not None else None
        if table is None:
            return read_frame(self.connection, statement, categorical, advance)
        advance(table.num_rows)
        return _with_categories(table.to_pandas(), categorical)

    def _arrow_table(self, statement: sa.Select) -> pa.Table | None:
        sql = str(statement.compile(dialect=self.connection.dialect,
                                    compile_kwargs={"literal_binds": True, "render_postcompile": True}))
        table = self.arrow.query(sql)  # None: ADBC refused a column whose values change type midway, say
        if table is None:
            return None
        for column, field in zip(statement.selected_columns, table.schema):
            if isinstance(column.type, sa.Integer) and not (pa.types.is_integer(field.type) or pa.types.is_null(field.type)):
                return None  # text or fractions in an integer column: conform names them, from the driver's values
        return table


class _ArrowProcess:
    """The ADBC reader's process, and the socket its statements and tables go through.

    Started as a fresh interpreter rather than by multiprocessing: its spawn would import the caller's main
    script again, and a script without a ``__main__`` guard would run twice.
    """

    def __init__(self, path: Path) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "leadscore.crm.arrow_worker", str(path), str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
            )
        self.pipe = Connection(ours.detach())

    def query(self, sql: str) -> pa.Table | None:
        """The statement's rows, or None when the driver refused it or its process is gone."""
        try:
            self.pipe.send(sql)
            status, _ = self.pipe.recv()
            if status != "ok":
                return None
            return pa.ipc.open_stream(self.pipe.recv_bytes()).read_all()
        except (EOFError, OSError):
            return None

    def close(self) -> None:
        try:
            self.pipe.send(None)
        except OSError:
            pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.pipe.close()


def _sqlite_file(connection: sa.Connection) -> Path | None:
    if connection.dialect.name != "sqlite":
        return None
    database = connection.engine.url.database
    if database in (None, "", ":memory:") or database.startswith("file:"):
        return None
    path = Path(database).expanduser().resolve()
    return path if path.is_file() else None


def _fetch_chunks(
    connection: sa.Connection, statement: sa.Select, names: list[str], advance: Callable[[float], None]
) -> Iterator[pd.DataFrame]:
    # Reading the DBAPI cursor directly skips SQLAlchemy's per-row Row objects.
    cursor = connection.execute(statement).cursor
    while rows := cursor.fetchmany(CHUNK_ROWS):
        advance(len(rows))
        yield pd.DataFrame.from_records(rows, columns=names, coerce_float=False)


def _copy_out_postgresql(connection: sa.Connection, statement: sa.Select, names: list[str]) -> pd.DataFrame:
    # IN lists are expanded at execution; COPY takes the final text, so expand them now.
    compiled = statement.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
    sql = f"COPY ({compiled}) TO STDOUT (FORMAT csv, HEADER)"
    buffer = io.BytesIO()
    with raw_cursor(connection, sql) as cursor, cursor.copy(sql, compiled.params) as copy:
        for block in copy:
            buffer.write(block)
    if buffer.tell() == 0:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in names})
    buffer.seek(0)
    # Text columns stay text: inferred from the CSV, a column of ids or versions made of digits became numbers
    # ("7.0" once a NULL made it float).
    text = {column.name: pa.string() for column in statement.selected_columns if isinstance(column.type, sa.String)}
    table = pa_csv.read_csv(
        buffer,
        convert_options=pa_csv.ConvertOptions(strings_can_be_null=True, quoted_strings_can_be_null=False,
                                              column_types=text),
    )
    return table.to_pandas()


def _with_categories(frame: pd.DataFrame, categorical: tuple[str, ...]) -> pd.DataFrame:
    for column in categorical:
        frame[column] = frame[column].astype("category")
    return frame


def _concat_categorical(chunks: list[pd.DataFrame], categorical: tuple[str, ...]) -> pd.DataFrame:
    if len(chunks) == 1:
        return chunks[0]
    united = {
        column: pd.api.types.union_categoricals([chunk[column] for chunk in chunks]) for column in categorical
    }
    frame = pd.concat([chunk.drop(columns=list(categorical)) for chunk in chunks], ignore_index=True)
    for column, values in united.items():
        frame[column] = values
    return frame[[column for column in chunks[0].columns]]
