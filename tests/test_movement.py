"""Score movement: entries into MQL and SQL per week and channel from the score history, by hand and from a CRM."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from leadscore.crm import schema
from leadscore.crm.movement import monday, score_movement

# Weekly runs on Wednesdays; none in the week of 2025-01-20, which must still show, as zeros, as must the first
# run's week, which counts only what later runs of that week found (none here).
RUNS = ("2025-01-01", "2025-01-08", "2025-01-15", "2025-01-29", "2025-02-05")
WEEKS = pd.to_datetime(["2024-12-30", "2025-01-06", "2025-01-13", "2025-01-20", "2025-01-27", "2025-02-03"])
TIERS_BY_RUN = {  # lead: its tier at each run it has a history row for
    1: {"2025-01-01": "none", "2025-01-08": "mql", "2025-01-15": "sql"},  # MQL in week 2, SQL in week 3
    2: {"2025-01-01": "sql", "2025-01-15": "mql"},  # SQL at the first run: already, never an entry
    3: {"2025-01-01": "none", "2025-01-08": "mql", "2025-01-15": "none", "2025-01-29": "mql"},  # back and in again
    4: {"2025-01-01": "mql", "2025-01-29": "sql"},  # MQL already, SQL in week 5
    5: {"2025-01-29": "sql"},  # a new lead, straight to SQL
    6: {"2025-02-05": "mql"},  # a channel the channels do not know
    7: {"2025-01-01": "none", "2025-02-05": "none"},  # never qualified
}
CHANNELS = pd.Series({1: "paid_search", 2: "organic_search", 3: "webinar", 4: "referral", 5: "paid_social",
                      7: "event", 99: "partner"})


def _history(tiers_by_run: dict = TIERS_BY_RUN) -> pd.DataFrame:
    rows = [(lead, tier, 0.5, pd.Timestamp(run) + pd.Timedelta(hours=23, minutes=59, seconds=5))
            for lead, tiers in tiers_by_run.items() for run, tier in tiers.items()]
    return pd.DataFrame(rows, columns=["lead_id", "tier", "probability", "as_of"])


def _current() -> pd.DataFrame:
    return pd.DataFrame({"lead_id": [7, 3, 1], "probability": [0.02, 0.2, 0.4], "tier": ["none", "mql", "sql"]})


@pytest.fixture(scope="module")
def movement():
    return score_movement(_history(), _current(), CHANNELS)


def test_entries_count_each_lead_once_in_the_week_it_first_qualified(movement):
    weekly = movement.weekly
    assert weekly["week"].tolist() == WEEKS.tolist()
    assert weekly["mql_entries"].tolist() == [0, 2, 0, 0, 1, 1]  # leads 1 and 3, 5, 6
    assert weekly["sql_entries"].tolist() == [0, 0, 1, 0, 2, 0]  # lead 1, leads 4 and 5
    assert (movement.already_mql, movement.already_sql) == (2, 1)  # leads 2 and 4; lead 2
    assert movement.runs == len(RUNS)
    assert movement.first_run == pd.Timestamp("2025-01-01 23:59:05")
    assert movement.last_run == pd.Timestamp("2025-02-05 23:59:05")


def test_every_lead_entering_sql_is_among_the_mql_entries_of_that_week_or_before_or_already(movement):
    weekly = movement.weekly
    assert weekly["sql_entries"].sum() <= weekly["mql_entries"].sum()
    headroom = movement.already_mql - movement.already_sql  # MQL at the first run, SQL later
    assert (weekly["sql_entries"].cumsum() <= weekly["mql_entries"].cumsum() + headroom).all()


def test_channels_in_the_funnel_order_with_a_total_equal_to_the_weekly_sums(movement):
    table = movement.by_channel.set_index("channel")
    assert table.index.tolist() == ["organic_search", "paid_search", "paid_social", "webinar", "referral", "event",
                                    "(unknown)", "total"]  # partner: no lead of it was scored
    assert table.loc["total", "channel_label"] == "All channels"
    assert table.loc["paid_search", "channel_label"] == "Paid search"
    assert table["mql_entries"].tolist() == [0, 1, 1, 1, 0, 0, 1, 4]
    assert table["sql_entries"].tolist() == [0, 1, 1, 0, 1, 0, 0, 3]
    channels = table.drop(index="total")
    for column in ("mql_entries", "sql_entries"):
        assert table.loc["total", column] == movement.weekly[column].sum() == channels[column].sum()


def test_only_the_newest_weeks_are_counted_in_both_tables():
    movement = score_movement(_history(), _current(), CHANNELS, weeks=2)
    assert movement.weekly["week"].tolist() == WEEKS[-2:].tolist()
    total = movement.by_channel.set_index("channel").loc["total"]
    assert (total["mql_entries"], total["sql_entries"]) == (2, 2)
    with pytest.raises(ValueError):
        score_movement(_history(), _current(), CHANNELS, weeks=0)


def test_runs_that_wrote_no_history_row_still_count_and_extend_the_weeks():
    runs = pd.Series(pd.to_datetime([*RUNS, "2025-02-12"]) + pd.Timedelta(hours=23, minutes=59, seconds=5))
    movement = score_movement(_history(), _current(), CHANNELS, run_as_of=runs)
    assert movement.runs == 6 and movement.last_run.date().isoformat() == "2025-02-12"
    assert movement.weekly["week"].iloc[-1] == pd.Timestamp("2025-02-10")
    assert movement.weekly[["mql_entries", "sql_entries"]].iloc[-1].tolist() == [0, 0]
    quiet = score_movement(_history({}), _current().iloc[:0], CHANNELS, run_as_of=runs)  # no open lead ever
    assert quiet.runs == 6 and len(quiet.weekly) == 7 and quiet.weekly[["mql_entries", "sql_entries"]].eq(0).all().all()
    assert quiet.by_channel["channel"].tolist() == ["total"] and (quiet.already_mql, quiet.already_sql) == (0, 0)


def test_no_complete_run_gives_none_and_a_single_run_gives_its_week_without_entries():
    empty = _history({})
    assert score_movement(empty, _current().iloc[:0], CHANNELS) is None
    once = score_movement(_history({1: {"2025-01-01": "sql"}, 2: {"2025-01-01": "none"}}), _current(), CHANNELS)
    assert once.runs == 1 and len(once.weekly) == 1 and list(once.weekly.columns) == ["week", "mql_entries",
                                                                                       "sql_entries"]
    assert once.weekly[["mql_entries", "sql_entries"]].iloc[0].tolist() == [0, 0]
    assert (once.already_mql, once.already_sql) == (1, 1)
    assert once.by_channel.set_index("channel").loc["total", ["mql_entries", "sql_entries"]].tolist() == [0, 0]


def test_current_scores_are_passed_on_by_lead_and_the_inputs_are_not_changed():
    history, current, channels = _history(), _current(), CHANNELS.copy()
    before = history.copy(), current.copy()
    movement = score_movement(history, current, channels)
    assert movement.current["lead_id"].tolist() == [1, 3, 7]
    assert list(movement.current.columns) == ["lead_id", "probability", "tier"]
    pd.testing.assert_frame_equal(history, before[0])
    pd.testing.assert_frame_equal(current, before[1])
    pd.testing.assert_series_equal(channels, CHANNELS)


def test_monday_starts_the_calendar_week():
    assert monday(pd.Timestamp("2025-01-05 23:00")) == pd.Timestamp("2024-12-30")  # a Sunday
    assert monday(pd.Timestamp("2025-01-06 00:00")) == pd.Timestamp("2025-01-06")


def test_movement_loads_no_database_code():
    code = ("import sys, leadscore.crm.movement\n"
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'psycopg'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


# --- against a CRM the nightly job wrote -----------------------------------------------------------------

CRM_AS_OF = [datetime(2024, 12, 11, 12), datetime(2024, 12, 18, 12), datetime(2024, 12, 25, 12)]


@pytest.fixture(scope="module")
def scored_crm(tmp_path_factory):
    """A small simulated CRM scored by the nightly job at three weekly moments, plus a failed run to ignore."""
    from leadscore.crm.database import connect
    from leadscore.crm.simulator import SimulationConfig, simulate
    from leadscore.pipelines.registry import promote
    from leadscore.pipelines.simulate import simulate_into_crm
    from leadscore.pipelines.tracking import log_training
    from leadscore.pipelines.train import TrainingConfig, crm_training_table, train_model
    from leadscore.serve.nightly import ScoringOptions, score_crm

    folder = tmp_path_factory.mktemp("movement")
    store = f"sqlite:///{folder / 'mlflow.db'}"
    table = crm_training_table(simulate(SimulationConfig(leads=3_000, seed=11, months=12)).history())
    log_training(train_model(table, TrainingConfig(candidates=("lightgbm",), refit=False, min_positives=30)),
                 uri=store)
    promote(uri=store)
    crm = str(folder / "crm.db")
    engine = connect(crm, writable=True)
    simulate_into_crm(engine, SimulationConfig(leads=1_500, seed=12, months=12))
    engine.dispose()
    for as_of in CRM_AS_OF:
        # An engine per run, as the nightly job has and the demo does (see pipelines/demo.py); drift may hold a
        # run of so small a CRM, and these runs are about what gets written.
        engine = connect(crm, writable=True)
        assert score_crm(engine, ScoringOptions(tracking_uri=store, as_of=as_of, allow_drift=True)).status == "complete"
        engine.dispose()
    engine = connect(crm, writable=True)
    with engine.begin() as connection:
        lead = connection.execute(sa.select(schema.lead_scores.c.lead_id)).scalars().first()
        connection.execute(schema.scoring_runs.insert().values(
            id="dead", started_at=datetime(2024, 12, 26), status="failed", model_name="leadscore", model_version="1",
            as_of=datetime(2025, 1, 8)))
        connection.execute(schema.lead_score_history.insert().values(
            lead_id=lead, probability=0.9, tier="sql", model_name="leadscore", model_version="1", run_id="dead",
            scored_at=datetime(2024, 12, 26)))
    yield engine
    engine.dispose()


def test_the_crm_reader_agrees_with_a_direct_count_from_the_tables(scored_crm):
    from leadscore.crm.scores import read_score_movement

    with scored_crm.connect() as connection:
        movement = read_score_movement(connection)
        rows = pd.read_sql(
            "SELECT h.lead_id, h.tier, r.as_of FROM lead_score_history h JOIN scoring_runs r ON r.id = h.run_id "
            "WHERE r.status = 'complete'", connection)
        open_scores = pd.read_sql(
            "SELECT s.lead_id FROM lead_scores s JOIN leads l ON l.id = s.lead_id "
            "WHERE l.lifecycle_stage IN ('lead', 'mql', 'sql', 'opportunity')", connection)
    rows["as_of"] = pd.to_datetime(rows["as_of"])
    first = rows.loc[rows["tier"].isin(["mql", "sql"])].groupby("lead_id")["as_of"].min()
    first_sql = rows.loc[rows["tier"].eq("sql")].groupby("lead_id")["as_of"].min()

    assert movement.runs == 3 and movement.first_run == pd.Timestamp(CRM_AS_OF[0])
    assert movement.last_run == pd.Timestamp(CRM_AS_OF[-1])  # not the failed run's
    shown = pd.to_datetime(["2024-12-09", "2024-12-16", "2024-12-23"])
    assert movement.weekly["week"].tolist() == shown.tolist()
    for column, entries in (("mql_entries", first), ("sql_entries", first_sql)):
        week = entries[entries > CRM_AS_OF[0]].dt.to_period("W-SUN").dt.start_time
        expected = [int((week == day).sum()) for day in shown]
        assert movement.weekly[column].tolist() == expected
    assert movement.already_mql == int((first == CRM_AS_OF[0]).sum()) > 0
    assert movement.already_sql == int((first_sql == CRM_AS_OF[0]).sum())
    assert movement.weekly["mql_entries"].sum() > 0, "three weekly runs of this CRM should qualify some leads"
    total = movement.by_channel.set_index("channel").loc["total"]
    assert total["mql_entries"] == movement.weekly["mql_entries"].sum()
    assert sorted(movement.current["lead_id"]) == sorted(open_scores["lead_id"])
    assert set(movement.current["tier"]) <= {"none", "mql", "sql"}


def test_the_crm_reader_says_none_without_score_tables_or_complete_runs(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    from leadscore.crm.scores import read_score_movement

    with engine.begin() as connection:
        schema.leads.create(connection)
        assert read_score_movement(connection) is None
        schema.metadata.create_all(connection)
        assert read_score_movement(connection) is None
    engine.dispose()
