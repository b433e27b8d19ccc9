"""MQL and SQL thresholds: the capacity rule fits the teams' weekly capacity, the precision rule each lead's own
probability against its target, with rank taking over once the base rate reaches a target."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

from leadscore.errors import LeadscoreError
from leadscore.features.flat import ColumnRoles, flat_feature_table
from leadscore.models.calibration import Calibrator
from leadscore.models.reasons import format_percent
from leadscore.models.tiers import (
    SubScores,
    TierConfig,
    Tiers,
    choose_tiers,
    margin_reaching,
    tier_report,
    weeks_covered,
)


@pytest.fixture(scope="module")
def weekly_leads():
    """12 weeks of 100 new leads a week, each scored once, with calibrated-looking probabilities."""
    rng = np.random.default_rng(5)
    weeks, per_week = 12, 100
    times = pd.Series(np.repeat(pd.date_range("2025-01-06", periods=weeks, freq="7D"), per_week))
    probability = rng.beta(0.6, 6.0, weeks * per_week)
    y = (rng.random(len(probability)) < probability).astype(int)
    leads = pd.Series([f"L{i}" for i in range(len(probability))])
    margin = np.log(probability / (1 - probability))
    calibrator = Calibrator().fit(margin, y)
    return probability, y, leads, times, calibrator


@functools.cache
def _leads_at(base_rate: float):
    """3,000 leads over 10 weeks whose calibrated probabilities average ``base_rate``."""
    rng = np.random.default_rng(11)
    spread = rng.normal(0, 1.3, 3_000)
    low, high = -15.0, 15.0
    for _ in range(60):  # the intercept that gives the wanted average probability
        middle = (low + high) / 2
        low, high = (middle, high) if _expit(spread + middle).mean() < base_rate else (low, middle)
    probability = _expit(spread + middle)
    y = (rng.random(len(probability)) < probability).astype(int)
    leads = pd.Series([f"L{i}" for i in range(len(probability))])
    times = pd.Series(np.repeat(pd.date_range("2025-01-06", periods=10, freq="7D"), 300))
    calibrator = Calibrator().fit(np.log(probability / (1 - probability)), y)
    return base_rate, probability, y, leads, times, calibrator


@pytest.fixture(params=[0.02, 0.12, 0.40], ids=["base-2%", "base-12%", "base-40%"])
def base_rate_leads(request):
    return _leads_at(request.param)


@pytest.fixture
def high_base_rate_leads():
    """Leads of a table like X Education's: the average lead already clears both targets."""
    return _leads_at(0.40)


def _expit(margin: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-margin))


def test_weeks_covered_counts_the_last_step():
    weekly = pd.Series(pd.date_range("2025-01-06", periods=12, freq="7D"))
    assert weeks_covered(weekly) == pytest.approx(12.0)
    monthly = pd.Series(pd.date_range("2025-01-01", periods=6, freq="MS"))
    assert weeks_covered(monthly) == pytest.approx((pd.Timestamp("2025-06-01") - pd.Timestamp("2025-01-01")).days / 7 + 31 / 7)
    assert weeks_covered(None) is None and weeks_covered(pd.Series([pd.Timestamp("2025-01-01")] * 3)) is None


@pytest.mark.parametrize("mql_per_week, sql_per_week", [(20, 5), (35, 12), (100, 100)])
def test_capacity_thresholds_send_each_team_what_it_can_work(weekly_leads, mql_per_week, sql_per_week):
    probability, y, leads, times, calibrator = weekly_leads
    config = TierConfig("capacity", mql_per_week=mql_per_week, sql_per_week=sql_per_week)
    tiers = choose_tiers(probability, leads, times, config, calibrator)
    report = tier_report(probability, y, leads, times, tiers)
    assert report.loc["MQL or SQL", "leads_per_week"] <= mql_per_week
    assert report.loc["SQL", "leads_per_week"] <= sql_per_week
    # The lowest such thresholds: one more lead would overflow the SDR team, unless everyone already fits.
    if mql_per_week * 12 < len(probability):
        assert (probability >= np.max(probability[probability < tiers.mql])).sum() > mql_per_week * 12
    assert report.loc["MQL or SQL", "leads_per_week"] >= mql_per_week - 1 / 12 or mql_per_week * 12 >= len(probability)
    assert tiers.sql >= tiers.mql


def test_a_lead_scored_at_several_cutoffs_is_worked_once(weekly_leads):
    probability, y, leads, times, calibrator = weekly_leads
    # The same leads scored again a week later: capacity is about leads, not rows.
    twice = np.r_[probability, probability]
    tiers = choose_tiers(twice, pd.concat([leads, leads]), pd.concat([times, times + pd.Timedelta(days=7)]),
                         TierConfig("capacity", mql_per_week=30, sql_per_week=10), calibrator)
    assert (probability >= tiers.mql).sum() <= 30 * 13


def test_precision_tiers_never_hold_a_lead_below_their_target(base_rate_leads):
    base_rate, probability, y, leads, times, calibrator = base_rate_leads
    config = TierConfig()
    tiers = choose_tiers(probability, leads, times, config, calibrator)
    tier = tiers.assign(probability)
    for name, target in (("sql", config.sql_precision), ("mql", config.mql_precision)):
        if name not in tiers.ranked:
            # The threshold is the target itself: every lead at or above it is in, none below.
            assert getattr(tiers, name) == target
            assert (probability[np.isin(tier, ["sql"] if name == "sql" else ["mql", "sql"])] >= target).all()
            assert (np.isin(tier[probability >= target], ["sql"] if name == "sql" else ["mql", "sql"])).all()
    report = tier_report(probability, y, leads, times, tiers)
    assert report.loc["none", "leads"] > 0 and report.loc["MQL or SQL", "leads"] < len(probability)
    assert report.loc["MQL or SQL", "leads"] == report.loc["MQL", "leads"] + report.loc["SQL", "leads"]
    assert report.loc["SQL", "leads"] == (tier == "sql").sum() and report.loc["MQL", "leads"] == (tier == "mql").sum()


@pytest.mark.parametrize("sql_share, mql_share", [(0.1, 0.2), (0.05, 0.15)])
def test_a_target_the_base_rate_reaches_gives_way_to_rank_and_says_so(base_rate_leads, sql_share, mql_share):
    base_rate, probability, y, leads, times, calibrator = base_rate_leads
    config = TierConfig(sql_share=sql_share, mql_share=mql_share)
    tiers = choose_tiers(probability, leads, times, config, calibrator)
    tier = tiers.assign(probability)
    expected = {0.02: (), 0.12: ("mql",), 0.40: ("mql", "sql")}[base_rate]
    assert tiers.ranked == expected and tiers.rule == "precision"
    if not expected:
        assert tiers.description.startswith("precision: a lead is an MQL when its own calibrated probability")
        return
    assert "already reaches the 10 % MQL" in tiers.description and "an average lead would qualify" in tiers.description
    # Continuous probabilities, so no ties: each ranked tier holds exactly its share of the leads.
    assert (tier == "mql").sum() == round(mql_share * len(probability))
    if "sql" in expected:
        assert tiers.description.startswith("rank, not precision") and "30 % SQL targets" in tiers.description
        assert (tier == "sql").sum() == round(sql_share * len(probability))
    else:
        assert tiers.sql == config.sql_precision and 0 < (tier == "sql").sum() < len(probability)
        # MQLs are the leads ranked just below the SQL target.
        below = np.sort(probability[probability < tiers.sql])
        assert np.array_equal(np.sort(probability[tier == "mql"]), below[len(below) - (tier == "mql").sum():])


def test_given_capacities_rank_instead_of_shares(high_base_rate_leads):
    _, probability, y, leads, times, calibrator = high_base_rate_leads
    config = TierConfig(mql_per_week=40, sql_per_week=15)
    tiers = choose_tiers(probability, leads, times, config, calibrator)
    capacity = choose_tiers(probability, leads, times, TierConfig("capacity", 40, 15), calibrator)
    assert (tiers.mql, tiers.sql) == (capacity.mql, capacity.sql) and tiers.ranked == ("mql", "sql")
    assert "rank, not precision" in tiers.description and "at most 40 MQLs and 15 SQLs a week" in tiers.description
    assert (tiers.assign(probability) == "sql").sum() == 15 * 10
    with pytest.raises(LeadscoreError, match="--leads-per-week .* or drop them"):
        choose_tiers(probability, leads, None, config, calibrator)


def test_shares_that_cover_every_lead_leave_none_unqualified(high_base_rate_leads):
    _, probability, y, leads, times, calibrator = high_base_rate_leads
    tiers = choose_tiers(probability, leads, times, TierConfig(sql_share=0.25, mql_share=0.75), calibrator)
    assert (tiers.assign(probability) != "none").all() and (tiers.assign(probability) == "sql").sum() == 750


def test_an_unreachable_target_leaves_the_tier_empty_and_says_so(weekly_leads):
    probability, y, leads, times, calibrator = weekly_leads
    tiers = choose_tiers(probability, leads, times, TierConfig(mql_precision=0.5, sql_precision=0.99), calibrator)
    assert tiers.sql == 0.99 and (tiers.assign(probability) == "sql").sum() == 0
    highest = format_percent(probability.max())
    assert f"no held-out lead reaches the 99 % SQL target (the highest probability is {highest})" in tiers.description
    nothing = choose_tiers(probability, leads, times, TierConfig(mql_precision=0.98, sql_precision=0.99), calibrator)
    assert (nothing.assign(probability) == "none").all() and "so both tiers are empty" in nothing.description


def test_the_base_rate_is_read_over_rows_and_the_ranks_over_leads(high_base_rate_leads):
    _, probability, y, leads, times, calibrator = high_base_rate_leads
    # Each lead scored again a week later, lower: still 10 % of the leads are SQL, counted on their best row.
    again = np.r_[probability, probability / 2]
    tiers = choose_tiers(again, pd.concat([leads, leads]), pd.concat([times, times + pd.Timedelta(days=7)]),
                         TierConfig(), calibrator)
    assert tiers.ranked == ("mql", "sql") and (probability >= tiers.sql).sum() == 300


def test_training_on_a_flat_table_with_a_high_base_rate_tiers_by_rank():
    from leadscore.pipelines.train import TrainingConfig, train_model

    rng = np.random.default_rng(4)
    n = 1_500
    minutes = rng.lognormal(3, 1, n)
    source = rng.choice(["ads", "seo", "partner"], n)
    logit = -2.2 + 0.6 * np.log(minutes) + np.where(source == "partner", 1.0, 0.0)
    frame = pd.DataFrame({"id": np.arange(n), "minutes": minutes, "source": source,
                          "won": (rng.random(n) < _expit(logit)).astype(int)})
    assert 0.35 < frame["won"].mean() < 0.5
    table = flat_feature_table(frame, ColumnRoles(id="id", target="won"))
    result = train_model(table, TrainingConfig(candidates=("logistic",), min_positives=50))
    tiers, report = result.model.tiers, result.insight.tiers
    assert tiers.ranked == ("mql", "sql") and tiers.description.startswith("rank, not precision")
    held_out = report.loc["MQL or SQL", "leads"] + report.loc["none", "leads"]
    assert 0 < report.loc["SQL", "leads"] <= 0.1 * held_out and 0 < report.loc["MQL", "leads"] <= 0.2 * held_out
    assert report.loc["SQL", "conversion_rate"] > report.loc["MQL", "conversion_rate"] > report.loc["none", "conversion_rate"]
    assert f"Tiers by {tiers.description}." in result.notes


def test_tiers_assign_and_their_margins_match_the_calibrator(weekly_leads):
    probability, y, leads, times, calibrator = weekly_leads
    tiers = choose_tiers(probability, leads, times, TierConfig(), calibrator)
    assert list(tiers.assign([0.0, tiers.mql, tiers.sql, 0.99])) == ["none", "mql", "sql", "sql"]
    for threshold, margin in ((tiers.mql, tiers.mql_margin), (tiers.sql, tiers.sql_margin)):
        assert calibrator.predict([margin])[0] >= threshold
        assert calibrator.predict([margin - 1e-3])[0] < threshold + 1e-12 or margin == -60.0
    assert margin_reaching(calibrator, 2.0) == float("inf")


def test_the_report_compares_with_the_hand_set_mql_threshold(weekly_leads):
    probability, y, leads, times, calibrator = weekly_leads
    tiers = Tiers("precision", 0.2, 0.5, 0.0, 0.0, "test")
    points = np.round(probability * 100)
    report = tier_report(probability, y, leads, times, tiers, handset_points=points, handset_threshold=30)
    assert list(report.index) == ["SQL", "MQL", "MQL or SQL", "none", "Hand-set MQL"]
    assert report.loc["Hand-set MQL", "leads"] == int((points >= 30).sum())
    assert report.loc["MQL or SQL", "leads"] == report.loc["MQL", "leads"] + report.loc["SQL", "leads"]
    assert report.loc["none", "share_of_conversions"] + report.loc["MQL or SQL", "share_of_conversions"] == pytest.approx(1)
    assert report.loc["SQL", "leads_per_week"] == pytest.approx((probability >= 0.5).sum() / 12)


def test_without_time_capacity_needs_the_weekly_inflow(weekly_leads):
    probability, y, leads, _, calibrator = weekly_leads
    config = TierConfig("capacity", mql_per_week=20, sql_per_week=5)
    with pytest.raises(LeadscoreError, match="--leads-per-week"):
        choose_tiers(probability, leads, None, config, calibrator)
    tiers = choose_tiers(probability, leads, None, TierConfig("capacity", 20, 5, leads_per_week=100), calibrator)
    assert (probability >= tiers.mql).sum() <= 20 * 12


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"rule": "volume"}, "choose capacity or precision"),
        ({"rule": "capacity", "mql_per_week": 10}, "--sql-per-week"),
        ({"rule": "capacity", "mql_per_week": 10, "sql_per_week": 20}, "exceeds"),
        ({"mql_precision": 0.5, "sql_precision": 0.2}, "MQL precision <= SQL precision"),
        ({"sql_precision": 30}, "as shares"),
        ({"mql_per_week": 10}, "go together"),
        ({"sql_share": 0.5, "mql_share": 0.6}, "add up to at most 1"),
        ({"mql_share": 0}, "must each be above 0"),
    ],
)
def test_bad_tier_settings_say_how_to_fix_them(settings, message):
    with pytest.raises(LeadscoreError, match=message):
        TierConfig(**settings)


def test_sub_scores_are_percentile_ranks_of_the_reference():
    reference = np.arange(1000.0)
    scores = SubScores.fit(reference, -reference)
    assert scores.fit_score(np.array([-1.0, 499.5, 2000.0])) == pytest.approx([0, 50, 100], abs=0.1)
    # Ties count half: a lead like every reference lead is in the middle.
    flat = SubScores.fit(np.zeros(100), np.zeros(100))
    assert flat.engagement_score(np.array([0.0]))[0] == pytest.approx(50)
