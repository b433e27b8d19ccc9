"""What each channel's recent leads are worth before their outcomes arrive, and how such estimates held.

A cohort is the leads a channel brought in during the ``days`` before a
moment. Its expected customers are those it already has plus the sum of its
open leads' calibrated probabilities of converting within the model's
horizon; the spread is two standard deviations of that sum (each open lead
converts or not, independently), so a marketer sees how much the estimate
can move by chance alone (the model's own error comes on top). Dividing the
cohort's cost by its expected customers gives the expected cost per
customer weeks before the realised one is known.

Probabilities come in from the scoring core: nothing here knows a model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.crm import vocabulary
from leadscore.crm.funnel import channel_labels, channel_order, ratio
from leadscore.crm.history import CrmHistory
from leadscore.features.labels import STAGE_CODES, StageLog
from leadscore.features.timeline import seconds

RANK = {stage.code: stage.rank for stage in vocabulary.STAGES}
WORTH_COLUMNS = ("channel", "channel_label", "leads", "mqls", "sqls", "customers_so_far", "open_leads",
                 "expected_customers", "spread", "realised_customers", "cost", "expected_cost_per_customer",
                 "mql_to_sql", "expected_sql_to_customer", "expected_lead_to_customer")


def cohort(history: CrmHistory, moment, days: int) -> np.ndarray:
    """Positions in ``history.leads`` of the leads created in the ``days`` before ``moment``."""
    end = _second(moment)
    created = seconds(history.leads["created_at"])
    return np.flatnonzero((created >= end - days * 86_400) & (created < end))


def cohort_worth(history: CrmHistory, moment, days: int, probability: pd.Series, until=None) -> pd.DataFrame:
    """One row per channel and a final ``total`` row for the leads created in the ``days`` before ``moment``.

    ``probability`` is indexed by lead id and holds every lead of the cohort still open at ``moment``.
    With ``until``, ``realised_customers`` counts the cohort's customers by then (a matured cohort).
    """
    positions = cohort(history, moment, days)
    lead_ids = pd.Index(history.leads["id"])
    log = StageLog.build(history.stage_changes, lead_ids)
    at = np.full(len(positions), _second(moment))
    furthest = log.furthest_rank_before(positions, at)
    stage = np.asarray(STAGE_CODES)[log.stage_before(positions, at)]
    is_open = ~np.isin(stage, vocabulary.CLOSED_STAGES)
    ids = lead_ids[positions]
    missing = ids[is_open][~ids[is_open].isin(probability.index)]
    if len(missing):
        raise ValueError(f"{len(missing):,} open leads of the cohort have no probability (e.g. lead {missing[0]})")
    p = np.where(is_open, probability.reindex(ids).fillna(0.0).to_numpy(dtype=float), 0.0)
    customer = furthest >= RANK["customer"]
    frame = pd.DataFrame({
        "channel": history.leads["channel"].astype(object).to_numpy()[positions],
        "leads": 1,
        "mqls": (furthest >= RANK["mql"]).astype(int),
        "sqls": (furthest >= RANK["sql"]).astype(int),
        "customers_so_far": customer.astype(int),
        "open_leads": is_open.astype(int),
        "expected_customers": customer + p,
        "variance": p * (1 - p),
        "expected_from_sqls": np.where(furthest >= RANK["sql"], customer + p, 0.0),
    })
    if until is not None:
        later = np.full(len(positions), _second(until))
        frame["realised_customers"] = (log.furthest_rank_before(positions, later) >= RANK["customer"]).astype(int)
    sums = frame.groupby("channel", sort=False).sum()
    sums = sums.loc[channel_order(sums.index)]
    sums["cost"] = cohort_cost(history, moment, days).reindex(sums.index)
    sums.loc["total"] = sums.sum(min_count=1)
    # A window without leads still has a total: none of anything (its cost may exist, or not).
    counts = [column for column in sums.columns if column != "cost"]
    sums[counts] = sums[counts].fillna(0)
    whole = [column for column in ("leads", "mqls", "sqls", "customers_so_far", "open_leads", "realised_customers")
             if column in sums]
    sums[whole] = sums[whole].astype(int)
    table = sums.reset_index()
    table["spread"] = 2 * np.sqrt(table.pop("variance"))
    table["expected_cost_per_customer"] = ratio(table["cost"], table["expected_customers"])
    table["mql_to_sql"] = ratio(table["sqls"], table["mqls"])
    table["expected_sql_to_customer"] = ratio(table.pop("expected_from_sqls"), table["sqls"])
    table["expected_lead_to_customer"] = ratio(table["expected_customers"], table["leads"])
    if "realised_customers" not in table:
        table["realised_customers"] = np.nan
    table["channel_label"] = channel_labels(table["channel"])
    return table[list(WORTH_COLUMNS)]


def _second(moment) -> int:
    """``moment`` in the seconds since the epoch that the stage log and ``seconds`` count in."""
    return int(np.datetime64(pd.Timestamp(moment), "s").astype(np.int64))


def cohort_cost(history: CrmHistory, moment, days: int) -> pd.Series:
    """Per channel, the share of each month's cost that falls in the ``days`` before ``moment`` (spread evenly
    over the month's days)."""
    costs = history.campaign_costs
    if costs.empty:
        return pd.Series(dtype=float)
    end = pd.Timestamp(moment)
    start = end - pd.Timedelta(days=days)
    month = pd.to_datetime(costs["month"]).dt.to_period("M")
    first, last = month.dt.start_time, month.dt.end_time + pd.Timedelta(seconds=1)
    overlap = (np.minimum(last, end) - np.maximum(first, start)).dt.total_seconds().clip(lower=0)
    share = overlap / (last - first).dt.total_seconds()
    return (costs["cost"].astype(float) * share).groupby(costs["channel"].astype(object)).sum()
