"""Building point-in-time feature tables from a CRM history."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.arrays import as_category
from leadscore.crm.history import CrmHistory
from leadscore.errors import LeadscoreError
from leadscore.features.crm_features import CRM_FEATURES
from leadscore.features.labels import DEFAULT_HORIZON_DAYS, StageLog, outcomes
from leadscore.features.registry import FeatureRegistry
from leadscore.features.table import FeatureTable
from leadscore.features.timeline import DAY, ActivityLog, seconds, timelines, unknown_activity_types
from leadscore.progress import Progress

LABEL_COLUMNS = ("stage_at_cutoff", "converted", "furthest_stage", "horizon_complete")


def _indexed_leads(leads: pd.DataFrame) -> pd.DataFrame:
    """Leads with their text columns as categories, so every batch shares one set of levels."""
    if leads["id"].duplicated().any():
        duplicated = leads["id"][leads["id"].duplicated()]
        raise LeadscoreError(
            f"leads.id holds {len(duplicated):,} duplicated ids (e.g. {duplicated.iloc[0]}): each lead must appear once."
        )
    leads = leads.reset_index(drop=True)
    # One new frame, not ``assign``: it copies the frame, then inserts the columns one by one.
    columns = {}
    for column, values in leads.items():
        if column in ("id", "created_at") or isinstance(values.dtype, pd.CategoricalDtype):
            columns[column] = values.array  # as it is: an array, which the frame takes without aligning an index
        else:
            columns[column] = as_category(values.to_numpy(dtype=object))
    return pd.DataFrame(columns)


def _positions(lead_ids: pd.Index, pairs: pd.DataFrame) -> np.ndarray:
    position = lead_ids.get_indexer(pairs["lead_id"])
    missing = pairs["lead_id"][position < 0]
    if len(missing):
        raise LeadscoreError(
            f"{len(missing):,} of the requested leads are not in the CRM (e.g. lead id {missing.iloc[0]})."
        )
    return position


def build_features(
    history: CrmHistory,
    pairs: pd.DataFrame,
    registry: FeatureRegistry = CRM_FEATURES,
    progress: Progress = Progress(),
) -> pd.DataFrame:
    """One row per (lead_id, cutoff) pair: the pair, then every feature of ``registry``.

    Only activities strictly before each pair's cutoff are seen. Lead profile
    fields are taken as known from the lead's creation.
    """
    leads = _indexed_leads(history.leads)
    lead_ids = pd.Index(leads["id"])
    position = _positions(lead_ids, pairs)
    log = ActivityLog.build(history.activities, lead_ids)
    cutoff = seconds(pairs["cutoff"])
    parts = []
    with progress.task("Building features", total=len(pairs)) as advance:
        for batch, timeline in timelines(log, leads, position, cutoff):
            parts.append({name: registry.compute(name, timeline) for name in registry.names})
            advance(batch.stop - batch.start)
    # One frame built once: a frame per batch, then concatenated, costs a millisecond for a request's lead.
    columns = parts[0] if len(parts) == 1 else {
        name: pd.concat([pd.Series(part[name]) for part in parts], ignore_index=True) for name in registry.names}
    return pd.DataFrame({"lead_id": pairs["lead_id"].to_numpy(), "cutoff": pairs["cutoff"].to_numpy(), **columns})


def crm_feature_table(
    history: CrmHistory,
    pairs: pd.DataFrame,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    registry: FeatureRegistry = CRM_FEATURES,
    source: str = "CRM",
    progress: Progress = Progress(),
) -> FeatureTable:
    """Features and labels for ``pairs``; ``horizon_complete`` is false where the CRM cannot know the label yet."""
    if horizon_days < 1:
        raise LeadscoreError(f"--horizon-days must be at least 1, got {horizon_days}.")
    frame = build_features(history, pairs, registry, progress)
    lead_ids = pd.Index(history.leads["id"])
    position = _positions(lead_ids, pairs)
    cutoff = seconds(pairs["cutoff"])
    labels = outcomes(StageLog.build(history.stage_changes, lead_ids), position, cutoff, horizon_days)
    as_of = seconds([history.as_of])[0] if pd.notna(history.as_of) else np.iinfo(np.int64).min
    labels["horizon_complete"] = cutoff + horizon_days * DAY <= as_of
    frame = pd.concat([frame, labels], axis=1)
    notes = list(history.notes)
    latest = f"{pd.Timestamp(history.as_of):%Y-%m-%d}" if pd.notna(history.as_of) else "none"
    beyond = cutoff > as_of
    incomplete = int((~labels["horizon_complete"] & ~beyond).sum())
    if beyond.any():
        notes.append(
            f"{int(beyond.sum()):,} of {len(frame):,} rows have a cutoff after the CRM's latest record ({latest}): "
            "their features see the whole history, and their outcome is not known yet (converted is false, "
            "horizon_complete is false). Such rows are for scoring, not for training."
        )
    if incomplete:
        notes.append(
            f"{incomplete:,} of {len(frame):,} rows have a cutoff less than {horizon_days} days before the "
            f"CRM's latest record ({latest}): their label may still change (horizon_complete is false)."
        )
    if len(frame) == 0:
        first = history.leads["created_at"].min()
        notes.append(
            "No lead matched the snapshot policy: the table is empty"
            + (f" (the CRM's first lead was created on {pd.Timestamp(first):%Y-%m-%d})." if pd.notna(first) else
               " (the CRM holds no leads).")
        )
    unknown = unknown_activity_types(history.activities)
    if unknown:
        listing = ", ".join(f"{name} ({count:,})" for name, count in list(unknown.items())[:10])
        notes.append(f"Left out activities of types leadscore has no feature for: {listing}.")
    return FeatureTable(
        frame=frame,
        registry=registry,
        id_column="lead_id",
        target_column="converted",
        time_column="cutoff",
        source=source,
        notes=tuple(notes),
    )
