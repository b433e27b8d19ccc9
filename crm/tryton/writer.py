"""Writing the nightly job's scores into Tryton's opportunities, through Tryton's own API.

Keyed by the opportunity's id, so a score sent twice overwrites, never
duplicates. The job hands over only new or changed scores, and this sink
writes only the records whose values differ from what Tryton holds: every write
of an opportunity adds a version to Tryton's record history, so a rerun, or a
chunk resent after a failure, must not add any.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
from leadscore.crm.tryton.connection import TrytonDatabase

SEARCH_BATCH = 500  # ids in one search: below every backend's limit on query parameters
PROBABILITY_DIGITS = 4  # conversion_probability's digits in Tryton: a value with more is refused
# What leadscore compares to tell whether Tryton already holds a score (the time of scoring alone is no change).
VERDICT_FIELDS = ("leadscore_probability", "leadscore_tier", "leadscore_reasons", "leadscore_model_version")


class TrytonScoreSink:
    """``serve.score_writer.ScoreSink`` for Tryton: each chunk of scores in one Tryton transaction.

    Every scored record gets leadscore's probability, tier, reasons, model and time. ``conversion_probability``
    is written only while the record is a lead: once sales work it, it is the salesperson's forecast.
    """

    def __init__(self, tryton: TrytonDatabase) -> None:
        self.tryton = tryton

    def write(self, rows: pd.DataFrame) -> None:
        if not len(rows):
            return
        wanted = {int(row.lead_id): _values(row) for row in rows.itertuples(index=False)}
        # Committed when the block ends; an error rolls it back and reaches the job, which rolls its own chunk back.
        with self.tryton.transaction() as pool:
            Opportunity = pool.get("sale.opportunity")
            # An opportunity deleted since the job read it is no lead any more: nothing to write, and reading it
            # would raise.
            existing = [record.id for ids in _slices(sorted(wanted))
                        for record in Opportunity.search([("id", "in", ids)])]
            updates: list = []
            for current in Opportunity.read(existing, ["state", "conversion_probability", *VERDICT_FIELDS]):
                values = _to_write(current, wanted[current["id"]])
                if values:
                    updates += [[Opportunity(current["id"])], values]
            if updates:
                Opportunity.write(*updates)


def _to_write(current: dict, wanted: dict) -> dict | None:
    """What to write on a record that holds ``current``; None when it holds the verdict already."""
    values = dict(wanted)
    if current["state"] != "lead" or current["conversion_probability"] == values["conversion_probability"]:
        del values["conversion_probability"]  # past the lead stage it is the salesperson's forecast
    if "conversion_probability" not in values and all(current[name] == values[name] for name in VERDICT_FIELDS):
        return None
    return values


def _slices(ids: list[int], size: int = SEARCH_BATCH) -> list[list[int]]:
    return [ids[start:start + size] for start in range(0, len(ids), size)]


def _values(row) -> dict:
    probability = round(float(row.probability), PROBABILITY_DIGITS)
    return {
        "conversion_probability": probability,
        "leadscore_probability": probability,
        "leadscore_tier": row.tier,
        "leadscore_reasons": row.reason_text or None,
        "leadscore_model_version": f"{row.model_name}/{row.model_version}",
        "leadscore_scored_at": _naive_datetime(row.scored_at),
    }


def _naive_datetime(value) -> datetime:
    """A naive UTC ``datetime`` at one second, as Tryton stores DateTime fields."""
    return pd.Timestamp(np.datetime64(value, "s")).to_pydatetime()
