"""Stage: build a point-in-time feature table (a snapshot) from the CRM."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime

import pandas as pd
import sqlalchemy as sa

from leadscore.crm.history import CrmHistory
from leadscore.crm.sql import load_history
from leadscore.errors import LeadscoreError
from leadscore.features.build import crm_feature_table
from leadscore.features.labels import DEFAULT_HORIZON_DAYS
from leadscore.features.snapshots import mql_moments, open_leads_at
from leadscore.features.table import FeatureTable
from leadscore.progress import Progress


class SnapshotPolicy(enum.Enum):
    OPEN_AT_CUTOFF = "cutoff"  # every open lead at one cutoff date
    AT_MQL = "mql"  # each lead at the moment it became MQL


def snapshot_pairs(history: CrmHistory, policy: SnapshotPolicy, cutoff: datetime | None) -> pd.DataFrame:
    if policy is SnapshotPolicy.OPEN_AT_CUTOFF:
        if cutoff is None:
            raise LeadscoreError("The cutoff policy needs --cutoff DATE, e.g. --cutoff 2025-06-01.")
        return open_leads_at(history, cutoff)
    pairs = mql_moments(history)
    return pairs if cutoff is None else pairs[pairs["cutoff"] < pd.Timestamp(cutoff)].reset_index(drop=True)


def snapshot_from_crm(
    engine: sa.Engine,
    policy: SnapshotPolicy = SnapshotPolicy.OPEN_AT_CUTOFF,
    cutoff: datetime | None = None,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    progress: Progress = Progress(),
    stage_map: Mapping[str, str] | None = None,
) -> FeatureTable:
    """Read the CRM and build the snapshot; with a cutoff, later activities are never read."""
    history = load_history(engine, activities_before=cutoff, progress=progress, stage_map=stage_map)
    if len(history.leads) == 0:
        raise LeadscoreError("The CRM holds no leads: run `leadscore simulate` or load your CRM first.")
    pairs = snapshot_pairs(history, policy, cutoff)
    where = f"open leads at {cutoff:%Y-%m-%d}" if policy is SnapshotPolicy.OPEN_AT_CUTOFF else "leads at their MQL moment"
    return crm_feature_table(
        history, pairs, horizon_days=horizon_days, source=f"CRM: {where}", progress=progress
    )
