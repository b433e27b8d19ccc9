"""The nightly scoring job against real databases: writes, reruns, kills, two jobs at once, rejects, refusals."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.crm import schema
from leadscore.crm.database import connect
from leadscore.crm.simulator import SimulationConfig
from leadscore.errors import LeadscoreError
from leadscore.pipelines.simulate import simulate_into_crm
from leadscore.serve.nightly import ScoringOptions, score_crm

TRAINING = SimulationConfig(leads=6_000, seed=11, months=24)
CONFIG = SimulationConfig(leads=2_500, seed=12, months=24)  # the CRMs scored: smaller, and not the training one
AS_OF = datetime(2025, 12, 31)
LATER = datetime(2026, 1, 20)
runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """A CRM model trained on the simulated history, champion in its own MLflow store."""
    from leadscore.crm.simulator import simulate
    from leadscore.pipelines.registry import promote
    from leadscore.pipelines.tracking import log_training
    from leadscore.pipelines.train import TrainingConfig, crm_training_table, train_model

    folder = tmp_path_factory.mktemp("nightly_store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    table = crm_training_table(simulate(TRAINING).history())
    result = train_model(table, TrainingConfig(candidates=("lightgbm",)))
    log_training(result, uri=uri)
    promote(uri=uri)
    return uri


@pytest.fixture
def crm(crm_url) -> sa.Engine:
    engine = connect(crm_url, writable=True)
    simulate_into_crm(engine, CONFIG)
    yield engine
    engine.dispose()


def _options(store: str, **changes) -> ScoringOptions:
    return ScoringOptions(tracking_uri=store, as_of=changes.pop("as_of", AS_OF), **changes)


def _table(engine: sa.Engine, table: sa.Table) -> pd.DataFrame:
    with engine.connect() as connection:
        return pd.read_sql(sa.select(table), connection)


def test_the_first_run_writes_one_row_per_open_lead_and_a_rerun_writes_nothing(crm, store):
    first = score_crm(crm, _options(store))
    scores = _table(crm, schema.lead_scores)
    assert first.status == "complete" and first.scored == first.open_leads == len(scores) > 500
    assert first.written == len(scores) and first.history_rows == len(scores)
    assert scores["lead_id"].is_unique and set(scores["tier"]) <= {"none", "mql", "sql"}
    assert scores["trend"].eq("new").all() and scores["run_id"].eq(first.run_id).all()
    assert scores["model_version"].eq("1").all() and scores["feature_schema"].str.len().eq(16).all()
    assert scores["reason_text"].str.len().gt(0).mean() > 0.9
    runs = _table(crm, schema.scoring_runs).set_index("id")
    assert runs.loc[first.run_id, "status"] == "complete" and runs.loc[first.run_id, "scored"] == first.scored

    second = score_crm(crm, _options(store))
    assert (second.written, second.history_rows, second.unchanged) == (0, 0, first.scored)
    again = _table(crm, schema.lead_scores)
    pd.testing.assert_frame_equal(again.sort_values("lead_id", ignore_index=True),
                                  scores.sort_values("lead_id", ignore_index=True))
    assert len(_table(crm, schema.lead_score_history)) == first.history_rows


def test_a_later_run_says_why_each_score_changed_and_keeps_history_for_material_changes(crm, store):
    score_crm(crm, _options(store))
    # The simulated CRM receives no activity after AS_OF, so twenty days later engagement has
    # collapsed and drift rightly holds the run; this test is about what a later run writes.
    later = score_crm(crm, _options(store, as_of=LATER, history_points=1.0, allow_drift=True))
    assert later.status == "complete" and later.drift["status"] == "hold"
    scores = _table(crm, schema.lead_scores).set_index("lead_id")
    moved = scores[scores["trend"].isin(["rising", "falling"])]
    assert len(moved) > 20 and later.written > later.history_rows > 0
    for _, row in moved.head(50).iterrows():
        change = json.loads(row["change"]) if isinstance(row["change"], str) else row["change"]
        assert change["terms"], row["change_text"]
        assert sum(term["points"] for term in change["terms"]) == pytest.approx(change["points"], abs=0.5) or len(
            change["terms"]) == 3  # the three strongest terms can leave out small ones
        assert row["change_text"].startswith("Score rose" if change["points"] > 0 else "Score fell")
    history = _table(crm, schema.lead_score_history)
    this_run = history[history["run_id"] == later.run_id]
    assert this_run["lead_id"].is_unique
    previous = history[history["run_id"] != later.run_id].set_index("lead_id")["probability"]
    now = this_run.set_index("lead_id")
    big = (now["probability"] - previous.reindex(now.index)).abs() * 100 >= 1.0
    tier_changed = now["trend"].isna() | big | (now["tier"] != history[history["run_id"] != later.run_id]
                                                 .set_index("lead_id")["tier"].reindex(now.index))
    assert tier_changed.all()


def test_a_crm_of_an_earlier_leadscore_is_refused_until_crm_init_append_adds_the_columns(tmp_path, store):
    engine = connect(str(tmp_path / "crm.db"), writable=True)
    simulate_into_crm(engine, SimulationConfig(leads=800, seed=2, months=12))
    with engine.begin() as connection:
        for table in ("lead_score_history", "lead_scores"):
            connection.exec_driver_sql(f"DROP TABLE {table}")
        connection.exec_driver_sql(
            "CREATE TABLE lead_scores (lead_id INTEGER PRIMARY KEY REFERENCES leads(id), probability FLOAT NOT NULL, "
            "tier VARCHAR(10) NOT NULL, fit_score FLOAT, engagement_score FLOAT, reasons JSON, model_name VARCHAR(120) "
            "NOT NULL, model_version VARCHAR(40) NOT NULL, scored_at DATETIME NOT NULL)"
        )
        connection.exec_driver_sql("DROP TABLE score_rejects")
        connection.exec_driver_sql("DROP TABLE scoring_runs")
    with pytest.raises(LeadscoreError, match=r"lacks the tables .*scoring_runs.*lead_scores's columns .*crm init --append"):
        score_crm(engine, _options(store))
    assert runner.invoke(app, ["crm", "init", "--crm", str(tmp_path / "crm.db"), "--append"]).exit_code == 0
    # A 12-month CRM holds younger leads than the 24-month training history: drift would hold the run.
    upgraded = score_crm(engine, _options(store, as_of=datetime(2024, 12, 1), allow_drift=True))
    assert upgraded.status == "complete" and upgraded.written == upgraded.scored > 0


def test_a_model_the_crm_cannot_feed_or_cannot_find_stops_the_job_before_any_write(crm, store, tmp_path):
    from leadscore.features.flat import ColumnRoles, flat_feature_table
    from leadscore.pipelines.tracking import log_training
    from leadscore.pipelines.train import TrainingConfig, train_model

    with pytest.raises(LeadscoreError, match="no version 9"):
        score_crm(crm, _options(store, model_uri="models:/leadscore/9"))
    frame = pd.DataFrame({"lead": range(600), "visits": [i % 7 for i in range(600)], "won": [i % 4 == 0 for i in range(600)]})
    flat = train_model(flat_feature_table(frame, ColumnRoles(id="lead", target="won")),
                       TrainingConfig(min_positives=20, candidates=("logistic",)))
    other_store = f"sqlite:///{tmp_path / 'flat.db'}"
    log_training(flat, "flat", other_store)
    with pytest.raises(LeadscoreError, match="trained on a table whose columns the CRM's history does not provide"):
        score_crm(crm, ScoringOptions(model_uri="models:/flat/1", tracking_uri=other_store, as_of=AS_OF))
    assert _table(crm, schema.scoring_runs).empty and _table(crm, schema.lead_scores).empty


def test_leads_whose_records_break_the_rules_are_rejected_and_the_rest_scored(tmp_path, store):
    engine = connect(str(tmp_path / "crm.db"), writable=True)
    simulate_into_crm(engine, CONFIG)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE activities SET occurred_at = '2024-99-99' WHERE id IN (10, 11)")
        bad = connection.exec_driver_sql("SELECT DISTINCT lead_id FROM activities WHERE id IN (10, 11)").scalars().all()
    report = score_crm(engine, _options(store))
    rejects = _table(engine, schema.score_rejects)
    assert set(rejects["lead_id"]) == set(bad) and report.rejected == len(bad)
    assert rejects["reason"].str.contains("activities include an occurred_at that is not a timestamp").all()
    assert rejects["run_id"].eq(report.run_id).all()
    scored = set(_table(engine, schema.lead_scores)["lead_id"])
    assert not scored & set(bad) and len(scored) == report.scored > 500


def test_dry_run_writes_nothing_and_json_summarises_for_a_cron_log(tmp_path, store):
    path = tmp_path / "crm.db"
    engine = connect(str(path), writable=True)
    simulate_into_crm(engine, CONFIG)
    engine.dispose()
    result = runner.invoke(app, ["score", "--crm", str(path), "--tracking-uri", store, "--as-of", "2025-12-31",
                                 "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "dry run" and summary["written"] == summary["scored"] > 500
    engine = connect(str(path))
    assert _table(engine, schema.lead_scores).empty and _table(engine, schema.scoring_runs).empty
    done = runner.invoke(app, ["score", "--crm", str(path), "--tracking-uri", store, "--as-of", "2025-12-31"])
    assert done.exit_code == 0 and "written" in done.output and "Tiers:" in done.output


# --- killed and concurrent jobs, in real processes ----------------------------------------------------


PAUSED_JOB = """
import sys, time
from pathlib import Path
from leadscore.crm.database import connect
from leadscore.serve import compute, nightly, score_writer
from leadscore.serve.nightly import ScoringOptions, score_crm

compute.CHUNK_ROWS = 400
original = score_writer.ScoreWriter.write
def write_then_pause(self, chunk, scored):
    original(self, chunk, scored)
    self.wait()
    Path(sys.argv[3]).touch()
    time.sleep(120)
score_writer.ScoreWriter.write = write_then_pause
score_crm(connect(sys.argv[1], writable=True), ScoringOptions(tracking_uri=sys.argv[2], as_of=nightly.datetime(2025, 12, 31)))
"""


def _paused_job(crm_url: str, store: str, tmp_path):
    ready = tmp_path / "first chunk written"
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(PAUSED_JOB), crm_url, store, str(ready)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "the job never wrote its first chunk"
        time.sleep(0.2)
    return process


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit status waits for whoever adopts it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_a_killed_run_is_failed_by_the_next_which_completes_every_lead_once(crm, crm_url, store, tmp_path):
    process = _paused_job(crm_url, store, tmp_path)
    workers = _children(process.pid)
    process.kill()
    process.wait()
    deadline = time.monotonic() + 20
    while any(map(_running, workers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(_running, workers)), "worker processes outlived the killed job"
    partial = _table(crm, schema.lead_scores)
    assert 0 < len(partial) < 1_000  # the first chunk landed whole, the rest never started
    report = score_crm(crm, _options(store))
    assert len(report.failed_runs) == 1
    runs = _table(crm, schema.scoring_runs).set_index("id")
    assert runs.loc[report.failed_runs[0], "status"] == "failed" and "ended before" in runs.loc[report.failed_runs[0], "message"]
    scores = _table(crm, schema.lead_scores)
    assert scores["lead_id"].is_unique and len(scores) == report.open_leads
    history = _table(crm, schema.lead_score_history)
    assert not history.duplicated(["run_id", "lead_id"]).any()
    assert report.unchanged >= len(partial) - 5  # the dead run's rows were right: rewritten only where needed


def test_two_jobs_on_one_crm_never_interleave(crm, crm_url, store, tmp_path):
    import threading

    first = _paused_job(crm_url, store, tmp_path)
    try:
        locked = runner.invoke(app, ["score", "--crm", crm_url, "--tracking-uri", store, "--as-of", "2025-12-31"])
        assert locked.exit_code == 4, locked.output
        assert "Another scoring job is running" in " ".join(locked.output.split())
        waited = {}
        waiting = threading.Thread(target=lambda: waited.update(report=score_crm(crm, _options(store, wait=True))))
        waiting.start()
        time.sleep(2)
        assert waiting.is_alive()  # it waits for the lock instead of writing beside the first job
    finally:
        first.kill()
        first.wait()
    waiting.join(timeout=180)
    assert waited["report"].status == "complete" and len(waited["report"].failed_runs) == 1


def test_a_shifted_channel_mix_holds_the_write_and_keeps_the_last_good_scores(crm, crm_url, store):
    first = score_crm(crm, _options(store))
    before = _table(crm, schema.lead_scores).sort_values("lead_id", ignore_index=True)
    with crm.begin() as connection:  # a campaign floods the CRM with one channel's leads
        connection.execute(sa.text("UPDATE leads SET channel = 'paid_social' WHERE id % 10 < 6"))
    held = runner.invoke(app, ["score", "--crm", crm_url, "--tracking-uri", store, "--as-of", "2025-12-31"])
    assert held.exit_code == 3, held.output
    assert "Held by drift" in held.output and "Lead source" in held.output
    pd.testing.assert_frame_equal(_table(crm, schema.lead_scores).sort_values("lead_id", ignore_index=True), before)
    runs = _table(crm, schema.scoring_runs)
    latest = runs[runs["id"] != first.run_id].iloc[0]
    assert latest["status"] == "held" and latest["written"] == 0
    drift = json.loads(latest["drift"]) if isinstance(latest["drift"], str) else latest["drift"]
    assert drift["status"] == "hold"
    forced = score_crm(crm, _options(store, allow_drift=True))
    assert forced.status == "complete" and forced.written > 0


def test_a_small_undrifted_batch_raises_no_false_alarm(crm_url, store):
    engine = connect(crm_url, writable=True)
    simulate_into_crm(engine, SimulationConfig(leads=150, seed=13, months=24))
    report = score_crm(engine, _options(store))
    assert 30 < report.scored < 150
    assert report.status == "complete" and report.drift["status"] != "hold"
    engine.dispose()


def test_worker_processes_write_exactly_what_one_process_writes(tmp_path, store, monkeypatch):
    import leadscore.serve.compute as compute

    monkeypatch.setattr(compute, "CHUNK_ROWS", 400)  # several chunks, so that two workers share them
    written = {}
    for workers in (1, 2):
        engine = connect(str(tmp_path / f"crm{workers}.db"), writable=True)
        simulate_into_crm(engine, CONFIG)
        report = score_crm(engine, _options(store, workers=workers))
        assert report.status == "complete" and report.written == report.scored > 3 * 400
        written[workers] = (_table(engine, schema.lead_scores).drop(columns=["run_id", "scored_at"])
                            .sort_values("lead_id", ignore_index=True))
        engine.dispose()
    pd.testing.assert_frame_equal(written[1], written[2])
