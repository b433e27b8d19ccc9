"""MQL and SQL thresholds: the capacity rule fits the teams' weekly capacity, the precision rule its conversion floor."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.errors import LeadscoreError
from leadscore.models.calibration import Calibrator
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


def test_precision_thresholds_keep_the_expected_conversion_above_the_floor(weekly_leads):
    probability, y, leads, times, calibrator = weekly_leads
    config = TierConfig("precision", mql_precision=0.2, sql_precision=0.4)
    tiers = choose_tiers(probability, leads, times, config, calibrator)
    assert probability[probability >= tiers.mql].mean() >= 0.2
    assert probability[probability >= tiers.sql].mean() >= 0.4
    # One more lead below the threshold would break the floor.
    below = np.max(probability[probability < tiers.sql])
    assert probability[probability >= below].mean() < 0.4
    # Outcomes were never read, yet the tiers convert about as promised on these leads.
    report = tier_report(probability, y, leads, times, tiers)
    assert report.loc["SQL", "conversion_rate"] == pytest.approx(probability[probability >= tiers.sql].mean(), abs=0.1)


def test_an_unreachable_precision_leaves_the_tier_empty(weekly_leads):
    probability, y, leads, times, calibrator = weekly_leads
    tiers = choose_tiers(probability, leads, times, TierConfig(mql_precision=0.5, sql_precision=0.99), calibrator)
    assert tiers.sql == 1.0 and (tiers.assign(probability) == "sql").sum() == 0


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
