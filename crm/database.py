"""Opening a CRM database and creating its tables without ever losing data by surprise."""

from __future__ import annotations

import enum
import re
from pathlib import Path

import sqlalchemy as sa

from leadscore.crm import schema
from leadscore.errors import LeadscoreError
from leadscore.redact import masked_url, redact, url_secrets


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


def connect(url: str, *, writable: bool = False) -> sa.Engine:
    """An engine for the CRM at ``url`` (an SQLAlchemy URL or an SQLite file path).

    Reading engines (``writable=False``) never create a database: a missing
    SQLite file is refused, and SQLite connections are opened query-only, so
    a reading command cannot change another application's file even by
    accident (not even its journal mode).
    """
    shown = masked_url(url)
    try:
        parsed = sa.engine.make_url(normalise_url(url))
    except (sa.exc.ArgumentError, ValueError) as error:
        raise LeadscoreError(
            f"--crm {shown!r} is not a database URL. Use e.g. sqlite:///crm.db or "
            "postgresql://user@host:5432/database."
        ) from error
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database).expanduser().resolve()
        if not path.parent.is_dir():
            raise LeadscoreError(f"--crm {shown!r}: the folder {path.parent} does not exist. Create it first.")
        if not writable and not path.is_file():
            raise LeadscoreError(
                f"--crm {shown!r}: there is no CRM database at {path}. Check the path, or create one with "
                "`leadscore crm init` or `leadscore simulate`."
            )
    try:
        engine = sa.create_engine(parsed)
    except (sa.exc.ArgumentError, ImportError) as error:
        raise LeadscoreError(
            f"--crm {shown!r}: {redact(str(error), url_secrets(url))}. leadscore ships drivers for SQLite and "
            "PostgreSQL; for another database, install its SQLAlchemy driver."
        ) from error
    # The user's own spelling, masked: SQLAlchemy re-renders a raw '@' in a password as part of the host.
    engine.update_execution_options(leadscore_shown_url=shown)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_writer if writable else _sqlite_reader)
        sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_writer(dbapi_connection, _record) -> None:
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


def _sqlite_reader(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only = ON")
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
    """The URL the user gave, password masked (SQLAlchemy's own rendering misreads a raw '@' in a password)."""
    engine = bind.engine
    shown = engine.get_execution_options().get("leadscore_shown_url")
    return shown or masked_url(engine.url.render_as_string(hide_password=True))


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} ({rows:,} rows)" for name, rows in counts.items())


def _columns(inspector, name: str) -> list[str]:
    return [column["name"] for column in inspector.get_columns(name)]


def foreign_lookalikes(connection: sa.Connection, present: list[str]) -> dict[str, str]:
    """Tables that carry one of leadscore's names without being leadscore's, with why.

    A table is leadscore's only when it has exactly leadscore's columns: one
    lacking them belongs to another application that happens to use the
    name, and one with extra columns holds data leadscore did not write.
    """
    inspector = sa.inspect(connection)
    verdicts = {}
    for table in schema.TABLES:
        if table.name not in present:
            continue
        columns = _columns(inspector, table.name)
        missing = [column.name for column in table.columns if column.name not in columns]
        missing = [name for name in missing if name not in schema.ADDED_COLUMNS.get(table.name, ())]
        extra = [column for column in columns if column not in table.columns]
        if missing:
            verdicts[table.name] = f"its columns ({', '.join(columns)}) lack leadscore's {', '.join(missing)}"
        elif extra:
            verdicts[table.name] = f"it has columns leadscore did not create ({', '.join(extra)})"
    return verdicts


def references_into(connection: sa.Connection, ours: list[str]) -> list[str]:
    """Other tables' foreign keys and views that depend on leadscore's tables ``ours``.

    Dropping a table that another application's foreign key points to would
    fire its ON DELETE CASCADE (SQLite) or fail half-way (PostgreSQL); a view
    over it would break.
    """
    if not ours:
        return []
    if connection.dialect.name == "postgresql":
        return _postgresql_dependents(connection, ours)
    inspector = sa.inspect(connection)
    found = []
    for name in inspector.get_table_names():
        if name in ours:
            continue
        for source, target, action in _foreign_keys(connection, inspector, name):
            if target in ours:
                shown = f" ON DELETE {action.upper()}" if action and action.upper() != "NO ACTION" else ""
                found.append(f"foreign key {name}({source}) -> {target}{shown}")
    for view in inspector.get_view_names():
        definition = inspector.get_view_definition(view) or ""
        used = [table for table in ours if re.search(rf"\b{re.escape(table)}\b", definition, re.IGNORECASE)]
        if used:
            found.append(f"view {view} over {', '.join(used)}")
    return found


def _foreign_keys(connection: sa.Connection, inspector, table: str) -> list[tuple[str, str, str | None]]:
    """(columns, referred table, ON DELETE action) of ``table``'s foreign keys."""
    if connection.dialect.name == "sqlite":
        # SQLAlchemy's SQLite reflection leaves out ON DELETE, the very thing that makes a drop delete rows.
        rows = connection.exec_driver_sql(f"PRAGMA foreign_key_list(\"{table}\")").all()
        return [(row[3], row[2], row[6]) for row in rows]
    return [
        (", ".join(key["constrained_columns"]), key["referred_table"], (key.get("options") or {}).get("ondelete"))
        for key in inspector.get_foreign_keys(table)
    ]


def _postgresql_dependents(connection: sa.Connection, ours: list[str]) -> list[str]:
    # pg_catalog sees dependents in every schema, which the inspector (one schema) would miss.
    oids = [connection.execute(sa.text("SELECT to_regclass(:name)::oid"), {"name": name}).scalar() for name in ours]
    oids = [oid for oid in oids if oid is not None]
    keys = connection.execute(
        sa.text(
            "SELECT conrelid::regclass::text, confrelid::regclass::text, confdeltype FROM pg_constraint "
            "WHERE contype = 'f' AND confrelid = ANY(:oids) AND NOT conrelid = ANY(:oids)"
        ),
        {"oids": oids},
    ).all()
    views = connection.execute(
        sa.text(
            "SELECT DISTINCT view.oid::regclass::text, depend.refobjid::regclass::text FROM pg_depend depend "
            "JOIN pg_rewrite rule ON rule.oid = depend.objid JOIN pg_class view ON view.oid = rule.ev_class "
            "WHERE depend.refobjid = ANY(:oids) AND view.oid <> depend.refobjid"
        ),
        {"oids": oids},
    ).all()
    actions = {"c": " ON DELETE CASCADE", "n": " ON DELETE SET NULL", "d": " ON DELETE SET DEFAULT"}
    found = [f"foreign key {source} -> {target}{actions.get(action, '')}" for source, target, action in keys]
    return found + [f"view {view} over {table}" for view, table in views]


def check_writable(connection: sa.Connection, mode: WriteMode, *, empty_schema_is_fine: bool, command: str) -> dict[str, int]:
    """Raise unless ``mode`` allows writing to this database; return its table row counts.

    ``empty_schema_is_fine``: an initialised but empty CRM is no reason to
    refuse (``simulate`` after ``crm init``).
    """
    counts = describe(connection)
    ours = {name: rows for name, rows in counts.items() if name in schema.TABLE_NAMES}
    foreign = {name: rows for name, rows in counts.items() if name not in schema.TABLE_NAMES}
    where = display_url(connection)
    lookalikes = foreign_lookalikes(connection, list(ours))
    if lookalikes and not (mode is WriteMode.APPEND and all("did not create" in why for why in lookalikes.values())):
        listing = "; ".join(f"{name}: {why}" for name, why in lookalikes.items())
        raise LeadscoreError(
            f"{command}: {where} holds tables named like leadscore's that are not leadscore's ({listing}). "
            "Nothing was changed: leadscore never writes into or drops another application's table, with --force "
            "or without. Point --crm at another database (or PostgreSQL schema) for leadscore."
        )
    fresh = not counts or (empty_schema_is_fine and not foreign and not any(ours.values()))
    if mode is WriteMode.REFUSE and not fresh:
        raise LeadscoreError(
            f"{command}: the database {where} already holds tables: {_summary(counts)}. "
            "Nothing was changed. Add --append to keep them and add to them, or --force to delete "
            "leadscore's tables and start empty (other tables are never touched)."
        )
    if mode is WriteMode.FORCE:
        dependents = references_into(connection, list(ours))
        if dependents:
            raise LeadscoreError(
                f"{command} --force: other tables in {where} depend on leadscore's tables: {'; '.join(dependents)}. "
                "Dropping leadscore's tables would delete or break their rows. Nothing was changed. Remove those "
                "dependencies first, or use --append, or another database for leadscore."
            )
    return counts


def prepare(connection: sa.Connection, mode: WriteMode, *, empty_schema_is_fine: bool, command: str) -> None:
    """Make leadscore's tables ready for writing, inside the caller's transaction."""
    counts = check_writable(connection, mode, empty_schema_is_fine=empty_schema_is_fine, command=command)
    if mode is WriteMode.FORCE:
        schema.metadata.drop_all(connection, tables=[t for t in schema.TABLES if t.name in counts])
    else:
        add_missing_columns(connection)
    schema.metadata.create_all(connection, checkfirst=True)


def missing_columns(connection: sa.Connection) -> dict[str, list[str]]:
    """Columns newer leadscore versions added to its tables that this CRM's tables still lack."""
    inspector = sa.inspect(connection)
    present = set(inspector.get_table_names())
    found = {}
    for name, added in schema.ADDED_COLUMNS.items():
        if name in present:
            columns = set(_columns(inspector, name))
            lacking = [column for column in added if column not in columns]
            if lacking:
                found[name] = lacking
    return found


def add_missing_columns(connection: sa.Connection) -> None:
    """Bring an older leadscore CRM's tables up to date; every added column is nullable, so rows stay valid."""
    preparer = connection.dialect.identifier_preparer
    for name, lacking in missing_columns(connection).items():
        table = schema.metadata.tables[name]
        for column in lacking:
            kind = table.c[column].type.compile(dialect=connection.dialect)
            connection.exec_driver_sql(
                f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {preparer.quote(column)} {kind}"
            )


def require_crm_tables(connection: sa.Connection, tables: tuple[sa.Table, ...]) -> None:
    """Refuse to read a database that lacks leadscore's ``tables``, or whose tables of those names are not leadscore's."""
    present = set(sa.inspect(connection).get_table_names())
    missing = [table.name for table in tables if table.name not in present]
    where = display_url(connection)
    if len(missing) == len(tables):
        raise LeadscoreError(
            f"{where} holds no leadscore CRM tables ({', '.join(missing)}). Check --crm, create the tables with "
            "`leadscore crm init` and load your CRM, or simulate one with `leadscore simulate`."
        )
    if missing:
        raise LeadscoreError(
            f"{where} lacks the CRM tables {', '.join(missing)}. Create them with `leadscore crm init --append`, "
            "which keeps the tables already there."
        )
    inspector = sa.inspect(connection)
    for table in tables:
        columns = _columns(inspector, table.name)
        lacking = [column.name for column in table.columns if column.name not in columns]
        if lacking:
            raise LeadscoreError(
                f"The table {table.name} in {where} lacks the columns {', '.join(lacking)}: it is not a leadscore "
                "CRM table. Check --crm."
            )
