"""Funnel conversion rates and acquisition costs per channel."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.crm import vocabulary
from leadscore.crm.conform import UNKNOWN_CHANNEL
from leadscore.crm.history import CrmHistory

STEPS = (
    ("lead_to_mql", "leads", "mqls"),
    ("mql_to_sql", "mqls", "sqls"),
    ("sql_to_opportunity", "sqls", "opportunities"),
    ("opportunity_to_customer", "opportunities", "customers"),
    ("lead_to_customer", "leads", "customers"),
)
REACHED = (("mqls", "mql"), ("sqls", "sql"), ("opportunities", "opportunity"), ("customers", "customer"))


def furthest_stage_rank(history: CrmHistory) -> pd.Series:
    """Per lead id, the rank of the furthest funnel stage ever reached (disqualification does not count)."""
    ranks = {stage.code: stage.rank for stage in vocabulary.STAGES}
    stage_rank = history.stage_changes["stage"].astype(object).map(ranks).fillna(-1).to_numpy(dtype=int)
    furthest = pd.Series(stage_rank).groupby(history.stage_changes["lead_id"].to_numpy()).max()
    return furthest.reindex(history.leads["id"].to_numpy(), fill_value=0).clip(lower=0)


def funnel_by_channel(history: CrmHistory) -> pd.DataFrame:
    """One row per channel and a final ``total`` row: volumes, step conversion rates, cost per MQL and SQL.

    A lead counts as having reached a stage when it reached it or any later one,
    so a CRM that skips a stage does not break the rates. Rates are ``NaN``
    where the step has no leads to convert; costs are ``NaN`` when there is no
    cost recorded or nothing bought.
    """
    furthest = furthest_stage_rank(history).to_numpy()
    frame = pd.DataFrame({"channel": history.leads["channel"].astype(object).to_numpy(), "leads": 1})
    for column, stage in REACHED:
        frame[column] = (furthest >= vocabulary.STAGE_BY_CODE[stage].rank).astype(int)
    volumes = frame.groupby("channel", sort=False).sum()
    volumes = volumes.loc[channel_order(volumes.index)]
    costs = history.campaign_costs.groupby("channel")["cost"].sum()
    volumes["cost"] = costs.reindex(volumes.index)
    volumes.loc["total"] = volumes.sum(min_count=1)
    volumes["cost"] = volumes["cost"].astype(float)

    table = volumes.reset_index()
    for rate, denominator, numerator in STEPS:
        table[rate] = ratio(table[numerator], table[denominator])
    table["cost_per_mql"] = ratio(table["cost"], table["mqls"])
    table["cost_per_sql"] = ratio(table["cost"], table["sqls"])
    table["channel_label"] = channel_labels(table["channel"])
    return table


def channel_order(present: pd.Index) -> list:
    """The channels of ``present`` in the vocabulary's order, then others by name, then "(no channel)"."""
    known = [c.code for c in vocabulary.CHANNELS if c.code in present]
    others = sorted(set(present) - set(known) - {UNKNOWN_CHANNEL})
    return known + others + ([UNKNOWN_CHANNEL] if UNKNOWN_CHANNEL in present else [])


def channel_labels(codes: pd.Series) -> list[str]:
    labels = {code: channel.label for code, channel in vocabulary.CHANNEL_BY_CODE.items()}
    labels.update({"total": "All channels", UNKNOWN_CHANNEL: "(no channel)"})
    return [labels.get(code, code) for code in codes]


def ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    numerator = numerator.astype(float)
    denominator = denominator.astype(float)
    return pd.Series(np.where(denominator > 0, numerator / denominator.where(denominator > 0), np.nan))
