"""Evaluation metrics on hand-made arrays with known answers, ties exact, and the charts they feed."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from leadscore.errors import LeadscoreError
from leadscore.models import metrics, plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Twenty leads: one top lead that converts, four tied at 5 points with two conversions, fifteen
# tied at 1 point with one conversion. The top 10 % (two leads) takes the top lead and a quarter
# of the tied group: 1 + 2 / 4 = 1.5 expected conversions.
TIED_SCORE = np.r_[10, 5, 5, 5, 5, np.ones(15)]
TIED_Y = np.r_[1, 1, 0, 1, 0, np.zeros(14), 1]


@pytest.fixture(scope="module")
def random_sample():
    """5,000 leads with probabilities rounded to two decimals (many ties) and labels drawn from them."""
    rng = np.random.default_rng(11)
    probability = rng.random(5_000).round(2)
    return (rng.random(5_000) < probability).astype(int), probability


def perfect(rows: int = 1_000, positives: int = 100) -> tuple[np.ndarray, np.ndarray]:
    y = np.r_[np.ones(positives, dtype=int), np.zeros(rows - positives, dtype=int)]
    return y, np.linspace(1, 0, rows)


# --- known answers -----------------------------------------------------------------------------


def test_perfect_ranking():
    y, score = perfect()
    result = metrics.ranking_metrics(y, score)
    assert result["roc_auc"] == 1.0
    assert result["pr_auc"] == 1.0
    assert result["lift_top_10"] == pytest.approx(1 / 0.1)
    assert result["lift_top_5"] == pytest.approx(10.0)
    assert result["lift_top_20"] == pytest.approx(5.0)
    assert (result["capture_top_5"], result["capture_top_10"], result["capture_top_20"]) == pytest.approx((0.5, 1, 1))


def test_reversed_ranking():
    y, score = perfect()
    result = metrics.ranking_metrics(y, -score)
    assert result["roc_auc"] == 0.0
    assert result["lift_top_10"] == 0.0
    gains = metrics.gains_curve(y, -score, points=11)
    assert gains["share_of_conversions"].iloc[-2] == pytest.approx(0.0)
    assert gains["share_of_conversions"].iloc[-1] == 1.0


@pytest.mark.parametrize("rows", [7, 20, 999, 1_003])
def test_constant_score_is_a_random_order(rows):
    y = (np.arange(rows) % 3 == 0).astype(int)
    score = np.full(rows, 42.0)
    lift = metrics.lift_table(y, score, tops=(0.01, 0.05, 0.1, 0.2, 0.37, 1.0))
    assert (lift["lift"] == 1.0).all()
    assert lift["capture"].to_numpy() == pytest.approx(lift["top"].to_numpy())
    assert metrics.ranking_metrics(y, score)["roc_auc"] == 0.5
    gains = metrics.gains_curve(y, score)
    assert (gains["share_of_conversions"] == gains["share_of_leads"]).all()
    deciles = metrics.decile_table(y, score)
    assert (deciles["leads"] == rows / 10).all()
    assert (deciles["conversion_rate"] == y.mean()).all()
    assert (deciles["lift"] == 1.0).all()
    assert (deciles["mean_score"] == 42.0).all()


def test_tie_straddling_the_cut_counts_pro_rata():
    table = metrics.lift_table(TIED_Y, TIED_SCORE)
    expected = pd.DataFrame(
        {
            "top": [0.05, 0.10, 0.20],
            "leads": [1.0, 2.0, 4.0],
            "conversions": [1.0, 1.5, 2.5],
            "conversion_rate": [1.0, 0.75, 0.625],
            "lift": [5.0, 3.75, 3.125],
            "capture": [0.25, 0.375, 0.625],
        }
    )
    pd.testing.assert_frame_equal(table, expected)
    ranking = metrics.ranking_metrics(TIED_Y, TIED_SCORE)
    assert ranking["lift_top_10"] == pytest.approx(3.75)
    assert ranking["capture_top_20"] == pytest.approx(0.625)


def test_tie_straddling_decile_boundaries_is_shared():
    deciles = metrics.decile_table(TIED_Y, TIED_SCORE)
    assert deciles["decile"].tolist() == list(range(1, 11))
    assert (deciles["leads"] == 2.0).all()
    # Decile 3 holds the last of the four tied leads (half a conversion) and one of the fifteen (1/15).
    expected = [1.5, 1.0, 0.5 + 1 / 15, *[2 / 15] * 7]
    assert deciles["conversions"].to_numpy() == pytest.approx(expected)
    assert deciles["lift"].to_numpy() == pytest.approx(np.array(expected) / 2 / 0.2)
    assert deciles["mean_score"].to_numpy() == pytest.approx([7.5, 5, 3, *[1] * 7])


def test_gains_are_linear_inside_a_tied_group():
    gains = metrics.gains_curve(TIED_Y, TIED_SCORE, points=21)
    assert gains["share_of_leads"].to_numpy() == pytest.approx(np.linspace(0, 1, 21))
    assert gains["share_of_conversions"].iloc[:6].to_numpy() == pytest.approx([0, 0.25, 0.375, 0.5, 0.625, 0.75])


def test_ties_match_every_order_of_the_tied_leads():
    """At whole-lead cuts, the pro rata count equals the average over all orders of the ties."""
    score = np.array([9, 7, 7, 7, 7, 7, 3, 3, 3, 1])
    y = np.array([0, 1, 0, 1, 1, 0, 1, 0, 0, 1])
    groups = [np.flatnonzero(score == value) for value in (9, 7, 3, 1)]
    orders = [np.concatenate(choice) for choice in itertools.product(*map(itertools.permutations, groups))]
    averaged = np.mean([np.cumsum(y[list(order)]) for order in orders], axis=0)
    table = metrics.lift_table(y, score, tops=np.arange(1, 11) / 10)
    assert table["conversions"].to_numpy() == pytest.approx(averaged)


def test_row_order_changes_nothing(random_sample):
    y, probability = random_sample
    shuffled = np.random.default_rng(3).permutation(len(y))
    for function in (metrics.lift_table, metrics.decile_table, metrics.reliability_curve, metrics.gains_curve):
        pd.testing.assert_frame_equal(function(y, probability), function(y[shuffled], probability[shuffled]))


# --- agreement with scikit-learn and calibration -------------------------------------------------


def test_agrees_with_sklearn(random_sample):
    y, probability = random_sample
    result = metrics.probability_metrics(y, probability)
    assert result["roc_auc"] == pytest.approx(roc_auc_score(y, probability), abs=1e-12)
    assert result["pr_auc"] == pytest.approx(average_precision_score(y, probability), abs=1e-12)
    assert result["brier"] == pytest.approx(brier_score_loss(y, probability), abs=1e-12)
    assert result["log_loss"] == pytest.approx(log_loss(y, np.clip(probability, 1e-15, 1 - 1e-15)), abs=1e-12)
    assert (result["rows"], result["positives"], result["base_rate"]) == (len(y), y.sum(), y.mean())
    ranking = metrics.ranking_metrics(y, probability * 100)
    assert ranking["roc_auc"] == pytest.approx(result["roc_auc"], abs=1e-12)
    assert ranking["pr_auc"] == pytest.approx(result["pr_auc"], abs=1e-12)


def test_log_loss_clips_certain_mistakes():
    result = metrics.probability_metrics([1, 0], [0.0, 0.0])
    assert result["log_loss"] == pytest.approx(-np.log(1e-15) / 2)


@pytest.mark.parametrize("truth, expected_low", [(lambda p: p, True), (lambda p: p**2, False)])
def test_ece_separates_calibrated_from_miscalibrated(truth, expected_low):
    rng = np.random.default_rng(5)
    probability = rng.random(200_000)
    y = (rng.random(200_000) < truth(probability)).astype(int)
    ece = metrics.probability_metrics(y, probability)["ece"]
    assert (ece < 0.02) if expected_low else (ece > 0.1)


def test_reliability_curve_without_ties_is_plain_equal_frequency_binning():
    rng = np.random.default_rng(8)
    probability = rng.random(1_000)
    y = (rng.random(1_000) < probability).astype(int)
    curve = metrics.reliability_curve(y, probability)
    order = np.argsort(probability)
    bins = zip(np.array_split(probability[order], 10), np.array_split(y[order], 10))
    expected = np.array([(p.mean(), labels.mean()) for p, labels in bins])
    assert curve["bin"].tolist() == list(range(1, 11))
    assert (curve["leads"] == 100).all()
    assert curve["mean_predicted"].to_numpy() == pytest.approx(expected[:, 0])
    assert curve["observed_rate"].to_numpy() == pytest.approx(expected[:, 1])
    gaps = np.abs(expected[:, 1] - expected[:, 0]).mean()
    assert metrics.probability_metrics(y, probability)["ece"] == pytest.approx(gaps)


def test_decile_table_sums_to_the_totals(random_sample):
    y, probability = random_sample
    deciles = metrics.decile_table(y, probability)
    assert deciles["leads"].sum() == pytest.approx(len(y))
    assert deciles["conversions"].sum() == pytest.approx(y.sum())
    assert (deciles["leads"] * deciles["mean_score"]).sum() == pytest.approx(probability.sum())
    assert deciles["mean_score"].is_monotonic_decreasing


def test_accepts_bool_labels_and_pandas_columns(random_sample):
    y, probability = random_sample
    as_bool = metrics.lift_table(pd.Series(y.astype(bool)), pd.Series(probability, index=np.arange(len(y)) + 7))
    pd.testing.assert_frame_equal(as_bool, metrics.lift_table(y, probability))


# --- errors users see ----------------------------------------------------------------------------


@pytest.mark.parametrize("labels", [np.zeros(50, dtype=int), np.ones(50, dtype=int)])
def test_one_class_is_refused(labels):
    with pytest.raises(LeadscoreError, match=r"one class only \(50 rows, (0|50) positives\)"):
        metrics.probability_metrics(labels, np.full(50, 0.1))
    with pytest.raises(LeadscoreError, match="one class only"):
        metrics.ranking_metrics(labels, np.arange(50))


def test_no_conversions_is_refused_for_lift():
    with pytest.raises(LeadscoreError, match="No converted leads among the 30 rows"):
        metrics.decile_table(np.zeros(30), np.arange(30))


@pytest.mark.parametrize(
    "y, score, message",
    [
        ([1, 0, np.nan, 1], [0.1, 0.2, 0.3, 0.4], "y_true has 1 missing values among 4 rows"),
        (pd.Series([1, 0, None, 1], dtype="Int64"), [0.1, 0.2, 0.3, 0.4], "y_true has 1 missing values"),
        ([1, 0, 0, 1], [0.1, np.nan, np.nan, 0.4], r"score has 2 missing \(NaN\) values among 4 rows"),
        ([1, 0, 0, 1], [0.1, np.inf, 0.2, 0.4], "score has 1 infinite values"),
        ([1, 0, 2, 1], [0.1, 0.2, 0.3, 0.4], r"0/1 or True/False; 1 values are not \(e.g. 2\)"),
        ([1, 0, 1], [0.1, 0.2], "y_true has 3 rows but score has 2"),
        ([], [], "No rows to evaluate"),
        (["yes", "no"], [0.1, 0.2], "y_true must be numeric"),
        ([[1, 0]], [[0.1, 0.2]], "y_true must be one-dimensional"),
    ],
)
def test_bad_inputs_are_refused(y, score, message):
    with pytest.raises(LeadscoreError, match=message):
        metrics.lift_table(y, score)


def test_probability_outside_zero_one_is_refused():
    with pytest.raises(LeadscoreError, match=r"\[0, 1\]; 1 values do not \(e.g. 15\).*use ranking_metrics"):
        metrics.probability_metrics([1, 0, 1], [0.2, 15, 0.5])


@pytest.mark.parametrize("tops", [(0.0,), (0.1, 1.5), ()])
def test_top_shares_outside_zero_one_are_refused(tops):
    with pytest.raises(LeadscoreError, match=r"tops must be shares of leads in \(0, 1\]"):
        metrics.lift_table(TIED_Y, TIED_SCORE, tops=tops)


# --- charts --------------------------------------------------------------------------------------


def assert_png_drawn(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = imread(path)
    assert pixels.shape[0] > 500 and pixels.shape[1] > 500
    assert pixels[..., :3].var() > 0


def test_charts_are_written(tmp_path, random_sample):
    y, probability = random_sample
    points = np.round(probability * 4) * 10
    reliability = {
        "leadscore model": metrics.reliability_curve(y, probability),
        "Logistic regression": metrics.reliability_curve(y, probability**1.5),
    }
    gains = {"leadscore model": metrics.gains_curve(y, probability), "Hand-set points": metrics.gains_curve(y, points)}
    written = [
        plots.reliability_plot(reliability, tmp_path / "reliability.png"),
        plots.gains_plot(gains, str(tmp_path / "gains.png")),
    ]
    assert written == [tmp_path / "reliability.png", tmp_path / "gains.png"]
    for path in written:
        assert_png_drawn(path)
