"""Writing scores back into the CRM: scoring runs, rejects, one row per lead, history where it matters, one job at a time.

Each chunk of scores is one transaction, written with bulk statements
(SQLite's executemany upsert, PostgreSQL's COPY into a temporary table and
one INSERT ... ON CONFLICT), never row by row. A run is recorded in
``scoring_runs`` before its first write; a run killed half-way stays
``running`` until the next run, which holds the job lock and so knows it is
dead, marks it ``failed``.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from leadscore.crm import schema
from leadscore.crm.bulk import raw_cursor, write_frame
from leadscore.crm.database import display_url, missing_columns
from leadscore.crm.movement import ScoreMovement, score_movement
from leadscore.crm.vocabulary import CLOSED_STAGES
from leadscore.errors import LeadscoreError

SCORE_TABLES = (schema.lead_scores, schema.lead_score_history, schema.scoring_runs, schema.score_rejects)
JSON_COLUMNS = ("reasons", "field_log_odds", "change")
PREVIOUS_COLUMNS = ("lead_id", "probability", "tier", "reason_text", "unseen", "field_log_odds", "model_name", "model_version")
LOCK_NAME = "leadscore: scoring job"


class JobLocked(LeadscoreError):
    """Another scoring job holds the CRM (exit status 4)."""


def require_scoring_tables(connection: sa.Connection) -> None:
    """Refuse a CRM without the tables and columns the job writes, before anything is written."""
    present = set(sa.inspect(connection).get_table_names())
    missing = [table.name for table in SCORE_TABLES if table.name not in present]
    lacking = missing_columns(connection)
    if missing or lacking:
        what = [f"the tables {', '.join(missing)}"] if missing else []
        what += [f"{table}'s columns {', '.join(columns)}" for table, columns in lacking.items()]
        raise LeadscoreError(
            f"{display_url(connection)} lacks {'; '.join(what)}, which the scoring job writes (this CRM was created by "
            "an earlier leadscore). Add them with `leadscore crm init --append`, which keeps every row. Nothing was "
            "written."
        )


# --- one job at a time ----------------------------------------------------------------------------------


@contextmanager
def job_lock(engine: sa.Engine, wait: bool = False) -> Iterator[None]:
    """Hold the CRM's scoring lock for the duration of the block; raise ``JobLocked`` when another job has it.

    The lock belongs to the process (a file lock on SQLite, a session lock on a server), so the operating
    system or the server releases it when the process dies, even by ``kill -9``.
    """
    dialect = engine.dialect.name
    if dialect == "sqlite":
        with _file_lock(Path(engine.url.database).expanduser().resolve(), wait, display_url(engine)):
            yield
        return
    if dialect not in ("postgresql", "mysql"):
        raise LeadscoreError(f"The scoring job locks SQLite and PostgreSQL CRMs; {dialect} is not supported yet.")
    take, release = {
        "postgresql": ("SELECT pg_advisory_lock(hashtext(:name))" if wait else "SELECT pg_try_advisory_lock(hashtext(:name))",
                       "SELECT pg_advisory_unlock(hashtext(:name))"),
        "mysql": ("SELECT GET_LOCK(:name, -1)" if wait else "SELECT GET_LOCK(:name, 0)", "SELECT RELEASE_LOCK(:name)"),
    }[dialect]
    with engine.connect() as connection:
        got = connection.execute(sa.text(take), {"name": LOCK_NAME}).scalar()
        connection.commit()
        if wait is False and not got:
            raise _locked(display_url(engine))
        try:
            yield
        finally:
            connection.execute(sa.text(release), {"name": LOCK_NAME})
            connection.commit()


@contextmanager
def _file_lock(database: Path, wait: bool, shown: str) -> Iterator[None]:
    path = database.with_name(database.name + ".scoring-lock")
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise _locked(shown) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _locked(shown: str) -> JobLocked:
    return JobLocked(
        f"Another scoring job is running on {shown}: two jobs never write at once. Nothing was written. Wait for it "
        "to finish, or add --wait to start when it does (scoring_runs shows the running one)."
    )


# --- runs and rejects ---------------------------------------------------------------------------------


def fail_dead_runs(connection: sa.Connection, now: datetime) -> list[str]:
    """Mark every ``running`` run failed: called with the job lock held, so none of them can be alive."""
    runs = schema.scoring_runs
    dead = connection.execute(sa.select(runs.c.id).where(runs.c.status == "running")).scalars().all()
    if dead:
        connection.execute(
            runs.update().where(runs.c.id.in_(dead)).values(
                status="failed", finished_at=now,
                message="Its process ended before the run finished (killed, or the machine stopped); the next run "
                        "rescored every open lead.",
            )
        )
    return list(dead)


def start_run(connection: sa.Connection, run_id: str, model_name: str, model_version: str, as_of: datetime,
              started_at: datetime) -> None:
    connection.execute(schema.scoring_runs.insert().values(
        id=run_id, started_at=started_at, status="running", model_name=model_name, model_version=model_version,
        as_of=as_of, host=os.uname().nodename[:255], pid=os.getpid(),
    ))


def finish_run(connection: sa.Connection, run_id: str, status: str, finished_at: datetime, counts: dict,
               drift: dict | None, summary: dict, message: str) -> None:
    runs = schema.scoring_runs
    connection.execute(runs.update().where(runs.c.id == run_id).values(
        status=status, finished_at=finished_at, drift=drift, summary=summary, message=message[:10_000],
        **{key: counts.get(key) for key in ("open_leads", "scored", "written", "unchanged", "rejected", "history_rows")},
    ))


def write_rejects(connection: sa.Connection, run_id: str, rejects: list[tuple[int, str]]) -> int:
    if not rejects:
        return 0
    frame = pd.DataFrame({"run_id": run_id, "lead_id": [lead for lead, _ in rejects],
                          "reason": [reason for _, reason in rejects]})
    return write_frame(connection, schema.score_rejects, frame)


# --- scores -------------------------------------------------------------------------------------------


def previous_scores(connection: sa.Connection) -> pd.DataFrame:
    """The CRM's current score of every lead, indexed by lead id, for telling what changed."""
    table = schema.lead_scores
    # As the text it was written as: a driver decoding a million JSON objects into dicts costs seconds.
    columns = [sa.cast(table.c[name], sa.Text).label(name) if isinstance(table.c[name].type, sa.JSON) else table.c[name]
               for name in PREVIOUS_COLUMNS]
    frame = pd.read_sql(sa.select(*columns), connection)
    return frame.set_index("lead_id")


def write_scores(connection: sa.Connection, scores: pd.DataFrame, history: pd.DataFrame) -> None:
    """Upsert ``scores`` into lead_scores and append ``history``, inside the caller's transaction.

    Both frames hold lead_scores' columns, JSON columns already as JSON text.
    """
    if len(scores):
        dialect = connection.dialect.name
        if dialect == "sqlite":
            _upsert_sqlite(connection, scores)
        elif dialect == "postgresql":
            _upsert_postgresql(connection, scores)
        else:
            _replace_generic(connection, scores)
    if len(history):
        if connection.dialect.name in ("sqlite", "postgresql"):
            write_frame(connection, schema.lead_score_history, history)
        else:
            connection.execute(schema.lead_score_history.insert(), _records(history))


def _upsert_sqlite(connection: sa.Connection, scores: pd.DataFrame) -> None:
    columns = list(scores.columns)
    updates = ", ".join(f"{column} = excluded.{column}" for column in columns if column != "lead_id")
    sql = (f"INSERT INTO lead_scores ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
           f"ON CONFLICT (lead_id) DO UPDATE SET {updates}")
    rows = list(zip(*(_plain(scores[column], as_text=True) for column in columns)))
    with raw_cursor(connection, sql) as cursor:
        cursor.executemany(sql, rows)


def _upsert_postgresql(connection: sa.Connection, scores: pd.DataFrame) -> None:
    # COPY has no upsert: the rows go to a temporary table first, then one statement merges them.
    connection.exec_driver_sql(
        "CREATE TEMPORARY TABLE IF NOT EXISTS leadscore_incoming_scores (LIKE lead_scores INCLUDING DEFAULTS) "
        "ON COMMIT DELETE ROWS"
    )
    staging = sa.Table("leadscore_incoming_scores", sa.MetaData(), *(sa.Column(c.name, c.type) for c in schema.lead_scores.c))
    write_frame(connection, staging, scores)
    columns = ", ".join(scores.columns)
    updates = ", ".join(f"{column} = excluded.{column}" for column in scores.columns if column != "lead_id")
    connection.exec_driver_sql(
        f"INSERT INTO lead_scores ({columns}) SELECT {columns} FROM leadscore_incoming_scores "
        f"ON CONFLICT (lead_id) DO UPDATE SET {updates}"
    )


def _replace_generic(connection: sa.Connection, scores: pd.DataFrame) -> None:
    table = schema.lead_scores
    ids = scores["lead_id"].tolist()
    for start in range(0, len(ids), 1_000):
        connection.execute(table.delete().where(table.c.lead_id.in_(ids[start:start + 1_000])))
    connection.execute(table.insert(), _records(scores))


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows for SQLAlchemy's own JSON type, which wants objects, not the JSON text the bulk paths take."""
    values = {column: _plain(frame[column], as_text=False) for column in frame.columns}
    for column in JSON_COLUMNS:
        if column in values:
            values[column] = [json.loads(value) if isinstance(value, str) else value for value in values[column]]
    return [dict(zip(values, row)) for row in zip(*values.values())]


def _plain(series: pd.Series, as_text: bool) -> list:
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        seconds = series.to_numpy(dtype="datetime64[s]")
        if as_text:
            return np.datetime_as_string(seconds, unit="s").tolist()
        return seconds.astype(datetime).tolist()
    values = series.astype(object).where(series.notna(), None).tolist()
    return [value.item() if isinstance(value, np.generic) else value for value in values]


# --- what the history says ----------------------------------------------------------------------------


def read_score_movement(connection: sa.Connection, weeks: int = 12) -> ScoreMovement | None:
    """Entries into MQL and SQL per week and channel from the complete runs' score history, and the current
    scores of the open leads (``crm.movement``); None on a CRM without the score tables or a complete run."""
    present = set(sa.inspect(connection).get_table_names())
    needed = (schema.leads, schema.lead_scores, schema.lead_score_history, schema.scoring_runs)
    if any(table.name not in present for table in needed) or "run_id" in missing_columns(connection).get(
            schema.lead_score_history.name, ()):
        return None
    runs, history, scores, leads = schema.scoring_runs, schema.lead_score_history, schema.lead_scores, schema.leads
    # From the runs' side, so that a complete run that wrote no history row still counts, and can be the last.
    rows = pd.read_sql(
        sa.select(runs.c.id.label("run_id"), runs.c.as_of, history.c.lead_id, history.c.tier, history.c.probability)
        .select_from(runs.outerjoin(history, history.c.run_id == runs.c.id))
        .where(runs.c.status == "complete"),
        connection,
    )
    current = pd.read_sql(
        sa.select(scores.c.lead_id, scores.c.probability, scores.c.tier)
        .join(leads, leads.c.id == scores.c.lead_id)
        .where(leads.c.lifecycle_stage.notin_(CLOSED_STAGES)),
        connection,
    )
    channels = pd.read_sql(
        sa.select(leads.c.id, leads.c.channel).where(leads.c.id.in_(sa.select(history.c.lead_id).distinct())),
        connection,
    )
    scored = rows.dropna(subset=["lead_id"]).astype({"lead_id": np.int64})
    return score_movement(scored, current, channels.set_index("id")["channel"], weeks,
                          run_as_of=rows.drop_duplicates("run_id")["as_of"])
