"""Point-in-time features, labels and snapshot policies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.crm.history import CrmHistory
from leadscore.crm.vocabulary import ACTIVITY_TYPES
from leadscore.errors import LeadscoreError
from leadscore.features import CRM_FEATURES, FeatureRegistry, FeatureTable, build_features, crm_feature_table
from leadscore.features import timeline as timeline_module
from leadscore.features.snapshots import mql_moments, open_leads_at

CUTOFF = pd.Timestamp("2024-03-01")


def _ts(text: str) -> np.datetime64:
    return np.datetime64(pd.Timestamp(text).to_datetime64(), "s")


def make_history(activities, stages=(), leads=None, as_of="2024-12-31") -> CrmHistory:
    """A hand-made CRM: lead 1 is a VP at a 201-1000 software company, lead 2 a student on gmail."""
    if leads is None:
        leads = pd.DataFrame(
            {
                "id": [1, 2],
                "created_at": np.array([_ts("2024-01-01 09:00"), _ts("2024-02-20 12:00")]),
                "channel": ["webinar", "ebook"],
                "industry": ["software", None],
                "company_size": ["201-1000", "1-10"],
                "country": ["Germany", "India"],
                "seniority": ["vp", "student"],
                "department": ["marketing", "other"],
                "email_domain": ["bluewave.de", "gmail.com"],
            }
        )
    activities = pd.DataFrame(activities, columns=["lead_id", "occurred_at", "type"])
    activities["occurred_at"] = pd.to_datetime(activities["occurred_at"], format="mixed").astype("datetime64[s]")
    stages = pd.DataFrame(list(stages), columns=["lead_id", "stage", "changed_at"])
    stages["changed_at"] = pd.to_datetime(stages["changed_at"], format="mixed").astype("datetime64[s]")
    return CrmHistory(leads, activities, stages, pd.DataFrame(columns=["channel", "month", "cost"]), pd.Timestamp(as_of))


def _pairs(*pairs) -> pd.DataFrame:
    return pd.DataFrame({"lead_id": [p[0] for p in pairs], "cutoff": pd.to_datetime([p[1] for p in pairs]).astype("datetime64[s]")})


def features_at(history, *pairs) -> pd.DataFrame:
    return build_features(history, _pairs(*pairs)).set_index("lead_id")


def test_counts_per_window_see_only_activities_strictly_before_the_cutoff():
    history = make_history(
        [
            (1, "2024-02-29 23:59:59", "pricing_page_view"),  # 1 s before: every window
            (1, "2024-02-23 00:00:01", "pricing_page_view"),  # just inside 7 days
            (1, "2024-02-23 00:00:00", "pricing_page_view"),  # exactly 7 days before: outside the 7-day window
            (1, "2024-01-15 00:00:00", "pricing_page_view"),  # 46 days before: 90 days and ever
            (1, "2024-03-01 00:00:00", "pricing_page_view"),  # at the cutoff: never
            (1, "2024-03-05 00:00:00", "pricing_page_view"),  # after: never
            (1, "2024-02-28 00:00:00", "ebook_download"),
        ]
    )
    row = features_at(history, (1, CUTOFF)).loc[1]
    assert row["pricing_page_views_7d"] == 2
    assert row["pricing_page_views_30d"] == 3
    assert row["pricing_page_views_90d"] == 4
    assert row["pricing_page_views_ever"] == 4
    assert row["ebook_downloads_ever"] == 1
    assert row["demo_requests_ever"] == 0


def test_recency_features_take_the_latest_matching_activity_and_are_empty_when_none():
    history = make_history(
        [
            (1, "2024-02-20 00:00:00", "whitepaper_download"),
            (1, "2024-02-25 00:00:00", "case_study_download"),
            (1, "2024-02-27 00:00:00", "pricing_page_view"),
            (1, "2024-02-29 00:00:00", "call"),  # sales-side: not a marketing activity
        ]
    )
    row = features_at(history, (1, CUTOFF)).loc[1]
    assert row["days_since_pricing_page_view"] == pytest.approx(3.0)
    assert row["days_since_content_download"] == pytest.approx(5.0)
    assert row["days_since_last_activity"] == pytest.approx(3.0)
    assert np.isnan(row["days_since_demo_request"])
    assert row["calls_ever"] == 1


def test_decay_halves_every_half_life_and_active_days_count_distinct_days():
    history = make_history(
        [
            (1, "2024-02-16 00:00:00", "page_view"),  # 14 days: weight 0.5
            (1, "2024-02-02 00:00:00", "page_view"),  # 28 days: weight 0.25
            (1, "2024-02-02 18:00:00", "article_read"),  # same day
            (1, "2024-02-29 12:00:00", "meeting"),  # sales-side: ignored by decay and active days
        ]
    )
    row = features_at(history, (1, CUTOFF)).loc[1]
    assert row["engagement_decayed"] == pytest.approx(0.5 + 0.25 + 2 ** (-(27.25 / 14)))
    assert row["active_days_ever"] == 2
    assert row["active_days_30d"] == 2
    assert row["lead_age_days"] == pytest.approx(60 - 9 / 24)


def test_profile_features_are_categories_and_business_email_is_derived():
    history = make_history([])
    frame = features_at(history, (1, CUTOFF), (2, CUTOFF))
    assert frame.loc[1, "business_email"] == 1.0
    assert frame.loc[2, "business_email"] == 0.0
    assert isinstance(frame["seniority"].dtype, pd.CategoricalDtype)
    assert frame["seniority"].cat.categories[:3].tolist() == ["student", "individual_contributor", "manager"]
    assert frame.loc[1, "industry"] == "software"
    assert pd.isna(frame.loc[2, "industry"])
    assert frame.loc[1, "pricing_page_views_ever"] == 0
    assert np.isnan(frame.loc[1, "days_since_last_activity"])


def test_activities_at_or_after_the_cutoff_change_nothing(small_crm):
    """The leakage test: rewriting the future of every pair leaves every feature identical."""
    history = small_crm.history()
    pairs = mql_moments(history)
    assert len(pairs) > 500
    before = build_features(history, pairs)

    cutoff = pairs.set_index("lead_id")["cutoff"]
    activities = history.activities
    lead_cutoff = cutoff.reindex(activities["lead_id"]).to_numpy()
    past = activities[~(activities["occurred_at"].to_numpy() >= lead_cutoff)]
    rng = np.random.default_rng(0)
    future = activities[activities["occurred_at"].to_numpy() >= lead_cutoff].copy()
    future["type"] = rng.choice([a.code for a in ACTIVITY_TYPES], size=len(future))
    at_the_cutoff = pd.DataFrame(
        {"lead_id": cutoff.index, "occurred_at": cutoff.to_numpy(), "type": "demo_request"}
    )
    rewritten = pd.concat([past, future, at_the_cutoff], ignore_index=True)
    for changed in (past, rewritten):
        variant = CrmHistory(history.leads, changed, history.stage_changes, history.campaign_costs, history.as_of)
        pd.testing.assert_frame_equal(build_features(variant, pairs), before)


def test_batching_does_not_change_the_result(small_crm, monkeypatch):
    history = small_crm.history()
    pairs = open_leads_at(history, pd.Timestamp("2025-03-01").to_pydatetime())
    whole = build_features(history, pairs)
    monkeypatch.setattr(timeline_module, "MAX_EXPANDED_ROWS", 500)
    batched = build_features(history, pairs)
    pd.testing.assert_frame_equal(batched, whole)


def test_unsorted_input_gives_the_same_features(small_crm):
    history = small_crm.history()
    pairs = open_leads_at(history, pd.Timestamp("2025-03-01").to_pydatetime())
    shuffled = history.activities.sample(frac=1.0, random_state=1)
    variant = CrmHistory(history.leads.sample(frac=1.0, random_state=2), shuffled, history.stage_changes,
                         history.campaign_costs, history.as_of)
    pd.testing.assert_frame_equal(build_features(variant, pairs), build_features(history, pairs))


def test_labels_count_a_conversion_from_the_cutoff_to_the_end_of_the_horizon():
    stages = [
        (1, "lead", "2024-01-01 09:00"),
        (1, "mql", "2024-02-10"),
        (1, "sql", "2024-03-01 00:00:00"),
        (1, "opportunity", "2024-03-20"),
        (1, "customer", "2024-05-30 00:00:00"),  # exactly 90 days after the cutoff: outside the horizon
        (2, "lead", "2024-02-20 12:00"),
        (2, "mql", "2024-02-21"),
        (2, "customer", "2024-03-01 00:00:00"),  # at the cutoff: inside
    ]
    history = make_history([], stages)
    table = crm_feature_table(history, _pairs((1, CUTOFF), (2, CUTOFF)), horizon_days=90).frame.set_index("lead_id")
    assert table.loc[1, "stage_at_cutoff"] == "mql"
    assert not table.loc[1, "converted"]
    assert table.loc[1, "furthest_stage"] == "opportunity"
    assert table.loc[2, "converted"]
    assert table.loc[2, "furthest_stage"] == "customer"
    longer = crm_feature_table(history, _pairs((1, CUTOFF)), horizon_days=91).frame
    assert longer["converted"].iloc[0]


def test_labels_say_when_the_horizon_is_not_over():
    history = make_history([], [(1, "lead", "2024-01-01 09:00")], as_of="2024-04-01")
    table = crm_feature_table(history, _pairs((1, CUTOFF)), horizon_days=90)
    assert not table.frame["horizon_complete"].iloc[0]
    assert any("label may still change" in note for note in table.notes)
    assert crm_feature_table(history, _pairs((1, CUTOFF)), horizon_days=30).frame["horizon_complete"].iloc[0]


def test_open_leads_at_a_cutoff_exclude_closed_and_future_leads():
    leads = pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "created_at": np.array([_ts("2024-01-01"), _ts("2024-01-02"), _ts("2024-01-03"), _ts("2024-03-01")]),
            "channel": "ebook",
            "email_domain": "acme.com",
        }
    )
    stages = [
        (1, "lead", "2024-01-01"),
        (2, "lead", "2024-01-02"),
        (2, "disqualified", "2024-02-01"),  # closed before the cutoff
        (3, "lead", "2024-01-03"),
        (3, "customer", "2024-03-01"),  # closes at the cutoff: still open just before it
        (4, "lead", "2024-03-01"),  # created at the cutoff: not yet a lead
    ]
    history = make_history([], stages, leads=leads)
    pairs = open_leads_at(history, CUTOFF.to_pydatetime())
    assert pairs["lead_id"].tolist() == [1, 3]
    assert (pairs["cutoff"] == CUTOFF).all()


def test_mql_moments_use_the_first_qualification_even_when_mql_was_skipped():
    stages = [
        (1, "lead", "2024-01-01"),
        (1, "mql", "2024-01-10"),
        (1, "mql", "2024-02-10"),  # recycled and re-qualified: the first moment counts
        (2, "lead", "2024-02-20"),
        (2, "sql", "2024-02-25"),  # straight to SQL
    ]
    pairs = mql_moments(make_history([], stages))
    assert pairs.set_index("lead_id")["cutoff"].to_dict() == {
        1: pd.Timestamp("2024-01-10"),
        2: pd.Timestamp("2024-02-25"),
    }


def test_leads_before_sql_have_no_sales_side_events(small_crm):
    table = crm_feature_table(small_crm.history(), open_leads_at(small_crm.history(), pd.Timestamp("2025-03-01").to_pydatetime()))
    early = table.frame[table.frame["stage_at_cutoff"].isin(["lead", "mql"])]
    assert len(early) > 500
    assert (early["calls_ever"] == 0).all() and (early["meetings_ever"] == 0).all()
    later = table.frame[table.frame["stage_at_cutoff"].isin(["sql", "opportunity"])]
    assert (later["calls_ever"] > 0).all()


def test_unknown_activity_types_are_left_out_and_reported():
    history = make_history([(1, "2024-02-01", "page_view"), (1, "2024-02-02", "chatbot_message"), (1, "2024-02-03", "chatbot_message")])
    table = crm_feature_table(history, _pairs((1, CUTOFF)))
    assert table.frame["active_days_ever"].iloc[0] == 1
    assert any("chatbot_message (2)" in note for note in table.notes)


def test_unknown_leads_and_duplicated_ids_are_refused():
    history = make_history([])
    with pytest.raises(LeadscoreError, match="not in the CRM"):
        build_features(history, _pairs((9, CUTOFF)))
    doubled = make_history([], leads=pd.concat([history.leads, history.leads.iloc[:1]]))
    with pytest.raises(LeadscoreError, match="duplicated ids"):
        build_features(doubled, _pairs((1, CUTOFF)))


def test_no_pairs_give_an_empty_table_with_every_column():
    table = crm_feature_table(make_history([]), _pairs())
    assert len(table.frame) == 0
    assert set(CRM_FEATURES.names) <= set(table.frame.columns)


def test_registry_names_each_feature_once_in_business_words():
    frame = CRM_FEATURES.to_frame()
    assert frame["name"].is_unique and frame["label"].is_unique
    assert set(frame["family"]) == {"fit", "engagement"}
    assert (frame["description"].str.len() > 20).all()
    assert CRM_FEATURES["pricing_page_views_30d"].label == "Pricing-page views, last 30 days"
    assert CRM_FEATURES["seniority"].family == "fit"
    assert CRM_FEATURES["demo_requests_7d"].family == "engagement"
    sales_side = set(frame.loc[frame["sales_side"], "name"])
    assert sales_side == {f"{t}s_{w}" for t in ("call", "meeting") for w in ("7d", "30d", "90d", "ever")}
    assert "calls_ever" not in CRM_FEATURES.without_sales_side()
    assert FeatureRegistry.from_json(CRM_FEATURES.to_json()).to_frame().equals(frame)
    with pytest.raises(ValueError, match="twice"):
        CRM_FEATURES.add(CRM_FEATURES["seniority"])


def test_feature_table_round_trips_through_parquet(small_crm, tmp_path):
    history = small_crm.history()
    table = crm_feature_table(history, open_leads_at(history, pd.Timestamp("2025-01-01").to_pydatetime()), source="test")
    back = FeatureTable.read_parquet(table.to_parquet(tmp_path / "snapshot.parquet"))
    pd.testing.assert_frame_equal(back.frame, table.frame)
    assert back.registry.to_frame().equals(table.registry.to_frame())
    assert (back.id_column, back.target_column, back.time_column, back.source) == ("lead_id", "converted", "cutoff", "test")
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "plain.parquet")
    with pytest.raises(LeadscoreError, match="not a leadscore feature table"):
        FeatureTable.read_parquet(tmp_path / "plain.parquet")
    with pytest.raises(LeadscoreError, match="does not exist"):
        table.to_parquet(tmp_path / "missing" / "x.parquet")


def test_profile_categories_are_recoded_by_level_as_they_were_value_by_value():
    """The recoding through levels (fast for a lead scored alone) gives what building from the values gave,
    for text, numbers, missing values and a column with no value at all (which the API's fuzz run found)."""
    import warnings

    from leadscore.features.crm_features import _category

    rng = np.random.default_rng(1)
    many = [f"level {n}" for n in range(100)]  # more levels than a request's few: recoded through pandas
    for levels in (["b", "a", "c", None, "zz"], [1, 2, None], ["x", 3, None], [None], [*many, None]):
        values = pd.Series(rng.choice(np.array(levels, dtype=object), 200), dtype="category")
        for leading in ((), ("a", "c"), ("1",), ("level 7", "b")):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pandas warns of values outside the categories: that is the point
                expected = pd.Categorical(values.astype(object), categories=[
                    *leading, *sorted(set(map(str, values.cat.categories)) - set(leading))])
            got = _category(values, leading)
            assert list(got.categories) == list(expected.categories) and (got.codes == expected.codes).all()


def test_few_values_are_looked_up_and_categorised_as_pandas_does_many():
    """``Levels`` and ``as_category`` answer a few values (a request's lead) in Python and many through pandas:
    the same positions, levels and codes either way, for text, missing values and numbers in a text column."""
    from leadscore.arrays import FEW_VALUES, Levels, as_category

    rng = np.random.default_rng(3)
    levels = Levels(["web", "ads", "fair", "(other)"])
    pool = np.array(["web", "ads", "fair", "mail", None, np.nan, "", "Web"], dtype=object)
    for size in (0, 1, 5, FEW_VALUES, FEW_VALUES + 1, 500):
        values = rng.choice(pool, size)
        assert levels.positions_of(values).tolist() == levels.index.get_indexer(values).tolist()
        got = as_category(values)
        codes, expected = pd.factorize(values, sort=True)
        assert list(got.categories) == list(expected) and got.codes.tolist() == codes.tolist()
    mixed = np.array(["b", 3, None, "a"], dtype=object)  # not all text: pandas' own sort of mixed types
    codes, expected = pd.factorize(mixed, sort=True)
    assert list(as_category(mixed).categories) == list(expected) and as_category(mixed).codes.tolist() == codes.tolist()
