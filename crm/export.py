"""Sending lead scores to another CRM only where they changed: the values as the CRM receives them, and the
ledger of what each CRM accepted (``crm_exports``).

A lead is sent when the values it would get differ from the ones its CRM last accepted, or when its last
attempt failed. The comparison is on the values as sent (probability to four decimals, reasons cut to the
field's length), so a rescoring that changes nothing the CRM would show costs no API call. The pure functions
(``render_scores``, ``truncate_reasons``, ``pending_rows``) do the deciding; ``read_scores``, ``read_ledger``
and ``record_outcomes`` are the database edges.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa
from leadscore.crm import schema
from leadscore.crm.bulk import epoch_seconds, raw_cursor, read_frame
from leadscore.crm.database import display_url, foreign_lookalikes

from leadscore.errors import LeadscoreError

PROBABILITY_DECIMALS = 4
SENT_COLUMNS = ("probability", "tier", "fit_score", "engagement_score", "reason_text", "model_version", "scored_at")
# scored_at is sent but not compared: it changes whenever the nightly job rewrites a row, also when nothing the
# CRM shows moved, and a score equal to the one the CRM holds is not worth an API call.
COMPARED_COLUMNS = ("record_key", "probability", "tier", "fit_score", "engagement_score", "reason_text", "model_version")
ELLIPSIS = "…"
# Where a sentence ends: a line break (reason_text holds one sentence a line), or whitespace after . ! or ?
_SENTENCE_END = re.compile(r"\n|(?<=[.!?])\s+")


@dataclass(frozen=True)
class Part:
    """One file of an export: its bytes, and the positions ``start:stop`` of its rows in the rows sent."""

    content: bytes
    start: int
    stop: int
    requests: int = 1  # API calls it takes: one Salesforce job, or one HubSpot batch per line

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Delivery:
    """What a CRM did with one part: each row's outcome by record key, and whether the export must stop.

    ``outcomes`` has one row per key sent: ``key``, ``accepted`` and the CRM's ``error`` for the others.
    ``stop`` says why no further part is sent now (a rate limit that outlasts the waits, an outage): the rows
    left are sent by the next export. ``fault`` names a fault in the setup (a missing field, a refused token),
    which no retry mends: the command exits 2 with it, after recording what was done.
    """

    outcomes: pd.DataFrame
    stop: str | None = None
    fault: str | None = None
    job: str | None = None  # the CRM's id of the work, for its own screens (a Salesforce job id)

    @classmethod
    def all_failed(cls, keys, error: str, **kwargs) -> Delivery:
        keys = [str(key) for key in keys]
        return cls(pd.DataFrame({"key": keys, "accepted": False, "error": error}), **kwargs)


@dataclass
class Tally:
    """Outcomes summed over the parts sent."""

    accepted: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # the CRM's error code -> rows
    examples: dict[str, str] = field(default_factory=dict)  # the CRM's error code -> one full message

    def add(self, outcomes: pd.DataFrame) -> None:
        accepted = outcomes["accepted"].astype(bool).to_numpy()
        self.accepted += int(accepted.sum())
        for message in outcomes["error"].to_numpy()[~accepted]:
            code = error_code(message)
            self.refused[code] = self.refused.get(code, 0) + 1
            self.examples.setdefault(code, message)

    @property
    def refused_rows(self) -> int:
        return sum(self.refused.values())


def error_code(message: str) -> str:
    """The code a CRM's error starts with (``UNABLE_TO_LOCK_ROW:unable to...``), else the message's first words."""
    head = str(message).split(":", 1)[0].strip()
    return head if re.fullmatch(r"[A-Z][A-Z0-9_ ]{2,60}", head) else str(message)[:80]


# --- the values a CRM receives --------------------------------------------------------------------------


def truncate_reasons(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, cut after its last whole sentence that fits.

    A first sentence longer than ``limit`` is cut at a word and ends with an ellipsis, so the CRM never shows
    half a word and never refuses the row for its length.
    """
    if len(text) <= limit:
        return text
    ends = [match.start() for match in _SENTENCE_END.finditer(text) if 0 < match.start() <= limit]
    if ends:
        return text[: ends[-1]].rstrip()
    cut = text[: limit - len(ELLIPSIS)]
    space = cut.rfind(" ")
    return (cut[:space] if space > 0 else cut).rstrip() + ELLIPSIS


def render_scores(scores: pd.DataFrame, reasons_length: int) -> pd.DataFrame:
    """The values each lead's record gets, as the CRM will hold them; nulls stay null (each target writes its own).

    ``scores`` holds lead_scores' ``lead_id`` and ``SENT_COLUMNS``, ``scored_at`` as datetime64. A new frame is
    returned; ``scores`` is not changed.
    """
    text = scores["reason_text"].astype(object)
    filled = text.where(text.notna(), "").astype(str)
    reasons = filled.astype(object)
    long = (filled.str.len() > reasons_length).to_numpy()
    if long.any():
        reasons[long] = [truncate_reasons(value, reasons_length) for value in filled[long]]
    reasons[filled.str.strip().eq("").to_numpy()] = None
    return pd.DataFrame({
        "lead_id": scores["lead_id"].astype("int64"),
        "probability": scores["probability"].astype(float).round(PROBABILITY_DECIMALS),
        "tier": scores["tier"].astype(object),
        "fit_score": pd.to_numeric(scores["fit_score"]).round().astype("Int64"),
        "engagement_score": pd.to_numeric(scores["engagement_score"]).round().astype("Int64"),
        "reason_text": reasons,
        "model_version": scores["model_version"].astype(str),
        "scored_at": pd.to_datetime(scores["scored_at"]),
    }).reset_index(drop=True)


def pending_rows(rendered: pd.DataFrame, ledger: pd.DataFrame, resend_all: bool = False) -> pd.DataFrame:
    """The rendered rows (with ``record_key``) whose values differ from what the CRM accepted, or whose last
    attempt failed; every row with ``resend_all``. ``ledger`` is ``read_ledger``'s frame, indexed by lead id."""
    if resend_all or ledger.empty:
        return rendered.reset_index(drop=True)
    before = ledger.reindex(rendered["lead_id"].to_numpy())
    differs = before["status"].isna().to_numpy() | (before["status"] == "failed").to_numpy()
    for column in COMPARED_COLUMNS:
        # Python values compared one by one, None for every kind of missing: None != None is False.
        differs |= _python_objects(rendered[column]) != _python_objects(before[column])
    return rendered[differs].reset_index(drop=True)


# --- the database edges ---------------------------------------------------------------------------------


def check_score_tables(connection: sa.Connection) -> None:
    """Refuse a CRM without the scores to export, with what to run."""
    inspector = sa.inspect(connection)
    where = display_url(connection)
    if schema.lead_scores.name not in inspector.get_table_names():
        raise LeadscoreError(
            f"{where} has no lead_scores table, so there are no scores to export. Score the CRM first with "
            "`leadscore score`, or point --crm at the CRM it writes."
        )
    present = {column["name"] for column in inspector.get_columns(schema.lead_scores.name)}
    lacking = [name for name in ("lead_id", *SENT_COLUMNS) if name not in present]
    if lacking:
        raise LeadscoreError(
            f"lead_scores in {where} lacks the columns {', '.join(lacking)} (it was created by an earlier leadscore). "
            "Add them with `leadscore crm init --append`, which keeps every row, then run `leadscore score`."
        )


def read_scores(connection: sa.Connection) -> pd.DataFrame:
    """Every lead's current score: ``lead_id`` and ``SENT_COLUMNS``, ``scored_at`` as datetime64."""
    table = schema.lead_scores
    statement = sa.select(
        table.c.lead_id, table.c.probability, table.c.tier, table.c.fit_score, table.c.engagement_score,
        table.c.reason_text, table.c.model_version, epoch_seconds(table.c.scored_at).label("scored_at"),
    )
    frame = read_frame(connection, statement)
    frame["scored_at"] = pd.to_datetime(pd.to_numeric(frame["scored_at"]), unit="s")
    return frame


LEDGER_COLUMNS = (*COMPARED_COLUMNS, "status", "attempts")


def read_ledger(connection: sa.Connection, target: str) -> pd.DataFrame:
    """What ``target`` last accepted for each lead and how its last attempt went, indexed by lead id; empty on a
    CRM whose ledger does not exist yet."""
    table = schema.crm_exports
    if table.name not in sa.inspect(connection).get_table_names():
        return pd.DataFrame(columns=list(LEDGER_COLUMNS), index=pd.Index([], name="lead_id", dtype="int64"))
    _refuse_foreign_ledger(connection)
    statement = sa.select(table.c.lead_id, *(table.c[name] for name in LEDGER_COLUMNS)).where(table.c.target == target)
    frame = read_frame(connection, statement)
    frame["lead_id"] = frame["lead_id"].astype("int64")
    for column in ("fit_score", "engagement_score"):
        frame[column] = pd.to_numeric(frame[column]).astype("Int64")
    frame["probability"] = pd.to_numeric(frame["probability"]).astype(float)
    return frame.set_index("lead_id")


def ensure_ledger(connection: sa.Connection) -> None:
    """Create ``crm_exports`` in a CRM from an earlier leadscore; refuse another application's table of that name."""
    table = schema.crm_exports
    if connection.dialect.name not in ("sqlite", "postgresql"):
        raise LeadscoreError(
            f"leadscore export keeps its ledger in SQLite and PostgreSQL CRMs; {connection.dialect.name} is not "
            "supported yet. Write the files without --push and load them with the CRM's own tools."
        )
    if table.name in sa.inspect(connection).get_table_names():
        _refuse_foreign_ledger(connection)
        return
    table.create(connection)


def _refuse_foreign_ledger(connection: sa.Connection) -> None:
    verdict = foreign_lookalikes(connection, [schema.crm_exports.name])
    if verdict:
        raise LeadscoreError(
            f"{display_url(connection)} holds a table crm_exports that is not leadscore's: "
            f"{verdict[schema.crm_exports.name]}. leadscore never reads or writes another application's table; "
            "rename that table or point --crm elsewhere. Nothing was written or sent."
        )


_ATTEMPTS = "CASE WHEN crm_exports.status = 'failed' THEN crm_exports.attempts + 1 ELSE 1 END"
_ACCEPTED_COLUMNS = ("target", "lead_id", "record_key", *SENT_COLUMNS, "accepted_at", "status", "error", "attempts",
                     "sent_at")
_FAILED_COLUMNS = ("target", "lead_id", "status", "error", "attempts", "sent_at")


def record_outcomes(connection: sa.Connection, target: str, sent: pd.DataFrame, outcomes: pd.DataFrame,
                    now: datetime) -> None:
    """Write what ``target`` did with the rows ``sent`` (rendered, with ``record_key``) into the ledger, inside the
    caller's transaction.

    ``outcomes`` says per record key whether it was accepted; a key the CRM said nothing about counts as
    failed, so that it is sent again. Accepted rows store the values sent; a failure keeps the values last
    accepted and stores the CRM's error.
    """
    verdict = outcomes.drop_duplicates("key").set_index("key")
    keys = sent["record_key"].astype(str)
    accepted = keys.map(verdict["accepted"]).eq(True).to_numpy()
    errors = keys.map(verdict["error"]).where(lambda error: error.notna(), "The CRM reported nothing for this row.")
    as_text = connection.dialect.name == "sqlite"
    if accepted.any():
        rows = sent[accepted]
        constants = {"target": target, "accepted_at": now, "status": "accepted", "error": None, "attempts": 1,
                     "sent_at": now}
        columns = [_constant(constants[name], len(rows), as_text) if name in constants else _values(rows[name], as_text)
                   for name in _ACCEPTED_COLUMNS]
        updates = ", ".join(f"{name} = excluded.{name}" for name in _ACCEPTED_COLUMNS[2:] if name != "attempts")
        _upsert(connection, _ACCEPTED_COLUMNS, columns, f"{updates}, attempts = {_ATTEMPTS}")
    if (~accepted).any():
        rows = sent[~accepted]
        columns = [_constant(target, len(rows), as_text), _values(rows["lead_id"], as_text),
                   _constant("failed", len(rows), as_text), errors[~accepted].astype(str).str.slice(0, 10_000).tolist(),
                   _constant(1, len(rows), as_text), _constant(now, len(rows), as_text)]
        _upsert(connection, _FAILED_COLUMNS, columns,
                f"status = excluded.status, error = excluded.error, sent_at = excluded.sent_at, attempts = {_ATTEMPTS}")


def _python_objects(series: pd.Series) -> np.ndarray:
    return np.asarray(series.astype(object).where(series.notna(), None), dtype=object)


def _upsert(connection: sa.Connection, names: tuple[str, ...], columns: list[list], updates: str) -> None:
    # Raw executemany: SQLAlchemy's per-value processing would cost seconds for a million rows.
    dialect = connection.dialect.name
    marker = "?" if dialect == "sqlite" else "%s"
    sql = (f"INSERT INTO crm_exports ({', '.join(names)}) VALUES ({', '.join(marker for _ in names)}) "
           f"ON CONFLICT (target, lead_id) DO UPDATE SET {updates}")
    with raw_cursor(connection, sql) as cursor:
        cursor.executemany(sql, list(zip(*columns)))


def _constant(value, rows: int, as_text: bool) -> list:
    return [_sqlite_time(value) if as_text else value] * rows


def _sqlite_time(value):
    # The schema stores SQLite times as ISO text with a 'T', so that comparing text compares times.
    return value.strftime("%Y-%m-%dT%H:%M:%S") if isinstance(value, datetime) else value


def _values(series: pd.Series, as_text: bool) -> list:
    """Plain Python values, None for missing; times as the schema's ISO text for SQLite (``as_text``)."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        seconds = series.to_numpy(dtype="datetime64[s]")
        if as_text:
            text = np.datetime_as_string(seconds, unit="s").astype(object)
            text[np.isnat(seconds)] = None
            return text.tolist()
        return seconds.astype(object).tolist()
    values = series.astype(object).where(series.notna(), None).tolist()
    return [value.item() if isinstance(value, np.generic) else value for value in values]
