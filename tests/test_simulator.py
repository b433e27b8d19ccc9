"""The simulated CRM behaves as its data card says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from leadscore.crm.funnel import funnel_by_channel
from leadscore.crm.history import CrmHistory
from leadscore.crm.simulator import SimulationConfig, card, names, simulate
from leadscore.crm.simulator.names import FREE_EMAIL_DOMAINS
from leadscore.errors import LeadscoreError


@pytest.fixture(scope="module")
def crm():
    return simulate(SimulationConfig(leads=40_000, seed=11))


def _mature(crm, days: int = 120) -> CrmHistory:
    """Only leads created long enough before the end for their funnel to have played out."""
    history = crm.history()
    leads = history.leads[history.leads["created_at"] < pd.Timestamp(crm.end) - pd.Timedelta(days=days)]
    keep = history.stage_changes["lead_id"].isin(leads["id"])
    return CrmHistory(leads, history.activities, history.stage_changes[keep], history.campaign_costs, history.as_of)


def test_same_seed_gives_the_same_crm_and_another_seed_another():
    config = SimulationConfig(leads=2_000, seed=3, months=12)
    first, second = simulate(config), simulate(config)
    for name in ("leads", "activities", "stage_changes", "campaign_costs"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name))
    other = simulate(SimulationConfig(leads=2_000, seed=4, months=12))
    assert not first.activities["occurred_at"].equals(other.activities["occurred_at"])


def test_mql_to_sql_rates_per_channel_match_the_data_card(crm):
    funnel = funnel_by_channel(_mature(crm)).set_index("channel")
    assert funnel.loc["ebook", "mql_to_sql"] == pytest.approx(0.10, abs=0.03)
    assert funnel.loc["demo_request", "mql_to_sql"] == pytest.approx(0.60, abs=0.04)
    for channel in card.CHANNELS:
        assert funnel.loc[channel.code, "mql_to_sql"] == pytest.approx(channel.mql_to_sql, abs=0.05), channel.code


def test_channels_differ_in_volume_and_quality(crm):
    funnel = funnel_by_channel(_mature(crm)).set_index("channel").drop(index="total")
    assert funnel.loc["demo_request", "lead_to_mql"] == 1.0  # hand-raisers are MQL at once
    assert funnel.loc["free_trial", "lead_to_mql"] == 1.0
    assert funnel["leads"].idxmax() == "organic_search"
    best = funnel["lead_to_customer"].sort_values(ascending=False)
    assert set(best.index[:2]) == {"demo_request", "free_trial"}
    # Low-intent content channels convert worst (outbound and white papers are statistically tied with them).
    assert {"ebook", "paid_social"} <= set(best.index[-4:])
    assert 0.005 < funnel_by_channel(_mature(crm)).set_index("channel").loc["total", "lead_to_customer"] < 0.05


def test_stage_history_follows_the_funnel(crm):
    stages = crm.stage_changes
    created = crm.leads.set_index("id")["created_at"]
    first = stages.groupby("lead_id").first()
    assert (first["stage"] == "lead").all()
    assert (first["changed_at"] == created.loc[first.index]).all()
    rank = stages["stage"].map({"lead": 0, "mql": 1, "sql": 2, "opportunity": 3, "customer": 4}).astype(float)
    funnel_only = stages.assign(rank=rank).dropna(subset=["rank"])
    assert (funnel_only.groupby("lead_id")["rank"].diff().dropna() > 0).all()
    closed = stages[stages["stage"].isin(["customer", "disqualified"])]
    assert not closed["lead_id"].duplicated().any()
    last = stages.groupby("lead_id")["stage"].last()
    assert (crm.leads.set_index("id")["lifecycle_stage"].astype(str) == last.astype(str).loc[crm.leads["id"]].to_numpy()).all()
    assert (stages["changed_at"] < pd.Timestamp(crm.end)).all()


def test_delays_between_stages_are_plausible(crm):
    at = crm.stage_changes.pivot_table(index="lead_id", columns="stage", values="changed_at", aggfunc="first", observed=True)
    to_sql = (at["sql"] - at["mql"]).dt.days.dropna()
    to_customer = (at["customer"] - at["opportunity"]).dt.days.dropna()
    assert 1 <= to_sql.median() <= 5
    assert 25 <= to_customer.median() <= 70
    assert (to_sql >= 0).all() and (to_customer >= 0).all()


def test_sales_side_events_happen_only_after_the_lead_became_sql(crm):
    sales = crm.activities[crm.activities["type"].isin(["call", "meeting"])]
    sql_at = crm.stage_changes[crm.stage_changes["stage"] == "sql"].set_index("lead_id")["changed_at"]
    assert len(sales) > 1_000
    assert sales["lead_id"].isin(sql_at.index).all()
    assert (sales["occurred_at"].to_numpy() > sql_at.loc[sales["lead_id"]].to_numpy()).all()


def test_activities_happen_between_creation_and_the_end(crm):
    created = crm.leads.set_index("id")["created_at"].loc[crm.activities["lead_id"]].to_numpy()
    assert (crm.activities["occurred_at"].to_numpy() >= created).all()
    assert (crm.activities["occurred_at"] < pd.Timestamp(crm.end)).all()
    assert 15 <= len(crm.activities) / len(crm.leads) <= 35


def test_engagement_builds_up_then_decays(crm):
    views = crm.activities[crm.activities["type"] == "page_view"]
    created = crm.leads.set_index("id")["created_at"].loc[views["lead_id"]].to_numpy()
    age_days = (views["occurred_at"].to_numpy() - created) / np.timedelta64(1, "D")
    early_leads = crm.leads.set_index("id")["created_at"].loc[views["lead_id"]].to_numpy() < np.datetime64("2025-01-01")
    age_days = age_days[early_leads & (age_days > 0)]  # the activity that created the lead is at age 0

    def per_day(low, high):
        return ((age_days >= low) & (age_days < high)).sum() / (high - low)

    assert per_day(3, 10) > 1.5 * per_day(0, 1)  # builds up
    assert per_day(3, 10) > 3 * per_day(60, 90)  # decays


def test_no_email_after_an_unsubscribe(crm):
    activities = crm.activities
    unsubscribed = activities[activities["type"] == "unsubscribe"].groupby("lead_id")["occurred_at"].min()
    assert len(unsubscribed) > 100
    assert not activities[activities["type"] == "unsubscribe"]["lead_id"].duplicated().any()
    email = activities[activities["type"].isin(card.EMAIL_TYPES) & activities["lead_id"].isin(unsubscribed.index)]
    assert (email["occurred_at"].to_numpy() <= unsubscribed.loc[email["lead_id"]].to_numpy()).all()


def test_webinar_attendance_follows_a_registration_to_the_same_webinar(crm):
    activities = crm.activities
    registrations = activities[activities["type"] == "webinar_registration"]
    attended = activities[activities["type"] == "webinar_attendance"]
    assert len(attended) > 100
    first_registration = registrations.groupby(["lead_id", "detail"], observed=True)["occurred_at"].min()
    keys = list(zip(attended["lead_id"], attended["detail"]))
    assert all(key in first_registration.index for key in keys)
    assert (attended["occurred_at"].to_numpy() > first_registration.loc[keys].to_numpy()).all()


def test_mql_happens_when_the_points_rule_fires(crm):
    """Re-derive the marketing-automation rule from the stored data, independently of the simulator's code."""
    leads = crm.leads.set_index("id")
    senior = leads["seniority"].isin(card.SENIOR_LEVELS)
    large = leads["company_size"].isin(["51-200", "201-1000", "1001-5000", "5000+"])
    business = ~leads["email_domain"].isin(FREE_EMAIL_DOMAINS)
    fit_points = 10 * senior + 10 * large + 10 * business
    marketing = crm.activities[~crm.activities["type"].isin(["call", "meeting"])].copy()
    points = {a.code: (1_000 if a.mql_points is None else a.mql_points) for a in card.ACTIVITIES}
    marketing["points"] = marketing["type"].astype(str).map(points)
    marketing["running"] = marketing.groupby("lead_id")["points"].cumsum() + fit_points.loc[marketing["lead_id"]].to_numpy()
    crossed = marketing[marketing["running"] >= card.MQL_THRESHOLD].groupby("lead_id")["occurred_at"].min()
    mql = crm.stage_changes[crm.stage_changes["stage"] == "mql"].set_index("lead_id")["changed_at"]
    junk = leads.index[(leads["seniority"] == "student") & ~business]
    expected = crossed.drop(index=crossed.index.intersection(junk), errors="ignore")
    agree = mql.index.intersection(expected.index)
    assert len(agree) >= 0.97 * len(expected)
    assert (mql.loc[agree] == expected.loc[agree]).mean() > 0.99


def test_lead_volume_is_seasonal_and_the_channel_mix_drifts(crm):
    month = crm.leads["created_at"].dt.to_period("M")
    per_month = month.value_counts()
    assert per_month[pd.Period("2024-08")] < 0.75 * per_month[pd.Period("2024-10")]
    weekday = crm.leads["created_at"].dt.day_of_week
    assert (weekday >= 5).mean() < 0.15
    first = crm.leads[month <= pd.Period("2024-03")]["channel"].value_counts(normalize=True)
    last = crm.leads[month >= pd.Period("2025-10")]["channel"].value_counts(normalize=True)
    assert last["paid_social"] > 1.5 * first["paid_social"]
    assert last["outbound"] < 0.8 * first["outbound"]


def test_campaign_costs_cover_every_channel_and_month(crm):
    costs = crm.campaign_costs
    assert len(costs) == 24 * len(card.CHANNELS)
    assert (costs["cost"] >= 0).all()
    leads = crm.leads.groupby("channel", observed=True).size()
    per_lead = costs.groupby("channel")["cost"].sum() / leads
    for channel in card.CHANNELS:
        assert per_lead[channel.code] == pytest.approx(channel.cost_per_lead, rel=0.15)


def test_conversion_follows_the_true_drivers(crm):
    customers = set(crm.stage_changes.loc[crm.stage_changes["stage"] == "customer", "lead_id"])
    hidden = crm.hidden.assign(converted=crm.hidden["lead_id"].isin(customers))
    assert hidden.groupby("converted")["intent"].mean().diff().iloc[-1] > 0.8
    assert hidden.groupby("converted")["fit"].mean().diff().iloc[-1] > 0.5

    leads = crm.leads.assign(converted=crm.leads["id"].isin(customers))
    by_size = leads.groupby("company_size", observed=True)["converted"].mean()
    assert by_size["201-1000"] > 2 * by_size["1-10"]
    by_seniority = leads.groupby("seniority", observed=True)["converted"].mean()
    assert by_seniority["vp"] > 2 * by_seniority["individual_contributor"]

    # Country is the null driver: its conversion rates differ no more than chance allows.
    table = pd.crosstab(leads["country"], leads["converted"])
    assert stats.chi2_contingency(table).pvalue > 0.01

    activity = crm.activities.assign(converted=crm.activities["lead_id"].isin(customers))
    per_lead = activity.groupby(["converted", "type"], observed=True).size().unstack() / leads.groupby(
        "converted"
    ).size().to_numpy()[:, None]
    ratio = per_lead.loc[True] / per_lead.loc[False]
    assert ratio["pricing_page_view"] > 2 and ratio["demo_request"] > 3
    assert ratio["unsubscribe"] < 0.7


def test_profiles_look_like_b2b_leads(crm):
    leads = crm.leads
    assert leads["company"].nunique() > len(leads) / 5
    free = leads["email_domain"].isin(FREE_EMAIL_DOMAINS)
    assert 0.1 < free.mean() < 0.35
    assert free[leads["seniority"] == "student"].mean() > 0.7
    same_company = leads.groupby("company")[["industry", "company_size", "country"]].nunique(dropna=False)
    assert (same_company <= 1).all().all()


def test_owner_is_the_sdr_from_mql_and_the_account_executive_from_sql(crm):
    reached = crm.stage_changes.groupby("lead_id")["stage"].agg(set)
    owner = crm.leads.set_index("id")["owner"]
    mql = reached.index[reached.map(lambda stages: "mql" in stages)]
    sql = reached.index[reached.map(lambda stages: "sql" in stages)]
    assert owner.drop(index=mql).isna().all()
    assert owner.loc[sql].isin(names.AE_OWNERS).all()
    assert owner.loc[mql.difference(sql)].isin(names.SDR_OWNERS).all()


def test_first_lead_id_offsets_ids():
    simulated = simulate(SimulationConfig(leads=50, seed=1, months=3, first_lead_id=1_001))
    assert simulated.leads["id"].tolist() == list(range(1_001, 1_051))
    assert simulated.activities["lead_id"].between(1_001, 1_050).all()


@pytest.mark.parametrize(
    "arguments, message",
    [({"leads": 0}, "--leads"), ({"months": 0}, "--months"), ({"start": pd.Timestamp("2024-01-15").date()}, "first day")],
)
def test_bad_configuration_is_refused(arguments, message):
    with pytest.raises(LeadscoreError, match=message):
        SimulationConfig(**arguments)
