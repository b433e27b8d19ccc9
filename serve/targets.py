"""The CRM a scoring run reads and writes, chosen by its URL: a database holding leadscore's tables, or a CRM
read and written through its own API.

* An SQLAlchemy URL or an SQLite path (``sqlite:///crm.db``, ``postgresql://…``): the CRM is leadscore's own
  tables; the history is read from them and the scores written into them.
* ``tryton:///path/to/trytond.conf?database=NAME``: the leads are Tryton's opportunities, read and written
  through Tryton's API (``crm.tryton``); leadscore's own tables live in a database of their own
  (``crm.tryton.store``), named by ``&scores=`` (default ``leadscore-tryton-NAME.db`` in the current folder).
"""

from __future__ import annotations

import functools
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
    from leadscore.crm.tryton.connection import is_tryton_url

    url = crm or crm_url_from_env()
    if is_tryton_url(url):
        with _tryton_target(url, writable=writable) as target:
            yield target
        return
    engine = connect(url, writable=writable)
    try:
        yield ScoringTarget(engine)
    finally:
        engine.dispose()


@contextmanager
def _tryton_target(url: str, *, writable: bool) -> Iterator[ScoringTarget]:
    from leadscore.crm.tryton.connection import TrytonDatabase, parse_tryton_url
    from leadscore.crm.tryton.reader import read_tryton_history
    from leadscore.crm.tryton.store import open_score_store
    from leadscore.crm.tryton.writer import TrytonScoreSink

    parsed = parse_tryton_url(url)
    tryton = TrytonDatabase(parsed)  # refuses a missing database or module before leadscore's store is created
    engine = open_score_store(parsed.scores_url, writable=writable)
    try:
        yield ScoringTarget(engine, functools.partial(read_tryton_history, tryton), TrytonScoreSink(tryton))
    finally:
        engine.dispose()
