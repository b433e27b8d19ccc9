"""Reading a CRM's history from an SQL database (SQLite, PostgreSQL, or any SQLAlchemy dialect)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from leadscore.crm import schema
from leadscore.crm.bulk import ArrowReader, epoch_seconds
from leadscore.crm.conform import conform
from leadscore.crm.database import connect, require_crm_tables
from leadscore.crm.history import PROFILE_COLUMNS, CrmHistory, sort_by_lead_and_time
from leadscore.errors import LeadscoreError
from leadscore.progress import Progress
from leadscore.redact import masked_url

CRM_TABLES = (schema.leads, schema.activities, schema.stage_changes, schema.campaign_costs)


IN_LIST_LIMIT = 10_000  # more lead ids than this are read with the rest and picked in memory

# Inclusive bounds on lead ids; None leaves that side open. A range open above also takes the ids that are no
# number (NULL; on SQLite also text, which sorts after every number), so that ranges covering every number from
# "open below" to "open above" read each row of the CRM exactly once, even rows ``conform`` will leave out.
LeadIdRange = tuple[int | None, int | None]


def load_history(
    engine: sa.Engine,
    activities_before: datetime | None = None,
    progress: Progress = Progress(),
    stage_map: Mapping[str, str] | None = None,
    lead_ids: Sequence[int] | None = None,
    rejects: list[tuple[int, str]] | None = None,
    lead_id_range: LeadIdRange | None = None,
    latest_moment: pd.Timestamp | None = None,
) -> CrmHistory:
    """Read the CRM; ``activities_before`` skips activities a snapshot cannot use, ``lead_ids`` other leads.

    ``stage_map`` maps the CRM's own stage names onto leadscore's, and
    ``rejects`` collects the leads whose records break its rules instead of
    refusing the whole CRM (see ``crm.conform``). ``lead_id_range`` reads the
    leads of one range of ids (``LeadIdRange``) and their records, in SQL: a
    worker reading one part of the CRM reads only that part's rows.
    ``as_of`` is always the whole CRM's latest moment, whatever is left out:
    ``latest_moment`` when the caller knows it already (finding it scans
    every activity, which each part of a CRM read in parts would do again).
    """
    leads_t, activities_t, stages_t, costs_t = CRM_TABLES
    wanted = None if lead_ids is None else sorted({int(lead) for lead in np.asarray(lead_ids).ravel()})
    by_id = wanted is not None and len(wanted) <= IN_LIST_LIMIT

    def only_wanted(statement: sa.Select, column: sa.Column) -> sa.Select:
        for condition in _in_range(column, lead_id_range or (None, None)):
            statement = statement.where(condition)
        return statement.where(column.in_(wanted)) if by_id else statement

    with engine.connect() as connection:
        require_crm_tables(connection, CRM_TABLES)
        _require_column_types(connection)
        # Progress totals; a few leads read by id are counted as they come.
        counts = {"leads": len(wanted)} if by_id else {
            table.name: connection.execute(only_wanted(sa.select(sa.func.count()).select_from(table),
                                                       table.c.id if table is leads_t else table.c.lead_id)).scalar_one()
            for table in (leads_t, activities_t, stages_t)
        }
        with ArrowReader(connection, large=not by_id) as reader:
            with progress.task("Reading leads", total=counts["leads"]) as advance:
                leads = reader.read(
                    only_wanted(
                        sa.select(
                            leads_t.c.id,
                            epoch_seconds(leads_t.c.created_at).label("created_at"),
                            *(leads_t.c[name] for name in PROFILE_COLUMNS),
                        ),
                        leads_t.c.id,
                    ),
                    categorical=PROFILE_COLUMNS,
                    advance=advance,
                )
            statement = sa.select(
                activities_t.c.lead_id, epoch_seconds(activities_t.c.occurred_at).label("occurred_at"), activities_t.c.type
            )
            if activities_before is not None:
                statement = statement.where(activities_t.c.occurred_at < activities_before)
            with progress.task("Reading activities", total=None if by_id else counts["activities"]) as advance:
                activities = reader.read(only_wanted(statement, activities_t.c.lead_id), categorical=("type",),
                                         advance=advance)
            with progress.task("Reading stage changes", total=None if by_id else counts["stage_changes"]) as advance:
                stage_changes = reader.read(
                    only_wanted(
                        sa.select(stages_t.c.lead_id, stages_t.c.stage,
                                  epoch_seconds(stages_t.c.changed_at).label("changed_at")),
                        stages_t.c.lead_id,
                    ),
                    categorical=("stage",),
                    advance=advance,
                )
        costs = pd.read_sql(sa.select(costs_t), connection)
        as_of = _latest_moment(connection) if latest_moment is None else latest_moment
        leads, activities, stage_changes, notes = conform(
            leads, activities, stage_changes, stage_map, lambda table, column: _unreadable_time(connection, table, column),
            rejects,
        )
    costs["month"] = pd.to_datetime(costs["month"]).astype("datetime64[s]")
    costs["cost"] = costs["cost"].astype(float)
    history = CrmHistory(
        leads=leads,
        activities=sort_by_lead_and_time(activities, "occurred_at"),
        stage_changes=sort_by_lead_and_time(stage_changes, "changed_at"),
        campaign_costs=costs,
        as_of=as_of,
        notes=tuple(notes),
    )
    return history.of_leads(wanted) if wanted is not None and not by_id else history


def _in_range(column: sa.Column, lead_id_range: LeadIdRange) -> list:
    first, last = lead_id_range
    conditions = [] if last is None else [column <= last]
    if first is not None:
        conditions.append(column >= first if last is not None else sa.or_(column >= first, column.is_(None)))
    return conditions


def lead_id_ranges(engine: sa.Engine, parts: int, most_leads: int | None = None) -> list[LeadIdRange]:
    """``parts`` ranges of lead ids (more when one would hold more than ``most_leads`` leads, fewer when the CRM has
    fewer leads) holding about as many leads each, which together cover every id.

    The first range is open below and the last open above, and each ends where the next begins: a lead created
    after this call, or an id that is no number, still falls in exactly one range.
    """
    leads = schema.leads
    with engine.connect() as connection:
        require_crm_tables(connection, CRM_TABLES)
        if most_leads:
            count = connection.execute(sa.select(sa.func.count()).select_from(leads)).scalar_one()
            parts = max(parts, -(-count // most_leads))
        numbered = sa.select(leads.c.id, sa.func.ntile(max(1, parts)).over(order_by=leads.c.id).label("part")) \
            .where(leads.c.id.is_not(None)).subquery()
        firsts = connection.execute(
            sa.select(sa.func.min(numbered.c.id)).group_by(numbered.c.part).order_by(numbered.c.part)).scalars().all()
    # The first id of every part but the first starts a range; on SQLite a text id sorts after every number and
    # starts none: it falls in the last range, open above, as its reader expects.
    starts = sorted({int(first) for first in firsts[1:] if isinstance(first, (int, np.integer))})
    bounds = [None, *starts]
    return [(start, None if following is None else following - 1)
            for start, following in zip(bounds, [*starts, None])]


@dataclass(frozen=True)
class HistoryAtUrl:
    """``load_history`` on the CRM at ``url``, in whatever process it is called: it opens its own read-only engine
    and closes it, so it can be pickled and sent to a worker on another machine, which reads its own part.

    ``url`` keeps its password, which a worker needs: the ``repr`` (what a scheduler or a traceback shows) masks it.
    """

    url: str = field(repr=False)

    @classmethod
    def of(cls, engine: sa.Engine) -> HistoryAtUrl:
        """The CRM behind ``engine``; an SQLite file by its absolute path, since a worker starts in a folder of its
        own."""
        url = engine.url
        if url.get_backend_name() == "sqlite":
            if url.database in (None, "", ":memory:"):
                raise LeadscoreError(f"{masked_url(str(url))} is a database in this process's memory: other "
                                     "processes cannot read it. Score a CRM on a file or a server.")
            if url.database.startswith("file:"):
                raise LeadscoreError(f"{masked_url(str(url))}: name the SQLite file by its path (sqlite:///crm.db), "
                                     "which is how other processes open it.")
            url = url.set(database=str(Path(url.database).expanduser().resolve()))
        return cls(url.render_as_string(hide_password=False))

    def __call__(self, **options) -> CrmHistory:
        engine = connect(self.url)
        try:
            return load_history(engine, **options)
        finally:
            engine.dispose()

    def lead_id_ranges(self, parts: int, most_leads: int | None = None) -> list[LeadIdRange]:
        engine = connect(self.url)
        try:
            return lead_id_ranges(engine, parts, most_leads)
        finally:
            engine.dispose()

    def latest_moment(self) -> pd.Timestamp:
        engine = connect(self.url)
        try:
            return latest_moment(engine)
        finally:
            engine.dispose()

    def __repr__(self) -> str:
        return f"HistoryAtUrl({masked_url(self.url)!r})"


def latest_moment(engine: sa.Engine) -> pd.Timestamp:
    """The latest time the CRM records (``CrmHistory.as_of``)."""
    with engine.connect() as connection:
        return _latest_moment(connection)


def _latest_moment(connection: sa.Connection) -> pd.Timestamp:
    """The latest time any table records: labels whose horizon ends after it are not known yet."""
    latest = [
        # The maximum first, then its epoch: one conversion instead of one per row (ISO text sorts as time).
        connection.execute(sa.select(epoch_seconds(sa.func.max(column)))).scalar()
        for column in (schema.leads.c.created_at, schema.activities.c.occurred_at, schema.stage_changes.c.changed_at)
    ]
    known = [int(value) for value in latest if value is not None]
    return pd.Timestamp(max(known), unit="s") if known else pd.NaT


def _require_column_types(connection: sa.Connection) -> None:
    """On typed databases, time columns must be timestamps and ids integers, or reading them fails in SQL."""
    if connection.dialect.name == "sqlite":
        return  # SQLite stores any value in any column: ``conform`` checks the values themselves
    inspector = sa.inspect(connection)
    expected = {
        "leads": {"id": sa.Integer, "created_at": (sa.DateTime, sa.Date)},
        "activities": {"lead_id": sa.Integer, "occurred_at": (sa.DateTime, sa.Date)},
        "stage_changes": {"lead_id": sa.Integer, "changed_at": (sa.DateTime, sa.Date)},
    }
    for table, columns in expected.items():
        types = {column["name"]: column["type"] for column in inspector.get_columns(table)}
        for name, wanted in columns.items():
            if not isinstance(types[name], wanted):
                what = "a timestamp" if wanted is not sa.Integer else "an integer"
                raise LeadscoreError(
                    f"{table}.{name} is of type {types[name]}, not {what} column: leadscore cannot read it. Convert the "
                    f"column (e.g. ALTER TABLE {table} ALTER COLUMN {name} TYPE "
                    f"{'timestamp' if wanted is not sa.Integer else 'bigint'} USING ...), or load the CRM with "
                    "`leadscore crm init` and your own import."
                )


def _unreadable_time(connection: sa.Connection, table: str, column: str) -> tuple[int, object] | None:
    """How many values of ``table.column`` are not times, and one of them, to show the user."""
    target = sa.table(table, sa.column(column))
    raw = target.c[column]
    unreadable = sa.or_(raw.is_(None), epoch_seconds(raw).is_(None))
    rows = connection.execute(sa.select(sa.func.count()).select_from(target).where(unreadable)).scalar_one()
    example = connection.execute(sa.select(raw).where(unreadable).limit(1)).scalar()
    return (int(rows), example) if rows else None


