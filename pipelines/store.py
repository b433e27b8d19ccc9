"""The MLflow store: which one, whether it exists, and creating it once.

Tracking defaults to a local SQLite store (``sqlite:///mlflow.db``);
``MLFLOW_TRACKING_URI`` or an explicit URI overrides it.

MLflow creates and migrates a database store the moment a client touches it,
wherever the URI points: a mistyped URI, or the CRM's own database, silently
gains MLflow's tables. So commands that only read (predict, report, promote)
open a store through ``read_store``, which first checks that the database
already holds one and refuses otherwise; only ``train`` creates a store, in
``prepare_store``, before training and under a lock, so that two first runs
on a new store do not both try to create its tables.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from leadscore.errors import LeadscoreError
from leadscore.pipelines.runs import fail_dead_runs
from leadscore.redact import masked_url, redact, url_secrets

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
EXPERIMENT = "leadscore"
DATABASES = ("sqlite", "postgresql", "mysql", "mssql")  # the dialects MLflow keeps a store in
MLFLOW_TABLES = ("experiments", "alembic_version")  # what tells an MLflow store from any other database
# Session-level locks a server gives to one connection at a time, released if the process dies.
SERVER_LOCKS = {
    "postgresql": ("SELECT pg_advisory_lock(hashtext(:name))", "SELECT pg_advisory_unlock(hashtext(:name))"),
    "mysql": ("SELECT GET_LOCK(:name, -1)", "SELECT RELEASE_LOCK(:name)"),
}
LOCK_NAME = "leadscore: create the MLflow store"
FIX = "or point to the store you trained in with --tracking-uri or MLFLOW_TRACKING_URI"


def tracking_uri(explicit: str | None = None) -> str:
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    # leadscore ships psycopg 3; SQLAlchemy reads a bare postgresql:// as psycopg2, which is not installed.
    for prefix in ("postgresql://", "postgres://"):
        if uri.startswith(prefix):
            return "postgresql+psycopg://" + uri.removeprefix(prefix)
    return uri


def shown(uri: str | None) -> str:
    """The store's URI as messages may show it: its password masked."""
    return masked_url(tracking_uri(uri))


def store_error(message: str, error: BaseException, uri: str | None, fix: str = "") -> LeadscoreError:
    """``message``, the library's own account of ``error``, then ``fix``; the store's password masked throughout."""
    detail = getattr(error, "message", None) or str(getattr(error, "orig", None) or error)
    text = f"{message}: {detail.strip().rstrip('.')}." + (f" {fix}" if fix else "")
    return LeadscoreError(redact(text, url_secrets(tracking_uri(uri))))


def mlflow_at(uri: str | None):
    # MLflow draws a progress bar on every artifact download; in a CLI it is noise.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(uri))
    return mlflow


def _dialect(uri: str) -> str | None:
    scheme = uri.partition("://")[0].partition("+")[0].lower() if "://" in uri else ""
    return scheme if scheme in DATABASES else None


def _origin(explicit: str | None) -> str:
    if explicit:
        return ""
    return " (set by MLFLOW_TRACKING_URI)" if os.environ.get("MLFLOW_TRACKING_URI") else " (the default)"


def _sqlite_file(uri: str) -> Path | None:
    database = sa.engine.make_url(uri).database
    return None if database in (None, "", ":memory:") else Path(database).expanduser().absolute()


def _engine(uri: str) -> sa.Engine:
    """An engine that opens the store's database without creating it: SQLite files are opened read-only."""
    try:
        if _dialect(uri) == "sqlite":
            read_only = f"{_sqlite_file(uri).as_uri()}?mode=ro"
            return sa.create_engine("sqlite://", creator=lambda: sqlite3.connect(read_only, uri=True))
        return sa.create_engine(uri)
    except (sa.exc.ArgumentError, ValueError, ImportError) as error:
        raise store_error(f"Cannot open the MLflow store at {shown(uri)}", error, uri,
                          "Use e.g. sqlite:///mlflow.db or postgresql+psycopg://user@host/db.") from error


def _tables(uri: str) -> list[str]:
    engine = _engine(uri)
    try:
        with engine.connect() as connection:
            return sa.inspect(connection).get_table_names()
    except sa.exc.SQLAlchemyError as error:
        fix = "Check the host, user and password of --tracking-uri or MLFLOW_TRACKING_URI."
        if "@" in uri.partition("://")[2].partition("/")[0].rpartition("@")[0]:
            fix = "A password containing '@' must be percent-encoded in the URI: write %40 for each '@'."
        raise store_error(f"Cannot open the MLflow store at {shown(uri)}", error, uri, fix) from error
    finally:
        engine.dispose()


def _check_store_exists(uri: str, explicit: str | None) -> None:
    dialect = _dialect(uri)
    where = f"No MLflow store at {shown(uri)}{_origin(explicit)}"
    advice = f"Train a model there first (`leadscore train`), {FIX}. Reading a model never creates a store."
    if dialect is None:
        if uri.startswith("file:") or ("://" not in uri and uri != "databricks"):  # MLflow's folder store
            folder = Path(uri.removeprefix("file://").removeprefix("file:"))
            if not folder.is_dir():
                raise LeadscoreError(f"{where}: the folder {folder.absolute()} does not exist. {advice}")
        return  # a tracking server (http, databricks) owns its store
    if dialect == "sqlite":
        path = _sqlite_file(uri)
        if path is None or not path.is_file():
            raise LeadscoreError(f"{where}: {path or 'an in-memory database'} does not exist. {advice}")
    tables = _tables(uri)
    if not set(MLFLOW_TABLES) <= set(tables):
        listing = ", ".join(sorted(tables)[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
        contents = f"holds no MLflow tables, only {listing}" if tables else "is empty"
        raise LeadscoreError(f"{where}: the database {contents}. {advice}")
    from mlflow.store.db.utils import _all_tables_exist

    # The very test MLflow applies before creating and migrating tables: if it fails, opening would migrate.
    engine = _engine(uri)
    try:
        complete = _all_tables_exist(engine)
    finally:
        engine.dispose()
    if not complete:
        raise LeadscoreError(
            f"The MLflow store at {shown(uri)} was made by an older MLflow and lacks tables this one needs; reading "
            "never migrates a store. Back it up, then upgrade it with `mlflow db upgrade` on that URI (or train there)."
        )


def read_store(uri: str | None = None):
    """An ``MlflowClient`` of the store at ``uri``, which must exist already: it is never created or migrated."""
    store = tracking_uri(uri)
    _check_store_exists(store, uri)
    mlflow = mlflow_at(store)
    try:
        return mlflow.MlflowClient()
    except mlflow.exceptions.MlflowException as error:
        raise store_error(f"Cannot open the MLflow store at {shown(store)}", error, store) from error


@contextmanager
def _creation_lock(uri: str) -> Iterator[None]:
    """One process at a time creates the store at ``uri``; the others wait, then find it made."""
    dialect = _dialect(uri)
    if dialect == "sqlite" and _sqlite_file(uri) is not None:
        import fcntl

        path = _sqlite_file(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released by the kernel if this process dies
            yield
        return
    if dialect not in SERVER_LOCKS:
        yield  # MLflow on SQL Server: no lock; two first runs may still collide there
        return
    acquire, release = SERVER_LOCKS[dialect]
    engine = sa.create_engine(uri, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text(acquire), {"name": LOCK_NAME})
            try:
                yield
            finally:
                connection.execute(sa.text(release), {"name": LOCK_NAME})
    finally:
        engine.dispose()


def _artifact_location(uri: str) -> str | None:
    # With a SQLite store, artifacts live beside the database file, wherever the command runs from.
    if _dialect(uri) == "sqlite" and _sqlite_file(uri) is not None:
        return (_sqlite_file(uri).resolve().parent / "mlruns").as_uri()
    return None


def _experiment_id(client, uri: str) -> str:
    import mlflow

    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        try:
            return client.create_experiment(EXPERIMENT, artifact_location=_artifact_location(uri))
        except mlflow.exceptions.MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(EXPERIMENT)  # another process created it meanwhile
    if experiment.lifecycle_stage == "deleted":
        raise LeadscoreError(
            f"The MLflow experiment '{EXPERIMENT}' in {shown(uri)} was deleted. Restore it with `mlflow experiments "
            f"restore --experiment-id {experiment.experiment_id}`, or delete it for good (`mlflow gc`) to start anew."
        )
    return experiment.experiment_id


def prepare_store(uri: str | None = None) -> str:
    """Create the store at ``uri`` and its ``leadscore`` experiment if missing; return the experiment's id.

    ``train`` calls it before training: a store created at logging time would let two first runs both
    train for minutes and then both create its tables, one failing with "table ... already exists".
    Runs that a killed ``train`` left RUNNING are marked FAILED here (see ``runs.fail_dead_runs``).
    """
    store = tracking_uri(uri)
    if _dialect(store) not in (None, "sqlite"):
        _tables(store)  # fails at once on a wrong host or password, where MLflow would retry for minutes
    mlflow = mlflow_at(store)
    try:
        with _creation_lock(store):
            client = mlflow.MlflowClient()  # creates and migrates the store's tables when they are missing
            experiment_id = _experiment_id(client, store)
        fail_dead_runs(client, experiment_id)
    except (mlflow.exceptions.MlflowException, sa.exc.SQLAlchemyError) as error:
        raise store_error(f"Cannot prepare the MLflow store at {shown(store)}", error, store) from error
    except OSError as error:
        raise store_error(f"Cannot prepare the MLflow store at {shown(store)}", error, store,
                          "Point --tracking-uri or MLFLOW_TRACKING_URI at a file in a folder you can write to.") from error
    return experiment_id
