"""The CRM's history as DataFrames: what the feature layer and the funnel report read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa

from leadscore.crm import schema
from leadscore.arrays import order_by_lead_and_time
from leadscore.crm.bulk import epoch_seconds, read_frame
from leadscore.crm.conform import conform
from leadscore.crm.database import require_crm_tables
from leadscore.errors import LeadscoreError
from leadscore.progress import Progress

PROFILE_COLUMNS = (
    "channel",
    "campaign",
    "company",
    "industry",
    "company_size",
    "country",
    "job_title",
    "seniority",
    "department",
    "email_domain",
    "lifecycle_stage",
    "owner",
)


@dataclass(frozen=True)
class CrmHistory:
    """Leads, activities, stage changes and costs, with times as ``datetime64[s]``.

    ``activities`` and ``stage_changes`` are sorted by lead, then time.
    ``as_of`` is the latest moment the CRM knows about: labels whose horizon
    ends after it are not yet known. ``notes`` say what reading the CRM left
    out or changed (``crm.conform``).
    """

    leads: pd.DataFrame
    activities: pd.DataFrame
    stage_changes: pd.DataFrame
    campaign_costs: pd.DataFrame
    as_of: pd.Timestamp
    notes: tuple[str, ...] = ()


CRM_TABLES = (schema.leads, schema.activities, schema.stage_changes, schema.campaign_costs)


def load_history(
    engine: sa.Engine,
    activities_before: datetime | None = None,
    progress: Progress = Progress(),
    stage_map: Mapping[str, str] | None = None,
) -> CrmHistory:
    """Read the CRM; ``activities_before`` skips activities a snapshot cannot use.

    ``stage_map`` maps the CRM's own stage names onto leadscore's (see ``crm.conform``).
    """
    leads_t, activities_t, stages_t, costs_t = CRM_TABLES
    with engine.connect() as connection:
        require_crm_tables(connection, CRM_TABLES)
        _require_column_types(connection)
        counts = {
            table.name: connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in (leads_t, activities_t, stages_t)
        }
        with progress.task("Reading leads", total=counts["leads"]) as advance:
            leads = read_frame(
                connection,
                sa.select(
                    leads_t.c.id,
                    epoch_seconds(leads_t.c.created_at).label("created_at"),
                    *(leads_t.c[name] for name in PROFILE_COLUMNS),
                ),
                categorical=PROFILE_COLUMNS,
                advance=advance,
            )
        statement = sa.select(
            activities_t.c.lead_id, epoch_seconds(activities_t.c.occurred_at).label("occurred_at"), activities_t.c.type
        )
        if activities_before is not None:
            statement = statement.where(activities_t.c.occurred_at < activities_before)
        with progress.task("Reading activities", total=counts["activities"]) as advance:
            activities = read_frame(connection, statement, categorical=("type",), advance=advance)
        with progress.task("Reading stage changes", total=counts["stage_changes"]) as advance:
            stage_changes = read_frame(
                connection,
                sa.select(stages_t.c.lead_id, stages_t.c.stage, epoch_seconds(stages_t.c.changed_at).label("changed_at")),
                categorical=("stage",),
                advance=advance,
            )
        costs = pd.read_sql(sa.select(costs_t), connection)
        # Read apart from the activities, which may stop at a cutoff: labels need the CRM's true latest moment.
        latest_activity = connection.execute(sa.select(sa.func.max(epoch_seconds(activities_t.c.occurred_at)))).scalar()
        leads, activities, stage_changes, notes = conform(
            leads, activities, stage_changes, stage_map, lambda table, column: _unreadable_time(connection, table, column)
        )
    costs["month"] = pd.to_datetime(costs["month"]).astype("datetime64[s]")
    costs["cost"] = costs["cost"].astype(float)
    candidates = [leads["created_at"].max(), stage_changes["changed_at"].max()]
    if latest_activity is not None:
        candidates.append(pd.Timestamp(int(latest_activity), unit="s"))
    as_of = max((c for c in candidates if pd.notna(c)), default=pd.NaT)
    return CrmHistory(
        leads=leads,
        activities=sort_by_lead_and_time(activities, "occurred_at"),
        stage_changes=sort_by_lead_and_time(stage_changes, "changed_at"),
        campaign_costs=costs,
        as_of=as_of,
        notes=tuple(notes),
    )


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


def sort_by_lead_and_time(frame: pd.DataFrame, time_column: str) -> pd.DataFrame:
    """Rows sorted by lead, then time (ties keep their order)."""
    order = order_by_lead_and_time(
        frame["lead_id"].to_numpy(), frame[time_column].to_numpy(dtype="datetime64[s]").astype(np.int64)
    )
    return frame.take(order).reset_index(drop=True)
