"""The CRM's vocabularies: funnel stages, activity types, channels, profile codes and score tiers.

Plain data, no database code: the feature layer, the models and every
connector read them; ``crm.schema`` builds the tables from them.
"""

from __future__ import annotations

from dataclasses import dataclass


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
