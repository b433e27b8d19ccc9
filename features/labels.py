"""Labels and funnel position from the stage history, at any moment.

``converted`` is true when the lead became a customer within the horizon
after its cutoff (from the cutoff included); ``furthest_stage`` is the
furthest funnel stage it had reached by the end of the horizon.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.crm.vocabulary import FUNNEL_STAGES, STAGES
from leadscore.errors import LeadscoreError
from leadscore.features.timeline import DAY, EventIndex

STAGE_CODES = [stage.code for stage in STAGES]
FUNNEL_CODES = [stage.code for stage in FUNNEL_STAGES]
RANK = np.array([stage.rank for stage in STAGES])
CUSTOMER = STAGE_CODES.index("customer")
CLOSED = [STAGE_CODES.index("customer"), STAGE_CODES.index("disqualified")]
DEFAULT_HORIZON_DAYS = 90


def stage_codes(stages: pd.Series) -> np.ndarray:
    """Index of each stage in STAGES, -1 for a stage leadscore does not know."""
    return pd.Index(STAGE_CODES).get_indexer(stages.astype(object))


@dataclass(frozen=True)
class StageLog:
    index: EventIndex
    stage: np.ndarray  # index into STAGES

    @classmethod
    def build(cls, stage_changes: pd.DataFrame, lead_ids: pd.Index) -> StageLog:
        code = stage_codes(stage_changes["stage"])
        unknown = stage_changes["stage"][code < 0]
        if len(unknown):
            raise LeadscoreError(
                f"stage_changes.stage holds {len(unknown):,} rows with unknown stages "
                f"(e.g. {unknown.iloc[0]!r}). Map them onto {', '.join(STAGE_CODES)} with --map-stage VALUE=STAGE."
            )
        index, stages = EventIndex.of(stage_changes, lead_ids, "changed_at", code)
        return cls(index, stages.astype(np.int64))

    def stage_before(self, lead: np.ndarray, moment: np.ndarray) -> np.ndarray:
        """The stage each lead was in just before ``moment``; ``lead`` when nothing was recorded yet."""
        start = self.index.first(lead)
        end = self.index.first_at_or_after(lead, moment)
        last = self.stage[np.maximum(end - 1, 0)] if len(self.stage) else np.zeros(len(lead), dtype=np.int64)
        return np.where(end > start, last, STAGE_CODES.index("lead"))

    def furthest_rank_before(self, lead: np.ndarray, moment: np.ndarray) -> np.ndarray:
        """Highest funnel rank reached before ``moment`` (0, a lead, when nothing was recorded)."""
        if not len(self.stage):
            return np.zeros(len(lead), dtype=np.int64)
        # Offsetting each lead's ranks by 8 * lead makes one running maximum restart at every lead.
        shifted = self.index.lead * 8 + RANK[self.stage] + 1
        running = np.maximum.accumulate(shifted) - self.index.lead * 8 - 1
        start = self.index.first(lead)
        end = self.index.first_at_or_after(lead, moment)
        return np.where(end > start, np.maximum(running[np.maximum(end - 1, 0)], 0), 0)

    def count_between(self, stage: int, lead: np.ndarray, since: np.ndarray, until: np.ndarray) -> np.ndarray:
        """How many changes into ``stage`` each lead had in [since, until)."""
        running = np.r_[0, np.cumsum(self.stage == stage)]
        return running[self.index.first_at_or_after(lead, until)] - running[self.index.first_at_or_after(lead, since)]


def outcomes(log: StageLog, lead: np.ndarray, cutoff: np.ndarray, horizon_days: int) -> pd.DataFrame:
    """For each (lead position, cutoff seconds) pair: stage_at_cutoff, converted, furthest_stage."""
    horizon_end = cutoff + horizon_days * DAY
    furthest = log.furthest_rank_before(lead, horizon_end)
    return pd.DataFrame(
        {
            "stage_at_cutoff": pd.Categorical.from_codes(log.stage_before(lead, cutoff), categories=STAGE_CODES),
            "converted": log.count_between(CUSTOMER, lead, cutoff, horizon_end) > 0,
            "furthest_stage": pd.Categorical.from_codes(furthest, categories=FUNNEL_CODES, ordered=True),
        }
    )
