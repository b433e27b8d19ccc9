"""Snapshot policies: which (lead, cutoff) pairs a feature table holds.

* ``open_leads_at``: every lead created before one cutoff and still open then
  (neither customer nor disqualified), the usual nightly scoring population;
* ``mql_moments``: each lead at the moment it became MQL, to explain why it
  qualified and whether it went on to convert.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from leadscore.crm.history import CrmHistory
from leadscore.features.labels import CLOSED, RANK, STAGE_CODES, StageLog, stage_codes
from leadscore.features.timeline import seconds


def _pairs(lead_ids, cutoffs) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": np.asarray(lead_ids, dtype=np.int64),
            "cutoff": np.asarray(cutoffs, dtype="datetime64[s]"),
        }
    )


def open_leads_at(history: CrmHistory, cutoff: datetime) -> pd.DataFrame:
    """(lead_id, cutoff) for each lead created before ``cutoff`` and still open just before it."""
    lead_ids = pd.Index(history.leads["id"])
    moment = int(np.datetime64(cutoff, "s").astype(np.int64))
    created = seconds(history.leads["created_at"])
    candidates = np.flatnonzero(created < moment)
    if len(history.stage_changes):
        log = StageLog.build(history.stage_changes, lead_ids)
        stage = log.stage_before(candidates, np.full(len(candidates), moment))
    else:  # leads with no recorded stage change (a request's): all are still leads
        stage = np.full(len(candidates), STAGE_CODES.index("lead"))
    still_open = candidates[~np.isin(stage, CLOSED)]
    return _pairs(lead_ids[still_open], np.full(len(still_open), moment).astype("datetime64[s]"))


def mql_moments(history: CrmHistory) -> pd.DataFrame:
    """(lead_id, cutoff) at each lead's first change into MQL, or into a later stage if MQL was skipped."""
    changes = history.stage_changes
    code = stage_codes(changes["stage"])
    qualified = changes[(code >= 0) & (RANK[code] >= RANK[STAGE_CODES.index("mql")])]
    first = qualified.groupby("lead_id", sort=True)["changed_at"].min()
    return _pairs(first.index, first.to_numpy())
