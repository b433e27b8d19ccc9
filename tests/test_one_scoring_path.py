"""One scoring path: predict, the MLflow model, the scoring core and the nightly job return identical rows.

Including the rows that once split the paths: values read as missing
(``--na-value``) and values the model never saw at training.
"""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.crm import schema
from leadscore.crm.database import connect
from leadscore.crm.simulator import SimulationConfig, simulate
from leadscore.features import FeatureTable
from leadscore.models.scoring import Scorer
from leadscore.pipelines.registry import load_model
from leadscore.pipelines.simulate import simulate_into_crm
from leadscore.serve.nightly import ScoringOptions, score_crm

runner = CliRunner()
COMPARED = ["probability", "tier", "fit_score", "engagement_score", "reason_1", "reason_2", "reason_3", "tier_reasons",
            "reasons", "unseen"]


def _same_rows(left: pd.DataFrame, right: pd.DataFrame, id_column: str) -> None:
    left = left.set_index(left[id_column].astype(str)).sort_index()
    right = right.set_index(right[id_column].astype(str)).sort_index()
    assert list(left.index) == list(right.index)
    np.testing.assert_allclose(left["probability"].astype(float), right["probability"].astype(float), rtol=0, atol=1e-12)
    for column in COMPARED[1:]:
        if column in left and column in right:
            mine, theirs = left[column].fillna("").astype(str), right[column].fillna("").astype(str)
            if column == "reasons":
                mine, theirs = mine.map(json.loads), theirs.map(json.loads)
            elif column in ("fit_score", "engagement_score"):
                mine, theirs = mine.str.replace(".0", "", regex=False), theirs.str.replace(".0", "", regex=False)
            assert (mine == theirs).all(), column


def test_a_flat_table_model_scores_alike_through_predict_the_mlflow_model_and_the_core(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(5)
    n = 2_000
    frame = pd.DataFrame({
        "lead": [f"L{i}" for i in range(n)],
        "visits": rng.poisson(3, n),
        "source": rng.choice(["ads", "seo", "event", "Select"], n),
        "region": rng.choice(["north", "south", "Select"], n),
    })
    frame["won"] = (rng.random(n) < 1 / (1 + np.exp(3 - 0.5 * frame["visits"]))).astype(int)
    frame.to_csv("train.csv", index=False)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    trained = runner.invoke(app, ["train", "--data", "train.csv", "--id", "lead", "--target", "won", "--na-value", "Select",
                                  "--tracking-uri", store, "--min-positives", "50"])
    assert trained.exit_code == 0, trained.output
    new = frame.drop(columns="won").head(300).copy()
    new.loc[new.index[:20], "source"] = "tiktok"  # never seen at training
    new.to_csv("new.csv", index=False)
    assert (new["source"] == "Select").sum() > 30 and (new["region"] == "Select").sum() > 30

    predicted = runner.invoke(app, ["predict", "--data", "new.csv", "--out", "scores.csv", "--model", "models:/leadscore/1",
                                    "--tracking-uri", store, "--explain"])
    assert predicted.exit_code == 0, predicted.output
    from_cli = pd.read_csv("scores.csv", keep_default_na=False)
    import mlflow

    mlflow.set_tracking_uri(store)
    from_mlflow = mlflow.pyfunc.load_model("models:/leadscore/1").predict(pd.read_csv("new.csv"), params={"explain": True})
    model = load_model("models:/leadscore/1", store)
    from_core = Scorer(model).score(pd.read_csv("new.csv"), explain=True)
    _same_rows(from_cli, from_core, "lead")
    _same_rows(from_mlflow, from_core, "lead")
    assert (from_core["unseen"].str.contains("source=tiktok")).sum() == 20
    # "Select" means missing: it scores like an empty cell, through every path.
    blank = pd.read_csv("new.csv").assign(source=lambda f: f["source"].replace("Select", None),
                                          region=lambda f: f["region"].replace("Select", None))
    np.testing.assert_allclose(Scorer(model).score(blank, explain=False)["probability"], from_core["probability"], atol=1e-12)


@pytest.mark.parametrize("crm_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_the_nightly_job_writes_what_predict_and_the_mlflow_model_say(crm_url, tmp_path, monkeypatch):
    from leadscore.pipelines.registry import promote
    from leadscore.pipelines.tracking import log_training
    from leadscore.pipelines.train import TrainingConfig, crm_training_table, train_model

    monkeypatch.chdir(tmp_path)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log_training(train_model(crm_training_table(simulate(SimulationConfig(leads=6_000, seed=21, months=24)).history()),
                             TrainingConfig(candidates=("lightgbm",))), uri=store)
    promote(uri=store)
    engine = connect(crm_url, writable=True)
    simulate_into_crm(engine, SimulationConfig(leads=1_500, seed=22, months=24))
    with engine.begin() as connection:  # a channel and an industry the model never saw
        connection.execute(sa.text("UPDATE leads SET channel = 'tiktok', industry = 'crypto' WHERE id % 25 = 0"))
    as_of = datetime(2025, 12, 31)
    report = score_crm(engine, ScoringOptions(tracking_uri=store, as_of=as_of, allow_drift=True))
    with engine.connect() as connection:
        written = pd.read_sql(sa.select(schema.lead_scores), connection)
    engine.dispose()

    out = runner.invoke(app, ["features", "--crm", crm_url, "--cutoff", "2025-12-31", "--out", "open.parquet"])
    assert out.exit_code == 0, out.output
    table = FeatureTable.read_parquet("open.parquet")
    assert len(table.frame) == report.scored
    predicted = runner.invoke(app, ["predict", "--data", "open.parquet", "--out", "scores.parquet", "--tracking-uri", store,
                                    "--explain"])
    assert predicted.exit_code == 0, predicted.output
    from_cli = pd.read_parquet("scores.parquet")
    import mlflow

    mlflow.set_tracking_uri(store)
    from_mlflow = mlflow.pyfunc.load_model("models:/leadscore@champion").predict(pd.read_parquet("open.parquet"),
                                                                                 params={"explain": True})
    _same_rows(from_cli, from_mlflow, "lead_id")
    from_job = written.assign(
        reasons=written["reasons"].map(lambda value: value if isinstance(value, str) else json.dumps(value)),
        unseen=written["unseen"].fillna(""),
    )
    sentences = from_cli["reason_1"].fillna("") + "\n" + from_cli["reason_2"].fillna("") + "\n" + from_cli["reason_3"].fillna("")
    from_cli = from_cli.assign(reason_text=sentences.str.strip("\n").str.replace("\n\n", "\n"))
    _same_rows(from_cli[["lead_id", "probability", "tier", "fit_score", "engagement_score", "reasons", "unseen"]],
               from_job[["lead_id", "probability", "tier", "fit_score", "engagement_score", "reasons", "unseen"]], "lead_id")
    assert (from_cli.set_index("lead_id")["reason_text"].sort_index()
            == from_job.set_index("lead_id")["reason_text"].sort_index()).all()
    assert from_job["unseen"].str.contains("channel=tiktok").sum() >= 10
