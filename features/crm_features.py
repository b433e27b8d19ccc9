"""The features built from a CRM, each registered once in ``CRM_FEATURES``.

Every function receives a ``Timeline`` (see ``timeline``) and returns one value
per (lead, cutoff) pair. Activity counts exist for every activity type and
window: ``pricing_page_views_30d`` is "Pricing-page views, last 30 days".
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import numpy as np
import pandas as pd

from leadscore.arrays import FEW_VALUES, category_type
from leadscore.crm.vocabulary import (
    ACTIVITY_BY_CODE,
    ACTIVITY_TYPES,
    CHANNEL_BY_CODE,
    COMPANY_SIZE_LABELS,
    COMPANY_SIZES,
    DEPARTMENT_LABELS,
    INDUSTRY_LABELS,
    SENIORITIES,
    SENIORITY_LABELS,
)
from leadscore.errors import LeadscoreError
from leadscore.features.registry import FeatureRegistry, FeatureSpec
from leadscore.features.timeline import DAY, DECAY_HALF_LIFE_DAYS, WINDOW_BY_SUFFIX, WINDOWS, Timeline, Window

CRM_FEATURES = FeatureRegistry()
feature = CRM_FEATURES.feature

FREE_EMAIL_DOMAINS = frozenset(
    {
        "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "ymail.com", "outlook.com",
        "hotmail.com", "hotmail.co.uk", "hotmail.fr", "live.com", "msn.com", "icloud.com", "me.com", "mac.com",
        "aol.com", "proton.me", "protonmail.com", "gmx.de", "gmx.net", "gmx.com", "web.de", "mail.com",
        "yandex.ru", "mail.ru", "qq.com", "163.com", "zoho.com", "orange.fr", "free.fr", "libero.it",
    }
)


# Activity of any kind, however measured (active days, decayed engagement, days since the last one).
OVERALL_ACTIVITY = ("marketing_activity", "Marketing activity overall")


def count_feature_name(activity_code: str, window: Window) -> str:
    return f"{activity_code}s_{window.suffix}"


def _category_sentence(template: str, labels: Mapping[str, str], missing: str) -> dict[str, str]:
    """Sentence templates of a category: known codes read by their labels, other values as they are."""
    known = {code: template.format(value=label) for code, label in labels.items()}
    return {"value": template, "missing": missing, **known}


# --- engagement: counts per activity type and window ------------------------------------


def _count(activity: str, window: Window, timeline: Timeline) -> np.ndarray:
    return timeline.count(activity, window)


for _activity in ACTIVITY_TYPES:
    for _window in WINDOWS:
        _period = (
            "since the lead was created" if _window.days is None else f"in the {_window.days} days before the cutoff"
        )
        CRM_FEATURES.add(
            FeatureSpec(
                name=count_feature_name(_activity.code, _window),
                label=f"{_activity.label}, {_window.label}",
                family="engagement",
                description=f"Number of {_activity.label.lower()} {_period}.",
                sales_side=_activity.sales_side,
                field_name=_activity.code,
                field_label=_activity.label,
                sentence={
                    "0": f"No {_activity.label.lower()} {_window.during}",
                    "1": f"{_activity.past} once {_window.during}",
                    "value": f"{_activity.past_count} {_window.during}",
                },
            ),
            partial(_count, _activity.code, _window),
        )

# --- engagement: recency -------------------------------------------------------------------

# The last element completes "Last ... 12 days ago" and "Never ...".
_RECENCY = (
    (
        "days_since_pricing_page_view",
        "Days since the last pricing-page view",
        ("pricing_page_view",),
        "viewed the pricing page",
    ),
    ("days_since_demo_request", "Days since the last demo request", ("demo_request",), "requested a demo"),
    (
        "days_since_free_trial_signup",
        "Days since the free-trial sign-up",
        ("free_trial_signup",),
        "signed up for a free trial",
    ),
    (
        "days_since_contact_form",
        "Days since the last contact-form submission",
        ("contact_form",),
        "filled in the contact form",
    ),
    (
        "days_since_webinar_attended",
        "Days since the last webinar attended",
        ("webinar_attendance",),
        "attended a webinar",
    ),
    ("days_since_email_click", "Days since the last e-mail click", ("email_click",), "clicked a link in an e-mail"),
    (
        "days_since_content_download",
        "Days since the last content download",
        ("whitepaper_download", "ebook_download", "case_study_download"),
        "downloaded a white paper, e-book or case study",
    ),
    ("days_since_last_activity", "Days since the last marketing activity", (), "active"),
)


def _days_since(activities: tuple[str, ...], timeline: Timeline) -> np.ndarray:
    return timeline.days_since_last(*activities)


def _recency_field(activities: tuple[str, ...]) -> tuple[str, str]:
    """The business field a recency feature belongs to: its activity's, or overall activity when it spans all."""
    if len(activities) == 1:
        return activities[0], ACTIVITY_BY_CODE[activities[0]].label
    if not activities:
        return OVERALL_ACTIVITY
    return "", ""  # several activity types: a field of its own


for _name, _label, _activities, _past in _RECENCY:
    _what = ", ".join(a.replace("_", " ") for a in _activities) or "any marketing activity"
    _field_name, _field_label = _recency_field(_activities)
    CRM_FEATURES.add(
        FeatureSpec(
            name=_name,
            label=_label,
            family="engagement",
            description=f"Days between the latest {_what} and the cutoff; empty if there was none.",
            field_name=_field_name,
            field_label=_field_label,
            sentence={
                "digits": "0",  # "12 days ago": a marketer counts whole days
                "0": f"Last {_past} today",
                "1": f"Last {_past} 1 day ago",
                "value": f"Last {_past} {{value}} days ago",
                "missing": f"Never {_past}",
            },
        ),
        partial(_days_since, _activities),
    )


@feature(
    label="Recent engagement (recent activities count most)",
    family="engagement",
    description=(
        "Marketing activities before the cutoff, each counting 1 on the day it happened and half as much "
        f"every {DECAY_HALF_LIFE_DAYS} days after."
    ),
    sentence={
        "0": "No marketing activity since becoming a lead",
        "digits": "1",
        "value": f"Recent engagement {{value}} (an activity today counts 1, half that {DECAY_HALF_LIFE_DAYS} days later)",
        "missing": "Recent engagement unknown",
    },
    field_name=OVERALL_ACTIVITY[0],
    field_label=OVERALL_ACTIVITY[1],
)
def engagement_decayed(timeline: Timeline) -> np.ndarray:
    return timeline.decayed


def _active_days(window: Window, timeline: Timeline) -> np.ndarray:
    return timeline.active_days[:, WINDOWS.index(window)]


for _suffix in ("30d", "90d", "ever"):
    _window = WINDOW_BY_SUFFIX[_suffix]
    CRM_FEATURES.add(
        FeatureSpec(
            name=f"active_days_{_suffix}",
            label=f"Days with activity, {_window.label}",
            family="engagement",
            description=f"Distinct days (UTC) with at least one marketing activity, {_window.label}.",
            field_name=OVERALL_ACTIVITY[0],
            field_label=OVERALL_ACTIVITY[1],
            sentence={
                "0": f"No marketing activity {_window.during}",
                "1": f"Active on 1 day {_window.during}",
                "value": f"Active on {{value}} days {_window.during}",
            },
        ),
        partial(_active_days, _window),
    )


@feature(
    label="Days since the lead was created",
    family="engagement",
    description="Age of the lead at the cutoff, in days.",
    sentence={
        "digits": "0",
        "0": "Became a lead today",
        "1": "Became a lead 1 day ago",
        "value": "Became a lead {value} days ago",
        "missing": "Lead creation date unknown",
    },
)
def lead_age_days(timeline: Timeline) -> np.ndarray:
    return (timeline.cutoff - timeline.created_at) / DAY


@feature(
    label="Lead source",
    family="engagement",
    kind="categorical",
    description="The channel that brought the lead in (first touch).",
    sentence=_category_sentence(
        "Lead source: {value}", {code: known.label for code, known in CHANNEL_BY_CODE.items()}, "Lead source unknown"
    ),
)
def channel(timeline: Timeline) -> pd.Categorical:
    return _category(timeline.profile["channel"], list(CHANNEL_BY_CODE))


# --- fit: who the lead is --------------------------------------------------------------------


@feature(
    label="Industry",
    family="fit",
    kind="categorical",
    description="Industry of the lead's company.",
    sentence=_category_sentence("Works in {value}", INDUSTRY_LABELS, "Industry unknown"),
)
def industry(timeline: Timeline) -> pd.Categorical:
    return _category(timeline.profile["industry"])


@feature(
    label="Company size",
    family="fit",
    kind="categorical",
    description="Employee band of the lead's company.",
    sentence=_category_sentence("Company size: {value} employees", COMPANY_SIZE_LABELS, "Company size unknown"),
)
def company_size(timeline: Timeline) -> pd.Categorical:
    return _category(timeline.profile["company_size"], COMPANY_SIZES)


@feature(
    label="Country",
    family="fit",
    kind="categorical",
    description="Country of the lead's company.",
    sentence={"value": "Country: {value}", "missing": "Country unknown"},
)
def country(timeline: Timeline) -> pd.Categorical:
    return _category(timeline.profile["country"])


@feature(
    label="Seniority",
    family="fit",
    kind="categorical",
    description="Seniority of the lead's job.",
    sentence=_category_sentence("Seniority: {value}", SENIORITY_LABELS, "Seniority unknown"),
)
def seniority(timeline: Timeline) -> pd.Categorical:
    return _category(timeline.profile["seniority"], SENIORITIES)


@feature(
    label="Department",
    family="fit",
    kind="categorical",
    description="Department of the lead's job.",
    sentence=_category_sentence("Department: {value}", DEPARTMENT_LABELS, "Department unknown"),
)
def department(timeline: Timeline) -> pd.Categorical:
    return _category(timeline.profile["department"])


@feature(
    label="Business e-mail address",
    family="fit",
    description="1 when the lead's e-mail domain is a company's, 0 for a free webmail domain; empty if unknown.",
    sentence={
        "1": "Uses a business e-mail address",
        "0": "Uses a free webmail address",
        "missing": "E-mail address unknown",
    },
)
def business_email(timeline: Timeline) -> np.ndarray:
    domain = timeline.profile["email_domain"].to_numpy(dtype=object)
    known = ~pd.isna(domain)
    # In Python, not through pandas' text methods: as fast on a million leads, and no fixed cost for one.
    free = np.fromiter((isinstance(value, str) and value.lower().strip() in FREE_EMAIL_DOMAINS for value in domain),
                       bool, len(domain))
    return np.where(known, (~free).astype(float), np.nan)


def _category(values: pd.Series, leading: tuple[str, ...] | list[str] = ()) -> pd.Categorical:
    """Categories in a stable order: the known vocabulary first, then the table's other levels sorted.

    ``values`` is a categorical column of the whole leads table, so every batch
    of pairs gets the same levels.
    """
    levels = values.cat.categories
    others = sorted(set(map(str, levels)) - set(leading))
    categories = [*leading, *others]
    # Recoded through the levels, not value by value: a lead scored alone would pay pandas' overhead per value.
    dtype = category_type(categories)
    if len(levels) <= FEW_VALUES:  # a request's few levels among a vocabulary of dozens: found without pandas
        position = {category: code for code, category in enumerate(categories)}
        recode = np.array([position.get(level, -1) for level in levels.tolist()], dtype=np.intp)
    else:
        recode = dtype.categories.get_indexer(levels)
    codes = values.cat.codes.to_numpy()
    recoded = np.full(len(codes), -1, dtype=np.int64)
    recoded[codes >= 0] = recode[codes[codes >= 0]]  # a column with no value at all has no level to index
    return pd.Categorical.from_codes(recoded, dtype=dtype)


def foreign_features(features) -> list[str]:
    """The names among ``features`` that the CRM's history does not provide (a flat table's columns)."""
    return [name for name in features if name not in CRM_FEATURES]


def require_crm_model(features, model: str, purpose: str) -> None:
    """Refuse a model of ``features`` the CRM cannot feed, naming its foreign columns; ``purpose`` says what
    needs a CRM model and what to do instead."""
    foreign = foreign_features(features)
    if foreign:
        raise LeadscoreError(
            f"{model} was trained on a table whose columns the CRM's history does not provide "
            f"({', '.join(map(repr, foreign[:5]))}{' ...' if len(foreign) > 5 else ''}): {purpose}"
        )
