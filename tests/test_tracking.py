"""MLflow tracking and registry: each test works in its own store under a temporary folder."""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.errors import LeadscoreError
from leadscore.features.flat import ColumnRoles, flat_feature_table
from leadscore.models.explain import MIN_REASON_POINTS
from leadscore.models.scoring import EXPLANATION_COLUMNS, Scorer
from leadscore.pipelines import registry, tracking
from leadscore.pipelines.predict import predict_file
from leadscore.pipelines.store import prepare_store
from leadscore.pipelines.train import TrainingConfig, train_model


def _leads(n: int = 3_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    visits = rng.poisson(3, n)
    source = rng.choice(["ads", "seo", "event", "partner"], n)
    logit = -3 + 0.5 * visits + np.where(source == "partner", 1.5, 0.0)
    won = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"lead": [f"L{i}" for i in range(n)], "visits": visits, "source": source,
                         "region": rng.choice(["north", "south"], n), "won": won})


@pytest.fixture(scope="module")
def table():
    return flat_feature_table(_leads(), ColumnRoles(id="lead", target="won", fit=("region",)))


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _train(table, **config):
    return train_model(table, TrainingConfig(min_positives=50, candidates=("logistic",), **config))


def test_a_run_logs_everything_and_registers_a_challenger(table, store, tmp_path):
    result = _train(table)
    logged = tracking.log_training(result, "leads", store)
    assert logged.version == "1"
    import mlflow

    client = mlflow.MlflowClient(store)
    run = client.get_run(logged.run_id)
    assert run.data.params["model.kind"] == "logistic"
    assert run.data.params["data.rows"] == str(len(table.frame))
    assert len(run.data.params["data.schema_hash"]) == 16
    assert run.data.metrics["held_out.model.roc_auc"] > 0.7
    assert "held_out.logistic_baseline.brier" in run.data.metrics
    assert "validation.logistic.roc_auc" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(logged.run_id, "evaluation")}
    assert {"evaluation/metrics.json", "evaluation/reliability.png", "evaluation/gains.png",
            "evaluation/feature_registry.csv", "evaluation/holdout.parquet"} <= artifacts
    metrics = json.loads(client.download_artifacts(logged.run_id, "evaluation/metrics.json", str(tmp_path)) and
                         (tmp_path / "metrics.json").read_text())
    assert set(metrics["held_out"]) == {"leadscore model", "Logistic regression"}
    assert str(client.get_model_version_by_alias("leads", "challenger").version) == "1"
    assert (tmp_path / "mlruns").is_dir()  # artifacts live beside the SQLite store
    # Both models are recorded: the registered one learned from every row, the figures' one from the training rows.
    assert run.data.params["model.rows"] == str(len(table.frame))
    assert run.data.params["evaluated_model.rows"] == str(len(result.split.training)) != run.data.params["model.rows"]
    assert "evaluation/evaluated_model.pkl" in artifacts
    client.download_artifacts(logged.run_id, "evaluation/evaluated_model.pkl", str(tmp_path))
    evaluated = pickle.loads((tmp_path / "evaluated_model.pkl").read_bytes())
    np.testing.assert_allclose(evaluated.predict_proba(result.held_out), result.held_out["score: leadscore model"])


def test_the_logged_pyfunc_is_the_trained_model(table, store):
    result = _train(table)
    logged = tracking.log_training(result, "leads", store)
    import mlflow
    from mlflow.types.schema import AnyType, DataType

    pyfunc = mlflow.pyfunc.load_model("models:/leads@challenger")
    signature = pyfunc.metadata.signature
    assert signature.inputs is None  # the model reads every dtype itself (models/pyfunc.py says why)
    outputs = {entry.name: entry for entry in signature.outputs.inputs}
    assert list(outputs) == Scorer(result.model).columns(explain=True)
    assert isinstance(outputs["lead"].type, AnyType) and outputs["probability"].type == DataType.double
    assert {name for name, entry in outputs.items() if not entry.required} == set(EXPLANATION_COLUMNS)
    assert signature.params.to_dict() == [{"name": "explain", "type": "boolean", "default": False, "shape": None},
                                          {"name": "min_reason_points", "type": "double", "default": MIN_REASON_POINTS,
                                           "shape": None}]
    assert list(pyfunc.input_example.columns) == ["lead", *result.model.features]
    raw = result.model.raw_input(table.frame.head(50))
    plain = pyfunc.predict(raw)
    assert list(plain.columns) == ["lead", "probability", "tier", "unseen"]
    assert (plain["lead"] == table.frame["lead"].head(50).to_numpy()).all()
    np.testing.assert_allclose(plain["probability"], result.model.predict_proba(table.frame.head(50)))
    explained = pyfunc.predict(raw, params={"explain": True})
    assert {"lead", "probability", "tier", "fit_score", "engagement_score", "reason_1", "reasons"} <= set(explained.columns)
    np.testing.assert_allclose(explained["probability"], result.model.predict_proba(table.frame.head(50)))
    assert explained["tier"].isin(["none", "mql", "sql"]).all()
    loaded = tracking.load_model(logged.model_uri, store)
    np.testing.assert_array_equal(loaded.predict_proba(table.frame), result.model.predict_proba(table.frame))


def test_promote_only_a_better_challenger_and_roll_back(table, store):
    weak = _train(table, exclude=("visits",))
    tracking.log_training(weak, "leads", store)
    first = tracking.promote("leads", uri=store)
    assert first.promoted and "first champion" in first.message

    strong = _train(table)
    tracking.log_training(strong, "leads", store)
    second = tracking.promote("leads", uri=store)
    assert second.promoted and "Promoted version 2 over version 1: better than the champion beyond noise" in second.message
    gain = second.differences["champion"]
    assert gain.better and f"{gain.mean:+.4f} ({gain.low:+.4f} to {gain.high:+.4f})" in second.message

    tracking.log_training(weak, "leads", store)
    third = tracking.promote("leads", uri=store)
    assert third.outcome == registry.KEPT and "is not better than the champion (version 2) beyond noise" in third.message
    assert third.differences["champion"].worse

    import mlflow

    client = mlflow.MlflowClient(store)
    assert str(client.get_model_version_by_alias("leads", "champion").version) == "2"
    back = tracking.rollback("leads", store)
    assert back.promoted and str(client.get_model_version_by_alias("leads", "champion").version) == "1"
    with pytest.raises(LeadscoreError, match="no earlier champion"):
        tracking.rollback("leads", store)

    # The next plain promote (the weekly cron line) must not undo the rollback by re-promoting version 2.
    client.set_registered_model_alias("leads", "challenger", "2")
    again = tracking.promote("leads", uri=store)
    assert not again.promoted and "version 2, was rolled back" in again.message and "--force" in again.message
    assert str(client.get_model_version_by_alias("leads", "champion").version) == "1"
    forced = tracking.promote("leads", uri=store, force=True)
    assert forced.promoted and str(client.get_model_version_by_alias("leads", "champion").version) == "2"
    assert "leadscore.rolled_back" not in client.get_model_version("leads", "2").tags


def test_a_better_but_worse_calibrated_challenger_is_not_promoted(table, store):
    tracking.log_training(_train(table, exclude=("visits",)), "leads", store)
    tracking.promote("leads", uri=store)
    strong = _train(table)
    # The same ranking, so better beyond noise, but every probability pushed up: calibration lost.
    inflated = strong.held_out["score: leadscore model"] ** 0.5
    tracking.log_training(dataclasses.replace(strong, held_out=strong.held_out.assign(**{"score: leadscore model": inflated})),
                          "leads", store)
    decision = tracking.promote("leads", uri=store)
    assert decision.differences["champion"].better
    assert decision.outcome == registry.KEPT and "is worse calibrated than the champion (version 1)" in decision.message


def test_promote_without_a_challenger_says_what_to_do(store):
    prepare_store(store)
    with pytest.raises(LeadscoreError, match="run `leadscore train` first"):
        tracking.promote("nothing", uri=store)


def test_predict_writes_the_id_and_probability_of_every_row(table, store, tmp_path):
    result = _train(table)
    logged = tracking.log_training(result, "leads", store)
    fresh = _leads(n=200, seed=5).drop(columns=["won"])
    fresh.loc[0, "source"] = "a channel never seen"
    fresh.to_csv(tmp_path / "new.csv", index=False)
    scored = predict_file(logged.model_uri, tmp_path / "new.csv", tmp_path / "scores.csv", store)
    written = pd.read_csv(tmp_path / "scores.csv")
    assert list(written.columns) == ["lead", "probability", "tier", "unseen"]
    assert len(written) == 200 and written["probability"].between(0, 1).all()
    np.testing.assert_allclose(written["probability"], scored["probability"])
    with pytest.raises(LeadscoreError, match="has no column 'lead'"):
        fresh.drop(columns=["lead"]).to_csv(tmp_path / "no_id.csv", index=False)
        predict_file(logged.model_uri, tmp_path / "no_id.csv", tmp_path / "s.csv", store)
    with pytest.raises(LeadscoreError, match="writes .csv or .parquet"):
        predict_file(logged.model_uri, tmp_path / "new.csv", tmp_path / "scores.txt", store)
    with pytest.raises(LeadscoreError, match="Cannot load the model"):
        predict_file("models:/leads/99", tmp_path / "new.csv", tmp_path / "s.csv", store)

    # Explained: the flat table's roles name region as fit; labels come from the column names.
    predict_file(logged.model_uri, tmp_path / "new.csv", tmp_path / "explained.csv", store, explain=True)
    written = pd.read_csv(tmp_path / "explained.csv")
    assert list(written.columns) == ["lead", "probability", "tier", "fit_score", "engagement_score", "reason_1",
                                     "reason_2", "reason_3", "tier_reasons", "reasons", "unseen"]
    np.testing.assert_allclose(written["probability"], scored["probability"])
    reasons = [r for cell in written["reasons"] for side in ("for", "against") for r in json.loads(cell)[side]]
    assert {r["family"] for r in reasons if r["field"] == "region"} <= {"fit"}
    assert {r["family"] for r in reasons if r["field"] in ("visits", "source")} <= {"engagement"}
    assert {r["label"] for r in reasons} <= {"Visits", "Source", "Region"}
    # Reasons quote the lead's own record, not the model's "(other)" level for unseen categories.
    assert "(other)" not in " ".join(written["reasons"])
    first = json.loads(written["reasons"][0])
    assert all(r["value"] == "a channel never seen" for side in ("for", "against") for r in first[side]
               if r["field"] == "source")
    assert written["fit_score"].between(0, 100).all()


def test_train_promote_and_predict_from_the_command_line(store, tmp_path):
    runner = CliRunner()
    _leads().to_csv(tmp_path / "leads.csv", index=False)
    common = ["--tracking-uri", store]
    trained = runner.invoke(app, ["train", "--data", str(tmp_path / "leads.csv"), "--id", "lead", "--target", "won",
                                  "--min-positives", "50", "--model-name", "leads", "--report", str(tmp_path / "report"), *common])
    assert trained.exit_code == 0, trained.output
    text = " ".join(trained.output.split())
    for fragment in ("Candidates out of fold", "Held-out leads", "Logistic regression",
                     "Lift, top 10%", "registered leads version 1 as challenger", "stratified"):
        assert fragment in text
    assert (tmp_path / "report" / "gains.png").exists()
    promoted = runner.invoke(app, ["promote", "--model-name", "leads", *common])
    assert promoted.exit_code == 0 and "first champion" in promoted.output
    _leads(n=50, seed=9).drop(columns=["won"]).to_parquet(tmp_path / "new.parquet")
    predicted = runner.invoke(app, ["predict", "--data", str(tmp_path / "new.parquet"), "--out", str(tmp_path / "s.parquet"),
                                    "--model", "models:/leads@champion", *common])
    assert predicted.exit_code == 0, predicted.output
    assert len(pd.read_parquet(tmp_path / "s.parquet")) == 50
    flat_feature_table(_leads(seed=4), ColumnRoles(id="lead", target="won")).to_parquet(tmp_path / "table.parquet")
    from_table = runner.invoke(app, ["train", "--table", str(tmp_path / "table.parquet"), "--min-positives", "50",
                                     "--model-name", "leads", "--candidates", "logistic", *common])
    assert from_table.exit_code == 0 and "version 2 as challenger" in " ".join(from_table.output.split())
    both = runner.invoke(app, ["train", "--table", str(tmp_path / "table.parquet"), "--data", str(tmp_path / "leads.csv"), *common])
    assert both.exit_code == 2 and "one source at a time" in both.output
    _leads(n=150).to_csv(tmp_path / "small.csv", index=False)
    refused = runner.invoke(app, ["train", "--data", str(tmp_path / "small.csv"), "--id", "lead", "--target", "won", *common])
    assert refused.exit_code == 2 and "Traceback" not in refused.output and "--min-positives" in refused.output


def test_a_flat_table_model_gets_a_report_without_crm_or_hand_set_points(table, store, tmp_path):
    from leadscore.pipelines.report import write_report

    logged = tracking.log_training(_train(table), "leads", store)
    page = write_report(logged.model_uri, tmp_path / "report.html", store, None, "No CRM for this table.").read_text()
    assert "No CRM for this table." in page and "Hand-set" not in page
    assert "Three leads and their reasons" in page and page.count("data:image/png;base64,") >= 4
