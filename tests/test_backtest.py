"""The backtest: no lead is scored by a model that saw its outcome, cadences share trainings, MLflow keeps the run."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.errors import LeadscoreError
from leadscore.features.flat import ColumnRoles, flat_feature_table
from leadscore.pipelines import backtest
from leadscore.pipelines.backtest import BacktestConfig, parse_cadences, run_backtest
from leadscore.pipelines.train import TrainingConfig, crm_training_table

DELAY_DAYS = 20  # the flat table's outcomes are known 20 days after each lead's date, as a CRM horizon would
TRAINING = TrainingConfig(candidates=("logistic",), min_positives=30)
CONFIG = BacktestConfig(cadences=(None, 60, 30), start=pd.Timestamp("2025-09-03").to_pydatetime(), period_days=30,
                        label_delay_days=DELAY_DAYS, training=TRAINING)


def _leads(n: int = 1_200, seed: int = 0) -> pd.DataFrame:
    """Leads over 2025 whose pricing visits and event source raise conversion."""
    rng = np.random.default_rng(seed)
    visits = rng.poisson(3, n)
    source = rng.choice(["ads", "event", "web"], n)
    probability = 1 / (1 + np.exp(-(-2.2 + 0.35 * visits + 0.8 * (source == "event"))))
    created = pd.Timestamp("2025-01-01") + pd.to_timedelta(np.sort(rng.uniform(0, 365, n)), unit="D")
    return pd.DataFrame({"lead": np.arange(n), "created": created, "visits": visits, "source": source,
                         "won": (rng.random(n) < probability).astype(int)})


@pytest.fixture(scope="module")
def table():
    return flat_feature_table(_leads(), ColumnRoles(id="lead", target="won", time="created"))


@pytest.fixture(scope="module")
def replayed(table):
    """The backtest of ``CONFIG``, and the moment by which every table handed to training was fully known."""
    known_until = []
    real = backtest.train_model

    def spy(training_table, config):
        known_until.append(training_table.frame["created"].max() + pd.Timedelta(days=DELAY_DAYS))
        return real(training_table, config)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backtest, "train_model", spy)
        result = run_backtest(table, CONFIG)
    return result, known_until


def test_no_lead_is_scored_by_a_model_that_knew_its_outcome(replayed):
    result, known_until = replayed
    scores = result.scores
    seen = pd.Series(known_until).to_numpy()[scores["training"]]
    assert (seen < scores["retrained_on"].to_numpy()).all()
    assert (scores["retrained_on"] <= scores["time"]).all()
    # Every cadence here retrains on period boundaries, so whole periods lie beyond what their models knew.
    assert (seen < scores["period_start"].to_numpy()).all()
    assert (result.trainings["known_until"].to_numpy() == pd.Series(known_until).to_numpy()).all()


def test_cadences_score_the_same_leads_and_frequent_ones_use_more_models(replayed, table):
    result, known_until = replayed
    models = result.cadences.set_index("cadence")["models"]
    assert models["never"] == 1 < models["every 60 days"] == 2 < models["every 30 days"] == 4
    # The 60-day dates are 30-day dates too: one training each, shared.
    assert len(known_until) == len(result.trainings) == 4
    leads = result.scores.groupby("cadence")["lead"].apply(frozenset)
    assert leads.nunique() == 1
    assert len(leads.iloc[0]) == int((table.frame["created"] >= CONFIG.start).sum())


def test_each_period_and_cadence_is_measured(replayed):
    result, _ = replayed
    periods = result.periods
    assert periods.groupby("cadence").size().tolist() == [4, 4, 4]
    assert periods["rows"].groupby(periods["cadence"]).sum().nunique() == 1
    assert periods["brier"].between(0, 1).all() and periods["ece"].between(0, 1).all()
    # The synthetic leads are predictable: every model ranks them better than chance.
    assert (result.cadences["roc_auc"] > 0.6).all()
    assert result.scores["probability"].between(0, 1).all()


def test_a_crm_row_is_known_only_once_its_horizon_has_passed(small_crm, monkeypatch):
    table = crm_training_table(small_crm.history(), horizon_days=90)
    tables = []

    def constant(training_table, config):
        tables.append(training_table)
        rate = training_table.target.mean()
        model = SimpleNamespace(kind="constant", summary={}, predict_proba=lambda frame: np.full(len(frame), rate))
        return SimpleNamespace(model=model)

    monkeypatch.setattr(backtest, "train_model", constant)
    config = BacktestConfig(cadences=(None, 30, 7), label_delay_days=90, training=TrainingConfig(min_positives=20))
    result = run_backtest(table, config)
    known = pd.to_datetime([t.frame["cutoff"].max() + pd.Timedelta(days=90) for t in tables]).to_numpy()
    scores = result.scores
    assert (known[scores["training"]] < scores["retrained_on"].to_numpy()).all()
    assert (scores["retrained_on"] <= scores["time"]).all()
    # Monthly cutoffs: weekly dates with no cutoff before the next one train nothing.
    assert result.cadences.set_index("cadence").loc["every 7 days", "models"] <= scores["time"].nunique()
    assert len(tables) == len(result.trainings)


def _never_train(*args):
    raise AssertionError("a refused backtest must not train")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"cadences": (1,)}, "would train .* models \\(every day: .*more than --max-trainings 50"),
        ({"start": pd.Timestamp("2025-01-10").to_pydatetime()}, "converted rows are known before it.*Start on"),
        ({"start": pd.Timestamp("2026-03-01").to_pydatetime()}, "no row to score at or after it"),
    ],
)
def test_impossible_backtests_are_refused_before_any_training(table, monkeypatch, change, message):
    monkeypatch.setattr(backtest, "train_model", _never_train)
    config = replace(CONFIG, max_trainings=50, **change)
    with pytest.raises(LeadscoreError, match=message):
        run_backtest(table, config)


def test_cadences_are_read_from_text():
    assert parse_cadences("never, 90,30,7,30") == (None, 90, 30, 7)
    for text in ("weekly", "0", "", "-7"):
        with pytest.raises(LeadscoreError, match="cadence"):
            parse_cadences(text)


def test_the_command_prints_the_cadences_and_logs_one_run_with_the_tables_and_the_plot(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _leads(seed=1).to_csv(tmp_path / "leads.csv", index=False)
    common = ["backtest", "--data", tmp_path / "leads.csv", "--id", "lead", "--target", "won"]
    runner = CliRunner()
    refused = runner.invoke(app, [str(a) for a in common])
    assert refused.exit_code == 2 and "--time COLUMN" in refused.output
    result = runner.invoke(app, [str(a) for a in [
        *common, "--time", "created", "--cadence", "never,90", "--start", "2025-10-01", "--period-days", "30",
        "--candidates", "logistic", "--min-positives", "30", "--tracking-uri", store, "--report", tmp_path / "out",
    ]])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "every 90 days" in output and "Mean period AUC" in output and "2025-12-30" in output

    from leadscore.pipelines.store import read_store

    client = read_store(store)
    (run,) = client.search_runs([client.get_experiment_by_name("leadscore").experiment_id])
    assert run.info.run_id in output and run.data.tags["leadscore.kind"] == "backtest"
    assert run.data.metrics["cadence.90d.models"] == 2 and run.data.metrics["cadence.never.models"] == 1
    assert 0.5 < run.data.metrics["cadence.90d.roc_auc"] <= 1
    # 2025-10-01 to the end of the year: three periods of 30 days and the start of a fourth, each a step.
    assert [m.step for m in client.get_metric_history(run.info.run_id, "period.never.brier")] == [0, 1, 2, 3]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "backtest")}
    assert artifacts == {f"backtest/{name}" for name in ("periods.csv", "cadences.csv", "trainings.csv", "backtest.png")}
    periods = pd.read_csv(client.download_artifacts(run.info.run_id, "backtest/periods.csv", str(tmp_path)))
    assert len(periods) == 8 and set(periods["cadence"]) == {"never", "every 90 days"}
    assert (tmp_path / "out" / "backtest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
