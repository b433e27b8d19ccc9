"""Opening a Tryton database in leadscore's process, through Tryton's own server library, with clear refusals.

A ``tryton://`` URL names Tryton's configuration file (where its database
lives: ``[database] uri`` and, for SQLite, ``path``), the database and the
Tryton user the job works as::

    tryton:///etc/tryton/trytond.conf?database=leads&user=admin&scores=/srv/leadscore/leads-scores.db

leadscore reads and writes through ``trytond``'s pool and transactions, the
same API Tryton's own batch scripts (and ``proteus``) use, so Tryton's field
rules, digits and record history apply to every write. ``trytond`` keeps its
configuration and database pools per process: one process serves one Tryton
configuration.
"""

from __future__ import annotations

import os
import sys
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from leadscore.errors import LeadscoreError
from leadscore.redact import masked_url

SCHEME = "tryton://"
MODULE = "leadscore"  # the Tryton module in crm/tryton/module, by its entry-point name
URL_HELP = ("Write it as tryton:///path/to/trytond.conf?database=NAME (optional: &user=LOGIN, default admin; "
            "&scores=PATH_OR_URL, where leadscore keeps its own tables).")


@dataclass(frozen=True)
class TrytonUrl:
    """What a ``tryton://`` URL says: Tryton's configuration file, the database, the user, and leadscore's store."""

    config_file: Path
    database: str
    user: str = "admin"
    scores: str | None = None  # leadscore's own tables; None: leadscore-tryton-DATABASE.db in the current folder

    @property
    def scores_url(self) -> str:
        return self.scores or f"sqlite:///leadscore-tryton-{self.database}.db"


def is_tryton_url(url: str | None) -> bool:
    return bool(url) and url.startswith(SCHEME)


def parse_tryton_url(url: str) -> TrytonUrl:
    """The parts of ``url``, each checked; a missing configuration file is refused before Tryton is imported."""
    shown = masked_url(url)  # &scores= may be a database URL with a password
    if not is_tryton_url(url):
        raise LeadscoreError(f"--crm {shown!r} is not a Tryton URL. {URL_HELP}")
    path, _, query = url[len(SCHEME):].partition("?")
    parameters = urllib.parse.parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(parameters) - {"database", "user", "scores"})
    if unknown:
        raise LeadscoreError(f"--crm {shown!r}: unknown parameter {', '.join(unknown)}. {URL_HELP}")
    single = {name: values[-1].strip() for name, values in parameters.items()}
    config_file = urllib.parse.unquote(path) or os.environ.get("TRYTOND_CONFIG", "")
    if not config_file:
        raise LeadscoreError(f"--crm {shown!r} names no Tryton configuration file, nor is $TRYTOND_CONFIG set. "
                             + URL_HELP)
    config = Path(config_file).expanduser()
    if not config.is_file():
        raise LeadscoreError(f"--crm {shown!r}: there is no Tryton configuration file at {config.resolve()}. Give the "
                             "trytond.conf your Tryton server runs with.")
    if not single.get("database"):
        raise LeadscoreError(f"--crm {shown!r} names no Tryton database. {URL_HELP}")
    return TrytonUrl(config.resolve(), single["database"], single.get("user") or "admin", single.get("scores") or None)


class TrytonDatabase:
    """A Tryton database opened in this process: ``transaction()`` yields Tryton's pool inside a transaction.

    Opening checks, in order, that trytond is installed, that the configuration points at an existing Tryton
    database, that the leadscore Tryton module is activated in it and that the user exists; each refusal names
    the command that fixes it.
    """

    def __init__(self, url: TrytonUrl) -> None:
        self.url = url
        self.user_id: int | None = None
        self.context: dict = {}
        self._open()

    def describe(self) -> str:
        return f"Tryton database {self.url.database!r} ({self.url.config_file})"

    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator:
        """Tryton's pool inside one transaction as the URL's user: committed when the block ends, rolled back if it
        raises."""
        from trytond.pool import Pool
        from trytond.transaction import Transaction

        with Transaction().start(self.url.database, self.user_id, readonly=readonly, context=self.context):
            yield Pool(self.url.database)

    def _open(self) -> None:
        backend = _load_configuration(self.url.config_file)
        from trytond.pool import Pool
        from trytond.transaction import Transaction

        database = self.url.database
        self._require_database(backend)
        with Transaction().start(database, 0, readonly=True) as transaction:
            state = _module_state(transaction.connection)
        if state != "activated":
            raise LeadscoreError(
                f"The leadscore Tryton module is {state or 'not activated'} in {self.describe()}: leadscore keeps its "
                f"fields and activity records there. Activate it with `trytond-admin -c {self.url.config_file} -d "
                f"{database} -u {MODULE} --activate-dependencies`. Nothing was read or written."
            )
        pool = Pool(database)
        try:
            pool.get("res.user")
        except KeyError:  # not loaded in this process yet: load the modules activated in the database
            self._load_modules(pool)
        with Transaction().start(database, 0, readonly=True) as transaction:
            User = pool.get("res.user")
            with transaction.set_context(active_test=False):
                found = User.search([("login", "=", self.url.user)], limit=1)
            if not found:
                raise LeadscoreError(
                    f"{self.describe()} has no user {self.url.user!r}: give the login of the Tryton user the job "
                    "writes as with &user=LOGIN (its name shows on every change leadscore makes)."
                )
            self.user_id = found[0].id
            with transaction.set_user(self.user_id):
                self.context = User.get_preferences(context_only=True)

    def _load_modules(self, pool) -> None:
        from trytond.exceptions import MissingDependenciesException

        try:
            pool.init()
        except (FileNotFoundError, ImportError, MissingDependenciesException) as error:
            # Tryton loads every module activated in the database: this environment needs each one the server has.
            raise LeadscoreError(
                f"Tryton cannot load the modules activated in {self.describe()} ({error}): leadscore's Python "
                "environment needs every Tryton module the database uses, at the server's version. Install them "
                "beside leadscore, e.g. pip install 'leadscore[tryton]' trytond-<module>."
            ) from None

    def _require_database(self, backend) -> None:
        database = self.url.database
        try:
            if backend.name == "postgresql":
                _connect_once(backend, database)
            opened = backend.Database(database).connect()
        except backend.DatabaseOperationalError as error:
            sqlite = backend.name == "sqlite"
            where = _sqlite_file(database) if sqlite else f"the server of {_masked_uri()}"
            reason = " ".join(str(error).split())
            if not sqlite and "does not exist" not in reason:
                raise LeadscoreError(
                    f"Tryton cannot connect to its database {database!r} at {where} ({reason}). Check the server, "
                    f"user and password of the [database] uri in {self.url.config_file}."
                ) from None
            raise LeadscoreError(
                f"Tryton has no database {database!r} at {where} ({reason}). Check the name, or create it: "
                + (f"`touch {where}` then " if sqlite else f"`createdb {database}` then ")
                + f"`trytond-admin -c {self.url.config_file} -d {database} --all -u {MODULE} --activate-dependencies`."
            ) from None
        try:
            if not opened.test():
                raise LeadscoreError(
                    f"{self.describe()} cannot be opened as a Tryton database: it does not exist, the server refuses "
                    f"the connection, or it holds no Tryton tables. Create or initialise it with `trytond-admin -c "
                    f"{self.url.config_file} -d {database} --all -u {MODULE} --activate-dependencies`."
                )
        finally:
            opened.close()


def _load_configuration(config_file: Path):
    """Tryton's configuration loaded, and its database backend; trytond picks the backend once per process."""
    try:
        from trytond import config
    except ImportError:
        raise LeadscoreError("Reading Tryton needs its server library: pip install 'leadscore[tryton]'.") from None
    scheme_before = sys.modules["trytond.backend"].name if "trytond.backend" in sys.modules else None
    config.update_etc(str(config_file))
    scheme = urllib.parse.urlparse(config.get("database", "uri", default="")).scheme
    if scheme_before is not None and scheme != scheme_before:
        raise LeadscoreError(
            f"{config_file} puts Tryton on {scheme or 'no database'}, but this process already opened Tryton on "
            f"{scheme_before}: trytond serves one database backend per process. Run one leadscore command per "
            "Tryton configuration."
        )
    try:
        from trytond import backend
    except ImportError as error:
        raise LeadscoreError(
            f"{config_file}: Tryton cannot use its [database] uri ({_masked_uri()}): {error}. Set it to sqlite:// "
            "(with [database] path) or postgresql://USER@HOST:PORT/."
        ) from None
    from trytond.modules import get_modules

    if MODULE not in get_modules():
        raise LeadscoreError(
            "Tryton does not find the leadscore Tryton module in this Python environment (its `trytond.modules` entry "
            "point is missing): reinstall leadscore, e.g. pip install -e '.[tryton]'."
        )
    return backend


def _connect_once(backend, database: str) -> None:
    """One plain connection to a PostgreSQL database: Tryton's pool, opened on a database that does not exist, does
    not fail but retries in the background, and its first transaction waits out the pool's 30 s timeout."""
    import psycopg

    psycopg.connect(backend.Database._connection_params(database)["conninfo"], connect_timeout=10).close()


def _module_state(connection) -> str | None:
    from sql import Table

    module = Table("ir_module")
    cursor = connection.cursor()
    cursor.execute(*module.select(module.state, where=module.name == MODULE))
    row = cursor.fetchone()
    return row[0] if row else None


def _sqlite_file(database: str) -> str:
    from trytond import config

    return str(Path(config.get("database", "path", default=".")) / f"{database}.sqlite")


def _masked_uri() -> str:
    from trytond import config

    return masked_url(config.get("database", "uri", default=""))
