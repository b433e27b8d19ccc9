"""Reasons worth reading: only material fields, signs that agree, one reason per business field, none made of noise."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.errors import LeadscoreError
from leadscore.features.flat import ColumnRoles, flat_feature_table
from leadscore.features.registry import FeatureRegistry
from leadscore.models.explain import Explainer, measures
from leadscore.models.reasons import format_points
from leadscore.models.scoring import Scorer
from leadscore.pipelines.train import TrainingConfig, train_model
from leadscore.serve.nightly import ScoringOptions

DRIVERS = {"driver_0": 2.0, "driver_1": 1.5, "driver_2": -1.5, "driver_3": 1.2}
NOISE = ("noise_0", "noise_1", "noise_2", "noise_3")
HOPELESS = 20  # leads every driver sinks: the probability floor
# The folds only choose and calibrate the model; three instead of five give the same reasons here (seeds 7 and 8)
# in an eighth of the training time.
TRAINING = TrainingConfig(min_positives=50, candidates=("lightgbm",), folds=3)


def _drivers_and_noise(n: int = 5_000, seed: int = 7) -> pd.DataFrame:
    """Four columns move conversion; four are drawn apart from it."""
    rng = np.random.default_rng(seed)
    columns = {name: rng.normal(size=n) for name in [*DRIVERS, *NOISE]}
    logit = -1.0 + sum(weight * columns[name] for name, weight in DRIVERS.items())
    won = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"lead": [f"L{i}" for i in range(n)], **columns, "won": won})


@pytest.fixture(scope="module")
def model():
    table = flat_feature_table(_drivers_and_noise(), ColumnRoles(id="lead", target="won"))
    return train_model(table, TRAINING).model


@pytest.fixture(scope="module")
def leads():
    """The training leads and some on the floor: every driver four deviations the wrong way."""
    frame = _drivers_and_noise().drop(columns="won")
    floor = frame.head(HOPELESS).assign(lead=[f"F{i}" for i in range(HOPELESS)],
                                        **{name: -4.0 * np.sign(weight) for name, weight in DRIVERS.items()})
    return pd.concat([frame, floor], ignore_index=True)


@pytest.fixture(scope="module")
def scored(model, leads):
    return Scorer(model).score(leads, explain=True)


def _reasons(scored: pd.DataFrame) -> pd.Series:
    return scored["reasons"].map(json.loads)


def test_noise_columns_are_almost_never_a_reason(scored):
    records = _reasons(scored)
    firsts = records.map(lambda record: [reason["field"] for reason in record["for"]])
    noise_first = firsts.map(lambda fields: bool(fields) and fields[0] in NOISE).mean()
    noise_in_top3 = firsts.map(lambda fields: any(field in NOISE for field in fields)).mean()
    assert noise_first < 0.01 and noise_in_top3 < 0.05, (noise_first, noise_in_top3)
    # The drivers still speak: they are reason 1 for most leads, and nearly every lead has a reason.
    assert firsts.map(lambda fields: bool(fields) and fields[0] in DRIVERS).mean() > 0.7
    assert records.map(lambda record: record["nothing_stands_out"] is None).mean() > 0.95


@pytest.mark.parametrize("min_points", [0.5, 0.0])
def test_every_reason_is_material_and_its_points_agree_with_its_log_odds(model, leads, scored, min_points):
    shown = scored if min_points == 0.5 else Scorer(model).score(leads, explain=True, min_reason_points=min_points)
    explanations = Explainer(model).explain(model.reading.apply(leads, "leads", model.features), keep_fields=True)
    movement = np.abs(explanations.field_log_odds).sum(axis=1)
    checked = 0
    for row, record in enumerate(_reasons(shown)):
        for side, sign in (("for", 1), ("against", -1)):
            for reason in record[side]:
                assert np.sign(reason["log_odds"]) == np.sign(reason["points"]) == sign
                assert abs(reason["points"]) >= max(min_points, 0.01)
                assert abs(reason["log_odds"]) >= 0.1 * movement[row] - 1e-9
                said = reason["sentence"].rsplit("(", 1)[1]
                assert said[0] == "+-"[side == "against"] and said.endswith(" pts)") and "0.00 pts" not in said
                # As format_points writes them (the data rounds to 4 decimals, so a last digit may differ by one).
                shown = said.removesuffix(" pts)")
                assert len(shown) == len(format_points(reason["points"]).removesuffix(" pts"))
                decimals = len(shown.partition(".")[2])
                assert abs(float(shown) - reason["points"]) <= 0.5 * 10.0**-decimals + 1e-4
                checked += 1
    assert checked > len(leads)


def test_leads_on_the_floor_say_why_without_zero_points(scored):
    floor = scored["lead"].str.startswith("F")
    assert scored.loc[floor, "probability"].max() <= scored.loc[~floor, "probability"].quantile(0.01)
    floor = scored[floor]
    assert not floor["reason_1"].str.contains(r"[+-]0\.00 pts").any()
    for record in _reasons(floor):
        assert record["against"] and all(reason["field"] in DRIVERS for reason in record["against"])


def test_a_lead_with_nothing_material_says_so_in_its_data_and_its_text(model, leads):
    scored = Scorer(model).score(leads.head(50), explain=True, min_reason_points=100)
    sentence = "Nothing stands out: no single field moves this lead's score by 100 pts or more."
    assert (scored["reason_1"] == sentence).all() and (scored["reason_2"] == "").all()
    for record in _reasons(scored):
        assert record["for"] == record["against"] == [] and record["nothing_stands_out"] == sentence
    spread = Scorer(model).score(leads.head(50), explain=True, min_reason_share=1.0)
    assert spread["reason_1"].str.startswith("Nothing stands out: many fields move this lead's score a little").all()


def test_a_higher_threshold_only_takes_reasons_away(model, leads, scored):
    stricter = Scorer(model).score(leads, explain=True, min_reason_points=5)
    for loose, strict in zip(_reasons(scored), _reasons(stricter)):
        for side in ("for", "against"):
            kept = [reason["field"] for reason in loose[side] if abs(reason["points"]) >= 5]
            assert [reason["field"] for reason in strict[side]] == kept
    assert (stricter["reason_1"].str.startswith("Nothing stands out")).sum() > (
        scored["reason_1"].str.startswith("Nothing stands out")).sum()


@pytest.mark.parametrize("option, value", [("min_reason_points", -1.0), ("min_reason_points", float("nan")),
                                           ("min_reason_share", 1.5)])
def test_a_threshold_that_means_nothing_is_refused(model, leads, option, value):
    with pytest.raises(LeadscoreError, match="must be"):
        Scorer(model).score(leads.head(5), explain=True, **{option: value})


def _windowed_table(n: int = 2_000, seed: int = 3):
    """Pricing-page views over two windows and the days since the last view: one business field, three features."""
    rng = np.random.default_rng(seed)
    last_week = rng.poisson(1.0, n).astype(float)
    last_month = last_week + rng.poisson(2.0, n)
    days_since = np.where(last_month > 0, rng.uniform(0, 30, n), np.nan)
    days_since[last_week > 0] = rng.uniform(0, 7, int((last_week > 0).sum()))
    size = rng.choice(["small", "mid", "large"], n)
    logit = -2.0 + 0.6 * last_week + 0.2 * last_month - 0.05 * np.nan_to_num(days_since, nan=60) + (size == "large")
    frame = pd.DataFrame({"lead": [f"L{i}" for i in range(n)], "views_7d": last_week, "views_30d": last_month,
                          "days_since_view": days_since, "size": size,
                          "won": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)})
    table = flat_feature_table(frame, ColumnRoles(id="lead", target="won", fit=("size",)))
    words = {
        "views_7d": ("Pricing-page views, last 7 days", {"value": "Viewed the pricing page {value} times in the last 7 days"}),
        "views_30d": ("Pricing-page views, last 30 days", {"value": "Viewed the pricing page {value} times in the last 30 days"}),
        "days_since_view": ("Days since the last pricing-page view", {"value": "Last viewed the pricing page {value} days ago",
                                                                      "missing": "Never viewed the pricing page", "digits": "0"}),
    }
    specs = [replace(spec, label=words[spec.name][0], sentence=words[spec.name][1], field_name="pricing_page_view",
                     field_label="Pricing-page views") if spec.name in words else spec for spec in table.registry]
    return replace(table, registry=FeatureRegistry(specs))


def test_windows_of_one_count_are_one_measure():
    table = _windowed_table(n=20)
    assert list(measures(table.registry, table.registry.names)) == [0, 0, 1, 2]


@pytest.fixture(scope="module")
def windowed():
    table = _windowed_table()
    return table, train_model(table, TRAINING)


def test_two_windows_of_one_behaviour_make_one_reason_that_never_repeats_itself(windowed):
    table, result = windowed
    scored = Scorer(result.model).score(table.frame.drop(columns="won"), explain=True)
    joined = 0
    for record in _reasons(scored):
        reasons = record["for"] + record["against"]
        fields = [reason["field"] for reason in reasons]
        assert len(fields) == len(set(fields))
        for reason in reasons:
            named = [member["feature"] for member in reason["features"]]
            assert not {"views_7d", "views_30d"} <= set(named), reason["sentence"]
            assert reason["sentence"].count("in the last") <= 1, reason["sentence"]
            # A second feature is named only when it carries a real part of the reason.
            for member in reason["features"][1:]:
                assert abs(member["log_odds"]) >= 0.1 * abs(reason["log_odds"]) - 1e-9
            joined += len(named) == 2
    assert joined > 20, "a reason still names a second measure of its field (views and days since) when it counts"


def test_predict_and_the_mlflow_model_pass_the_threshold_to_the_core(windowed, tmp_path, monkeypatch):
    import mlflow

    from leadscore.pipelines.tracking import log_training

    monkeypatch.chdir(tmp_path)
    table, result = windowed
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    uri = log_training(result, "reasons", store).model_uri
    table.frame.drop(columns="won").head(300).to_csv("leads.csv", index=False)
    core = Scorer(result.model).score(pd.read_csv("leads.csv"), explain=True, min_reason_points=3)
    assert core["reason_1"].str.startswith("Nothing stands out: no single field moves this lead's score by 3 pts").any()
    predicted = CliRunner().invoke(app, ["predict", "--data", "leads.csv", "--out", "scores.csv", "--model", uri,
                                         "--tracking-uri", store, "--explain", "--min-reason-points", "3"])
    assert predicted.exit_code == 0, predicted.output
    mlflow.set_tracking_uri(store)
    served = mlflow.pyfunc.load_model(uri).predict(pd.read_csv("leads.csv"), params={"explain": True, "min_reason_points": 3.0})
    for scored in (pd.read_csv("scores.csv", keep_default_na=False), served):
        assert scored["reason_1"].tolist() == core["reason_1"].tolist()
        assert scored["reasons"].map(json.loads).tolist() == core["reasons"].map(json.loads).tolist()
    refused = CliRunner().invoke(app, ["predict", "--data", "leads.csv", "--out", "scores.csv", "--model", uri,
                                       "--tracking-uri", store, "--explain", "--min-reason-points", "-1"])
    assert refused.exit_code == 2 and "--min-reason-points" in refused.output


def test_the_nightly_job_refuses_a_threshold_before_it_starts():
    with pytest.raises(LeadscoreError, match="0 or more"):
        ScoringOptions(min_reason_points=-0.5)
