"""The CRM's history as DataFrames: what the feature layer and the funnel report read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa

from leadscore.crm import schema
from leadscore.arrays import order_by_lead_and_time
from leadscore.crm.bulk import epoch_seconds, read_frame
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
    ends after it are not yet known.
    """

    leads: pd.DataFrame
    activities: pd.DataFrame
    stage_changes: pd.DataFrame
    campaign_costs: pd.DataFrame
    as_of: pd.Timestamp


def load_history(
    engine: sa.Engine, activities_before: datetime | None = None, progress: Progress = Progress()
) -> CrmHistory:
    """Read the CRM; ``activities_before`` skips activities a snapshot cannot use."""
    leads_t, activities_t, stages_t, costs_t = (
        schema.leads,
        schema.activities,
        schema.stage_changes,
        schema.campaign_costs,
    )
    with engine.connect() as connection:
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
        latest_activity = connection.execute(sa.select(sa.func.max(activities_t.c.occurred_at))).scalar_one()

    leads["created_at"] = _timestamps(leads["created_at"])
    activities["occurred_at"] = _timestamps(activities["occurred_at"])
    stage_changes["changed_at"] = _timestamps(stage_changes["changed_at"])
    costs["month"] = pd.to_datetime(costs["month"]).astype("datetime64[s]")
    costs["cost"] = costs["cost"].astype(float)
    candidates = [leads["created_at"].max(), stage_changes["changed_at"].max()]
    if latest_activity is not None:
        candidates.append(pd.Timestamp(latest_activity))
    as_of = max((c for c in candidates if pd.notna(c)), default=pd.NaT)
    return CrmHistory(
        leads=leads,
        activities=sort_by_lead_and_time(activities, "occurred_at"),
        stage_changes=sort_by_lead_and_time(stage_changes, "changed_at"),
        campaign_costs=costs,
        as_of=as_of,
    )


def _timestamps(seconds: pd.Series) -> pd.Series:
    return pd.Series(seconds.to_numpy(dtype="int64").astype("datetime64[s]"), index=seconds.index)


def sort_by_lead_and_time(frame: pd.DataFrame, time_column: str) -> pd.DataFrame:
    """Rows sorted by lead, then time (ties keep their order)."""
    order = order_by_lead_and_time(
        frame["lead_id"].to_numpy(), frame[time_column].to_numpy(dtype="datetime64[s]").astype(np.int64)
    )
    return frame.take(order).reset_index(drop=True)
