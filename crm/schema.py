"""The CRM data model every connector maps onto.

Five kinds of record, one table each:

* ``leads``: who the lead is (profile) and where it came from (channel, campaign);
* ``activities``: what the lead did, one row per event, open-ended ``type``;
* ``stage_changes``: the funnel history, one row each time the stage changed;
* ``campaign_costs``: what each channel cost per month;
* ``lead_scores`` and ``lead_score_history``: the model's write-back.

All times are naive UTC at one-second resolution. On SQLite they are stored as
ISO 8601 text (``2024-03-01T09:30:00``) so that string comparison in SQL is time
comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

# --- vocabularies -----------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    code: str
    label: str
    rank: int  # position in the funnel; disqualified sits outside it (-1)


STAGES = (
    Stage("lead", "Lead", 0),
    Stage("mql", "MQL", 1),
    Stage("sql", "SQL", 2),
    Stage("opportunity", "Opportunity", 3),
    Stage("customer", "Customer", 4),
    Stage("disqualified", "Disqualified", -1),
)
STAGE_BY_CODE = {stage.code: stage for stage in STAGES}
FUNNEL_STAGES = tuple(stage for stage in STAGES if stage.rank >= 0)
CLOSED_STAGES = ("customer", "disqualified")


@dataclass(frozen=True)
class ActivityType:
    code: str
    label: str  # plural noun phrase used in feature labels: "Pricing-page views"
    past: str  # what the lead did, opening a sentence: "Viewed the pricing page"
    past_count: str  # the same with a count, {value} standing for the number: "Read {value} articles"
    sales_side: bool = False  # logged by sales, and only once a lead is sales-qualified


ACTIVITY_TYPES = (
    ActivityType("page_view", "Page views", "Viewed a web page", "Viewed {value} web pages"),
    ActivityType(
        "pricing_page_view", "Pricing-page views",
        "Viewed the pricing page", "Viewed the pricing page {value} times",
    ),
    ActivityType("article_read", "Articles read", "Read an article", "Read {value} articles"),
    ActivityType(
        "whitepaper_download", "White-paper downloads",
        "Downloaded a white paper", "Downloaded a white paper {value} times",
    ),
    ActivityType("ebook_download", "E-book downloads", "Downloaded an e-book", "Downloaded an e-book {value} times"),
    ActivityType(
        "case_study_download", "Case-study downloads",
        "Downloaded a case study", "Downloaded a case study {value} times",
    ),
    ActivityType(
        "newsletter_signup", "Newsletter sign-ups",
        "Signed up for the newsletter", "Signed up for the newsletter {value} times",
    ),
    ActivityType(
        "webinar_registration", "Webinar registrations",
        "Registered for a webinar", "Registered for {value} webinars",
    ),
    ActivityType("webinar_attendance", "Webinars attended", "Attended a webinar", "Attended {value} webinars"),
    ActivityType("email_open", "E-mails opened", "Opened an e-mail", "Opened {value} e-mails"),
    ActivityType(
        "email_click", "E-mail clicks",
        "Clicked a link in an e-mail", "Clicked links in e-mails {value} times",
    ),
    ActivityType(
        "contact_form", "Contact-form submissions",
        "Filled in the contact form", "Filled in the contact form {value} times",
    ),
    ActivityType("demo_request", "Demo requests", "Requested a demo", "Requested a demo {value} times"),
    ActivityType(
        "free_trial_signup", "Free-trial sign-ups",
        "Signed up for a free trial", "Signed up for a free trial {value} times",
    ),
    ActivityType(
        "social_interaction", "Social interactions",
        "Interacted on social media", "Interacted on social media {value} times",
    ),
    ActivityType("unsubscribe", "Unsubscribes", "Unsubscribed from e-mails", "Unsubscribed from e-mails {value} times"),
    ActivityType("call", "Sales calls", "Had a sales call", "Had {value} sales calls", sales_side=True),
    ActivityType("meeting", "Sales meetings", "Had a sales meeting", "Had {value} sales meetings", sales_side=True),
)
ACTIVITY_BY_CODE = {activity.code: activity for activity in ACTIVITY_TYPES}


@dataclass(frozen=True)
class Channel:
    code: str
    label: str


CHANNELS = (
    Channel("organic_search", "Organic search"),
    Channel("paid_search", "Paid search"),
    Channel("paid_social", "Paid social"),
    Channel("ebook", "E-book"),
    Channel("whitepaper", "White paper"),
    Channel("webinar", "Webinar"),
    Channel("demo_request", "Demo request"),
    Channel("free_trial", "Free trial"),
    Channel("referral", "Referral"),
    Channel("event", "Event"),
    Channel("outbound", "Outbound"),
    Channel("partner", "Partner"),
)
CHANNEL_BY_CODE = {channel.code: channel for channel in CHANNELS}

COMPANY_SIZES = ("1-10", "11-50", "51-200", "201-1000", "1001-5000", "5000+")
SENIORITIES = ("student", "individual_contributor", "manager", "director", "vp", "c_level")
TIERS = ("none", "mql", "sql")

# How the profile codes leadscore knows read in a sentence. A connector may
# store other values: those are shown as they are.
INDUSTRY_LABELS = {
    "software": "Software",
    "financial_services": "Financial services",
    "professional_services": "Professional services",
    "healthcare": "Healthcare",
    "manufacturing": "Manufacturing",
    "logistics": "Logistics",
    "media": "Media",
    "retail": "Retail",
    "government": "Government",
    "education": "Education",
}
COMPANY_SIZE_LABELS = {
    "1-10": "1-10",
    "11-50": "11-50",
    "51-200": "51-200",
    "201-1000": "201-1,000",
    "1001-5000": "1,001-5,000",
    "5000+": "5,000+",
}
SENIORITY_LABELS = {
    "student": "Student",
    "individual_contributor": "Individual contributor",
    "manager": "Manager",
    "director": "Director",
    "vp": "VP",
    "c_level": "C-level",
}
DEPARTMENT_LABELS = {
    "marketing": "Marketing",
    "sales": "Sales",
    "operations": "Operations",
    "it": "IT",
    "engineering": "Engineering",
    "finance": "Finance",
    "hr": "HR",
    "other": "Other",
}

# --- tables -----------------------------------------------------------------

Timestamp = sa.DateTime().with_variant(
    sqlite.DATETIME(
        storage_format="%(year)04d-%(month)02d-%(day)02dT%(hour)02d:%(minute)02d:%(second)02d",
        regexp=r"(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)",
    ),
    "sqlite",
)

metadata = sa.MetaData()


def _one_of(column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    allowed = ", ".join(f"'{value}'" for value in values)
    return sa.CheckConstraint(f"{column} IN ({allowed})", name=f"ck_{column}_known")


leads = sa.Table(
    "leads",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("channel", sa.String(40), nullable=False),
    sa.Column("campaign", sa.String(120)),
    sa.Column("company", sa.String(200)),
    sa.Column("industry", sa.String(60)),
    sa.Column("company_size", sa.String(20)),
    sa.Column("country", sa.String(60)),
    sa.Column("job_title", sa.String(120)),
    sa.Column("seniority", sa.String(40)),
    sa.Column("department", sa.String(60)),
    sa.Column("email_domain", sa.String(120)),
    sa.Column("lifecycle_stage", sa.String(20), nullable=False, server_default="lead"),
    sa.Column("owner", sa.String(120)),
    _one_of("lifecycle_stage", tuple(stage.code for stage in STAGES)),
    sa.Index("ix_leads_created_at", "created_at"),
)

# Activity types stay open-ended: a real CRM carries types of its own, which the
# feature layer counts in totals. A CHECK here would also halve SQLite insert speed.
activities = sa.Table(
    "activities",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("lead_id", sa.ForeignKey("leads.id"), nullable=False),
    sa.Column("occurred_at", Timestamp, nullable=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("detail", sa.String(200)),
    sa.Index("ix_activities_lead_time", "lead_id", "occurred_at"),
)

stage_changes = sa.Table(
    "stage_changes",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("lead_id", sa.ForeignKey("leads.id"), nullable=False),
    sa.Column("stage", sa.String(20), nullable=False),
    sa.Column("changed_at", Timestamp, nullable=False),
    _one_of("stage", tuple(stage.code for stage in STAGES)),
    sa.Index("ix_stage_changes_lead_time", "lead_id", "changed_at"),
)

campaign_costs = sa.Table(
    "campaign_costs",
    metadata,
    sa.Column("channel", sa.String(40), primary_key=True),
    sa.Column("month", sa.Date, primary_key=True),
    sa.Column("cost", sa.Numeric(14, 2), nullable=False),
    sa.CheckConstraint("cost >= 0", name="ck_cost_not_negative"),
)


def _score_columns() -> list[sa.Column]:
    return [
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("tier", sa.String(10), nullable=False),
        sa.Column("fit_score", sa.Float),
        sa.Column("engagement_score", sa.Float),
        sa.Column("reasons", sa.JSON),
        sa.Column("model_name", sa.String(120), nullable=False),
        sa.Column("model_version", sa.String(40), nullable=False),
        sa.Column("scored_at", Timestamp, nullable=False),
        sa.CheckConstraint("probability >= 0 AND probability <= 1"),
        _one_of("tier", TIERS),
    ]


lead_scores = sa.Table(
    "lead_scores",
    metadata,
    sa.Column("lead_id", sa.ForeignKey("leads.id"), primary_key=True),
    *_score_columns(),
)

lead_score_history = sa.Table(
    "lead_score_history",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("lead_id", sa.ForeignKey("leads.id"), nullable=False),
    *_score_columns(),
    sa.Index("ix_lead_score_history_lead_time", "lead_id", "scored_at"),
)

TABLES = tuple(metadata.sorted_tables)
TABLE_NAMES = tuple(table.name for table in TABLES)
