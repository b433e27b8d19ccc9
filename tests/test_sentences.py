"""Sentences a marketer reads for one lead's value of one feature."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest

from leadscore.crm.vocabulary import CHANNELS
from leadscore.crm.simulator import card
from leadscore.features import CRM_FEATURES, FeatureRegistry, FeatureSpec
from leadscore.features.flat import ColumnRoles, flat_feature_table
from leadscore.features.sentences import describe, readable_number

MISSING = {"None": None, "NaN": np.nan, "pd.NA": pd.NA, "float32 NaN": np.float32("nan")}
TYPICAL_CATEGORY = {
    "channel": "webinar",
    "industry": "software",
    "company_size": "51-200",
    "country": "Germany",
    "seniority": "c_level",
    "department": "it",
}


@pytest.mark.parametrize(
    "number, written",
    [
        (1532, "1,532"),
        (1532.0, "1,532"),
        (4.0, "4"),
        (np.int32(2), "2"),
        (np.float32(2.5), "2.5"),
        (True, "1"),
        (np.bool_(False), "0"),
        (45.37, "45.4"),
        (0.012345, "0.0123"),
        (0.5, "0.5"),
        (9.996, "10"),
        (1234.56, "1,235"),
        (-1.84, "-1.84"),
        (float("inf"), "inf"),
    ],
)
def test_numbers_are_written_as_people_write_them(number, written):
    assert readable_number(number) == written


@pytest.mark.parametrize(
    "name, value, sentence",
    [
        ("pricing_page_views_30d", 4.0, "Viewed the pricing page 4 times in the last 30 days"),
        ("pricing_page_views_30d", 1, "Viewed the pricing page once in the last 30 days"),
        ("pricing_page_views_30d", 0, "No pricing-page views in the last 30 days"),
        ("pricing_page_views_30d", np.int32(1532), "Viewed the pricing page 1,532 times in the last 30 days"),
        ("ebook_downloads_ever", 2, "Downloaded an e-book 2 times since becoming a lead"),
        ("article_reads_7d", 3, "Read 3 articles in the last 7 days"),
        ("article_reads_7d", 1, "Read an article once in the last 7 days"),
        ("webinar_attendances_90d", 0, "No webinars attended in the last 90 days"),
        ("calls_30d", 3, "Had 3 sales calls in the last 30 days"),
        ("meetings_ever", 0, "No sales meetings since becoming a lead"),
        ("days_since_pricing_page_view", 12.0, "Last viewed the pricing page 12 days ago"),
        ("days_since_pricing_page_view", 1.0, "Last viewed the pricing page 1 day ago"),
        ("days_since_pricing_page_view", 0.42, "Last viewed the pricing page today"),
        ("days_since_pricing_page_view", np.nan, "Never viewed the pricing page"),
        ("days_since_content_download", None, "Never downloaded a white paper, e-book or case study"),
        ("days_since_last_activity", 3.0, "Last active 3 days ago"),
        ("active_days_30d", 5, "Active on 5 days in the last 30 days"),
        ("active_days_30d", 1, "Active on 1 day in the last 30 days"),
        ("active_days_ever", 0, "No marketing activity since becoming a lead"),
        ("engagement_decayed", 2.3712, "Recent engagement 2.4 (an activity today counts 1, half that 14 days later)"),
        ("engagement_decayed", 1.0, "Recent engagement 1 (an activity today counts 1, half that 14 days later)"),
        ("engagement_decayed", 0.0, "No marketing activity since becoming a lead"),
        ("lead_age_days", 45.0, "Became a lead 45 days ago"),
        ("lead_age_days", 1.0, "Became a lead 1 day ago"),
        ("lead_age_days", 1532.2, "Became a lead 1,532 days ago"),
        ("lead_age_days", 45.37, "Became a lead 45 days ago"),
        ("days_since_demo_request", 0.6, "Last requested a demo 1 day ago"),
        ("channel", "webinar", "Lead source: Webinar"),
        ("channel", "organic_search", "Lead source: Organic search"),
        ("channel", "podcast", "Lead source: podcast"),
        ("channel", None, "Lead source unknown"),
        ("industry", "software", "Works in Software"),
        ("industry", "financial_services", "Works in Financial services"),
        ("industry", "Aerospace", "Works in Aerospace"),
        ("industry", pd.NA, "Industry unknown"),
        ("company_size", "51-200", "Company size: 51-200 employees"),
        ("company_size", "1001-5000", "Company size: 1,001-5,000 employees"),
        ("company_size", np.nan, "Company size unknown"),
        ("country", "Germany", "Country: Germany"),
        ("country", None, "Country unknown"),
        ("seniority", "c_level", "Seniority: C-level"),
        ("seniority", "vp", "Seniority: VP"),
        ("seniority", "director", "Seniority: Director"),
        ("seniority", None, "Seniority unknown"),
        ("department", "it", "Department: IT"),
        ("department", None, "Department unknown"),
        ("business_email", 1.0, "Uses a business e-mail address"),
        ("business_email", 0.0, "Uses a free webmail address"),
        ("business_email", True, "Uses a business e-mail address"),
        ("business_email", np.nan, "E-mail address unknown"),
    ],
)
def test_crm_features_read_as_sentences(name, value, sentence):
    assert describe(CRM_FEATURES[name], value) == sentence


def test_every_categorical_crm_feature_has_a_typical_value_here():
    categorical = {spec.name for spec in CRM_FEATURES if spec.kind == "categorical"}
    assert categorical == set(TYPICAL_CATEGORY)


@pytest.mark.parametrize("spec", list(CRM_FEATURES), ids=lambda spec: spec.name)
@pytest.mark.parametrize("case", ["typical", "zero", *MISSING])
def test_every_crm_feature_reads_as_a_sentence(spec, case):
    value = {"typical": TYPICAL_CATEGORY.get(spec.name, 3.0), "zero": 0, **MISSING}[case]
    sentence = describe(spec, value)
    assert sentence and sentence[0].isupper()
    assert spec.name not in sentence and "_" not in sentence
    assert "{" not in sentence and not sentence.endswith(".")


@pytest.mark.parametrize(
    "name, codes",
    [
        ("channel", [channel.code for channel in CHANNELS]),
        ("industry", list(card.INDUSTRIES)),
        ("company_size", list(card.COMPANY_SIZES)),
        ("seniority", list(card.SENIORITIES)),
        ("department", list(card.DEPARTMENTS)),
    ],
)
def test_every_code_the_simulator_writes_reads_by_its_label(name, codes):
    for code in codes:
        assert code in CRM_FEATURES[name].sentence
        assert "_" not in describe(CRM_FEATURES[name], code)


@pytest.mark.parametrize(
    "column, value, sentence",
    [
        ("Total Time Spent on Website", 1532.0, "Total Time Spent on Website: 1,532"),
        ("Total Time Spent on Website", 12.345, "Total Time Spent on Website: 12.3"),
        ("Total Time Spent on Website", np.nan, "Total Time Spent on Website: unknown"),
        ("Lead Source", "Google", "Lead Source: Google"),
        ("Lead Source", "Unseen source", "Lead Source: Unseen source"),
        ("Lead Source", None, "Lead Source: unknown"),
        ("emp.var.rate", -1.8, "Emp var rate: -1.8"),
    ],
)
def test_flat_table_features_read_as_label_and_value(column, value, sentence):
    frame = pd.DataFrame(
        {
            "id": range(4),
            "converted": [0, 1, 0, 1],
            "Total Time Spent on Website": [1532.0, None, 0.0, 12.5],
            "Lead Source": ["Google", "Referral", None, "Google"],
            "emp.var.rate": [-1.8, 1.1, 1.4, -1.8],
        }
    )
    registry = flat_feature_table(frame, ColumnRoles(id="id", target="converted")).registry
    assert registry[column].sentence is None
    assert describe(registry[column], value) == sentence


def test_templates_travel_with_the_registry_through_json_and_pickle():
    back_from_json = FeatureRegistry.from_json(CRM_FEATURES.to_json())
    back_from_pickle = pickle.loads(pickle.dumps(CRM_FEATURES.without_sales_side()))
    for back in (back_from_json, back_from_pickle):
        for spec in back:
            assert spec == CRM_FEATURES[spec.name]
            assert describe(spec, 2) == describe(CRM_FEATURES[spec.name], 2)
    assert describe(back_from_json["seniority"], "c_level") == "Seniority: C-level"


def test_specs_saved_before_sentences_existed_still_load_and_read_plainly():
    spec = FeatureSpec("visits", "Website visits", "engagement", "Visits before the cutoff.")
    saved = [{key: value for key, value in vars(spec).items() if key != "sentence"}]
    from_json = FeatureRegistry.from_json(json.dumps(saved))
    from_old_pickle = object.__new__(FeatureSpec)
    vars(from_old_pickle).update(saved[0])  # what unpickling a spec saved without the field does
    for old in (from_json["visits"], from_old_pickle):
        assert describe(old, 3.0) == "Website visits: 3"
        assert describe(old, None) == "Website visits: unknown"


def test_the_feature_decorator_attaches_sentences_and_specs_stay_hashable():
    registry = FeatureRegistry()

    @registry.feature(
        label="Demo requests",
        family="engagement",
        description="Demo requests before the cutoff.",
        sentence={"0": "No demo requests", "1": "Requested a demo once", "value": "Requested {value} demos"},
    )
    def demo_requests(timeline):
        return timeline

    spec = registry["demo_requests"]
    assert [describe(spec, n) for n in (0, 1, 2.0, None)] == [
        "No demo requests",
        "Requested a demo once",
        "Requested 2 demos",
        "Demo requests: unknown",
    ]
    assert len({spec, *CRM_FEATURES}) == len(CRM_FEATURES) + 1
    assert list(registry.to_frame().columns) == ["name", "label", "family", "kind", "sales_side", "description", "field_name"]
