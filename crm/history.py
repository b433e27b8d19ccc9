"""The CRM's history as DataFrames: what the feature layer and the funnel report read.

No database code here: ``crm.sql`` fills a ``CrmHistory`` from a database,
the simulator from its draws, and any later connector from its own API.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from leadscore.arrays import order_by_lead_and_time

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

LEAD_NAME_COLUMNS = ("company", "job_title")  # what a person knows a lead by: examples are named by them


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

    def of_leads(self, lead_ids) -> CrmHistory:
        """The history of ``lead_ids`` only; ``as_of`` stays the CRM's, so labels and recency are unchanged."""
        wanted = pd.Index(pd.unique(np.asarray(lead_ids, dtype=np.int64)))
        return replace(
            self,
            leads=self.leads[self.leads["id"].isin(wanted)].reset_index(drop=True),
            activities=self.activities[self.activities["lead_id"].isin(wanted)].reset_index(drop=True),
            stage_changes=self.stage_changes[self.stage_changes["lead_id"].isin(wanted)].reset_index(drop=True),
        )

    def before(self, moment) -> CrmHistory:
        """The history with activities strictly before ``moment`` only: what a snapshot at ``moment`` may read."""
        cutoff = np.datetime64(pd.Timestamp(moment), "s")
        activities = self.activities[self.activities["occurred_at"].to_numpy() < cutoff]
        return replace(self, activities=activities.reset_index(drop=True))

    def known_at(self, moment) -> CrmHistory:
        """The CRM as it stood at ``moment``: leads created, activities and stage changes before it, costs of
        the months begun; ``as_of`` becomes ``moment``. What a model trained then could have learned from."""
        cutoff = np.datetime64(pd.Timestamp(moment), "s")
        leads = self.leads[self.leads["created_at"].to_numpy(dtype="datetime64[s]") < cutoff]
        activities = self.activities[self.activities["occurred_at"].to_numpy(dtype="datetime64[s]") < cutoff]
        changes = self.stage_changes[self.stage_changes["changed_at"].to_numpy(dtype="datetime64[s]") < cutoff]
        costs = self.campaign_costs[self.campaign_costs["month"].to_numpy(dtype="datetime64[s]") < cutoff]
        return replace(self, leads=leads.reset_index(drop=True), activities=activities.reset_index(drop=True),
                       stage_changes=changes.reset_index(drop=True), campaign_costs=costs.reset_index(drop=True),
                       as_of=pd.Timestamp(moment))


def sort_by_lead_and_time(frame: pd.DataFrame, time_column: str) -> pd.DataFrame:
    """Rows sorted by lead, then time (ties keep their order)."""
    order = order_by_lead_and_time(
        frame["lead_id"].to_numpy(), frame[time_column].to_numpy(dtype="datetime64[s]").astype(np.int64)
    )
    return frame.take(order).reset_index(drop=True)
