"""The CRM a scoring run reads and writes, chosen by its URL: a database holding leadscore's tables, or a CRM
read and written through its own API."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from leadscore.serve.compute import HistoryReader
from leadscore.serve.score_writer import ScoreSink

from leadscore.settings import crm_url_from_env


@dataclass(frozen=True)
class ScoringTarget:
    """``engine`` holds leadscore's own tables (lead_scores, runs, lock); ``read_history`` and ``sink``, when set,
    read the leads' history from another CRM and write each new or changed score back to it."""

    engine: sa.Engine
    read_history: HistoryReader | None = None
    sink: ScoreSink | None = None


@contextmanager
def scoring_target(crm: str | None, *, writable: bool) -> Iterator[ScoringTarget]:
    """The target behind ``crm`` (default: $LEADSCORE_CRM, else sqlite:///leadscore.db); its connections close
    when the run ends (SQLite locks)."""
    from leadscore.crm.database import connect

    engine = connect(crm or crm_url_from_env(), writable=writable)
    try:
        yield ScoringTarget(engine)
    finally:
        engine.dispose()
