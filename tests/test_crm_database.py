"""The CRM data model and its I/O, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from leadscore.crm import bulk, schema
from leadscore.crm.bulk import epoch_seconds, read_frame, write_frame
from leadscore.crm.database import WriteMode, connect, describe, prepare
from leadscore.errors import LeadscoreError


def _init(url: str, mode: WriteMode = WriteMode.REFUSE) -> sa.Engine:
    engine = connect(url, writable=True)
    with engine.begin() as connection:
        prepare(connection, mode, empty_schema_is_fine=False, command="crm init")
    return engine


def _one_lead(engine: sa.Engine, lead_id: int = 1) -> None:
    with engine.begin() as connection:
        connection.execute(
            schema.leads.insert(),
            {"id": lead_id, "created_at": dt.datetime(2024, 1, 1), "channel": "ebook", "lifecycle_stage": "lead"},
        )


def test_init_creates_every_table_of_the_data_model(crm_url):
    engine = _init(crm_url)
    counts = describe(engine)
    assert set(schema.TABLE_NAMES) <= set(counts)
    assert all(counts[name] == 0 for name in schema.TABLE_NAMES)
    columns = {c["name"] for c in sa.inspect(engine).get_columns("leads")}
    assert {"id", "created_at", "channel", "campaign", "company", "industry", "company_size", "country",
            "job_title", "seniority", "department", "email_domain", "lifecycle_stage", "owner"} <= columns
    score_columns = {c["name"] for c in sa.inspect(engine).get_columns("lead_score_history")}
    assert {"lead_id", "probability", "tier", "fit_score", "engagement_score", "reasons", "model_name",
            "model_version", "scored_at"} <= score_columns


def test_init_refuses_a_database_that_already_holds_tables_and_changes_nothing(crm_url):
    engine = _init(crm_url)
    _one_lead(engine)
    with pytest.raises(LeadscoreError, match=r"already holds tables: .*leads \(1 rows\).*--append.*--force"):
        _init(crm_url)
    assert describe(engine)["leads"] == 1


def test_init_refuses_a_database_with_foreign_tables(crm_url):
    engine = connect(crm_url, writable=True)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE invoices (id INTEGER PRIMARY KEY)"))
    with pytest.raises(LeadscoreError, match="invoices"):
        _init(crm_url)
    assert "leads" not in describe(engine)


def test_append_keeps_rows_and_force_drops_only_leadscore_tables(crm_url):
    engine = _init(crm_url)
    _one_lead(engine)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE invoices (id INTEGER PRIMARY KEY)"))
        connection.execute(sa.text("INSERT INTO invoices (id) VALUES (7)"))
    _init(crm_url, WriteMode.APPEND)
    assert describe(engine)["leads"] == 1
    _init(crm_url, WriteMode.FORCE)
    counts = describe(engine)
    assert counts["leads"] == 0
    assert counts["invoices"] == 1


@pytest.mark.parametrize("mode", list(WriteMode))
def test_a_table_that_merely_shares_a_name_is_never_written_or_dropped(crm_url, mode):
    """Issue 9, case 2: another app's activities(id, user_id, action) survives --append and --force."""
    engine = connect(crm_url, writable=True)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE activities (id INTEGER PRIMARY KEY, user_id INTEGER, action VARCHAR(20))"))
        connection.execute(sa.text("INSERT INTO activities VALUES (1, 7, 'login'), (2, 8, 'logout')"))
    with pytest.raises(LeadscoreError) as raised:
        _init(crm_url, mode)
    message = " ".join(str(raised.value).split())
    assert "activities: its columns (id, user_id, action) lack leadscore's lead_id" in message
    assert "never writes into or drops another application's table" in message
    assert "use --force" not in message.lower() and "or --force" not in message
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM activities")).scalar_one() == 2
    assert "leads" not in describe(engine)


def test_force_refuses_to_drop_leadscore_s_own_table_when_a_user_added_columns(crm_url):
    engine = _init(crm_url)
    with engine.begin() as connection:
        connection.execute(sa.text("ALTER TABLE leads ADD COLUMN notes VARCHAR(200)"))
    _one_lead(engine)
    with pytest.raises(LeadscoreError, match=r"leads: it has columns leadscore did not create \(notes\)"):
        _init(crm_url, WriteMode.FORCE)
    assert describe(engine)["leads"] == 1
    _init(crm_url, WriteMode.APPEND)  # adding rows keeps the user's column
    assert describe(engine)["leads"] == 1


@pytest.mark.parametrize("on_delete", ["CASCADE", "SET NULL", "NO ACTION"])
def test_force_refuses_when_another_application_s_foreign_key_points_into_leadscore(crm_url, on_delete):
    """Issue 9, case 1: --force deleted sales_notes' rows through their ON DELETE CASCADE (SQLite)."""
    engine = _init(crm_url)
    for lead in range(1, 6):
        _one_lead(engine, lead)
    with engine.begin() as connection:
        connection.execute(sa.text(
            f"CREATE TABLE sales_notes (id INTEGER PRIMARY KEY, lead_id INTEGER REFERENCES leads(id) ON DELETE {on_delete}, "
            "note VARCHAR(50))"
        ))
        connection.execute(sa.text("INSERT INTO sales_notes (id, lead_id, note) VALUES (1, 1, 'call back'), (2, 3, 'vip')"))
    with pytest.raises(LeadscoreError) as raised:
        _init(crm_url, WriteMode.FORCE)
    message = str(raised.value)
    assert "sales_notes" in message and "-> leads" in message and "Nothing was changed" in message
    with engine.connect() as connection:
        notes = connection.execute(sa.text("SELECT lead_id FROM sales_notes ORDER BY id")).scalars().all()
    assert notes == [1, 3]
    assert describe(engine)["leads"] == 5


def test_force_refuses_when_a_view_reads_leadscore_s_tables(crm_url):
    engine = _init(crm_url)
    _one_lead(engine)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE VIEW lead_channels AS SELECT id, channel FROM leads"))
    with pytest.raises(LeadscoreError, match="view .*lead_channels over leads"):
        _init(crm_url, WriteMode.FORCE)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM lead_channels")).scalar_one() == 1


def test_reading_never_creates_a_database_and_never_writes_to_sqlite(tmp_path):
    missing = tmp_path / "crmm.db"
    with pytest.raises(LeadscoreError, match="there is no CRM database at .*crm init.*simulate"):
        connect(str(missing))
    assert not missing.exists()
    other = tmp_path / "other.db"
    engine = connect(str(other), writable=True)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE t (x INTEGER)"))
    engine.dispose()
    import sqlite3

    with sqlite3.connect(other) as raw:
        raw.execute("PRAGMA journal_mode = DELETE")
    reader = connect(str(other))
    with reader.connect() as connection:
        with pytest.raises(sa.exc.OperationalError, match="readonly|query_only|attempt to write"):
            connection.execute(sa.text("INSERT INTO t VALUES (1)"))
    reader.dispose()
    with sqlite3.connect(other) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # a reader never switches it to WAL


def test_contradicting_flags_are_refused():
    with pytest.raises(LeadscoreError, match="contradict"):
        WriteMode.from_flags(append=True, force=True)


def test_unknown_stage_is_rejected_by_the_database(crm_url):
    engine = _init(crm_url)
    _one_lead(engine)
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as connection:
            connection.execute(
                schema.stage_changes.insert(), {"lead_id": 1, "stage": "won", "changed_at": dt.datetime(2024, 1, 2)}
            )


def test_activity_for_an_unknown_lead_is_rejected(crm_url):
    engine = _init(crm_url)
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as connection:
            connection.execute(
                schema.activities.insert(),
                {"lead_id": 99, "occurred_at": dt.datetime(2024, 1, 2), "type": "page_view"},
            )


def test_bulk_write_and_read_round_trip_keeps_values_nulls_and_times(crm_url):
    engine = _init(crm_url)
    leads = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "created_at": np.array(["2024-01-01T09:00:00", "2024-02-29T23:59:59", "2025-12-31T00:00:01"], dtype="datetime64[s]"),
            "channel": pd.Categorical(["ebook", "webinar", "ebook"]),
            "company": ["Acme", None, ""],
            "lifecycle_stage": ["lead", "mql", "customer"],
        }
    )
    with engine.begin() as connection:
        assert write_frame(connection, schema.leads, leads) == 3
    with engine.connect() as connection:
        back = read_frame(
            connection,
            sa.select(
                schema.leads.c.id,
                epoch_seconds(schema.leads.c.created_at).label("created_at"),
                schema.leads.c.channel,
                schema.leads.c.company,
            ).order_by(schema.leads.c.id),
            categorical=("channel",),
        )
        via_sqlalchemy = connection.execute(sa.select(schema.leads.c.created_at).order_by(schema.leads.c.id)).scalars().all()
    assert back["id"].tolist() == [1, 2, 3]
    assert (back["created_at"].to_numpy(dtype="int64") == leads["created_at"].to_numpy().astype("int64")).all()
    assert back["channel"].astype(str).tolist() == ["ebook", "webinar", "ebook"]
    assert back["company"].iloc[0] == "Acme"
    assert pd.isna(back["company"].iloc[1])
    assert back["company"].iloc[2] == ""
    # What the bulk path wrote reads back through SQLAlchemy's own types unchanged.
    assert via_sqlalchemy == [dt.datetime(2024, 1, 1, 9), dt.datetime(2024, 2, 29, 23, 59, 59), dt.datetime(2025, 12, 31, 0, 0, 1)]


def test_the_generic_writer_for_other_databases_stores_the_same_values(tmp_path):
    engine = _init(f"sqlite:///{tmp_path / 'crm.db'}")
    costs = pd.DataFrame(
        {"channel": ["ebook", "webinar"], "month": [dt.date(2024, 1, 1), dt.date(2024, 2, 1)], "cost": [1200.5, np.nan]}
    )
    leads = pd.DataFrame(
        {"id": [1], "created_at": np.array(["2024-01-01T09:30:00"], dtype="datetime64[s]"), "channel": ["ebook"],
         "company": [None], "lifecycle_stage": ["lead"]}
    )
    with engine.begin() as connection:
        bulk._insert_generic(connection, schema.leads, leads)
        bulk._insert_generic(connection, schema.campaign_costs, costs.iloc[:1])
    with engine.connect() as connection:
        lead = connection.execute(sa.select(schema.leads)).one()
        cost = connection.execute(sa.select(schema.campaign_costs)).one()
    assert lead.created_at == dt.datetime(2024, 1, 1, 9, 30) and lead.company is None
    assert (cost.channel, cost.month, float(cost.cost)) == ("ebook", dt.date(2024, 1, 1), 1200.5)


def test_time_filters_in_sql_are_strict_at_the_second(crm_url):
    engine = _init(crm_url)
    _one_lead(engine)
    times = np.array(["2024-03-01T10:00:00", "2024-03-01T10:00:01", "2024-03-01T09:59:59"], dtype="datetime64[s]")
    with engine.begin() as connection:
        write_frame(connection, schema.activities, pd.DataFrame({"lead_id": 1, "occurred_at": times, "type": "page_view"}))
    with engine.connect() as connection:
        before = read_frame(
            connection,
            sa.select(epoch_seconds(schema.activities.c.occurred_at).label("t")).where(
                schema.activities.c.occurred_at < dt.datetime(2024, 3, 1, 10)
            ),
        )
    assert before["t"].tolist() == [int(np.datetime64("2024-03-01T09:59:59", "s").astype("int64"))]


def test_bulk_write_is_atomic_with_the_transaction(crm_url):
    engine = _init(crm_url)
    leads = pd.DataFrame({"id": [1, 2], "created_at": np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[s]"),
                          "channel": "ebook", "lifecycle_stage": "lead"})
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as connection:
            write_frame(connection, schema.leads, leads)
            write_frame(connection, schema.leads, leads.iloc[:1])  # duplicate id: the whole transaction fails
    assert describe(engine)["leads"] == 0


def test_connect_explains_bad_urls_and_missing_folders(tmp_path):
    with pytest.raises(LeadscoreError, match="not a database URL"):
        connect("sqlite://:bad:url:")
    with pytest.raises(LeadscoreError, match="does not exist"):
        connect(str(tmp_path / "missing" / "crm.db"))


def test_passwords_never_reach_a_message():
    with pytest.raises(LeadscoreError) as raised:
        connect("mysql://crm_user:s3cret@db.example.com/crm")
    assert "s3cret" not in str(raised.value) and "crm_user:***@" in str(raised.value)


def test_bare_path_means_sqlite_and_postgresql_defaults_to_psycopg(tmp_path):
    assert connect(str(tmp_path / "crm.db"), writable=True).dialect.name == "sqlite"
    assert connect("postgresql://user@localhost/db").dialect.driver == "psycopg"
