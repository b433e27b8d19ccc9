"""Channel worth from a CRM and a model: recent cohorts' expected customers next to matured cohorts' record.

For each window (the last 30 and 90 days by default) two cohorts per
channel: the leads created in the window before ``moment``, scored now; and
the leads created in the same window one horizon earlier, scored as they
stood then and compared with the customers they had become by ``moment``. The
second says how far to trust the first. Its estimate comes from today's
model, which may have learned from those very outcomes: it flatters the
record, so the output says so.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from leadscore.crm.history import CrmHistory
from leadscore.crm.worth import cohort, cohort_worth
from leadscore.features.build import build_features
from leadscore.features.crm_features import CRM_FEATURES, require_crm_model
from leadscore.features.snapshots import open_leads_at
from leadscore.models.scoring import Scorer
from leadscore.progress import Progress

WINDOWS = (30, 90)


def channel_worth(history: CrmHistory, model, moment, horizon_days: int = 90, windows=WINDOWS,
                  progress: Progress = Progress()) -> pd.DataFrame:
    """Rows of ``crm.worth.cohort_worth`` for each cohort (``recent``, ``matured``) and window, labelled."""
    require_crm_model(model.features, "The model",
                      "channel worth needs a model trained on the CRM (`leadscore train --crm`).")
    moment = pd.Timestamp(moment).to_pydatetime()
    scorer = Scorer(model)
    tables = []
    for name, at, until in (("recent", moment, None), ("matured", moment - timedelta(days=horizon_days), moment)):
        probability = open_lead_probabilities(history, scorer, at, max(windows), progress)
        for days in windows:
            table = cohort_worth(history, at, days, probability, until)
            table.insert(0, "cohort", name)
            table.insert(1, "days", days)
            table.insert(2, "created_from", pd.Timestamp(at) - pd.Timedelta(days=days))
            table.insert(3, "created_to", pd.Timestamp(at))
            tables.append(table)
    return pd.concat(tables, ignore_index=True)


def open_lead_probabilities(history: CrmHistory, scorer: Scorer, at, days: int, progress: Progress) -> pd.Series:
    """Probability of each lead created in the ``days`` before ``at`` and open then, from its features then."""
    recent = history.leads["id"].to_numpy()[cohort(history, at, days)]
    snapshot = open_leads_at(history, at)
    snapshot = snapshot[snapshot["lead_id"].isin(recent)].reset_index(drop=True)
    if snapshot.empty:
        return pd.Series(dtype=float)
    features = build_features(history, snapshot, CRM_FEATURES, progress)
    scored = scorer.score(features, explain=False, source="the CRM")
    return pd.Series(scored["probability"].to_numpy(dtype=float), index=scored["lead_id"].to_numpy(dtype=np.int64))
