"""Score movement: how many leads the nightly job moved into MQL and SQL each week, their channels, today's scores.

Read from the score history the job keeps (``lead_score_history``, one row per
material change), not from the CRM's own stages: it is what the model said, week
by week, since scoring began. No database code here: ``crm.scores`` reads the
frames, and any other reader can fill them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.crm.conform import known_channels
from leadscore.crm.funnel import channel_labels, channel_order

QUALIFIED_TIERS = ("mql", "sql")
ENTRY_COLUMNS = ("mql_entries", "sql_entries")
CURRENT_COLUMNS = ("lead_id", "probability", "tier")


@dataclass(frozen=True)
class ScoreMovement:
    """Entries into the MQL and SQL tiers per week and per channel since scoring began, and the current scores.

    ``weekly`` has one row per calendar week (``week``: its Monday) from the first
    run's to the last run's, weeks without entries as zeros, the
    newest ``weeks`` of them only. ``by_channel`` counts the same weeks per
    channel, in the funnel's channel order, then a ``total`` row equal to the sums
    of ``weekly``. ``current`` holds the current score of every lead still open.
    Leads already qualified at the first run are counted in ``already_mql`` and
    ``already_sql``, not as entries: the first run scores every open lead at once.
    """

    weekly: pd.DataFrame  # week, mql_entries, sql_entries
    by_channel: pd.DataFrame  # channel, channel_label, mql_entries, sql_entries
    current: pd.DataFrame  # lead_id, probability, tier
    first_run: pd.Timestamp  # as_of of the first complete run: when scoring began
    last_run: pd.Timestamp
    runs: int  # complete runs read
    already_mql: int  # leads MQL or SQL at the first run
    already_sql: int


def score_movement(history: pd.DataFrame, current: pd.DataFrame, channels: pd.Series, weeks: int = 12,
                   run_as_of: pd.Series | None = None) -> ScoreMovement | None:
    """How many leads entered the MQL and SQL tiers each week, by channel, from the complete runs' score history.

    A lead enters MQL in the week of its first history row whose tier is MQL or
    SQL, and SQL at its first row whose tier is SQL. So SQL entries are a subset
    of MQL entries: a lead entering SQL entered MQL at the same run or before, and
    is counted among the MQL entries of that week or an earlier one (or in
    ``already_mql``). A lead that falls back and qualifies again is counted once.

    Parameters
    ----------
    history : DataFrame
        Rows of ``lead_score_history`` of complete runs with their run's ``as_of``:
        lead_id, tier ('none', 'mql' or 'sql'), probability, as_of.
    current : DataFrame
        The ``lead_scores`` rows (lead_id, probability, tier) of the leads still open.
    channels : Series
        Each lead's channel code, indexed by lead id.
    weeks : int
        The most recent weeks to count.
    run_as_of : Series, optional
        The ``as_of`` of every complete run, one value per run, those that wrote no
        history row included. None: each ``as_of`` of ``history`` is one run.

    Returns
    -------
    ScoreMovement or None
        None when there is no complete run.
    """
    if weeks < 1:
        raise ValueError(f"weeks must be at least 1, got {weeks}")
    as_of = pd.to_datetime(history["as_of"]).reset_index(drop=True)
    moments = pd.to_datetime(pd.Series(as_of.unique() if run_as_of is None else run_as_of)).dropna()
    if not len(moments):
        return None
    first_run, last_run = moments.min(), moments.max()
    tier = history["tier"].astype(object).to_numpy()
    lead_id = history["lead_id"].to_numpy(dtype=np.int64)
    mql_entry = _first_moment(lead_id, as_of, np.isin(tier, QUALIFIED_TIERS))
    sql_entry = _first_moment(lead_id, as_of, tier == "sql")

    # The first run's week counts the entries of its later runs: with nightly runs, most of a week.
    shown = pd.date_range(monday(first_run), monday(last_run), freq="7D")[-weeks:]
    entries = {"mql_entries": _week_of_entry(mql_entry[mql_entry > first_run], shown),
               "sql_entries": _week_of_entry(sql_entry[sql_entry > first_run], shown)}
    weekly = pd.DataFrame({"week": shown})
    for column, week in entries.items():
        weekly[column] = week.value_counts().reindex(shown, fill_value=0).to_numpy(dtype=np.int64)

    return ScoreMovement(
        weekly=weekly,
        by_channel=_by_channel(entries, _channel_of(channels, pd.unique(lead_id))),
        current=_current(current),
        first_run=first_run,
        last_run=last_run,
        runs=len(moments),
        # On or before: a run may score data older than the first one's when someone reruns the past.
        already_mql=int((mql_entry <= first_run).sum()),
        already_sql=int((sql_entry <= first_run).sum()),
    )


def monday(moment):
    """The Monday (midnight) starting the calendar week of ``moment``: a Timestamp or a Series of them."""
    if isinstance(moment, pd.Series):
        return moment.dt.normalize() - pd.to_timedelta(moment.dt.day_of_week, unit="D")
    return moment.normalize() - pd.Timedelta(days=moment.day_of_week)


def _first_moment(lead_id: np.ndarray, as_of: pd.Series, qualified: np.ndarray) -> pd.Series:
    """Per lead, the earliest ``as_of`` among its qualified rows (leads never qualified are absent)."""
    return as_of[qualified].groupby(lead_id[qualified]).min()


def _week_of_entry(entry: pd.Series, shown: pd.DatetimeIndex) -> pd.Series:
    """Per lead entering in one of the ``shown`` weeks, that week's Monday."""
    week = monday(entry)
    return week[week.isin(shown)]


def _channel_of(channels: pd.Series, lead_ids: np.ndarray) -> pd.Series:
    # A lead without a channel, or one the channels do not know, is counted under "(unknown)" as the funnel does.
    return known_channels(channels[~channels.index.duplicated()].reindex(lead_ids)).astype(object)


def _by_channel(entries: dict[str, pd.Series], channel_of: pd.Series) -> pd.DataFrame:
    order = channel_order(pd.Index(channel_of.unique()))
    table = pd.DataFrame({"channel": order + ["total"]})
    table["channel_label"] = channel_labels(table["channel"])
    for column, week in entries.items():
        counts = channel_of.reindex(week.index).value_counts().reindex(order, fill_value=0)
        table[column] = np.append(counts.to_numpy(dtype=np.int64), len(week))
    return table


def _current(current: pd.DataFrame) -> pd.DataFrame:
    frame = current.loc[:, list(CURRENT_COLUMNS)].sort_values("lead_id", ignore_index=True)
    return frame.astype({"lead_id": np.int64, "probability": float, "tier": object})
