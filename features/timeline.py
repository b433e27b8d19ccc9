"""Point in time: what each lead had done strictly before its cutoff.

Feature functions never see raw activities. They receive a ``Timeline``: for a
batch of (lead, cutoff) pairs, activity counts per type and window, the time
of the last activity of each type, and a few other aggregates, all computed
from activities with ``occurred_at < cutoff`` only. Activities at or after the
cutoff cannot reach a feature, whatever the feature code does.

The aggregation is vectorised: each pair's activities before its cutoff are
one contiguous slice of the log sorted by (lead, time), found by binary search;
the slices are expanded into (pair, activity) rows and reduced with bincount.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.arrays import Levels, order_by_lead_and_time
from leadscore.crm.vocabulary import ACTIVITY_TYPES
from leadscore.errors import LeadscoreError

DAY = 86_400
DECAY_HALF_LIFE_DAYS = 14
TYPE_CODES = [activity.code for activity in ACTIVITY_TYPES]
TYPE_LEVELS = Levels(TYPE_CODES)
SALES_SIDE = np.array([activity.sales_side for activity in ACTIVITY_TYPES])
MAX_EXPANDED_ROWS = 8_000_000  # bounds memory: about 50 bytes per expanded row


@dataclass(frozen=True)
class Window:
    days: int | None  # None: since the lead was created
    suffix: str
    label: str
    during: str  # ends a sentence: "Read 3 articles in the last 30 days"


WINDOWS = (
    Window(7, "7d", "last 7 days", "in the last 7 days"),
    Window(30, "30d", "last 30 days", "in the last 30 days"),
    Window(90, "90d", "last 90 days", "in the last 90 days"),
    Window(None, "ever", "ever", "since becoming a lead"),
)
WINDOW_BY_SUFFIX = {window.suffix: window for window in WINDOWS}


def seconds(values) -> np.ndarray:
    """Timestamps (datetime64 or pandas) as int64 seconds since the epoch."""
    return np.asarray(values, dtype="datetime64[s]").astype(np.int64)


@dataclass(frozen=True)
class EventIndex:
    """Events sorted by lead position, then time, searchable per (lead, moment) in O(log n)."""

    lead: np.ndarray  # position of the lead in the leads frame
    at: np.ndarray  # seconds
    key: np.ndarray  # lead << 32 | seconds since origin: sorted
    origin: int

    @classmethod
    def build(cls, lead: np.ndarray, at: np.ndarray) -> tuple[EventIndex, np.ndarray]:
        """The index, and the permutation that sorted the events (apply it to their other columns)."""
        order = order_by_lead_and_time(lead, at)
        lead, at = lead[order].astype(np.int64), at[order]
        origin = int(at.min()) if len(at) else 0
        if len(at) and at.max() - origin >= 2**32 - 1:
            raise LeadscoreError("Event times span more than 136 years: check the CRM's timestamps.")
        return cls(lead, at, (lead << 32) | (at - origin), origin), order

    @classmethod
    def of(
        cls, events: pd.DataFrame, lead_ids: pd.Index, time_column: str, codes: np.ndarray
    ) -> tuple[EventIndex, np.ndarray]:
        """Index the events of known leads whose code is known (>= 0); return the codes in index order."""
        lead = lead_ids.get_indexer(events["lead_id"])
        known = (lead >= 0) & (codes >= 0)
        index, order = cls.build(lead[known], seconds(events[time_column])[known])
        return index, codes[known][order]

    def first(self, lead: np.ndarray) -> np.ndarray:
        """Index of each lead's first event (its segment start)."""
        return np.searchsorted(self.key, lead.astype(np.int64) << 32, side="left")

    def first_at_or_after(self, lead: np.ndarray, moment: np.ndarray) -> np.ndarray:
        """Index of each lead's first event at or after ``moment``: the end of what was known before it."""
        since_origin = np.clip(moment - self.origin, 0, 2**32 - 1)
        return np.searchsorted(self.key, (lead.astype(np.int64) << 32) | since_origin, side="left")


def unknown_activity_types(activities: pd.DataFrame) -> dict[str, int]:
    """Activity types leadscore has no feature for, with their counts: they are left out."""
    types = activities["type"].astype(object)
    unknown = types[~types.isin(TYPE_CODES)]
    return {str(name): int(count) for name, count in unknown.value_counts().items()}


@dataclass(frozen=True)
class ActivityLog:
    """Activities of known types, indexed for point-in-time slicing."""

    index: EventIndex
    type: np.ndarray  # index into ACTIVITY_TYPES

    @classmethod
    def build(cls, activities: pd.DataFrame, lead_ids: pd.Index) -> ActivityLog:
        """Index ``activities`` (lead_id, occurred_at, type) against the leads' ids."""
        types = activities["type"]
        if isinstance(types.dtype, pd.CategoricalDtype):
            # Each level looked up once, not each activity: a CRM's millions of activities have a dozen types.
            levels = types.cat.categories.to_numpy(dtype=object)
            by_level = np.append(TYPE_LEVELS.positions_of(levels), -1)  # code -1 (missing) reads -1
            type_code = by_level[types.cat.codes.to_numpy()]
        else:
            type_code = TYPE_LEVELS.positions_of(types.to_numpy(dtype=object))
        index, types = EventIndex.of(activities, lead_ids, "occurred_at", type_code)
        return cls(index, types.astype(np.int8))


@dataclass(frozen=True)
class Timeline:
    """What the leads of a batch of pairs had done before their cutoffs: the input of every CRM feature."""

    cutoff: np.ndarray  # seconds
    created_at: np.ndarray  # seconds
    profile: pd.DataFrame  # the leads' rows, aligned with the pairs
    counts: np.ndarray  # (pairs, activity types, windows)
    last_at: np.ndarray  # (pairs, activity types): seconds of the last activity, -1 when none
    decayed: np.ndarray  # (pairs,): marketing activities weighted by 2^(-age / half-life)
    active_days: np.ndarray  # (pairs, windows): distinct UTC days with a marketing activity

    def count(self, activity: str, window: Window) -> np.ndarray:
        return self.counts[:, TYPE_CODES.index(activity), WINDOWS.index(window)]

    def days_since_last(self, *activities: str) -> np.ndarray:
        """Days since the latest of ``activities`` (all marketing ones if none named); NaN if never."""
        if activities:
            columns = [TYPE_CODES.index(activity) for activity in activities]
        else:
            columns = list(np.flatnonzero(~SALES_SIDE))
        last = self.last_at[:, columns].max(axis=1)
        return np.where(last >= 0, (self.cutoff - last) / DAY, np.nan)


def timelines(
    log: ActivityLog, leads: pd.DataFrame, lead: np.ndarray, cutoff: np.ndarray
) -> Iterator[tuple[slice, Timeline]]:
    """Timelines for the pairs (lead position, cutoff seconds), in batches that bound memory."""
    start, end = log.index.first(lead), log.index.first_at_or_after(lead, cutoff)
    expanded = np.cumsum(end - start)
    first = 0
    while True:
        done = int(expanded[first - 1]) if first else 0
        last = int(np.searchsorted(expanded, done + MAX_EXPANDED_ROWS, side="right"))
        last = min(max(last, first + 1), len(lead))
        batch = slice(first, last)
        yield batch, _timeline(log, leads, lead[batch], cutoff[batch], start[batch], end[batch])
        if last >= len(lead):
            return
        first = last


def _timeline(
    log: ActivityLog, leads: pd.DataFrame, lead: np.ndarray, cutoff: np.ndarray, start: np.ndarray, end: np.ndarray
) -> Timeline:
    n, n_types = len(lead), len(ACTIVITY_TYPES)
    lengths = end - start
    pair = np.repeat(np.arange(n), lengths)
    offsets = np.cumsum(lengths) - lengths
    event = np.arange(lengths.sum()) - np.repeat(offsets - start, lengths)
    at = log.index.at[event]
    age = cutoff[pair] - at
    kind = log.type[event].astype(np.int64)
    pair_type = pair * n_types + kind

    counts = np.empty((n, n_types, len(WINDOWS)), dtype=np.int32)
    for w, window in enumerate(WINDOWS):
        inside = pair_type if window.days is None else pair_type[age < window.days * DAY]
        counts[:, :, w] = np.bincount(inside, minlength=n * n_types).reshape(n, n_types)

    youngest = np.full(n * n_types, np.iinfo(np.int64).max)
    np.minimum.at(youngest, pair_type, age)
    youngest = youngest.reshape(n, n_types)
    last_at = np.where(youngest == np.iinfo(np.int64).max, -1, cutoff[:, None] - youngest)

    marketing = ~SALES_SIDE[kind]
    m_pair, m_age = pair[marketing], age[marketing]
    decayed = np.bincount(m_pair, weights=np.exp2(-m_age / (DECAY_HALF_LIFE_DAYS * DAY)), minlength=n)
    active_days = _distinct_days(m_pair, at[marketing] // DAY, m_age, n)

    return Timeline(
        cutoff=cutoff,
        created_at=seconds(leads["created_at"].to_numpy()[lead]),
        profile=leads.iloc[lead].reset_index(drop=True),
        counts=counts,
        last_at=last_at,
        decayed=decayed,
        active_days=active_days,
    )


def _distinct_days(pair: np.ndarray, day: np.ndarray, age: np.ndarray, n: int) -> np.ndarray:
    """Distinct days per pair and window; rows are sorted by (pair, time), so a window is a suffix of a pair."""
    result = np.empty((n, len(WINDOWS)), dtype=np.int32)
    same_pair_as_previous = np.r_[False, pair[1:] == pair[:-1]]
    same_day_as_previous = same_pair_as_previous & np.r_[False, day[1:] == day[:-1]]
    for w, window in enumerate(WINDOWS):
        inside = np.ones(len(pair), dtype=bool) if window.days is None else age < window.days * DAY
        previous_inside = np.r_[False, inside[:-1]]
        new_day = inside & ~(same_day_as_previous & previous_inside)
        result[:, w] = np.bincount(pair, weights=new_day, minlength=n).astype(np.int32)
    return result
