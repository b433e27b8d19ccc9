"""Where leadscore keeps its own tables when the CRM is Tryton: a database of their own, beside Tryton's.

The nightly job records every run, its rejects, each lead's current score
(to tell what changed) and the score history, and takes a job lock. None of
that is Tryton's business, and none of it goes into Tryton's database:

* Tryton's database belongs to Tryton, its upgrades (``trytond-admin -u``) and
  its backups; leadscore writes Tryton's records only through Tryton's API.
* On SQLite, one file has one writer at a time: the job writes a chunk's
  scores in its own transaction while the sink writes the same chunk through
  Tryton's connection, which would wait on the job's lock for ever.

So the store is an SQLite file (by default ``leadscore-tryton-DATABASE.db`` in
the current folder) or any database leadscore opens, given by ``&scores=``.
Its tables are leadscore's score tables without their reference to ``leads``:
the leads are Tryton's opportunities, and ``lead_id`` is the opportunity's id.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from leadscore.crm import schema
from leadscore.crm.database import (
    add_missing_columns,
    connect,
    display_url,
    normalise_url,
)
from leadscore.crm.scores import SCORE_TABLES

from leadscore.errors import LeadscoreError


def open_score_store(url: str, *, writable: bool) -> sa.Engine:
    """The engine of leadscore's tables for a Tryton CRM, created or brought up to date when ``writable``.

    A dry run (``writable=False``) never creates anything: a store that does not exist yet reads as an empty one.
    """
    if not writable and _missing_sqlite_file(url):
        return connect("sqlite://", writable=False)
    engine = connect(url, writable=writable)
    try:
        with (engine.begin() if writable else engine.connect()) as connection:
            present = set(sa.inspect(connection).get_table_names())
            if "leads" in present:
                raise LeadscoreError(
                    f"{display_url(connection)} holds a leadscore CRM (its table leads): Tryton's scores are keyed by "
                    "opportunity id and would mix with its leads. Give them a database of their own with "
                    "&scores=PATH_OR_URL in the tryton:// URL."
                )
            if writable:
                score_metadata().create_all(connection, checkfirst=True)
                add_missing_columns(connection)
    except BaseException:
        engine.dispose()
        raise
    return engine


def score_metadata() -> sa.MetaData:
    """leadscore's score tables (``crm.scores.SCORE_TABLES``) without their foreign key to ``leads``."""
    metadata = sa.MetaData()
    for table in SCORE_TABLES:
        _without_leads(table, metadata)
    return metadata


def _without_leads(table: sa.Table, metadata: sa.MetaData) -> sa.Table:
    columns = []
    for column in table.columns:
        kept = [sa.ForeignKey(key.target_fullname) for key in column.foreign_keys
                if key.target_fullname.split(".")[0] != schema.leads.name]
        columns.append(sa.Column(
            column.name, column.type, *kept, primary_key=column.primary_key, nullable=column.nullable,
            # A lead id is Tryton's, never generated here (PostgreSQL would otherwise give it a sequence).
            autoincrement=False if column.foreign_keys else column.autoincrement,
        ))
    checks = [sa.CheckConstraint(str(constraint.sqltext), name=constraint.name) for constraint in table.constraints
              if isinstance(constraint, sa.CheckConstraint)]
    indexes = [sa.Index(index.name, *(column.name for column in index.columns)) for index in table.indexes]
    return sa.Table(table.name, metadata, *columns, *checks, *indexes)


def _missing_sqlite_file(url: str) -> bool:
    try:
        parsed = sa.engine.make_url(normalise_url(url))
    except (sa.exc.ArgumentError, ValueError):
        return False  # not a URL: ``connect`` refuses it with the forms it accepts
    return (parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
            and not Path(parsed.database).expanduser().is_file())
