"""Where a scoring run's work happens: reading the open leads' history and building their features, then explaining
them chunk by chunk. ``LocalCompute`` does both on this machine; ``serve.dask_compute`` spreads them over a Dask
cluster. Either way each lead goes through the same feature code and the same ``Scorer``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import pandas as pd

from leadscore.crm.history import CrmHistory
from leadscore.features.build import build_features
from leadscore.features.crm_features import CRM_FEATURES
from leadscore.features.snapshots import open_leads_at
from leadscore.features.timeline import unknown_activity_types
from leadscore.progress import Progress
from leadscore.serve.workers import ChunkScorer, available_cores

CHUNK_ROWS = 50_000

# (activities_before, progress, stage_map, rejects) -> the CRM's history; ``crm.sql.load_history`` bound to an
# engine is one, a connector reading another CRM's API another. Rejected leads are appended to ``rejects``.
HistoryReader = Callable[..., CrmHistory]


@dataclass
class OpenLeads:
    """The features of every lead open at the run's moment, the leads left out and why, and notes for the log."""

    features: pd.DataFrame
    rejects: list[tuple[int, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def open_lead_features(history: CrmHistory, as_of: datetime,
                       progress: Progress = Progress()) -> tuple[pd.DataFrame, list[str], dict[str, int]]:
    """The training code's features of the leads open at ``as_of``, the history's notes on what reading left out,
    and the activity types the model has no feature for, with their rows (kept apart so that parts of a CRM read
    separately add up to one note)."""
    features = build_features(history, open_leads_at(history, as_of), CRM_FEATURES, progress)
    return features, list(history.notes), unknown_activity_types(history.activities)


def unknown_types_notes(unknown: Mapping[str, int]) -> list[str]:
    """The note on activities left out for their type (name: rows), most frequent first; none when there are none."""
    if not unknown:
        return []
    return ["Activities of types the model has no feature for were left out: "
            + ", ".join(f"{name} ({count:,})" for name, count in list(unknown.items())[:10]) + "."]


def nightly_score_options(min_reason_points: float) -> dict:
    """What ``Scorer.score`` is asked for each chunk of the nightly job, wherever the chunk is scored: reasons, the
    fields' log-odds its change descriptions need, and the CRM named as the leads' source in messages."""
    return {"explain": True, "fields": True, "source": "the CRM", "min_reason_points": min_reason_points}


class Compute(Protocol):
    def open_leads(self, read_history: HistoryReader, as_of: datetime, stage_map: Mapping[str, str],
                   progress: Progress) -> OpenLeads: ...

    def explained(self, model, features: pd.DataFrame, workers: int,
                  min_reason_points: float) -> Iterator[Iterator[tuple[pd.DataFrame, pd.DataFrame]]]: ...


class LocalCompute:
    """This process reads and builds the features; ``workers`` processes explain chunks of ``CHUNK_ROWS``."""

    def open_leads(self, read_history: HistoryReader, as_of: datetime, stage_map: Mapping[str, str],
                   progress: Progress) -> OpenLeads:
        rejects: list[tuple[int, str]] = []
        history = read_history(activities_before=as_of, progress=progress, stage_map=stage_map, rejects=rejects)
        features, notes, unknown_types = open_lead_features(history, as_of, progress)
        return OpenLeads(features, rejects, notes + unknown_types_notes(unknown_types))

    @contextmanager
    def explained(self, model, features: pd.DataFrame, workers: int,
                  min_reason_points: float) -> Iterator[Iterator[tuple[pd.DataFrame, pd.DataFrame]]]:
        """Each chunk of ``features`` with its scores and reasons, in order."""
        # Workers take seconds to start: a job of one chunk explains it here.
        workers = 1 if len(features) <= CHUNK_ROWS else workers or available_cores()
        chunks = (features.iloc[start:start + CHUNK_ROWS] for start in range(0, len(features), CHUNK_ROWS))
        with ChunkScorer(model, workers, **nightly_score_options(min_reason_points)) as scorer:
            yield scorer.scored(chunks)
