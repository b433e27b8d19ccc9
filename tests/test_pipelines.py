"""Pipeline stages against real databases: simulate into the CRM, read it back, build snapshots."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from leadscore.crm import bulk
from leadscore.crm.database import WriteMode, connect, describe
from leadscore.crm.funnel import funnel_by_channel
from leadscore.crm.sql import load_history
from leadscore.crm.simulator import SimulationConfig
from leadscore.errors import LeadscoreError
from leadscore.features import build_features, open_leads_at
from leadscore.pipelines.demo import run_demo
from leadscore.pipelines.simulate import simulate_into_crm
from leadscore.pipelines.snapshot import SnapshotPolicy, snapshot_from_crm

CONFIG = SimulationConfig(leads=1_500, seed=5, months=12)


def test_the_crm_reads_back_exactly_what_was_simulated(crm_url):
    engine = connect(crm_url, writable=True)
    summary = simulate_into_crm(engine, CONFIG)
    simulated = summary.simulated
    history = load_history(engine)
    assert summary.rows == {name: len(getattr(simulated, name)) for name in ("leads", "stage_changes", "activities", "campaign_costs")}
    pd.testing.assert_series_equal(history.leads["created_at"], simulated.leads["created_at"])
    assert (history.leads["company_size"].astype(object) == simulated.leads["company_size"].astype(object)).all()
    assert (history.activities["occurred_at"].to_numpy() == simulated.activities["occurred_at"].to_numpy()).all()
    assert (history.activities["type"].astype(str).to_numpy() == simulated.activities["type"].astype(str).to_numpy()).all()
    assert (history.stage_changes["changed_at"].to_numpy() == simulated.stage_changes["changed_at"].to_numpy()).all()
    assert history.campaign_costs["cost"].sum() == pytest.approx(simulated.campaign_costs["cost"].sum())
    assert history.as_of == simulated.history().as_of

    cutoff = datetime(2024, 9, 1)
    pairs = open_leads_at(history, cutoff)
    from_database = build_features(history, pairs)
    in_memory = build_features(simulated.history(), pairs)
    pd.testing.assert_frame_equal(from_database, in_memory)
    funnel = funnel_by_channel(history)
    assert funnel.set_index("channel").loc["total", "leads"] == CONFIG.leads


def test_simulate_refuses_a_crm_with_data_unless_told(crm_url):
    engine = connect(crm_url, writable=True)
    simulate_into_crm(engine, CONFIG)
    with pytest.raises(LeadscoreError, match="already holds tables: activities"):
        simulate_into_crm(engine, CONFIG)
    assert describe(engine)["leads"] == CONFIG.leads

    appended = simulate_into_crm(engine, CONFIG, WriteMode.APPEND)
    assert appended.first_lead_id == CONFIG.leads + 1
    history = load_history(engine)
    assert len(history.leads) == 2 * CONFIG.leads
    assert history.leads["id"].is_unique
    costs = appended.simulated.campaign_costs["cost"].sum()
    assert history.campaign_costs["cost"].sum() == pytest.approx(2 * costs, rel=1e-6)

    simulate_into_crm(engine, CONFIG, WriteMode.FORCE)
    assert describe(engine)["leads"] == CONFIG.leads


def test_simulate_into_an_initialised_empty_crm_needs_no_flag(crm_url):
    engine = connect(crm_url, writable=True)
    with engine.begin() as connection:
        from leadscore.crm.database import prepare

        prepare(connection, WriteMode.REFUSE, empty_schema_is_fine=False, command="crm init")
    simulate_into_crm(engine, CONFIG)
    assert describe(engine)["leads"] == CONFIG.leads


def test_a_failed_write_leaves_the_crm_as_it_was(crm_url, monkeypatch):
    engine = connect(crm_url, writable=True)
    simulate_into_crm(engine, CONFIG)
    before = describe(engine)
    real_write = bulk.write_frame

    def failing_write(connection, table, frame, advance=lambda amount: None):
        if table.name == "activities":
            raise RuntimeError("disk full")
        return real_write(connection, table, frame, advance)

    monkeypatch.setattr("leadscore.pipelines.simulate.write_frame", failing_write)
    with pytest.raises(RuntimeError, match="disk full"):
        simulate_into_crm(engine, CONFIG, WriteMode.FORCE)
    assert describe(engine) == before


def test_snapshot_from_the_crm_with_either_policy(crm_url):
    engine = connect(crm_url, writable=True)
    simulate_into_crm(engine, CONFIG)
    at_cutoff = snapshot_from_crm(engine, SnapshotPolicy.OPEN_AT_CUTOFF, datetime(2024, 8, 1), horizon_days=60)
    assert len(at_cutoff.frame) > 300
    assert (at_cutoff.frame["cutoff"] == pd.Timestamp("2024-08-01")).all()
    assert at_cutoff.frame["horizon_complete"].all()
    assert 0 < at_cutoff.target.sum() < len(at_cutoff.frame)
    at_mql = snapshot_from_crm(engine, SnapshotPolicy.AT_MQL)
    assert (at_mql.frame["stage_at_cutoff"] == "lead").all()
    assert at_mql.target.mean() > at_cutoff.target.mean()
    with pytest.raises(LeadscoreError, match="--cutoff"):
        snapshot_from_crm(engine, SnapshotPolicy.OPEN_AT_CUTOFF, None)


def test_snapshot_of_an_empty_crm_says_so(crm_url):
    engine = connect(crm_url, writable=True)
    with engine.begin() as connection:
        from leadscore.crm.database import prepare

        prepare(connection, WriteMode.REFUSE, empty_schema_is_fine=False, command="crm init")
    with pytest.raises(LeadscoreError, match="holds no leads"):
        snapshot_from_crm(engine, SnapshotPolicy.AT_MQL)


def test_demo_simulates_trains_and_promotes_a_champion(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_demo(tmp_path / "demo", leads=6_000, seed=3)
    assert result.crm_file.exists() and not result.replaced
    assert result.funnel.set_index("channel").loc["total", "leads"] == 6_000
    assert result.promotion.promoted and result.logged.version == "1"
    assert (tmp_path / "demo" / "mlflow.db").exists() and (tmp_path / "demo" / "mlruns").is_dir()
    assert (tmp_path / "demo" / "report" / "metrics.json").exists()
    assert not (tmp_path / "mlruns").exists()  # nothing lands in the working directory


@pytest.mark.parametrize("how_many", [5, 12_000])
def test_the_history_of_some_leads_is_theirs_alone_with_the_crm_s_own_as_of(crm_url, how_many, monkeypatch):
    import leadscore.crm.sql as sql

    engine = connect(crm_url, writable=True)
    simulate_into_crm(engine, CONFIG)
    everything = load_history(engine)
    wanted = everything.leads["id"].sample(min(how_many, len(everything.leads)), random_state=1).to_numpy()
    if how_many > sql.IN_LIST_LIMIT:
        monkeypatch.setattr(sql, "IN_LIST_LIMIT", 100)  # the read-all-then-pick path, on a small CRM
        wanted = wanted[:800]
    some = load_history(engine, lead_ids=wanted)
    expected = everything.of_leads(wanted)
    assert some.as_of == everything.as_of
    assert set(some.leads["id"]) == set(wanted)
    for name in ("activities", "stage_changes"):
        mine = getattr(some, name)
        assert set(mine["lead_id"]) <= set(wanted)
        assert len(mine) == len(getattr(expected, name))
    cutoff = datetime(2024, 6, 1)
    before = load_history(engine, activities_before=cutoff, lead_ids=wanted)
    assert len(before.activities) == len(expected.before(cutoff).activities)
    assert (before.activities["occurred_at"] < pd.Timestamp(cutoff)).all()
