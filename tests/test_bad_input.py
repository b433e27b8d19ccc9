"""Bad input, foreign data and faults, as a careful user tries them: one table, one test per row.

Each case names what is given (a CRM with another application's table, a
flat file with a header only, a full disk...), the command line, the exit
status expected, and phrases the output must (and must not) contain. Every
user error is one message naming the problem and the fix, with status 2 and
no traceback; where a case could lose or corrupt data, ``then`` checks the
data afterwards.

The cases cover the hardening issue's list (data loss, leaks, silently wrong
results, tracebacks, unclear messages) and the cases that already held.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.cli import app

runner = CliRunner()
CUTOFF = "2024-07-01"


@dataclass
class Workspace:
    """A case's own folder, with a copy of the shared simulated CRM and model store when it asks for them."""

    folder: Path
    crm_template: Path
    store_template: Path
    postgres: str | None = None

    def path(self, name: str) -> Path:
        return self.folder / name

    @property
    def crm(self) -> Path:
        return self.path("crm.db")

    def fields(self) -> dict[str, str]:
        return {
            "tmp": str(self.folder),
            "crm": str(self.crm),
            "store": f"sqlite:///{self.path('store') / 'mlflow.db'}",
            "pg": self.postgres or "",
            "pg_reader": (self.postgres or "").replace("://postgres@", "://leadscore_reader@"),
        }

    def sql(self, *statements: str, database: Path | None = None) -> None:
        with sqlite3.connect(database or self.crm) as connection:
            for statement in statements:
                connection.execute(statement)

    def query(self, statement: str, database: Path | None = None):
        with sqlite3.connect(database or self.crm) as connection:
            return connection.execute(statement).fetchall()


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]
    status: int
    says: tuple[str, ...] = ()
    given: tuple[Callable[[Workspace], None], ...] = ()
    then: Callable[[Workspace], None] | None = None
    never_says: tuple[str, ...] = ()
    postgres: bool = False


# --- what a case is given ------------------------------------------------------------------------------------


def crm(ws: Workspace) -> None:
    shutil.copy(ws.crm_template, ws.crm)


def store(ws: Workspace) -> None:
    shutil.copytree(ws.store_template, ws.path("store"))


def sales_notes_cascading(ws: Workspace) -> None:
    ws.sql(
        "CREATE TABLE sales_notes (id INTEGER PRIMARY KEY, lead_id INTEGER REFERENCES leads(id) ON DELETE CASCADE, note TEXT)",
        "INSERT INTO sales_notes (lead_id, note) SELECT id, 'call back' FROM leads LIMIT 50",
    )


def foreign_activities(ws: Workspace) -> None:
    """Another application's database whose table merely shares a name with one of leadscore's."""
    ws.sql(
        "CREATE TABLE activities (id INTEGER PRIMARY KEY, user_id INTEGER, action TEXT)",
        "INSERT INTO activities (user_id, action) VALUES (1, 'login'), (2, 'logout')",
        database=ws.path("other.db"),
    )


def view_over_leads(ws: Workspace) -> None:
    ws.sql("CREATE VIEW channel_mix AS SELECT channel, count(*) AS n FROM leads GROUP BY channel")


def _loosen(ws: Workspace, table: str) -> None:
    """Rebuild ``table`` without its constraints, as another tool writing the same columns would."""
    columns = [row[1] for row in ws.query(f"PRAGMA table_info({table})")]
    listing = ", ".join(columns)
    ws.sql(
        "PRAGMA foreign_keys = OFF",
        f"CREATE TABLE loose_{table} AS SELECT {listing} FROM {table}",
        f"DROP TABLE {table}",
        f"ALTER TABLE loose_{table} RENAME TO {table}",
    )


def duplicated_leads(ws: Workspace) -> None:
    _loosen(ws, "leads")
    ws.sql("INSERT INTO leads SELECT * FROM leads WHERE id <= 3")


def leads_without_channel(ws: Workspace) -> None:
    _loosen(ws, "leads")
    ws.sql("UPDATE leads SET channel = NULL WHERE id % 5 = 0")


def stage_won(ws: Workspace) -> None:
    _loosen(ws, "stage_changes")
    ws.sql("UPDATE stage_changes SET stage = 'won' WHERE stage = 'customer'")


def text_times(ws: Workspace) -> None:
    ws.sql("UPDATE activities SET occurred_at = 'yesterday' WHERE id IN (3, 5, 8)")


def text_lead_ids(ws: Workspace) -> None:
    _loosen(ws, "activities")
    ws.sql("UPDATE activities SET lead_id = 'abc' WHERE rowid IN (1, 2)")


def reader_role(ws: Workspace) -> None:
    """A PostgreSQL login that may connect but not create tables in the case's schema."""
    import sqlalchemy as sa

    engine = sa.create_engine(ws.postgres)
    with engine.begin() as connection:
        exists = connection.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = 'leadscore_reader'")).scalar()
        if not exists:
            connection.execute(sa.text("CREATE ROLE leadscore_reader LOGIN"))
        schema = connection.execute(sa.text("SELECT current_schema()")).scalar_one()
        connection.execute(sa.text(f'GRANT USAGE ON SCHEMA "{schema}" TO leadscore_reader'))
    engine.dispose()


def brackets_in_channels(ws: Workspace) -> None:
    ws.sql("UPDATE leads SET channel = 'Partner [/b]' WHERE channel = 'partner'",
           "UPDATE leads SET channel = '[emea] partner' WHERE channel = 'event'")


def empty_file(ws: Workspace) -> None:
    ws.path("empty.db").write_bytes(b"")


def another_app_database(ws: Workspace) -> None:
    ws.sql("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)", "INSERT INTO invoices VALUES (1, 9.5)",
           database=ws.path("billing.db"))


def flat(rows: int = 400, name: str = "leads.csv", sep: str = ",", **changes) -> Callable[[Workspace], None]:
    """A flat lead table; ``changes`` overwrite or add columns (callables get the frame)."""

    def write(ws: Workspace) -> None:
        rng = np.random.default_rng(rows)
        visits = rng.poisson(3, rows)
        frame = pd.DataFrame({
            "lead": [f"L{i:05d}" for i in range(rows)],
            "won": (rng.random(rows) < 1 / (1 + np.exp(3 - 0.5 * visits))).astype(int),
            "visits": visits,
            "source": rng.choice(["ads", "seo", "event"], rows),
            "created": pd.date_range("2024-01-01", periods=rows, freq="6h").strftime("%Y-%m-%d %H:%M"),
        })
        for column, value in changes.items():
            frame[column] = value(frame) if callable(value) else value
        path = ws.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False, sep=sep)

    return write


def ambiguous_dates(frame: pd.DataFrame) -> list[str]:
    """Day-first dates whose day never passes 12: each reads as another date month-first."""
    return [f"{1 + i % 12:02d}/{1 + (i // 12) % 12:02d}/{2023 + i // 144}" for i in range(len(frame))]


def text_file(name: str, text: str) -> Callable[[Workspace], None]:
    def write(ws: Workspace) -> None:
        ws.path(name).parent.mkdir(parents=True, exist_ok=True)
        ws.path(name).write_text(text)

    return write


def old_output(name: str) -> Callable[[Workspace], None]:
    return text_file(name, "the previous output, which must survive\n" * 200)


def rules_file(text: str) -> Callable[[Workspace], None]:
    return text_file("rules.yaml", text)


def full_disk(ws: Workspace) -> None:
    """A 320 KiB tmpfs at ws/full, with an old output file in it: writes of the new one run out of space."""
    folder = ws.path("full")
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=320k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {mounted.stderr.decode().strip()}")
    (folder / "out.csv").write_text("the previous output, which must survive\n" * 200)
    (folder / "out.parquet").write_text("the previous output, which must survive\n" * 200)
    (folder / "ballast").write_bytes(b"\0" * 200_000)


# --- what is checked afterwards -------------------------------------------------------------------------------


def rows_of(table: str, expected: int, database: str = "crm.db") -> Callable[[Workspace], None]:
    def check(ws: Workspace) -> None:
        assert ws.query(f"SELECT count(*) FROM {table}", ws.path(database))[0][0] == expected

    return check


def no_file(name: str) -> Callable[[Workspace], None]:
    def check(ws: Workspace) -> None:
        assert not ws.path(name).exists(), f"{name} was created"

    return check


def unchanged(name: str) -> Callable[[Workspace], None]:
    def check(ws: Workspace) -> None:
        assert ws.path(name).read_text() == "the previous output, which must survive\n" * 200
        debris = [p.name for p in ws.path(name).parent.iterdir() if p.name.startswith(".")]
        assert not debris, debris

    return check


def text_is(name: str, text: str) -> Callable[[Workspace], None]:
    def check(ws: Workspace) -> None:
        assert ws.path(name).read_text() == text, f"{name} was changed"

    return check


def csv_with(name: str, column: str) -> Callable[[Workspace], None]:
    def check(ws: Workspace) -> None:
        assert column in pd.read_csv(ws.path(name)).columns

    return check


def both(*checks: Callable[[Workspace], None]) -> Callable[[Workspace], None]:
    def check(ws: Workspace) -> None:
        for each in checks:
            each(ws)

    return check


# --- the cases ------------------------------------------------------------------------------------------------

FLAT = ("--data", "{tmp}/leads.csv", "--id", "lead", "--target", "won")
TRAIN = ("train", "--tracking-uri", "{store}")
FEATURES_OUT = ("--out", "{tmp}/f.parquet")

CASES = [
    # The CRM database: never lose, never write into another application's data.
    Case("init twice", ("crm", "init", "--crm", "{crm}"), 2, ("already holds tables", "--append", "--force"), (crm,)),
    Case("append and force", ("crm", "init", "--crm", "{tmp}/new.db", "--append", "--force"), 2, ("contradict",)),
    Case("init in a missing folder", ("crm", "init", "--crm", "{tmp}/no/such/crm.db"), 2, ("does not exist",)),
    Case("force over a cascading foreign key", ("simulate", "--crm", "{crm}", "--force", "--leads", "300"), 2,
         ("sales_notes", "-> leads", "ON DELETE CASCADE", "Nothing was changed"), (crm, sales_notes_cascading),
         both(rows_of("sales_notes", 50), rows_of("leads", 600))),
    Case("force over another app's activities", ("simulate", "--crm", "{tmp}/other.db", "--force", "--leads", "300"), 2,
         ("its columns (id, user_id, action)", "never writes into or drops another application's table"),
         (foreign_activities,), rows_of("activities", 2, "other.db")),
    Case("append to another app's activities", ("crm", "init", "--crm", "{tmp}/other.db", "--append"), 2,
         ("not leadscore's",), (foreign_activities,), rows_of("activities", 2, "other.db"), never_says=("--force to",)),
    Case("force under a view", ("crm", "init", "--crm", "{crm}", "--force"), 2, ("view channel_mix over leads",),
         (crm, view_over_leads), rows_of("leads", 600)),
    Case("simulate beside another app's table", ("simulate", "--crm", "{tmp}/billing.db", "--leads", "200"), 2,
         ("already holds tables: invoices", "Nothing was changed"), (another_app_database,),
         rows_of("invoices", 1, "billing.db")),
    Case("simulate zero leads", ("simulate", "--crm", "{tmp}/x.db", "--leads", "0"), 2, ("--leads",)),
    Case("simulate zero months", ("simulate", "--crm", "{tmp}/x.db", "--months", "0"), 2, ("--months",)),
    Case("simulate a bad start", ("simulate", "--crm", "{tmp}/x.db", "--start", "2024-13-01"), 2, ("not a date",)),
    Case("simulate into an existing CRM", ("simulate", "--crm", "{crm}", "--leads", "200"), 2,
         ("already holds tables", "Nothing was changed"), (crm,), rows_of("leads", 600)),
    # Reading a CRM: reading never creates a database, and names what is missing.
    Case("describe a mistyped path", ("crm", "describe", "--crm", "{tmp}/crmm.db"), 2,
         ("there is no CRM database", "crm init"), then=no_file("crmm.db")),
    Case("funnel of a mistyped path", ("funnel", "--crm", "{tmp}/crmm.db"), 2, ("there is no CRM database",),
         then=no_file("crmm.db")),
    Case("features of a mistyped path", ("features", "--crm", "{tmp}/crmm.db", "--cutoff", CUTOFF, *FEATURES_OUT), 2,
         ("there is no CRM database",), then=no_file("crmm.db")),
    Case("train on a mistyped path", (*TRAIN, "--crm", "{tmp}/crmm.db"), 2, ("there is no CRM database",),
         then=no_file("crmm.db")),
    Case("report of a mistyped CRM", ("report", "--crm", "{tmp}/crmm.db", "--out", "{tmp}/r.html",
                                      "--tracking-uri", "{store}", "--model", "models:/leadscore/1"), 2,
         ("there is no CRM database",), (store,), no_file("crmm.db")),
    Case("funnel of an empty file", ("funnel", "--crm", "{tmp}/empty.db"), 2,
         ("holds no leadscore CRM tables", "leadscore crm init", "leadscore simulate"), (empty_file,)),
    Case("funnel of another app's database", ("funnel", "--crm", "{tmp}/billing.db"), 2,
         ("holds no leadscore CRM tables",), (another_app_database,)),
    Case("funnel of PostgreSQL without tables", ("funnel", "--crm", "{pg}"), 2, ("holds no leadscore CRM tables",),
         postgres=True),
    Case("train on PostgreSQL without tables", (*TRAIN, "--crm", "{pg}"), 2, ("holds no leadscore CRM tables",),
         postgres=True),
    Case("features of PostgreSQL without tables", ("features", "--crm", "{pg}", "--cutoff", CUTOFF, *FEATURES_OUT), 2,
         ("holds no leadscore CRM tables",), postgres=True),
    Case("simulate without the right to create tables", ("simulate", "--crm", "{pg_reader}", "--leads", "200"), 2,
         ("Database error:", "permission denied"), (reader_role,), postgres=True),
    Case("not a URL", ("funnel", "--crm", "sqlite://:bad:url:"), 2, ("not a database URL",)),
    Case("no driver, password kept", ("funnel", "--crm", "mysql://crm_user:s3cret@db.example.com/crm"), 2,
         ("crm_user:***@", "install its SQLAlchemy driver"), never_says=("s3cret",)),
    Case("server down, raw @ in password", ("funnel", "--crm", "postgresql://crm:p@ss#1w@127.0.0.1:1/crm"), 2,
         ("Database error",), never_says=("ss#1w", "p@ss")),
    Case("duplicated lead ids in the funnel", ("funnel", "--crm", "{crm}"), 2, ("leads.id repeats 3 lead ids on 6 rows",),
         (crm, duplicated_leads)),
    Case("duplicated lead ids in the features", ("features", "--crm", "{crm}", "--cutoff", CUTOFF, *FEATURES_OUT), 2,
         ("leads.id repeats 3 lead ids",), (crm, duplicated_leads)),
    Case("unknown stage in the funnel", ("funnel", "--crm", "{crm}"), 2, ("'won'", "--map-stage won=customer"),
         (crm, stage_won)),
    Case("unknown stage in the features", ("features", "--crm", "{crm}", "--policy", "mql", *FEATURES_OUT), 2,
         ("'won'", "--map-stage"), (crm, stage_won)),
    Case("unknown stage mapped", ("funnel", "--crm", "{crm}", "--map-stage", "won=customer"), 0, ("All channels",),
         (crm, stage_won)),
    Case("stage mapped to nothing known", ("funnel", "--crm", "{crm}", "--map-stage", "won=client"), 2,
         ("'client' is not a leadscore stage",), (crm,)),
    Case("stage map without '='", ("funnel", "--crm", "{crm}", "--map-stage", "won"), 2, ("THEIR_STAGE=STAGE",), (crm,)),
    Case("leads without a channel", ("funnel", "--crm", "{crm}"), 0, ("(no channel)", "All channels"),
         (crm, leads_without_channel)),
    Case("times that are not dates", ("funnel", "--crm", "{crm}"), 2,
         ("activities.occurred_at holds 3 values that are not timestamps", "'yesterday'"), (crm, text_times)),
    Case("text lead ids", ("features", "--crm", "{crm}", "--cutoff", CUTOFF, *FEATURES_OUT), 2,
         ("activities.lead_id holds 2", "'abc'"), (crm, text_lead_ids)),
    Case("brackets in channel names", ("funnel", "--crm", "{crm}"), 0, ("Partner [/b]", "[emea] partner"),
         (crm, brackets_in_channels)),
    # Snapshots from the CRM.
    Case("cutoff not a date", ("features", "--crm", "{crm}", "--cutoff", "01/06/2025", *FEATURES_OUT), 2,
         ("--cutoff '01/06/2025' is not a date",), (crm,)),
    Case("unknown policy", ("features", "--crm", "{crm}", "--policy", "weekly", *FEATURES_OUT), 2,
         ("--policy 'weekly'", "cutoff or mql"), (crm,)),
    Case("cutoff policy without cutoff", ("features", "--crm", "{crm}", *FEATURES_OUT), 2, ("needs --cutoff",), (crm,)),
    Case("zero-day horizon", ("features", "--crm", "{crm}", "--cutoff", CUTOFF, "--horizon-days", "0", *FEATURES_OUT), 2,
         ("--horizon-days",), (crm,)),
    Case("cutoff after the data", ("features", "--crm", "{crm}", "--cutoff", "2030-01-01", *FEATURES_OUT), 0,
         ("after the CRM's latest record", "for scoring, not for training"), (crm,)),
    Case("cutoff before the data", ("features", "--crm", "{crm}", "--cutoff", "2019-01-01", *FEATURES_OUT), 0,
         ("table is empty", "first lead was created on 2024-01"), (crm,)),
    Case("features to CSV", ("features", "--crm", "{crm}", "--cutoff", CUTOFF, "--out", "{tmp}/f.csv"), 0,
         ("CSV holds the values only",), (crm,), csv_with("f.csv", "pricing_page_views_30d")),
    Case("features to xlsx", ("features", "--crm", "{crm}", "--cutoff", CUTOFF, "--out", "{tmp}/f.xlsx"), 2,
         (".csv or .parquet",), (crm,)),
    Case("features into a missing folder", ("features", "--crm", "{crm}", "--cutoff", CUTOFF, "--out", "{tmp}/no/f.parquet"),
         2, ("does not exist",), (crm,)),
    Case("features onto a folder", ("features", "--crm", "{crm}", "--cutoff", CUTOFF, "--out", "{tmp}/dir.parquet"), 2,
         ("that is a folder",), (crm, lambda ws: ws.path("dir.parquet").mkdir())),
    Case("features onto a full disk", ("features", "--crm", "{crm}", "--cutoff", CUTOFF, "--out", "{tmp}/full/out.parquet"),
         2, ("the disk is full", "the existing file is unchanged"), (crm, full_disk), unchanged("full/out.parquet")),
    # Flat tables.
    Case("missing data file", ("features", "--data", "{tmp}/nope.csv", "--id", "a", "--target", "b", *FEATURES_OUT), 2,
         ("nope.csv: there is no such file",)),
    Case("a folder as data", ("features", "--data", "{tmp}", "--id", "a", "--target", "b", *FEATURES_OUT), 2,
         ("it is a folder",)),
    Case("an empty data file", ("features", "--data", "{tmp}/e.csv", "--id", "a", "--target", "b", *FEATURES_OUT), 2,
         ("the file is empty",), (text_file("e.csv", ""),)),
    Case("a spreadsheet", ("features", "--data", "{tmp}/l.xlsx", "--id", "a", "--target", "b", *FEATURES_OUT), 2,
         ("reads CSV", "Parquet"), (text_file("l.xlsx", "PK\x03\x04"),)),
    Case("text posing as Parquet", ("features", "--data", "{tmp}/l.parquet", "--id", "a", "--target", "b", *FEATURES_OUT), 2,
         ("Is it really a Parquet file",), (text_file("l.parquet", "lead,won\n1,0\n"),)),
    Case("no roles", ("features", "--data", "{tmp}/leads.csv", *FEATURES_OUT), 2, ("needs --target COLUMN",),
         (flat(),)),
    Case("id mistyped", ("features", "--data", "{tmp}/leads.csv", "--id", "Lead", "--target", "won", *FEATURES_OUT), 2,
         ("--id 'Lead'", "Did you mean 'lead'"), (flat(),)),
    Case("target mistyped", ("features", "--data", "{tmp}/leads.csv", "--id", "lead", "--target", "wom", *FEATURES_OUT), 2,
         ("--target 'wom'", "Did you mean 'won'"), (flat(),)),
    Case("time mistyped", ("features", *FLAT, "--time", "creatd", *FEATURES_OUT), 2, ("--time 'creatd'",), (flat(),)),
    Case("drop mistyped", ("features", *FLAT, "--drop", "sorce", *FEATURES_OUT), 2, ("--drop 'sorce'",), (flat(),)),
    Case("fit mistyped", ("features", *FLAT, "--fit", "sorce", *FEATURES_OUT), 2, ("--fit 'sorce'",), (flat(),)),
    Case("dropping the id", ("features", *FLAT, "--drop", "lead", *FEATURES_OUT), 2, ("cannot be dropped",), (flat(),)),
    Case("duplicated ids", ("features", *FLAT, *FEATURES_OUT), 2, ("repeats 1 ids on 2 rows",),
         (flat(lead=lambda f: ["L00001", *f["lead"][1:]]),)),
    Case("missing ids", ("features", *FLAT, *FEATURES_OUT), 2, ("is empty on 1 of 400 rows",),
         (flat(lead=lambda f: [None, *f["lead"][1:]]),)),
    Case("missing outcomes", ("features", *FLAT, *FEATURES_OUT), 2, ("target column 'won' is empty on 1",),
         (flat(won=lambda f: [None, *f["won"][1:]]),)),
    Case("one outcome only", ("features", *FLAT, *FEATURES_OUT), 2, ("says 'not converted' on all 400 rows",),
         (flat(won=0),)),
    Case("outcome as words", ("features", *FLAT, *FEATURES_OUT), 2, ("--positive VALUE",),
         (flat(won=lambda f: np.where(f["won"] == 1, "Closed Won", "Open")),)),
    Case("outcome as words, positive given", ("features", *FLAT, "--positive", "Closed Won", *FEATURES_OUT), 0,
         ("Wrote 400 rows",), (flat(won=lambda f: np.where(f["won"] == 1, "Closed Won", "Open")),)),
    Case("positive never seen", ("features", *FLAT, "--positive", "yes", *FEATURES_OUT), 2, ("never occurs",), (flat(),)),
    Case("nothing left to learn from", ("features", *FLAT, "--drop", "visits", "--drop", "source", "--drop", "created",
                                        *FEATURES_OUT), 2, ("no usable feature column",), (flat(),)),
    Case("times that are not dates, flat", ("features", *FLAT, "--time", "source", *FEATURES_OUT), 2,
         ("is not a date on 400 of 400 rows",), (flat(),)),
    Case("missing times, flat", ("features", *FLAT, "--time", "created", *FEATURES_OUT), 2,
         ("time column 'created' is empty on 1",), (flat(created=lambda f: [None, *f["created"][1:]]),)),
    Case("day-first dates that could be month-first", ("features", *FLAT, "--time", "created", *FEATURES_OUT), 2,
         ("whose date depends on the format", "--time-format %d/%m/%Y"),
         (flat(created=ambiguous_dates),)),
    Case("day-first dates with their format", ("features", *FLAT, "--time", "created", "--time-format", "%d/%m/%Y",
                                               *FEATURES_OUT), 0, ("Wrote 400 rows",), (flat(created=ambiguous_dates),)),
    Case("dates against their stated format", ("features", *FLAT, "--time", "created", "--time-format", "%d/%m/%Y",
                                               *FEATURES_OUT), 2, ("does not match --time-format %d/%m/%Y",), (flat(),)),
    Case("a date format without codes", ("features", *FLAT, "--time", "created", "--time-format", "dd/mm/yyyy",
                                         *FEATURES_OUT), 2, ("holds no date code",), (flat(),)),
    Case("a date format without a time column", ("features", *FLAT, "--time-format", "%d/%m/%Y", *FEATURES_OUT), 2,
         ("needs the column it describes",), (flat(),)),
    Case("numbers with three '?'", ("features", *FLAT, *FEATURES_OUT), 0, ("Read 3 values of 'visits' as missing",),
         (flat(visits=lambda f: ["?" if i in (3, 30, 300) else str(v) for i, v in enumerate(f["visits"])]),)),
    Case("decimal commas in a ';' file", ("features", "--data", "{tmp}/eu.csv", "--id", "lead", "--target", "won",
                                          *FEATURES_OUT), 0, ("with decimal commas",),
         (flat(name="eu.csv", sep=";", minutes=lambda f: [f"{v * 1.5:.1f}".replace(".", ",") for v in f["visits"]]),)),
    Case("a header and no rows", ("features", *FLAT, *FEATURES_OUT), 2, ("no rows", "no lead to learn from"),
         (text_file("leads.csv", "lead,won,visits\n"),)),
    Case("training on a header only", (*TRAIN, *FLAT), 2, ("no rows",), (text_file("leads.csv", "lead,won,visits\n"),)),
    Case("markup in --id", ("features", "--data", "{tmp}/leads.csv", "--id", "[/lead_id]", "--target", "won",
                            *FEATURES_OUT), 2, ("--id '[/lead_id]'",), (flat(),)),
    Case("markup in --drop", ("features", *FLAT, "--drop", "[bold]x[/bold]", *FEATURES_OUT), 2,
         ("--drop '[bold]x[/bold]'",), (flat(),)),
    Case("markup in a file name", ("features", "--data", "{tmp}/in [/x].csv", "--id", "a", "--target", "b",
                                   *FEATURES_OUT), 2, ("in [/x].csv: there is no such file",)),
    Case("latin-1 file", ("features", *FLAT, *FEATURES_OUT), 0, ("Wrote 400 rows",),
         (flat(source=lambda f: np.where(f.index % 2 == 0, "Salon Médical", "Café")),
          lambda ws: ws.path("leads.csv").write_bytes(ws.path("leads.csv").read_text().encode("latin-1")))),
    # Training.
    Case("two sources", (*TRAIN, "--crm", "{crm}", *FLAT), 2, ("one source at a time",), (crm, flat())),
    Case("unknown candidate", (*TRAIN, *FLAT, "--candidates", "xgboost"), 2, ("choose among",), (flat(),)),
    Case("capacity without capacities", (*TRAIN, *FLAT, "--tier-rule", "capacity"), 2, ("needs both team capacities",),
         (flat(),)),
    Case("unknown tier rule", (*TRAIN, *FLAT, "--tier-rule", "gut"), 2, ("choose capacity or precision",), (flat(),)),
    Case("precisions upside down", (*TRAIN, *FLAT, "--mql-precision", "0.5", "--sql-precision", "0.2"), 2,
         ("must satisfy",), (flat(),)),
    Case("more SQLs than MQLs", (*TRAIN, *FLAT, "--tier-rule", "capacity", "--mql-per-week", "5", "--sql-per-week", "9"),
         2, ("exceeds --mql-per-week",), (flat(),)),
    Case("excluding an unknown feature", (*TRAIN, *FLAT, "--exclude", "vists"), 2, ("no such feature",), (flat(),)),
    Case("allowing an unknown feature", (*TRAIN, *FLAT, "--allow-leaky", "stage"), 2, ("no such feature",), (flat(),)),
    Case("too few conversions", (*TRAIN, *FLAT), 2, ("converted leads among", "--min-positives"), (flat(),)),
    Case("following the advice on 30 rows", (*TRAIN, *FLAT, "--min-positives", "1"), 0, ("registered leadscore version",),
         (flat(30),)),
    Case("following the advice on a tiny CRM", (*TRAIN, "--crm", "{crm}", "--min-positives", "5"), 2,
         ("too few for a forward split", "Add history"), (crm,)),
    Case("a golden column", (*TRAIN, *FLAT, "--min-positives", "20"), 2, ("Refusing to train", "stage"),
         (flat(stage=lambda f: np.where(f["won"] == 1, "closed won", "open")),)),
    Case("a table that is not a feature table", (*TRAIN, "--table", "{tmp}/plain.parquet"), 2,
         ("not a leadscore feature table",), (lambda ws: pd.DataFrame({"a": [1]}).to_parquet(ws.path("plain.parquet")),)),
    Case("a feature table written as CSV", (*TRAIN, "--table", "{tmp}/f.csv"), 2, ("Cannot read the feature table",),
         (text_file("f.csv", "lead_id,converted\n1,0\n"),)),
    Case("missing rules file", (*TRAIN, *FLAT, "--rules", "{tmp}/nope.yaml"), 2, ("there is no such file",), (flat(),)),
    Case("rules that are not YAML", (*TRAIN, *FLAT, "--rules", "{tmp}/rules.yaml"), 2, ("not valid YAML",),
         (flat(), rules_file("name: x\nrules: [\n"))),
    Case("rules as a list", (*TRAIN, *FLAT, "--rules", "{tmp}/rules.yaml"), 2, ("top level must be a mapping",),
         (flat(), rules_file("- a\n- b\n"))),
    # Scoring, reporting, the registry.
    Case("predict to .txt", ("predict", "--data", "{tmp}/leads.csv", "--out", "{tmp}/s.txt", "--tracking-uri", "{store}",
                             "--model", "models:/leadscore/1"), 2, (".csv or .parquet",), (store, flat())),
    Case("predict without the id column", ("predict", "--data", "{tmp}/leads.csv", "--out", "{tmp}/s.csv",
                                           "--tracking-uri", "{store}", "--model", "models:/leadscore/1"), 2,
         ("has no column 'lead'",), (store, flat(), lambda ws: pd.read_csv(ws.path("leads.csv")).drop(columns="lead")
                                     .to_csv(ws.path("leads.csv"), index=False))),
    Case("predict into a missing folder", ("predict", "--data", "{tmp}/leads.csv", "--out", "{tmp}/no/s.csv",
                                           "--tracking-uri", "{store}", "--model", "models:/leadscore/1"), 2,
         ("does not exist",), (store, flat())),
    Case("predict onto a full disk", ("predict", "--data", "{tmp}/leads.csv", "--out", "{tmp}/full/out.csv",
                                      "--tracking-uri", "{store}", "--model", "models:/leadscore/1"), 2,
         ("the disk is full", "the existing file is unchanged"), (store, flat(20_000), full_disk), unchanged("full/out.csv")),
    Case("predict over an old file", ("predict", "--data", "{tmp}/leads.csv", "--out", "{tmp}/s.csv", "--tracking-uri",
                                      "{store}", "--model", "models:/leadscore/1"), 0, ("Scored 400 rows",),
         (store, flat(), old_output("s.csv")), csv_with("s.csv", "probability")),
    Case("predict a header only", ("predict", "--data", "{tmp}/leads.csv", "--out", "{tmp}/s.csv", "--tracking-uri",
                                   "{store}", "--model", "models:/leadscore/1"), 2, ("no rows", "no lead to score"),
         (store, text_file("leads.csv", "lead,won,visits,source,created\n")), no_file("s.csv")),
    Case("predict a Parquet of no rows", ("predict", "--data", "{tmp}/none.parquet", "--out", "{tmp}/s.csv",
                                          "--tracking-uri", "{store}", "--model", "models:/leadscore/1"), 2,
         ("no rows",), (store, lambda ws: pd.DataFrame({"lead": pd.Series(dtype=str), "visits": pd.Series(dtype=float)})
                        .to_parquet(ws.path("none.parquet")))),
    Case("predict a row with a value training never read", ("predict", "--data", "{tmp}/leads.csv", "--out", "{tmp}/s.csv",
                                                            "--tracking-uri", "{store}", "--model", "models:/leadscore/1"),
         2, ("Column 'visits' of leads.csv is not a number on 1 of 400 rows",),
         (store, flat(visits=lambda f: ["lots", *map(str, f["visits"][1:])]))),
    Case("report as PDF", ("report", "--out", "{tmp}/r.pdf", "--tracking-uri", "{store}", "--model", "models:/leadscore/1"),
         2, ("HTML page",), (store,)),
    Case("report into a missing folder", ("report", "--out", "{tmp}/no/r.html", "--tracking-uri", "{store}", "--model",
                                          "models:/leadscore/1"), 2, ("does not exist",), (store,)),
    Case("promote by an unknown metric", ("promote", "--metric", "accuracy", "--tracking-uri", "{store}"), 2,
         ("choose pr_auc or roc_auc",), (store,)),
    Case("roll back with no earlier champion", ("promote", "--rollback", "--tracking-uri", "{store}"), 2,
         ("no earlier champion",), (store,)),
    Case("demo into a folder of someone else's files", ("demo", "--dir", "{tmp}/mine", "--leads", "200"), 2,
         ("holds files the demo did not write", "choose another --dir"),
         (text_file("mine/crm.db", "the user's own CRM"), text_file("mine/mlflow.db", "the user's own store")),
         text_is("mine/crm.db", "the user's own CRM")),
    Case("demo too small", ("demo", "--dir", "{tmp}/demo", "--leads", "50"), 2, ("--leads",)),
]


# --- running them ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crm_template(tmp_path_factory) -> Path:
    """600 simulated leads over 8 months: small enough to copy for every case, too small to train on."""
    folder = tmp_path_factory.mktemp("bad_input_crm")
    result = runner.invoke(app, ["simulate", "--crm", str(folder / "crm.db"), "--leads", "600", "--months", "8"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(folder / "crm.db") as connection:  # one file, without WAL sidecars, for copying
        connection.execute("PRAGMA journal_mode = DELETE")
    return folder / "crm.db"


@pytest.fixture(scope="module")
def store_template(tmp_path_factory) -> Path:
    """An MLflow store holding version 1 of a flat-table model, challenger, no champion yet."""
    folder = tmp_path_factory.mktemp("bad_input_store")
    ws = Workspace(folder, Path(), Path())
    flat(3_000)(ws)
    store = folder / "store"
    store.mkdir()
    result = runner.invoke(app, ["train", *[a.format(tmp=folder) for a in FLAT], "--tracking-uri",
                                 f"sqlite:///{store / 'mlflow.db'}", "--candidates", "logistic"])
    assert result.exit_code == 0, result.output
    return store


@pytest.fixture(autouse=True)
def _unmount(tmp_path):
    yield
    full = tmp_path / "full"
    if full.is_dir() and os.path.ismount(full):
        # Lazily: a file the failed write left open (pyarrow closes it on collection) must not keep it busy.
        subprocess.run(["umount", "--lazy", str(full)], check=False)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input(case: Case, tmp_path, crm_template, store_template, request):
    ws = Workspace(tmp_path, crm_template, store_template)
    if case.postgres:
        ws.postgres = request.getfixturevalue("postgres_url")
    for given in case.given:
        given(ws)
    argv = [part.format(**ws.fields()) for part in case.argv]
    result = runner.invoke(app, argv)
    output = " ".join(result.output.split())
    assert result.exit_code == case.status, result.output
    assert "Traceback" not in result.output and "a bug in leadscore" not in result.output, result.output
    for phrase in case.says:
        assert phrase in output, f"{phrase!r} not in: {result.output}"
    for phrase in case.never_says:
        assert phrase not in output, f"{phrase!r} printed: {result.output}"
    if case.then is not None:
        case.then(ws)


def test_the_table_covers_the_issue_s_count_of_cases():
    assert len(CASES) >= 89
    assert len({case.name for case in CASES}) == len(CASES)
