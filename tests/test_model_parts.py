"""The parts the training stage assembles a model from: encoder, calibrator, splits, guards."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.errors import LeadscoreError
from leadscore.features.registry import FeatureRegistry, FeatureSpec
from leadscore.models import metrics
from leadscore.models.calibration import Calibrator
from leadscore.models.encoding import RARE, FrameEncoder
from leadscore.models.guards import (
    LEAK_AUC, SUSPECT_AUC, feature_auc, leaky_features, require_disjoint, require_positives, suspect_note,
)
from leadscore.models.split import forward_split, stratified_split

DAY = 86_400


# --- encoder -----------------------------------------------------------------------------


def test_encoder_groups_rare_and_unseen_levels_and_keeps_missing_values():
    train = pd.DataFrame({"visits": [1.0, None, 3.0, 4.0], "source": ["ads", "ads", "seo", None]})
    encoder = FrameEncoder(numeric=["visits"], categorical=["source"], min_count=2).fit(train)
    assert encoder.levels_["source"] == ["ads", RARE]
    scored = encoder.transform(pd.DataFrame({"visits": ["2", None], "source": ["brand-new", None]}))
    assert scored["source"].tolist()[0] == RARE and pd.isna(scored["source"].iloc[1])
    assert scored["visits"].tolist()[0] == 2.0 and np.isnan(scored["visits"].iloc[1])
    assert list(scored["source"].cat.categories) == ["ads", RARE]


def test_encoder_names_missing_columns_and_non_numeric_values():
    encoder = FrameEncoder(numeric=["visits"], categorical=["source"]).fit(pd.DataFrame({"visits": [1], "source": ["a"]}))
    with pytest.raises(LeadscoreError, match="lacks 1 column.*'source'"):
        encoder.transform(pd.DataFrame({"visits": [1]}))
    with pytest.raises(LeadscoreError, match=r"'visits' must be numeric .* 1 values .*'many'"):
        encoder.transform(pd.DataFrame({"visits": ["3", "many"], "source": ["a", "a"]}))


def test_encoder_does_not_mutate_its_input():
    frame = pd.DataFrame({"visits": [1, 2], "source": ["a", "b"]})
    before = frame.copy()
    FrameEncoder(numeric=["visits"], categorical=["source"], min_count=1).fit(frame).transform(frame)
    pd.testing.assert_frame_equal(frame, before)


# --- calibration -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def margins():
    rng = np.random.default_rng(0)
    truth = rng.normal(-3.0, 1.5, 60_000)
    y = rng.random(len(truth)) < 1 / (1 + np.exp(-truth))
    # The model's margin is right in ranking but overconfident by a factor of two.
    return 2 * truth, y.astype(int)


def test_calibrator_picks_a_method_by_cross_validated_brier_and_calibrates(margins):
    margin, y = margins
    calibrator = Calibrator().fit(margin[:30_000], y[:30_000])
    assert calibrator.method_ in ("sigmoid", "isotonic")
    assert calibrator.method_ == min(calibrator.cv_brier_, key=calibrator.cv_brier_.get)
    assert calibrator.rows_ == 30_000
    raw = 1 / (1 + np.exp(-margin[30_000:]))
    calibrated = calibrator.predict(margin[30_000:])
    assert metrics.probability_metrics(y[30_000:], calibrated)["ece"] < 0.005
    assert metrics.probability_metrics(y[30_000:], raw)["ece"] > 0.01
    assert np.all(np.diff(calibrator.predict(np.linspace(-10, 5, 200))) >= 0)  # never reorders leads


def test_centred_isotonic_keeps_the_ranking_and_the_base_rate(margins):
    from leadscore.models.calibration import CentredIsotonic

    margin, y = margins
    fitted = CentredIsotonic().fit(margin[:30_000], y[:30_000])
    inside = np.linspace(fitted.centres_[0], fitted.centres_[-1], 1_000)
    assert np.all(np.diff(fitted.predict(inside)) > 0)  # strictly increasing: no ties between distinct leads
    probability = fitted.predict(margin[30_000:])
    assert metrics.probability_metrics(y[30_000:], probability)["roc_auc"] == pytest.approx(
        metrics.probability_metrics(y[30_000:], 1 / (1 + np.exp(-margin[30_000:])))["roc_auc"], abs=1e-3
    )
    assert probability.mean() == pytest.approx(y[30_000:].mean(), abs=0.005)
    # No lead is ever certain not to convert: a block without conversions still gets a small probability.
    assert 0 < fitted.levels_.min() < 0.001 and fitted.levels_.max() < 1


def test_calibrator_keeps_the_models_own_probabilities_when_nothing_can_be_checked():
    margin = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    calibrator = Calibrator().fit(margin, np.array([0, 0, 0, 0, 1]))  # one conversion: no ranking can be judged
    assert calibrator.method_ == "margin" and not calibrator.signal_
    np.testing.assert_allclose(calibrator.predict(margin), 1 / (1 + np.exp(-margin)))


def test_calibrator_never_flattens_or_reverses_a_ranking_that_out_of_fold_evidence_calls_noise():
    rng = np.random.default_rng(1)
    margin = rng.normal(-2, 1, 5_000)
    y = (rng.random(5_000) < 0.1).astype(int)  # outcomes unrelated to the margins, as on a drifting table
    calibrator = Calibrator().fit(margin, y)
    probability = calibrator.predict(margin)
    assert calibrator.method_ == "margin" and not calibrator.signal_
    assert pd.Series(probability).value_counts(normalize=True).iloc[0] <= 0.01
    assert np.all(np.diff(calibrator.predict(np.sort(margin))) >= 0)


def test_calibration_has_no_floor_beyond_the_margins_it_was_fitted_on(margins):
    from leadscore.models.calibration import CentredIsotonic

    margin, y = margins
    fitted = CentredIsotonic().fit(margin[:30_000], y[:30_000])
    # Leads far below (and above) every fitted margin: on a CRM, most open leads sat there on one probability.
    beyond = np.r_[np.linspace(fitted.centres_[0] - 20, fitted.centres_[0] - 0.01, 500),
                   np.linspace(fitted.centres_[-1] + 0.01, fitted.centres_[-1] + 20, 500)]
    probability = fitted.predict(np.sort(beyond))
    assert np.all(np.diff(probability) > 0) or np.all(np.diff(probability[probability < 0.999]) > 0)
    assert len(np.unique(probability)) == len(probability)


# --- splits --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def monthly():
    """Leads open at 24 monthly cutoffs: each lead stays open for 6 months."""
    rows = []
    for lead in range(600):
        start = lead % 18
        for month in range(start, min(start + 6, 24)):
            rows.append((lead, pd.Timestamp("2024-01-01") + pd.DateOffset(months=month)))
    return pd.DataFrame(rows, columns=["lead", "cutoff"])


def test_forward_split_is_in_time_order_with_an_embargo_and_no_shared_lead(monthly):
    split = forward_split(monthly["cutoff"], monthly["lead"], horizon_days=90, folds=3)
    at = monthly["cutoff"].to_numpy(dtype="datetime64[s]").astype(np.int64)
    lead = monthly["lead"].to_numpy()
    horizon = 90 * DAY
    assert at[split.training].max() + horizon <= at[split.test].min()
    assert at[split.fit].max() + horizon <= at[split.validation].min()
    assert not set(lead[split.training]) & set(lead[split.test])
    assert not set(lead[split.fit]) & set(lead[split.validation])
    assert set(split.fit) <= set(split.training) and set(split.validation) <= set(split.training)
    assert len(split.folds) == 3
    for chunk, learn in zip(split.folds, split.fold_training):
        assert at[learn].max() + horizon <= at[chunk].min()
        assert not set(lead[learn]) & set(lead[chunk])
    assert [at[c].min() for c in split.folds] == sorted(at[c].min() for c in split.folds)
    assert split.dropped == len(monthly) - len(split.training) - len(split.test)
    assert "90-day embargo" in split.description


def test_forward_split_without_horizon_on_one_row_per_lead():
    times = pd.Series(pd.date_range("2024-01-01", periods=1_000, freq="h"))
    split = forward_split(times, pd.Series(range(1_000)), horizon_days=0)
    assert len(split.test) == 200 and split.test.min() == 800
    assert split.training.tolist() == list(range(800))
    assert split.dropped == 0


def test_forward_split_refuses_too_short_a_history():
    with pytest.raises(LeadscoreError, match="3 or more distinct times"):
        forward_split(pd.Series(pd.to_datetime(["2024-01-01", "2024-02-01"])), pd.Series([1, 2]))
    times = pd.Series(pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]))
    with pytest.raises(LeadscoreError, match="Too little history"):
        forward_split(times, pd.Series([1, 2, 3, 4]), horizon_days=90)


def test_stratified_split_keeps_the_rate_and_honours_given_test_rows():
    y = pd.Series(np.r_[np.ones(100), np.zeros(900)])
    split = stratified_split(y, seed=1)
    assert y.iloc[split.test].mean() == pytest.approx(0.1) and y.iloc[split.validation].mean() == pytest.approx(0.1)
    assert len(set(split.fit) | set(split.validation) | set(split.test)) == 1_000
    fold = np.arange(0, 1_000, 5)
    given = stratified_split(y, test_rows=fold)
    assert given.test.tolist() == fold.tolist()
    for chunk, learn in zip(given.folds, given.fold_training):
        assert not set(chunk) & set(learn) and not set(learn) & set(fold)


# --- guards --------------------------------------------------------------------------------


def test_minimum_positives_names_what_was_found():
    with pytest.raises(LeadscoreError, match=r"Only 3 converted leads among the 10 training rows; .* at least 100"):
        require_positives(np.r_[np.ones(3), np.zeros(7)], 100, "training rows")


def test_a_feature_that_predicts_the_label_alone_is_refused_by_name():
    rng = np.random.default_rng(0)
    y = rng.random(5_000) < 0.2
    frame = pd.DataFrame(
        {
            "visits": rng.poisson(2 + 2 * y),
            "status": pd.Categorical(np.where(y, "won", "open")),  # written after the outcome
            "region": pd.Categorical(rng.choice(["north", "south"], 5_000)),
        }
    )
    registry = FeatureRegistry(
        [FeatureSpec("visits", "Visits", "engagement", "d"), FeatureSpec("status", "Deal status", "fit", "d", "categorical"),
         FeatureSpec("region", "Region", "fit", "d", "categorical")]
    )
    auc = feature_auc(frame, y)
    assert auc["status"] == 1.0 and 0.6 < auc["visits"] < 0.95 and auc["region"] < 0.56
    with pytest.raises(LeadscoreError, match=r"Deal status \('status'\): AUC 1\.000 .* --allow-leaky"):
        leaky_features(frame, y, 0.95, (), registry)
    assert leaky_features(frame, y, 0.95, ("status",), registry)["status"] == 1.0


def test_a_telling_but_honest_feature_is_kept_and_named_while_a_near_perfect_one_is_refused():
    rng = np.random.default_rng(1)
    y = rng.random(5_000) < 0.05
    # Like a card balance before a default: AUC about 0.96 on its own, known before the outcome.
    frame = pd.DataFrame({"balance": rng.normal(0, 1, 5_000) + 2.5 * y, "status": np.where(y, 1.0, 0.0)})
    registry = FeatureRegistry([FeatureSpec("balance", "Balance", "fit", "d"), FeatureSpec("status", "Status", "fit", "d")])
    with pytest.raises(LeadscoreError, match=r"Status \('status'\): AUC 1\.000"):
        leaky_features(frame, y, LEAK_AUC, (), registry)
    honest = frame[["balance"]]
    auc = leaky_features(honest, y, LEAK_AUC, (), registry)
    assert SUSPECT_AUC < auc["balance"] < LEAK_AUC
    note = suspect_note(auc, LEAK_AUC, (), registry)
    assert "Balance ('balance') AUC 0.9" in note and "--exclude" in note
    assert suspect_note(auc, LEAK_AUC, ("balance",), registry) is not None  # allowed, still named
    assert suspect_note(feature_auc(frame.assign(balance=rng.normal(size=5_000))[["balance"]], y), LEAK_AUC, (),
                        registry) is None


def test_shared_leads_between_training_and_held_out_rows_are_refused():
    ids = pd.Series(["a", "b", "c", "a"])
    with pytest.raises(LeadscoreError, match="1 leads are both in the training and the held-out rows"):
        require_disjoint(ids, np.array([0, 1]), np.array([2, 3]))
    require_disjoint(ids, np.array([0, 1]), np.array([2]))


def test_shap_plots_leave_no_pyplot_figure_behind(tmp_path):
    import matplotlib.pyplot as plt

    from leadscore.models.plots import beeswarm_plot, dependence_plots

    rng = np.random.default_rng(0)
    values = pd.DataFrame({"visits": rng.poisson(3, 200).astype(float), "region": rng.choice(["n", "s"], 200)})
    points = rng.normal(0, 1, (200, 2))
    plt.close("all")
    beeswarm_plot(points, values, ["Visits", "Region"], tmp_path / "beeswarm.png")
    dependence_plots(points, values, ["Visits", "Region"], [0], tmp_path / "dependence.png")
    assert plt.get_fignums() == []
    assert (tmp_path / "beeswarm.png").stat().st_size > 1_000 and (tmp_path / "dependence.png").stat().st_size > 1_000


@pytest.mark.parametrize("log_skewed", [True, False])
def test_the_logistic_candidates_array_form_equals_its_scikit_learn_pipeline_to_the_bit(log_skewed):
    from leadscore.models.candidates import LogisticCandidate
    from leadscore.models.linear_form import LinearForm

    rng = np.random.default_rng(5)
    n = 3_000
    frame = pd.DataFrame({
        "visits": np.where(rng.random(n) < 0.2, np.nan, rng.poisson(2.0, n) * rng.exponential(3.0, n)),
        "age_days": rng.uniform(0, 400, n),
        "industry": pd.Categorical(np.where(rng.random(n) < 0.1, None, rng.choice(["saas", "retail", "bank"], n))),
    })
    y = (rng.random(n) < 0.2 + 0.05 * np.nan_to_num(frame["visits"].to_numpy()).clip(0, 8)).astype(int)
    candidate = LogisticCandidate(("visits", "age_days"), ("industry",), strength=1.0, log_skewed=log_skewed)
    fitted = candidate.fit(frame, y)
    form = LinearForm(fitted)
    for rows in (frame, frame.iloc[[0]]):
        assert np.array_equal(form.columns(rows), fitted[:-1].transform(rows))
        assert np.array_equal(form.margin(rows), fitted.decision_function(rows))
    # scikit-learn refuses an empty batch; the form gives its columns: two numbers, one missing flag, 3 levels + missing
    assert form.columns(frame.iloc[:0]).shape == (0, 7) and form.margin(frame.iloc[:0]).shape == (0,)
    assert np.array_equal(candidate.margin(fitted, frame), fitted.decision_function(frame))


def test_an_encoder_fitted_again_encodes_with_its_new_levels():
    encoder = FrameEncoder(numeric=["visits"], categorical=["source"], min_count=1)
    encoder.fit(pd.DataFrame({"visits": [1.0, 2.0], "source": ["ads", "fair"]}))
    assert encoder.transform(pd.DataFrame({"visits": [1.0], "source": ["web"]}))["source"].tolist() == ["(other)"]
    encoder.fit(pd.DataFrame({"visits": [1.0, 2.0], "source": ["web", "mail"]}))
    again = encoder.transform(pd.DataFrame({"visits": [1.0], "source": ["web"]}))["source"]
    assert again.tolist() == ["web"] and list(again.cat.categories) == ["mail", "web", "(other)"]
    assert encoder.seen_levels("source").index.tolist() == ["mail", "web"]


def test_a_logistic_pipeline_fitted_again_is_read_with_its_new_coefficients():
    from leadscore.models.candidates import LogisticCandidate

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"visits": rng.poisson(2.0, 400).astype(float), "industry": pd.Categorical(rng.choice(["a", "b"], 400))})
    candidate = LogisticCandidate(("visits",), ("industry",), strength=1.0)
    fitted = candidate.fit(frame, (frame["visits"] > 2).astype(int).to_numpy())
    first = candidate.margin(fitted, frame)
    fitted.fit(frame, (frame["visits"] < 2).astype(int).to_numpy())  # the same object, fitted to the opposite
    assert np.array_equal(candidate.margin(fitted, frame), fitted.decision_function(frame))
    assert not np.array_equal(candidate.margin(fitted, frame), first)
