"""Data card of the simulated CRM: what is drawn, and what truly drives conversion.

Every number the simulator uses lives in this module, so that tests (and a
reader) can check a model against the truth.

The company
    A B2B software vendor selling to mid-market companies. Leads arrive through
    twelve channels over ``months`` months (24 by default, from 2024-01-01),
    mostly on working days, with a seasonal pattern (a summer and a December
    dip, autumn and spring peaks) and 35 % growth over the period. The channel
    mix drifts: paid social, webinars and free trials gain share, events,
    outbound and white papers lose it (``ChannelCard.drift``).

Each lead has two hidden traits
    * **fit**, the sum of the firmographic effects below (industry, company
      size, seniority, department, free e-mail domain). Country has no effect
      at all: it is the null driver a model must learn to ignore.
    * **intent**, drawn around its channel's mean (``ChannelCard.intent``)
      with unit spread. Intent is never stored; it shows only through what the
      lead does (``ActivityCard.intent_loading``).

Engagement builds up and decays
    Each marketing activity type is a Poisson count whose rate is
    ``base_rate * exp(intent_loading * intent + fit_loading * fit)``.
    "Journey" activities (page views, downloads, pricing visits...) happen
    at ``created_at + Exp(rise) + Exp(decay)``: a build-up over a few days,
    then a decay whose length is lead-specific (median ``JOURNEY_DECAY_DAYS``,
    shorter for high intent); ``REENGAGEMENT_SHARE`` of them come back at a
    uniform time later. "Nurture" activities (e-mail opens and clicks) come at
    a steady monthly rate for at most a year. A webinar attendance follows a
    registration, on the webinar day. An unsubscribe stops all e-mail after it.

The funnel (stage changes, in order)
    * **lead** at creation.
    * **MQL** when the marketing automation points (``mql_points`` per
      activity plus ``FIT_POINTS``) first reach ``MQL_THRESHOLD``, or at once
      on a hand-raise (demo request, free-trial sign-up, contact form).
      These points are the hand-set scoring the model must beat.
    * **SQL** after an SDR screening ``SCREENING_DAYS`` later, with
      probability ``sigmoid(offset[channel] + SQL_FIT * fit + SQL_INTENT * intent)``
      where each channel's offset is solved so that its MQL-to-SQL rate hits
      ``ChannelCard.mql_to_sql`` (an e-book MQL about 10 %, a demo request
      about 60 %). Screened MQLs that are not accepted are disqualified
      (``1 - RECYCLE_SHARE``) or recycled to nurture.
    * **opportunity** ``OPPORTUNITY_DAYS`` after SQL, overall rate
      ``OPPORTUNITY_RATE``, else disqualified.
    * **customer** ``CLOSE_DAYS`` after the opportunity, overall rate
      ``WIN_RATE`` (deals closing in Q4 win more: ``Q4_WIN_BOOST``), else
      disqualified (closed lost).
    * Students with a free e-mail address are often junk: ``JUNK_DISQUALIFY``
      of them are disqualified within days of creation.
    Nothing after the end of the simulated period is kept.

Sales-side events
    Calls and meetings are logged only from the moment a lead becomes SQL:
    a first call within hours of SQL, follow-up calls, and meetings
    (more of them when an opportunity is open). Any feature built on them
    before the cutoff of an un-qualified lead is leakage.

The true drivers of conversion (direction of effect on becoming a customer)
    * fit: ``INDUSTRIES``, ``COMPANY_SIZES``, ``SENIORITIES``,
      ``DEPARTMENTS`` effects below; ``FREE_EMAIL_FIT`` (negative).
    * intent, seen through activities with a positive ``intent_loading``:
      demo requests, free-trial sign-ups, contact forms, pricing-page views,
      webinar attendance and case studies most; unsubscribes are the strongest
      negative sign. E-mail opens, articles, e-books and social interactions
      carry little or no signal.
    * channel, through its mean intent.
    * no effect: country (``NULL_DRIVERS``).

Costs
    Each channel costs ``cost_per_lead`` per lead it brings, with month-to-month
    noise and dearer paid media in Q4.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

DEFAULT_START = date(2024, 1, 1)

# Lead volume by calendar month (January first), before growth.
MONTH_SEASONALITY = (0.95, 1.0, 1.1, 1.05, 1.0, 0.9, 0.8, 0.7, 1.1, 1.2, 1.1, 0.75)
GROWTH = 0.35
WEEKEND_WEIGHT = 0.3


@dataclass(frozen=True)
class ChannelCard:
    code: str
    share: float  # share of new leads at the start
    drift: float  # change of log-share from the first to the last month
    intent: float  # mean intent of the channel's leads
    mql_to_sql: float  # target MQL-to-SQL rate
    cost_per_lead: float  # in the CRM's currency
    first_activity: str | None  # the activity that created the lead, if any
    seniority_tilt: float  # shifts the audience towards (+) or away from (-) senior people


CHANNELS = (
    ChannelCard("organic_search", 0.19, -0.2, 0.0, 0.22, 30.0, "article_read", 0.0),
    ChannelCard("paid_search", 0.15, 0.1, 0.2, 0.25, 140.0, "page_view", 0.0),
    ChannelCard("paid_social", 0.07, 0.9, -0.5, 0.12, 90.0, "social_interaction", -0.2),
    ChannelCard("ebook", 0.13, 0.0, -0.6, 0.10, 60.0, "ebook_download", -0.3),
    ChannelCard("whitepaper", 0.07, -0.6, -0.3, 0.15, 70.0, "whitepaper_download", 0.1),
    ChannelCard("webinar", 0.08, 0.6, 0.0, 0.22, 85.0, "webinar_registration", 0.2),
    ChannelCard("demo_request", 0.05, 0.2, 1.5, 0.60, 160.0, "demo_request", 0.3),
    ChannelCard("free_trial", 0.06, 0.7, 1.0, 0.40, 110.0, "free_trial_signup", 0.0),
    ChannelCard("referral", 0.05, 0.0, 0.9, 0.45, 45.0, "page_view", 0.3),
    ChannelCard("event", 0.06, -0.8, 0.1, 0.20, 320.0, None, 0.3),
    ChannelCard("outbound", 0.06, -0.5, -0.2, 0.18, 190.0, None, 0.6),
    ChannelCard("partner", 0.03, 0.3, 0.6, 0.35, 120.0, None, 0.3),
)
CHANNEL_CARDS = {card.code: card for card in CHANNELS}
EVENT_SEASON_MONTHS = (3, 4, 9, 10)  # conference seasons: the event channel doubles
EVENT_SEASON_BOOST = 2.0

# Firmographics: (share of leads, effect on fit in log-odds).
INDUSTRIES = {
    "software": (0.22, 0.6),
    "financial_services": (0.12, 0.4),
    "professional_services": (0.12, 0.2),
    "healthcare": (0.09, 0.1),
    "manufacturing": (0.10, 0.0),
    "logistics": (0.06, 0.0),
    "media": (0.07, -0.1),
    "retail": (0.09, -0.2),
    "government": (0.05, -0.4),
    "education": (0.08, -0.5),
}
COMPANY_SIZES = {
    "1-10": (0.16, -1.0),
    "11-50": (0.20, -0.4),
    "51-200": (0.22, 0.2),
    "201-1000": (0.20, 0.6),
    "1001-5000": (0.13, 0.5),
    "5000+": (0.09, 0.1),
}
SENIORITIES = {
    "student": (0.07, -1.5),
    "individual_contributor": (0.35, -0.4),
    "manager": (0.27, 0.2),
    "director": (0.16, 0.6),
    "vp": (0.09, 0.8),
    "c_level": (0.06, 0.5),
}
DEPARTMENTS = {
    "marketing": (0.30, 0.5),
    "sales": (0.20, 0.4),
    "operations": (0.12, 0.2),
    "it": (0.10, 0.1),
    "engineering": (0.10, 0.0),
    "finance": (0.06, -0.1),
    "hr": (0.05, -0.5),
    "other": (0.07, -0.3),
}
COUNTRIES = {
    "United States": 0.38,
    "United Kingdom": 0.12,
    "Germany": 0.10,
    "France": 0.07,
    "Canada": 0.06,
    "India": 0.07,
    "Netherlands": 0.04,
    "Australia": 0.04,
    "Brazil": 0.04,
    "Spain": 0.03,
    "Sweden": 0.02,
    "Singapore": 0.03,
}
NULL_DRIVERS = ("country",)
FREE_EMAIL_FIT = -0.8
# Probability of a free e-mail address: students and very small companies use them most.
FREE_EMAIL_BASE = 0.10
FREE_EMAIL_STUDENT = 0.85
FREE_EMAIL_TINY_COMPANY = 0.45


@dataclass(frozen=True)
class ActivityCard:
    code: str
    base_rate: float  # expected count per lead at zero intent and fit (per month for nurture)
    intent_loading: float
    fit_loading: float
    timing: str  # "journey", "nurture" or "derived"
    mql_points: int | None  # None: a hand-raise, MQL at once


ACTIVITIES = (
    ActivityCard("page_view", 5.5, 0.15, 0.05, "journey", 1),
    ActivityCard("pricing_page_view", 0.5, 0.9, 0.2, "journey", 10),
    ActivityCard("article_read", 2.5, -0.1, 0.0, "journey", 2),
    ActivityCard("whitepaper_download", 0.25, 0.0, 0.15, "journey", 8),
    ActivityCard("ebook_download", 0.35, -0.2, -0.1, "journey", 8),
    ActivityCard("case_study_download", 0.15, 0.6, 0.2, "journey", 10),
    ActivityCard("newsletter_signup", 0.15, 0.05, 0.0, "journey", 5),
    ActivityCard("webinar_registration", 0.35, 0.25, 0.1, "journey", 5),
    ActivityCard("webinar_attendance", 0.0, 0.0, 0.0, "derived", 15),
    ActivityCard("email_open", 1.2, 0.05, 0.0, "nurture", 0),
    ActivityCard("email_click", 0.15, 0.35, 0.0, "nurture", 3),
    ActivityCard("contact_form", 0.04, 0.9, 0.2, "journey", None),
    ActivityCard("demo_request", 0.03, 1.2, 0.2, "journey", None),
    ActivityCard("free_trial_signup", 0.03, 1.0, 0.0, "journey", None),
    ActivityCard("social_interaction", 0.6, 0.0, 0.0, "journey", 2),
    ActivityCard("unsubscribe", 0.08, -0.9, 0.0, "journey", -15),
)
ACTIVITY_CARDS = {card.code: card for card in ACTIVITIES}
NURTURE_TYPES = ("email_open", "email_click")
EMAIL_TYPES = ("email_open", "email_click", "newsletter_signup")
NURTURE_MONTHS_MAX = 12
JOURNEY_RISE_DAYS = 3.0
JOURNEY_DECAY_DAYS = 25.0
JOURNEY_DECAY_SPREAD = 0.5  # sigma of the lognormal decay length
JOURNEY_DECAY_INTENT = 0.2  # high intent compresses the journey: decay * exp(-0.2 * intent)
REENGAGEMENT_SHARE = 0.12
WEBINAR_ATTEND_LOGIT = (-0.4, 0.8)  # attendance probability: sigmoid(a + b * intent)
WEBINAR_DELAY_DAYS = (2, 14)

# Marketing automation's MQL rule: the hand-set points teams use today.
FIT_POINTS = {"business_email": 10, "senior": 10, "company_51_plus": 10}
SENIOR_LEVELS = ("director", "vp", "c_level")
MQL_THRESHOLD = 65

# Sales stages: weights on the hidden traits, overall rates, delays (median days, lognormal sigma).
SQL_FIT = 1.0
SQL_INTENT = 0.8
RECYCLE_SHARE = 0.45
SCREENING_DAYS = (2.0, 0.8)
OPPORTUNITY_RATE = 0.5
OPPORTUNITY_FIT = 0.7
OPPORTUNITY_INTENT = 0.5
OPPORTUNITY_DAYS = (12.0, 0.6)
WIN_RATE = 0.33
WIN_FIT = 0.6
WIN_INTENT = 0.8
Q4_WIN_BOOST = 0.4
CLOSE_DAYS = (45.0, 0.5)
JUNK_DISQUALIFY = 0.5
JUNK_DAYS = (3.0, 0.5)

# Sales-side events.
FOLLOW_UP_CALLS = 1.5  # Poisson mean, within CALL_WINDOW_DAYS of SQL
CALL_WINDOW_DAYS = 30
MEETINGS_WITHOUT_OPPORTUNITY = 0.6
MEETINGS_WITH_OPPORTUNITY = 2.0  # Poisson mean on top of the first meeting

# Costs.
COST_NOISE = 0.15
Q4_PAID_MEDIA_MARKUP = 1.15
PAID_MEDIA = ("paid_search", "paid_social", "demo_request", "free_trial")
