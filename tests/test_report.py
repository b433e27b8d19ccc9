"""The marketing report and the explained scoring file, from a model trained on a simulated CRM."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.crm.database import connect
from leadscore.crm.simulator import SimulationConfig
from leadscore.pipelines import tracking
from leadscore.pipelines.simulate import simulate_into_crm
from leadscore.pipelines.train import TrainingConfig, crm_training_table, train_model
from leadscore.models.rules import HandSetScoring
from leadscore.crm.sql import load_history
from report_checks import check_marketing_report, marketing_part, visible_text

runner = CliRunner()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A CRM in SQLite, a model trained on it, logged and made champion, then a second one as challenger."""
    folder = tmp_path_factory.mktemp("report")
    crm = f"sqlite:///{folder / 'crm.db'}"
    engine = connect(crm, writable=True)
    try:
        simulate_into_crm(engine, SimulationConfig(leads=6_000, seed=11, months=24))
        history = load_history(engine)
    finally:
        engine.dispose()
    table = crm_training_table(history, 90)
    store = f"sqlite:///{folder / 'mlflow.db'}"
    first = train_model(table, TrainingConfig(candidates=("logistic",)), HandSetScoring.default())
    tracking.log_training(first, uri=store)
    tracking.promote(uri=store)
    second = train_model(table, TrainingConfig(), HandSetScoring.default())
    logged = tracking.log_training(second, uri=store)
    return {"folder": folder, "crm": crm, "store": store, "result": second, "logged": logged}


def _weekly_scores(workspace) -> None:
    """Three weekly runs of the nightly job, so the report has score movement to show."""
    from leadscore.serve.nightly import ScoringOptions, score_crm

    engine = connect(workspace["crm"], writable=True)
    try:
        end = pd.Timestamp(load_history(engine).as_of)
        for weeks_back in (2, 1, 0):
            score_crm(engine, ScoringOptions(tracking_uri=workspace["store"],
                                             as_of=(end - pd.Timedelta(weeks=weeks_back)).to_pydatetime()))
    finally:
        engine.dispose()


def test_the_report_renders_in_chromium_offline_in_marketing_words(workspace, chromium):
    _weekly_scores(workspace)
    out = workspace["folder"] / "report.html"
    arguments = ["report", "--model", workspace["logged"].model_uri, "--out", str(out),
                 "--crm", workspace["crm"], "--tracking-uri", workspace["store"], "--currency", "EUR"]
    outcome = runner.invoke(app, arguments)
    assert outcome.exit_code == 0, outcome.output
    page = out.read_text()
    # Self-contained: nothing is fetched, no script runs.
    assert not re.search(r"(src|href)=['\"](https?:|//|file:)", page)
    assert "<script" not in page
    marketing = visible_text(marketing_part(page))
    for heading in ("Funnel by channel", "What each channel's new leads are worth",
                    "How well the score finds the leads that convert, on the newest leads", "What drives the score",
                    "How the score grows with what the lead does", "Tiers", "Three leads and their reasons",
                    "Movement since scoring began"):
        assert heading in marketing
    # Channel worth: every channel's last 90 days priced, with the same estimate 90 days earlier and its outcome.
    worth = page.split("What each channel's new leads are worth")[1].split("<h2>")[0]
    assert "Expected cost per customer (EUR)" in worth and "Became customers" in worth and "E-book" in worth
    assert re.search(r"All channels</td><td[^>]*>[\d,]+</td><td[^>]*>[\d,.]+ ± [\d,.]+</td>", worth)
    assert "Cost per MQL (EUR)" in marketing and "costs are in EUR" in marketing and "USD" not in visible_text(page)
    assert "Today's hand-set MQLs, for comparison" in marketing
    # Drivers in points on a promising lead, a readable scale: the strongest moves it by a point or more.
    drivers = page.split("<h2>What drives the score")[1].split("<h2>")[0]
    strongest = float(re.search(r"<td class=''>([\d.]+) pts</td>", drivers).group(1))
    assert strongest >= 1.0
    assert "Against the champion" in drivers  # the second model is compared with the champion on the same leads
    # Examples are named by company and job title, never by their id alone.
    titles = re.findall(r"<div class='card example'><h3>(.*?) <span", page)
    assert len(titles) == 3 and all(" · " in title for title in titles)
    # The appendix keeps the data scientist's measures.
    appendix = visible_text(page[page.index("<section class='appendix'>"):])
    assert "ROC AUC" in appendix and "SHAP" in appendix and workspace["logged"].model_uri in appendix

    rendering = chromium.render(out, workspace["folder"] / "report.png")
    check_marketing_report(page, workspace["result"].model, rendering)
    assert rendering.title == "Lead scoring report"
    assert rendering.height > 3_000  # tables and figures, not an empty shell


def test_the_report_without_a_crm_says_where_the_funnel_comes_from(workspace, monkeypatch):
    monkeypatch.delenv("LEADSCORE_CRM", raising=False)
    out = workspace["folder"] / "no-crm.html"
    outcome = runner.invoke(app, ["report", "--model", workspace["logged"].model_uri, "--out", str(out),
                                  "--tracking-uri", workspace["store"]])
    assert outcome.exit_code == 0, outcome.output
    assert "No CRM was given" in out.read_text()


def test_report_errors_name_the_fix(workspace):
    outcome = runner.invoke(app, ["report", "--model", workspace["logged"].model_uri, "--out",
                                  str(workspace["folder"] / "report.pdf"), "--tracking-uri", workspace["store"]])
    assert outcome.exit_code == 2 and "HTML page" in outcome.output
    outcome = runner.invoke(app, ["report", "--model", "models:/nothing/7", "--out",
                                  str(workspace["folder"] / "x.html"), "--tracking-uri", workspace["store"]])
    assert outcome.exit_code == 2 and "Cannot load the model" in outcome.output


def test_the_training_run_logs_importances_tiers_and_plots(workspace):
    import mlflow

    client = mlflow.MlflowClient(workspace["store"])
    run_id = workspace["logged"].run_id
    names = {artifact.path.split("/")[-1] for artifact in client.list_artifacts(run_id, "evaluation")}
    assert {"importances.csv", "tiers.csv", "importance.png", "beeswarm.png", "dependence.png"} <= names
    run = client.get_run(run_id)
    assert float(run.data.params["tiers.sql_threshold"]) >= float(run.data.params["tiers.mql_threshold"])
    assert "tiers.sql.conversion_rate" in run.data.metrics and "tiers.handset_mql.leads_per_week" in run.data.metrics
    importances = workspace["result"].insight.importances
    assert importances["champion_rank"].notna().all()  # both models use the same features
    assert (importances["rank_change"] == importances["champion_rank"] - importances["rank"]).all()
    assert importances["share"].sum() == pytest.approx(1)


def test_predict_explain_writes_tier_scores_and_reasons_for_every_row(workspace):
    folder = workspace["folder"]
    held_out = workspace["result"].held_out
    data = folder / "open_leads.parquet"
    held_out.drop(columns=[c for c in held_out.columns if c.startswith(("score:", "tier:"))]).to_parquet(data)
    out = folder / "scored.csv"
    outcome = runner.invoke(app, ["predict", "--data", str(data), "--out", str(out), "--model",
                                  workspace["logged"].model_uri, "--tracking-uri", workspace["store"], "--explain"])
    assert outcome.exit_code == 0, outcome.output
    scored = pd.read_csv(out)
    assert len(scored) == len(held_out)
    assert {"lead_id", "probability", "tier", "fit_score", "engagement_score", "reason_1", "reason_2", "reason_3",
            "reasons"} <= set(scored.columns)
    # Explaining a lead never changes its score or its tier (the registered model's, refitted on every row).
    registered = workspace["result"].model
    probability = registered.predict_proba(held_out)
    assert np.array_equal(scored["probability"].round(12), probability.round(12))
    assert (scored["tier"].to_numpy() == registered.tiers.assign(probability)).all()
    assert scored["fit_score"].between(0, 100).all() and scored["engagement_score"].between(0, 100).all()
    reasons = scored["reasons"].map(json.loads)
    assert reasons.map(lambda r: len(r["for"]) <= 3 and len(r["against"]) <= 3).all()
    qualified = scored[scored["tier"] != "none"]
    assert len(qualified) and qualified["reason_1"].str.contains(r"\(\+[\d.]+ pts\)").all()
    model = workspace["result"].model
    sentences = " ".join(scored["reason_1"].fillna("").head(500))
    assert not [name for name in model.features if "_" in name and name in sentences]
    assert "SQL" in outcome.output and "MQL" in outcome.output


def test_train_from_the_command_line_with_team_capacities(workspace, chromium):
    outcome = runner.invoke(app, ["train", "--crm", workspace["crm"], "--candidates", "logistic", "--tier-rule",
                                  "capacity", "--mql-per-week", "40", "--sql-per-week", "8",
                                  "--tracking-uri", workspace["store"], "--model-name", "capacity"])
    assert outcome.exit_code == 0, outcome.output
    assert "capacity: at most 40 MQLs and 8 SQLs a week" in outcome.output
    import mlflow

    client = mlflow.MlflowClient(workspace["store"])
    version = client.get_model_version_by_alias("capacity", "challenger")
    metrics = client.get_run(version.run_id).data.metrics
    assert 30 < metrics["tiers.mql_or_sql.leads_per_week"] <= 40
    assert 4 < metrics["tiers.sql.leads_per_week"] <= 8
    # What each channel's newest leads were expected to bring when this model was trained, kept with its run.
    worth = pd.read_csv(mlflow.artifacts.download_artifacts(
        run_id=version.run_id, artifact_path="evaluation/channel_worth.csv", tracking_uri=workspace["store"]))
    assert set(worth["cohort"]) == {"recent", "matured"} and set(worth["days"]) == {30, 90}
    assert (worth.loc[worth["channel"] == "total", "expected_customers"] > 0).all()
    # The capacity model's report: tiers sized by the teams, in the same marketing words.
    out = workspace["folder"] / "capacity.html"
    outcome = runner.invoke(app, ["report", "--model", "models:/capacity@challenger", "--out", str(out), "--crm",
                                  workspace["crm"], "--tracking-uri", workspace["store"]])
    assert outcome.exit_code == 0, outcome.output
    page = out.read_text()
    assert "Tiers by capacity: at most 40 MQLs and 8 SQLs a week" in visible_text(page)
    from leadscore.pipelines.registry import load_model

    model = load_model("models:/capacity@challenger", workspace["store"])
    check_marketing_report(page, model, chromium.render(out, workspace["folder"] / "capacity.png"))
    outcome = runner.invoke(app, ["train", "--crm", workspace["crm"], "--tier-rule", "capacity",
                                  "--mql-per-week", "40", "--tracking-uri", workspace["store"]])
    assert outcome.exit_code == 2 and "--sql-per-week" in outcome.output


def test_features_derived_from_one_field_make_one_reason(workspace):
    from leadscore.models.explain import Explainer, business_fields
    from leadscore.models.reasons import reason_records

    model = workspace["result"].model
    rows = workspace["result"].held_out.head(300)
    explanations = Explainer(model).explain(rows, keep_contributions=True)
    records = reason_records(explanations, rows, model.registry, model.features)
    fields, field_index = business_fields(model.registry, model.features)
    assert len(fields) < len(model.features)  # counts over windows and recency fold into their activity
    pricing = [model.features[i] for i in np.flatnonzero(np.array(fields)[field_index] == "pricing_page_view")]
    assert {"pricing_page_views_7d", "pricing_page_views_30d", "days_since_pricing_page_view"} <= set(pricing)
    joined = 0
    for row, record in enumerate(records):
        by_field = pd.Series(explanations.contributions[row]).groupby(field_index).sum()
        for reason in record["for"] + record["against"]:
            field = fields.index(reason["field"])
            assert reason["log_odds"] == pytest.approx(by_field[field], abs=1e-6)
            assert reason["label"] == model.registry[reason["feature"]].business_label
            members = reason["features"]
            assert 1 <= len(members) <= 2 and members[0]["feature"] == reason["feature"]
            # Two features saying the lead never did it are one statement.
            assert not (len(members) == 2 and all(m["value"] in (None, 0) for m in members))
            assert all(np.sign(m["log_odds"]) == np.sign(reason["log_odds"]) for m in members)
            joined += len(members) == 2 and "; " in reason["sentence"]
    assert joined > 50, "activity reasons name their two strongest features"
