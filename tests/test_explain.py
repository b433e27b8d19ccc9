"""Explanations of every model kind: exact, folded to business fields, readable, and consistent with the score."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import shap

from leadscore.features.flat import ColumnRoles, flat_feature_table
from leadscore.models.explain import Explainer
from leadscore.models.reasons import explanation_arrays, format_points, reason_records
from leadscore.models.model import Member
from leadscore.models.tiers import Tiers, margin_reaching
from leadscore.pipelines.train import TrainingConfig, train_model

TOLERANCE = 1e-5


def _leads(n: int = 4_000, seed: int = 1) -> pd.DataFrame:
    """Visits and source drive conversion, region does not; gaps in a number and in a category."""
    rng = np.random.default_rng(seed)
    visits = rng.poisson(3, n).astype(float)
    minutes = rng.gamma(2, 150, n)
    source = rng.choice(["ads", "seo", "event", "partner"], n)
    size = rng.choice(["small", "mid", "large"], n)
    logit = -3.2 + 0.5 * visits + 0.002 * minutes + np.where(source == "partner", 1.5, 0.0) + np.where(size == "large", 0.6, 0)
    won = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame({"lead": [f"L{i}" for i in range(n)], "Total Visits": visits, "time_on_site": minutes,
                          "source": source, "company_size": size, "region": rng.choice(["north", "south"], n), "won": won})
    frame.loc[rng.random(n) < 0.1, "Total Visits"] = np.nan
    frame.loc[rng.random(n) < 0.1, "source"] = None
    return frame


@pytest.fixture(scope="module")
def table():
    return flat_feature_table(_leads(), ColumnRoles(id="lead", target="won", fit=("company_size", "region")))


@pytest.fixture(scope="module")
def results(table):
    config = TrainingConfig(min_positives=50)
    return {kind: train_model(table, replace(config, candidates=(kind,))) for kind in ("lightgbm", "logistic")}


@pytest.fixture(scope="module")
def models(results):
    trees, linear = results["lightgbm"].model, results["logistic"].model
    blend = replace(
        trees,
        members=(replace(trees.members[0], weight=0.4), Member(linear.members[0].candidate, linear.members[0].fitted, 0.6)),
    )
    return {"lightgbm": trees, "logistic": linear, "blend": blend}


@pytest.mark.parametrize("kind", ["lightgbm", "logistic", "blend"])
def test_contributions_add_up_to_the_models_margin(models, table, kind):
    model = models[kind]
    contributions = Explainer(model).contributions(table.frame)
    assert contributions.values.shape == (len(table.frame), len(model.features))
    assert np.abs(contributions.margin - model.margin(table.frame)).max() < TOLERANCE


@pytest.mark.filterwarnings("ignore:LightGBM binary classifier with TreeExplainer")
def test_tree_contributions_are_lightgbms_own_and_the_shap_packages(models, table):
    model = models["lightgbm"]
    booster = model.members[0].fitted
    encoded = model.encode(table.frame)
    # LightGBM reads columns by position and renames some ("Total Visits" -> "Total_Visits").
    reference = pd.DataFrame(booster.predict(encoded, pred_contrib=True)[:, :-1], columns=encoded.columns)
    ours = Explainer(model).contributions(table.frame)
    assert np.abs(ours.values - reference[model.features].to_numpy()).max() < TOLERANCE
    package = shap.TreeExplainer(booster).shap_values(encoded.head(300))
    package = pd.DataFrame(package[1] if isinstance(package, list) else package, columns=encoded.columns)
    assert np.abs(ours.values[:300] - package[model.features].to_numpy()).max() < TOLERANCE


def test_logistic_columns_fold_back_to_their_field(models, results, table):
    """The shap package's linear SHAP per encoded column, summed by the field each column came from."""
    model = models["logistic"]
    pipeline = model.members[0].fitted
    encoded = model.encode(table.frame)
    columns = pipeline[:-1].transform(encoded)
    background = columns  # the registered model was refitted on every row
    masker = shap.maskers.Independent(background, max_samples=len(background))  # the mean of every training row
    package = shap.LinearExplainer(pipeline[-1], masker).shap_values(columns[:500])
    names = pipeline[:-1].get_feature_names_out()
    # "numeric__Total Visits missing" -> "Total Visits", "categorical__source=ads" -> "source"
    fields = [name.split("__", 1)[1].split("=", 1)[0].removesuffix(" missing") for name in names]
    folded = pd.DataFrame(package, columns=fields).T.groupby(level=0).sum().T
    ours = Explainer(model).contributions(table.frame.head(500))
    assert np.abs(ours.values - folded[model.features].to_numpy()).max() < 1e-8
    # Each categorical field is one reason, not one per level.
    assert {"source", "company_size", "region"} <= set(ours.features)


def test_points_add_up_to_the_gap_from_the_base_and_keep_each_sign(models, table):
    explanations = Explainer(models["blend"]).explain(table.frame.head(1_000), keep_contributions=True)
    points = explanations.points(explanations.contributions)
    gap = 100 * (explanations.probability - explanations.base_probability)
    assert np.allclose(points.sum(axis=1), gap, atol=1e-6)
    assert np.all(np.sign(points) == np.sign(explanations.contributions))


def test_reasons_are_the_strongest_material_contributions_as_data_and_sentences(models, table):
    model = models["lightgbm"]
    rows = table.frame.head(200)
    explanations = Explainer(model).explain(rows, keep_contributions=True)
    records = reason_records(explanations, rows, model.registry, model.features)
    values = explanations.contributions
    points = explanations.points(values)
    # Material: 0.5 pts or more, and a tenth or more of all the lead's fields move it (each column is a field here).
    material = (np.abs(points) >= 0.5) & (np.abs(values) >= 0.1 * np.abs(values).sum(axis=1, keepdims=True))
    assert 0 < material.sum() < material.size
    for row, record in enumerate(records):
        expected_for = sorted((v for v, kept in zip(values[row], material[row]) if kept and v > 0), reverse=True)[:3]
        assert [r["log_odds"] for r in record["for"]] == pytest.approx(expected_for, abs=1e-6)
        expected_against = sorted(v for v, kept in zip(values[row], material[row]) if kept and v < 0)[:3]
        assert [r["log_odds"] for r in record["against"]] == pytest.approx(expected_against, abs=1e-6)
        assert (record["nothing_stands_out"] is None) == bool(material[row].any())
        for reason in record["for"] + record["against"]:
            assert set(reason) == {"field", "feature", "label", "value", "log_odds", "points", "family", "sentence",
                                   "features"}
            # A flat table's columns are fields of their own.
            assert reason["field"] == reason["feature"] and len(reason["features"]) == 1
            assert reason["sentence"].endswith(f"({format_points(reason['points'])})")
            assert reason["family"] == ("fit" if reason["feature"] in ("company_size", "region") else "engagement")
            # Flat tables have no phrasing: labels are readable forms of the column names.
            assert reason["feature"] not in reason["sentence"] or reason["feature"] == reason["label"]
    visits = next(r for rec in records for r in rec["for"] + rec["against"] if r["feature"] == "time_on_site")
    assert visits["label"] == "Time on site" and visits["sentence"].startswith("Time on site: ")


def test_sub_scores_follow_each_familys_contributions(results, table):
    model = results["lightgbm"].model
    explanations = Explainer(model).explain(table.frame, keep_contributions=True)
    fit = np.isin(model.features, ["company_size", "region"])
    assert np.allclose(explanations.fit_log_odds, explanations.contributions[:, fit].sum(axis=1))
    assert np.allclose(explanations.engagement_log_odds, explanations.contributions[:, ~fit].sum(axis=1))
    for score, log_odds in ((explanations.fit_score, explanations.fit_log_odds),
                            (explanations.engagement_score, explanations.engagement_log_odds)):
        assert score.min() >= 0 and score.max() <= 100
        order = np.argsort(log_odds)
        assert np.all(np.diff(score[order]) >= -1e-9), "a larger contribution never gets a lower score"
    # The reference is the held-out leads: their engagement scores spread over the whole scale.
    held = Explainer(model).explain(results["lightgbm"].held_out)
    assert np.percentile(held.engagement_score, 10) < 25 and np.percentile(held.engagement_score, 90) > 75


def test_tier_leads_name_the_reasons_that_carried_them_over_the_threshold(results, table):
    model = results["lightgbm"].model
    # Thresholds high enough that most tier leads need their strongest reasons to get there.
    probability = model.predict_proba(table.frame)
    mql, sql = np.quantile(probability, [0.7, 0.95])
    model = replace(model, tiers=Tiers("precision", mql, sql, margin_reaching(model.calibrator, mql),
                                       margin_reaching(model.calibrator, sql), "test"))
    explanations = Explainer(model).explain(table.frame, keep_contributions=True)
    thresholds = {"mql": model.tiers.mql_margin, "sql": model.tiers.sql_margin}
    checked = 0
    for row in np.flatnonzero(explanations.tier != "none")[:300]:
        carried = [i for i in explanations.carried_by[row] if i >= 0]
        threshold = thresholds[explanations.tier[row]]
        values = explanations.contributions[row]
        if len(carried) == len(explanations.carried_by[row]):
            continue  # capped list: the rest of the reasons are not shown
        if carried:
            assert explanations.margin[row] - values[carried].sum() < threshold
            assert explanations.margin[row] - values[carried[:-1]].sum() >= threshold
            checked += 1
        else:  # the lead's other fields alone keep it in the tier
            assert explanations.margin[row] - values[values > 0].sum() >= threshold
    assert checked > 20


def test_scoring_columns_for_every_row(models, table):
    model = models["blend"]
    rows = table.frame.head(50)
    columns = pd.DataFrame(explanation_arrays(Explainer(model).explain(rows), rows, model.registry, model.features),
                           index=rows.index)
    assert list(columns.columns) == ["tier", "fit_score", "engagement_score", "reason_1", "reason_2", "reason_3",
                                     "tier_reasons", "reasons"]
    assert set(columns["tier"]) <= {"none", "mql", "sql"}
    first = json.loads(columns["reasons"].iloc[0])
    assert set(first) == {"for", "against", "nothing_stands_out", "tier", "carried_by"}
    assert columns["reason_1"].iloc[0] == (first["for"][0]["sentence"] if first["for"] else first["nothing_stands_out"] or "")
    assert columns.index.equals(rows.index)


def test_an_empty_frame_explains_to_nothing(models, table):
    explanations = Explainer(models["blend"]).explain(table.frame.head(0))
    assert len(explanations) == 0
