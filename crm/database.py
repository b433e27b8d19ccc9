"""Opening a CRM database and creating its tables without ever losing data by surprise."""

from __future__ import annotations

import enum
import re
from pathlib import Path

import sqlalchemy as sa

from leadscore.crm import schema
from leadscore.errors import LeadscoreError


class WriteMode(enum.Enum):
    """What to do when the database already holds tables."""

    REFUSE = "refuse"
    APPEND = "append"  # keep everything, create what is missing, add rows
    FORCE = "force"  # drop leadscore's tables (never anyone else's) and start empty

    @classmethod
    def from_flags(cls, append: bool, force: bool) -> WriteMode:
        if append and force:
            raise LeadscoreError("--append and --force contradict each other: choose one.")
        return cls.APPEND if append else cls.FORCE if force else cls.REFUSE


def normalise_url(url: str) -> str:
    """Accept a bare file path for SQLite, and default PostgreSQL to the psycopg 3 driver."""
    if "://" not in url:
        return f"sqlite:///{url}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def masked(url: str) -> str:
    """``url`` with any password replaced, fit for messages and logs."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def connect(url: str) -> sa.Engine:
    """An engine for the CRM at ``url`` (an SQLAlchemy URL or an SQLite file path)."""
    shown = masked(url)
    try:
        parsed = sa.engine.make_url(normalise_url(url))
    except (sa.exc.ArgumentError, ValueError) as error:
        raise LeadscoreError(
            f"--crm {shown!r} is not a database URL. Use e.g. sqlite:///crm.db or "
            "postgresql://user@host:5432/database."
        ) from error
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).expanduser().resolve().parent
        if not folder.is_dir():
            raise LeadscoreError(f"--crm {shown!r}: the folder {folder} does not exist. Create it first.")
    try:
        engine = sa.create_engine(parsed)
    except (sa.exc.ArgumentError, ImportError) as error:
        raise LeadscoreError(
            f"--crm {shown!r}: {error}. leadscore ships drivers for SQLite and PostgreSQL; for another "
            "database, install its SQLAlchemy driver."
        ) from error
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection, _record) -> None:
    # Python's sqlite3 only opens a transaction before INSERT/UPDATE/DELETE, so
    # a DROP TABLE would commit on its own and `--force` followed by a failed
    # write would lose the old data. Taking over BEGIN makes DDL transactional
    # (SQLAlchemy's documented recipe for pysqlite).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    # WAL keeps readers working during a long write and survives a crash
    # without corruption; NORMAL sync is safe in WAL mode and much faster.
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _sqlite_begin(connection: sa.Connection) -> None:
    connection.exec_driver_sql("BEGIN")


def describe(bind: sa.Engine | sa.Connection) -> dict[str, int]:
    """Row counts of every table in the database's default schema."""
    if isinstance(bind, sa.Engine):
        try:
            with bind.connect() as connection:
                return describe(connection)
        except sa.exc.OperationalError as error:
            raise LeadscoreError(f"Cannot open the CRM database {display_url(bind)}: {error.orig}") from error
    names = sa.inspect(bind).get_table_names()
    return {
        name: bind.execute(sa.select(sa.func.count()).select_from(sa.table(name))).scalar_one()
        for name in sorted(names)
    }


def display_url(bind: sa.Engine | sa.Connection) -> str:
    return bind.engine.url.render_as_string(hide_password=True)


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} ({rows:,} rows)" for name, rows in counts.items())


def check_compatible(connection: sa.Connection, counts: dict[str, int]) -> None:
    """Refuse to add to tables that carry leadscore's names but not its columns."""
    inspector = sa.inspect(connection)
    for table in schema.TABLES:
        if table.name not in counts:
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        missing = [column.name for column in table.columns if column.name not in present]
        if missing:
            raise LeadscoreError(
                f"The table {table.name} in {display_url(connection)} lacks the columns {', '.join(missing)}: "
                "it was not created by leadscore. Nothing was changed. Use another database, "
                "or --force to replace leadscore's tables."
            )


def check_writable(connection: sa.Connection, mode: WriteMode, *, empty_schema_is_fine: bool, command: str) -> dict[str, int]:
    """Raise unless ``mode`` allows writing to this database; return its table row counts.

    ``empty_schema_is_fine``: an initialised but empty CRM is no reason to
    refuse (``simulate`` after ``crm init``).
    """
    counts = describe(connection)
    ours = {name: rows for name, rows in counts.items() if name in schema.TABLE_NAMES}
    foreign = {name: rows for name, rows in counts.items() if name not in schema.TABLE_NAMES}
    fresh = not counts or (empty_schema_is_fine and not foreign and not any(ours.values()))
    if mode is WriteMode.REFUSE and not fresh:
        raise LeadscoreError(
            f"{command}: the database {display_url(connection)} already holds tables: {_summary(counts)}. "
            "Nothing was changed. Add --append to keep them and add to them, or --force to delete "
            "leadscore's tables and start empty (other tables are never touched)."
        )
    if mode is not WriteMode.FORCE:
        check_compatible(connection, ours)
    return counts


def prepare(connection: sa.Connection, mode: WriteMode, *, empty_schema_is_fine: bool, command: str) -> None:
    """Make leadscore's tables ready for writing, inside the caller's transaction."""
    counts = check_writable(connection, mode, empty_schema_is_fine=empty_schema_is_fine, command=command)
    if mode is WriteMode.FORCE:
        schema.metadata.drop_all(connection, tables=[t for t in schema.TABLES if t.name in counts])
    schema.metadata.create_all(connection, checkfirst=True)
