"""Reading imperfect CRMs: the funnel and the features read them by the same rules (``crm.conform``).

The CRMs here are built the way another tool would build them: leadscore's
column names without its constraints, so they can hold what leadscore's own
schema refuses (no channel, duplicated ids, stages of their own, text times).
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from leadscore.crm import schema
from leadscore.crm.conform import UNKNOWN_CHANNEL, parse_stage_map
from leadscore.crm.database import connect
from leadscore.crm.funnel import funnel_by_channel
from leadscore.crm.sql import load_history
from leadscore.crm.simulator import SimulationConfig, simulate
from leadscore.errors import LeadscoreError
from leadscore.pipelines.snapshot import SnapshotPolicy, snapshot_from_crm

CUTOFF = datetime(2024, 5, 1)


@pytest.fixture(scope="module")
def simulated():
    return simulate(SimulationConfig(leads=300, seed=5, months=6))


def _loose_crm(url: str, leads: pd.DataFrame, activities: pd.DataFrame, stages: pd.DataFrame, text_times: bool = False):
    """leadscore's tables by name and column, without keys, checks or NOT NULL; times as text when asked."""
    metadata = sa.MetaData()
    tables = {}
    for table in (schema.leads, schema.activities, schema.stage_changes, schema.campaign_costs):
        columns = []
        for column in table.columns:
            kind = column.type
            if text_times and isinstance(column.type, sa.DateTime):
                kind = sa.String(40)
            columns.append(sa.Column(column.name, kind))
        tables[table.name] = sa.Table(table.name, metadata, *columns)
    engine = connect(url, writable=True)
    with engine.begin() as connection:
        metadata.create_all(connection)
        for name, frame in (("leads", leads), ("activities", activities), ("stage_changes", stages)):
            records = frame.astype(object).where(frame.notna(), None).to_dict("records")
            for record in records:
                for key, value in record.items():
                    if isinstance(value, pd.Timestamp):
                        record[key] = value.isoformat() if text_times else value.to_pydatetime()
            if records:
                connection.execute(tables[name].insert(), records)
    engine.dispose()
    return connect(url)


def _frames(simulated):
    leads = simulated.leads.copy()
    activities = simulated.activities[["lead_id", "occurred_at", "type"]].copy()
    stages = simulated.stage_changes[["lead_id", "stage", "changed_at"]].copy()
    for frame in (leads, activities, stages):
        for column in frame.columns:
            if isinstance(frame[column].dtype, pd.CategoricalDtype):
                frame[column] = frame[column].astype(object)
    return leads, activities, stages


def test_leads_without_a_channel_are_counted_under_unknown_by_the_funnel_and_the_features(crm_url, simulated):
    leads, activities, stages = _frames(simulated)
    leads.loc[leads.index[:60], "channel"] = None
    leads.loc[leads.index[60:75], "channel"] = "  "
    engine = _loose_crm(crm_url, leads, activities, stages)
    funnel = funnel_by_channel(load_history(engine))
    total = funnel.set_index("channel").loc["total"]
    assert total["leads"] == len(leads)
    unknown = funnel.set_index("channel").loc[UNKNOWN_CHANNEL]
    assert unknown["leads"] == 75 and unknown["channel_label"] == "(no channel)"
    table = snapshot_from_crm(engine, SnapshotPolicy.OPEN_AT_CUTOFF, CUTOFF)
    assert (table.frame["channel"] == UNKNOWN_CHANNEL).sum() > 0
    assert table.frame["channel"].notna().all()


def test_duplicated_lead_ids_are_refused_by_the_funnel_and_the_features_alike(crm_url, simulated):
    leads, activities, stages = _frames(simulated)
    leads = pd.concat([leads, leads.iloc[:4]], ignore_index=True)
    engine = _loose_crm(crm_url, leads, activities, stages)
    for read in (lambda: load_history(engine), lambda: snapshot_from_crm(engine, SnapshotPolicy.OPEN_AT_CUTOFF, CUTOFF)):
        with pytest.raises(LeadscoreError, match=r"leads.id repeats 4 lead ids on 8 rows .*GROUP BY id"):
            read()


def test_unknown_stages_are_refused_alike_or_mapped_by_the_same_rule(crm_url, simulated):
    leads, activities, stages = _frames(simulated)
    customers = int((stages["stage"] == "customer").sum())
    assert customers > 0
    stages["stage"] = stages["stage"].replace({"customer": "won"})
    engine = _loose_crm(crm_url, leads, activities, stages)
    for read in (lambda: load_history(engine), lambda: snapshot_from_crm(engine, SnapshotPolicy.AT_MQL)):
        with pytest.raises(LeadscoreError, match=rf"'won' \({customers} rows\).*--map-stage won=customer"):
            read()
    mapping = parse_stage_map(["won=customer"])
    funnel = funnel_by_channel(load_history(engine, stage_map=mapping)).set_index("channel")
    expected = funnel_by_channel(simulated.history()).set_index("channel")
    assert funnel.loc["total", "customers"] == expected.loc["total", "customers"] > 0
    table = snapshot_from_crm(engine, SnapshotPolicy.AT_MQL, stage_map=mapping)
    assert table.target.sum() > 0


def test_a_stage_map_must_name_leadscore_s_stages():
    with pytest.raises(LeadscoreError, match="'client' is not a leadscore stage"):
        parse_stage_map(["won=client"])
    with pytest.raises(LeadscoreError, match="THEIR_STAGE=STAGE"):
        parse_stage_map(["won"])


def test_times_that_are_not_dates_are_refused_with_the_column_the_count_and_an_example(tmp_path, simulated):
    leads, activities, stages = _frames(simulated)
    engine = _loose_crm(f"sqlite:///{tmp_path / 'crm.db'}", leads, activities, stages, text_times=True)
    assert load_history(engine).activities["occurred_at"].dtype == "datetime64[s]"
    engine.dispose()
    activities = activities.astype({"occurred_at": object})
    activities.loc[activities.index[[3, 9]], "occurred_at"] = "yesterday"
    engine = _loose_crm(f"sqlite:///{tmp_path / 'bad.db'}", leads, activities, stages, text_times=True)
    with pytest.raises(LeadscoreError, match=r"activities.occurred_at holds 2 values that are not timestamps \(e.g. 'yesterday'\)"):
        load_history(engine)


def test_times_in_the_wrong_unit_are_refused(tmp_path, simulated):
    leads, activities, stages = _frames(simulated)
    engine = _loose_crm(f"sqlite:///{tmp_path / 'crm.db'}", leads, activities, stages, text_times=True)
    writer = connect(str(tmp_path / "crm.db"), writable=True)
    with writer.begin() as connection:  # an Excel serial day number where a time belongs
        connection.execute(sa.text("UPDATE stage_changes SET changed_at = 45000 WHERE rowid = 1"))
    with pytest.raises(LeadscoreError, match="stage_changes.changed_at holds 1 (values that are not timestamps|times outside)"):
        load_history(engine)


@pytest.mark.postgres
def test_a_text_time_column_on_postgresql_is_refused_before_any_sql_fails(postgres_url, simulated):
    leads, activities, stages = _frames(simulated)
    engine = _loose_crm(postgres_url, leads, activities, stages, text_times=True)
    with pytest.raises(LeadscoreError, match=r"leads.created_at is of type VARCHAR\(40\), not a timestamp column"):
        load_history(engine)


def test_text_lead_ids_are_refused_and_activities_of_unknown_leads_are_left_out_with_a_note(crm_url, simulated):
    leads, activities, stages = _frames(simulated)
    activities.loc[activities.index[:2], "lead_id"] = 999_999
    engine = _loose_crm(crm_url, leads, activities, stages)
    history = load_history(engine)
    assert any("Left out 2 activities of lead ids that are not in leads (e.g. 999999)" in note for note in history.notes)
    table = snapshot_from_crm(engine, SnapshotPolicy.OPEN_AT_CUTOFF, CUTOFF)
    assert any("999999" in note for note in table.notes)
    if not crm_url.startswith("sqlite"):
        return  # a typed database cannot hold text in an integer column
    raw = connect(crm_url.removeprefix("sqlite:///"), writable=True)
    with raw.begin() as connection:
        connection.execute(sa.text("UPDATE activities SET lead_id = 'abc' WHERE rowid IN (5, 6, 7)"))
    with pytest.raises(LeadscoreError, match=r"activities.lead_id holds 3 of .* not whole-number lead ids \(e.g. 'abc'\)"):
        load_history(engine)


def test_a_database_without_leadscore_s_tables_is_named_with_the_fix(crm_url):
    engine = connect(crm_url, writable=True)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE invoices (id INTEGER PRIMARY KEY)"))
    with pytest.raises(LeadscoreError, match=r"holds no leadscore CRM tables .*`leadscore crm init`.*`leadscore simulate`"):
        load_history(engine)


def test_sqlite_read_through_arrow_gives_the_history_the_sqlite3_driver_gives(tmp_path, monkeypatch):
    from leadscore.crm import bulk
    from leadscore.pipelines.simulate import simulate_into_crm

    engine = connect(str(tmp_path / "crm.db"), writable=True)
    simulate_into_crm(engine, SimulationConfig(leads=400, seed=9, months=6))
    with engine.connect() as connection, bulk.ArrowReader(connection) as reader:
        assert reader.arrow is not None  # the fast path is taken, not silently skipped
    arrow = load_history(engine, activities_before=CUTOFF)
    monkeypatch.setattr(bulk.ArrowReader, "_arrow_table", lambda self, statement: None)
    driver = load_history(engine, activities_before=CUTOFF)
    for name in ("leads", "activities", "stage_changes"):
        pd.testing.assert_frame_equal(getattr(arrow, name), getattr(driver, name), check_categorical=False, obj=name)
        assert len(getattr(arrow, name)) > 0
    assert arrow.as_of == driver.as_of and arrow.notes == driver.notes


ONE_PROCESS = """
import sys
from pathlib import Path
from leadscore.crm.database import connect
from leadscore.crm.sql import load_history

engine = connect(sys.argv[1], writable=True)
with engine.connect():  # Python's sqlite3 holds the CRM open while the history is read
    load_history(engine)
maps = Path("/proc/self/maps").read_text()
print("adbc_driver_sqlite" in sys.modules, "adbc_driver_sqlite" in maps)  # the driver and its library
"""


def test_the_adbc_driver_and_its_sqlite_never_load_into_a_process_that_writes_the_crm(tmp_path):
    """ADBC's driver carries its own SQLite; beside Python's it deleted the write-ahead log and truncated the index
    a pooled sqlite3 connection had mapped, and the next write died of SIGBUS (the demo's second nightly run on a
    20,000-lead CRM). The driver reads in a process of its own instead (``crm.arrow_worker``)."""
    import subprocess
    import sys

    from leadscore.pipelines.simulate import simulate_into_crm

    path = tmp_path / "crm.db"
    engine = connect(str(path), writable=True)
    simulate_into_crm(engine, SimulationConfig(leads=300, seed=4, months=4))
    engine.dispose()
    outcome = subprocess.run([sys.executable, "-c", ONE_PROCESS, str(path)], capture_output=True, text=True, timeout=300)
    assert outcome.returncode == 0, outcome.stderr[-2000:]
    assert outcome.stdout.split() == ["False", "False"]
