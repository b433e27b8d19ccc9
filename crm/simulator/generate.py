"""Draw a simulated CRM history, vectorised end to end (see ``card`` for the model).

Times are int64 seconds since the Unix epoch until the frames are assembled.
Every random draw happens in a fixed order, so a seed gives the same CRM.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pandas as pd

from leadscore.crm import vocabulary
from leadscore.crm.history import CrmHistory
from leadscore.crm.simulator import card, names
from leadscore.arrays import order_by_lead_and_time, segment_starts
from leadscore.errors import LeadscoreError
from leadscore.progress import Progress

DAY = 86_400
HAND_RAISE = 1_000_000  # points that cross any MQL threshold at once


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate: how many leads, over which months, from which seed."""

    leads: int = 20_000
    seed: int = 42
    months: int = 24
    start: date = card.DEFAULT_START
    first_lead_id: int = 1

    def __post_init__(self) -> None:
        if self.leads < 1:
            raise LeadscoreError(f"--leads must be at least 1, got {self.leads}.")
        if not 1 <= self.months <= 120:
            raise LeadscoreError(f"--months must be between 1 and 120, got {self.months}.")
        if self.start.day != 1:
            raise LeadscoreError(f"--start must be the first day of a month, got {self.start}.")

    @property
    def end(self) -> date:
        month = self.start.month - 1 + self.months
        return date(self.start.year + month // 12, month % 12 + 1, 1)


@dataclass(frozen=True)
class SimulatedCrm:
    """The tables of a simulated CRM, plus the hidden traits that drove it (never written)."""

    leads: pd.DataFrame
    activities: pd.DataFrame
    stage_changes: pd.DataFrame
    campaign_costs: pd.DataFrame
    hidden: pd.DataFrame  # lead_id, fit, intent
    start: datetime
    end: datetime

    def history(self) -> CrmHistory:
        """The same history a ``load_history`` of the written CRM returns, without the round trip."""
        latest = [self.leads["created_at"].max(), self.stage_changes["changed_at"].max()]
        if len(self.activities):
            latest.append(self.activities["occurred_at"].max())
        return CrmHistory(
            leads=self.leads,
            activities=self.activities,
            stage_changes=self.stage_changes,
            campaign_costs=self.campaign_costs.assign(
                month=pd.to_datetime(self.campaign_costs["month"]).astype("datetime64[s]")
            ),
            as_of=max(latest),
        )


def simulate(config: SimulationConfig, progress: Progress = Progress()) -> SimulatedCrm:
    """Draw a CRM history for ``config``; deterministic for a given seed."""
    rng = np.random.default_rng(config.seed)
    end = _seconds(config.end)
    with progress.task("Drawing leads and profiles", total=4) as advance:
        created = _creation_times(rng, config.leads, config.start, config.end)
        month = _months_since(created, config.start)
        channel = _channels(rng, month, config.months, config.start)
        advance(1)
        profile = _profiles(rng, channel)
        fit = _fit(profile)
        intent = rng.normal(np.array([c.intent for c in card.CHANNELS])[channel], 1.0)
        advance(1)
        events = _marketing_activities(rng, created, end, channel, fit, intent)
        advance(1)
        mql_at, junk_at = _mql_times(rng, events, profile, created, config.leads)
        funnel = _sales_funnel(rng, mql_at, junk_at, channel, fit, intent, end)
        sales = _sales_activities(rng, funnel, end)
        advance(1)
    with progress.task("Assembling tables", total=1) as advance:
        lead_ids = config.first_lead_id + np.arange(config.leads, dtype=np.int64)
        leads = _leads_frame(rng, lead_ids, created, channel, profile, funnel, config.start)
        activities = _activities_frame(rng, lead_ids, events, sales)
        stage_changes = _stage_frame(lead_ids, created, funnel)
        costs = _costs_frame(rng, channel, month, config)
        hidden = pd.DataFrame({"lead_id": lead_ids, "fit": fit, "intent": intent})
        advance(1)
    return SimulatedCrm(
        leads=leads,
        activities=activities,
        stage_changes=stage_changes,
        campaign_costs=costs,
        hidden=hidden,
        start=datetime.combine(config.start, datetime.min.time()),
        end=datetime.combine(config.end, datetime.min.time()),
    )


# --- time ---------------------------------------------------------------------


def _seconds(day: date) -> int:
    return int(np.datetime64(day, "s").astype(np.int64))


def _creation_times(rng: np.random.Generator, n: int, start: date, end: date) -> np.ndarray:
    days = np.arange(np.datetime64(start, "D"), np.datetime64(end, "D"))
    calendar_month = days.astype("datetime64[M]").astype(np.int64) % 12
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    progress_in_period = np.linspace(0.0, 1.0, len(days))
    weight = (
        np.array(card.MONTH_SEASONALITY)[calendar_month]
        * (1.0 + card.GROWTH * progress_in_period)
        * np.where(weekday >= 5, card.WEEKEND_WEIGHT, 1.0)
    )
    day = rng.choice(len(days), size=n, p=weight / weight.sum())
    hour = np.clip(rng.normal(13.0, 2.5, n), 0.0, 23.99)
    seconds = days[day].astype("datetime64[s]").astype(np.int64) + (hour * 3600).astype(np.int64)
    return np.sort(seconds)


def _months_since(seconds: np.ndarray, start: date) -> np.ndarray:
    months = seconds.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)
    return months - np.datetime64(start, "M").astype(np.int64)


def _calendar_month(seconds: np.ndarray) -> np.ndarray:
    """1 to 12."""
    return seconds.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64) % 12 + 1


# --- who the leads are -----------------------------------------------------------


def _draw(rng: np.random.Generator, probabilities: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One categorical draw per row, from the probability table row each row points to."""
    cumulative = np.cumsum(probabilities, axis=1)
    cumulative /= cumulative[:, -1:]
    u = rng.random(len(rows))
    return (u[:, None] > cumulative[rows]).sum(axis=1)


def _channels(rng: np.random.Generator, month: np.ndarray, months: int, start: date) -> np.ndarray:
    share = np.log([c.share for c in card.CHANNELS])
    drift = np.array([c.drift for c in card.CHANNELS])
    along = np.arange(months) / max(months - 1, 1)
    logits = share[None, :] + along[:, None] * drift[None, :]
    calendar_month = (np.datetime64(start, "M").astype(np.int64) + np.arange(months)) % 12 + 1
    event = [c.code for c in card.CHANNELS].index("event")
    in_season = np.isin(calendar_month, card.EVENT_SEASON_MONTHS)
    logits[in_season, event] += np.log(card.EVENT_SEASON_BOOST)
    probabilities = np.exp(logits)
    return _draw(rng, probabilities, month)


@dataclass(frozen=True)
class _Profile:
    company: np.ndarray  # index into the company pool
    company_name: np.ndarray  # of the pool
    company_domain: np.ndarray  # of the pool
    industry: np.ndarray
    size: np.ndarray
    country: np.ndarray
    seniority: np.ndarray
    department: np.ndarray
    free_email: np.ndarray


def _shares(table: dict) -> np.ndarray:
    return np.array([value[0] if isinstance(value, tuple) else value for value in table.values()])


def _effects(table: dict) -> np.ndarray:
    return np.array([value[1] for value in table.values()])


def _profiles(rng: np.random.Generator, channel: np.ndarray) -> _Profile:
    n = len(channel)
    first, end, sector, suffix = names.COMPANY_FIRST, names.COMPANY_STEM_END, names.COMPANY_SECOND, names.COMPANY_SUFFIX
    combinations = len(first) * len(end) * len(sector) * len(suffix)
    n_companies = min(max(1, round(n / 2.5)), combinations)  # every company name is distinct
    code = rng.choice(combinations, size=n_companies, replace=False)
    a, rest = np.divmod(code, len(end) * len(sector) * len(suffix))
    b, rest = np.divmod(rest, len(sector) * len(suffix))
    c, s = np.divmod(rest, len(suffix))
    stem = [f"{first[i]}{end[j]} {sector[k]}" for i, j, k in zip(a, b, c)]
    company_name = np.array([f"{head}{suffix[x]}" for head, x in zip(stem, s)], dtype=object)
    company_industry = rng.choice(len(card.INDUSTRIES), size=n_companies, p=_normalised(card.INDUSTRIES))
    company_size = rng.choice(len(card.COMPANY_SIZES), size=n_companies, p=_normalised(card.COMPANY_SIZES))
    company_country = rng.choice(len(card.COUNTRIES), size=n_companies, p=_normalised(card.COUNTRIES))
    countries = list(card.COUNTRIES)
    company_domain = np.array(
        [
            head.lower().replace(" ", "") + names.COUNTRY_TLD.get(countries[country], ".com")
            for head, country in zip(stem, company_country)
        ],
        dtype=object,
    )
    company = rng.integers(0, n_companies, n)

    # Senior people answer outbound and events more often than e-books.
    rank = np.arange(len(card.SENIORITIES)) - (len(card.SENIORITIES) - 1) / 2
    tilt = np.array([c.seniority_tilt for c in card.CHANNELS])
    seniority_table = np.log(_shares(card.SENIORITIES))[None, :] + 0.5 * tilt[:, None] * rank[None, :]
    seniority = _draw(rng, np.exp(seniority_table), channel)
    department = rng.choice(len(card.DEPARTMENTS), size=n, p=_normalised(card.DEPARTMENTS))
    student = seniority == list(card.SENIORITIES).index("student")
    department = np.where(student & (rng.random(n) < 0.7), list(card.DEPARTMENTS).index("other"), department)
    size = company_size[company]
    free_probability = np.where(
        student,
        card.FREE_EMAIL_STUDENT,
        np.where(size == 0, card.FREE_EMAIL_TINY_COMPANY, card.FREE_EMAIL_BASE),
    )
    free_email = rng.random(n) < free_probability
    return _Profile(
        company=company,
        company_name=company_name,
        company_domain=company_domain,
        industry=company_industry[company],
        size=size,
        country=company_country[company],
        seniority=seniority,
        department=department,
        free_email=free_email,
    )


def _normalised(table: dict) -> np.ndarray:
    shares = _shares(table)
    return shares / shares.sum()


def _fit(profile: _Profile) -> np.ndarray:
    return (
        _effects(card.INDUSTRIES)[profile.industry]
        + _effects(card.COMPANY_SIZES)[profile.size]
        + _effects(card.SENIORITIES)[profile.seniority]
        + _effects(card.DEPARTMENTS)[profile.department]
        + card.FREE_EMAIL_FIT * profile.free_email
    )


# --- what the leads do ----------------------------------------------------------


@dataclass(frozen=True)
class _Events:
    """Marketing activities sorted by lead, then time."""

    lead: np.ndarray  # lead index
    at: np.ndarray  # seconds
    type: np.ndarray  # index into vocabulary.ACTIVITY_TYPES
    detail: np.ndarray  # index into that type's detail vocabulary


TYPE_INDEX = {activity.code: i for i, activity in enumerate(vocabulary.ACTIVITY_TYPES)}


def _marketing_activities(
    rng: np.random.Generator,
    created: np.ndarray,
    end: int,
    channel: np.ndarray,
    fit: np.ndarray,
    intent: np.ndarray,
) -> _Events:
    n = len(created)
    drawn = [a for a in card.ACTIVITIES if a.timing != "derived"]
    base = np.array([a.base_rate for a in drawn])
    intent_loading = np.array([a.intent_loading for a in drawn])
    fit_loading = np.array([a.fit_loading for a in drawn])
    nurture = np.array([a.timing == "nurture" for a in drawn])
    alive_days = (end - created) / DAY
    nurture_months = np.minimum(alive_days / 30.0, card.NURTURE_MONTHS_MAX)
    rates = base[None, :] * np.exp(intent_loading[None, :] * intent[:, None] + fit_loading[None, :] * fit[:, None])
    rates[:, nurture] *= nurture_months[:, None]
    counts = rng.poisson(rates).ravel()
    lead = np.repeat(np.repeat(np.arange(n), len(drawn)), counts)
    kind = np.repeat(np.tile(np.arange(len(drawn)), n), counts)
    type_index = np.array([TYPE_INDEX[a.code] for a in drawn])[kind]

    decay = (
        card.JOURNEY_DECAY_DAYS
        * np.exp(-card.JOURNEY_DECAY_INTENT * intent)
        * np.exp(card.JOURNEY_DECAY_SPREAD * rng.standard_normal(n))
    )
    journey_offset = rng.exponential(card.JOURNEY_RISE_DAYS, len(lead)) + rng.exponential(1.0, len(lead)) * decay[lead]
    later = rng.random(len(lead)) < card.REENGAGEMENT_SHARE
    uniform_offset = rng.random(len(lead)) * alive_days[lead]
    nurture_offset = rng.random(len(lead)) * np.minimum(alive_days[lead], 30.0 * card.NURTURE_MONTHS_MAX)
    offset_days = np.where(nurture[kind], nurture_offset, np.where(later, uniform_offset, journey_offset))
    at = created[lead] + (offset_days * DAY).astype(np.int64)

    # The activity that created the lead happens at creation.
    first_activity = np.array(
        [TYPE_INDEX[c.first_activity] if c.first_activity else -1 for c in card.CHANNELS]
    )[channel]
    has_first = np.flatnonzero(first_activity >= 0)
    lead = np.concatenate([lead, has_first])
    at = np.concatenate([at, created[has_first]])
    type_index = np.concatenate([type_index, first_activity[has_first]])
    detail = _details(rng, type_index)

    # Attendance follows registration, on the webinar day, for the same webinar.
    registration = np.flatnonzero(type_index == TYPE_INDEX["webinar_registration"])
    a, b = card.WEBINAR_ATTEND_LOGIT
    attends = registration[rng.random(len(registration)) < _sigmoid(a + b * intent[lead[registration]])]
    low, high = card.WEBINAR_DELAY_DAYS
    webinar_day = at[attends] + (rng.uniform(low, high, len(attends)) * DAY).astype(np.int64)
    lead = np.concatenate([lead, lead[attends]])
    at = np.concatenate([at, webinar_day])
    type_index = np.concatenate([type_index, np.full(len(attends), TYPE_INDEX["webinar_attendance"])])
    detail = np.concatenate([detail, detail[attends]])

    keep = at < end
    lead, at, type_index, detail = lead[keep], at[keep], type_index[keep], detail[keep]
    order = order_by_lead_and_time(lead, at)
    lead, at, type_index, detail = lead[order], at[order], type_index[order], detail[order]
    return _stop_email_after_unsubscribe(_Events(lead, at, type_index, detail), n)


def _stop_email_after_unsubscribe(events: _Events, n: int) -> _Events:
    """Keep the first unsubscribe of each lead, and no e-mail after it."""
    is_unsubscribe = events.type == TYPE_INDEX["unsubscribe"]
    unsubscribed_at = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(unsubscribed_at, events.lead[is_unsubscribe], events.at[is_unsubscribe])
    email = np.isin(events.type, [TYPE_INDEX[code] for code in card.EMAIL_TYPES])
    first_unsubscribe = is_unsubscribe & (events.at == unsubscribed_at[events.lead])
    first_unsubscribe &= ~_repeats_previous(events.lead, first_unsubscribe)
    after = events.at > unsubscribed_at[events.lead]
    keep = ~(email & after) & (~is_unsubscribe | first_unsubscribe)
    return _Events(events.lead[keep], events.at[keep], events.type[keep], events.detail[keep])


def _repeats_previous(lead: np.ndarray, flag: np.ndarray) -> np.ndarray:
    """True where an earlier row of the same lead already carries ``flag``."""
    cumulative = np.cumsum(flag)
    before = np.concatenate([[0], cumulative])[segment_starts(lead)]
    return flag & (cumulative - before > 1)


def _details(rng: np.random.Generator, type_index: np.ndarray) -> np.ndarray:
    sizes = np.array([len(names.ACTIVITY_DETAILS[a.code]) for a in vocabulary.ACTIVITY_TYPES])
    return (rng.random(len(type_index)) * sizes[type_index]).astype(np.int64)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# --- the funnel ---------------------------------------------------------------------


def _fit_points(profile: _Profile) -> np.ndarray:
    senior = np.isin(profile.seniority, [list(card.SENIORITIES).index(s) for s in card.SENIOR_LEVELS])
    return (
        card.FIT_POINTS["business_email"] * ~profile.free_email
        + card.FIT_POINTS["senior"] * senior
        + card.FIT_POINTS["company_51_plus"] * (profile.size >= list(card.COMPANY_SIZES).index("51-200"))
    )


def _mql_times(
    rng: np.random.Generator, events: _Events, profile: _Profile, created: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """When marketing automation's points first reach the threshold; junk disqualifications."""
    points_by_type = np.zeros(len(vocabulary.ACTIVITY_TYPES), dtype=np.int64)
    for activity in card.ACTIVITIES:
        points_by_type[TYPE_INDEX[activity.code]] = (
            HAND_RAISE if activity.mql_points is None else activity.mql_points
        )
    points = points_by_type[events.type]
    running = np.cumsum(points)
    running -= np.concatenate([[0], running])[segment_starts(events.lead)]
    crossed = np.flatnonzero(running + _fit_points(profile)[events.lead] >= card.MQL_THRESHOLD)
    first = crossed[np.r_[True, events.lead[crossed][1:] != events.lead[crossed][:-1]]] if len(crossed) else crossed
    mql_at = np.full(n, -1, dtype=np.int64)
    mql_at[events.lead[first]] = events.at[first]

    student = profile.seniority == list(card.SENIORITIES).index("student")
    junk = student & profile.free_email & (rng.random(n) < card.JUNK_DISQUALIFY)
    junk_at = np.where(junk, created + _delay(rng, card.JUNK_DAYS, n), -1)
    mql_at[junk & ((mql_at < 0) | (junk_at < mql_at))] = -1
    junk_at[junk & (mql_at >= 0)] = -1
    return mql_at, junk_at


def _delay(rng: np.random.Generator, median_and_sigma: tuple[float, float], n: int) -> np.ndarray:
    median, sigma = median_and_sigma
    return (median * np.exp(sigma * rng.standard_normal(n)) * DAY).astype(np.int64)


def _solve_offset(x: np.ndarray, target: float) -> float:
    """The intercept b for which the mean of sigmoid(b + x) is ``target``."""
    if len(x) == 0:
        return float(np.log(target / (1 - target)))
    low, high = -30.0, 30.0
    for _ in range(60):
        middle = (low + high) / 2
        if _sigmoid(middle + x).mean() < target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


@dataclass(frozen=True)
class _Funnel:
    """Stage times per lead in seconds, -1 where the stage was not reached (before truncation)."""

    mql: np.ndarray
    sql: np.ndarray
    opportunity: np.ndarray
    customer: np.ndarray
    disqualified: np.ndarray
    close: np.ndarray  # when an opportunity closed, won or lost
    end: int


def _sales_funnel(
    rng: np.random.Generator,
    mql_at: np.ndarray,
    junk_at: np.ndarray,
    channel: np.ndarray,
    fit: np.ndarray,
    intent: np.ndarray,
    end: int,
) -> _Funnel:
    n = len(mql_at)
    screened_at = np.where(mql_at >= 0, mql_at + _delay(rng, card.SCREENING_DAYS, n), -1)
    sql_score = card.SQL_FIT * fit + card.SQL_INTENT * intent
    offset = np.zeros(n)
    is_mql = mql_at >= 0
    for code, channel_card in enumerate(card.CHANNELS):
        members = is_mql & (channel == code)
        offset[channel == code] = _solve_offset(sql_score[members], channel_card.mql_to_sql)
    accepted = is_mql & (rng.random(n) < _sigmoid(offset + sql_score))
    recycled = rng.random(n) < card.RECYCLE_SHARE
    sql_at = np.where(accepted, screened_at, -1)
    disqualified_at = np.where(is_mql & ~accepted & ~recycled, screened_at, junk_at)

    opportunity_score = card.OPPORTUNITY_FIT * fit + card.OPPORTUNITY_INTENT * intent
    opportunity_offset = _solve_offset(opportunity_score[accepted], card.OPPORTUNITY_RATE)
    next_at = sql_at + _delay(rng, card.OPPORTUNITY_DAYS, n)
    opened = accepted & (rng.random(n) < _sigmoid(opportunity_offset + opportunity_score))
    opportunity_at = np.where(opened, next_at, -1)
    disqualified_at = np.where(accepted & ~opened, next_at, disqualified_at)

    close_at = np.where(opened, opportunity_at + _delay(rng, card.CLOSE_DAYS, n), -1)
    q4 = np.isin(_calendar_month(np.maximum(close_at, 0)), (10, 11, 12))
    win_score = card.WIN_FIT * fit + card.WIN_INTENT * intent + card.Q4_WIN_BOOST * q4
    win_offset = _solve_offset(win_score[opened], card.WIN_RATE)
    won = opened & (rng.random(n) < _sigmoid(win_offset + win_score))
    customer_at = np.where(won, close_at, -1)
    disqualified_at = np.where(opened & ~won, close_at, disqualified_at)
    return _Funnel(mql_at, sql_at, opportunity_at, customer_at, disqualified_at, close_at, end)


def _reached(at: np.ndarray, end: int) -> np.ndarray:
    return (at >= 0) & (at < end)


def _sales_activities(rng: np.random.Generator, funnel: _Funnel, end: int) -> _Events:
    """Calls and meetings, all strictly after the lead became SQL."""
    sql = np.flatnonzero(_reached(funnel.sql, end))
    sql_at = funnel.sql[sql]
    first_call = sql_at + rng.integers(60, 3 * 3600, len(sql))
    follow_ups = rng.poisson(card.FOLLOW_UP_CALLS, len(sql))
    call_lead = np.repeat(sql, follow_ups)
    follow_up_at = np.repeat(sql_at, follow_ups) + rng.integers(3600, card.CALL_WINDOW_DAYS * DAY, len(call_lead))

    has_opportunity = funnel.opportunity[sql] >= 0
    meetings = np.where(
        has_opportunity,
        1 + rng.poisson(card.MEETINGS_WITH_OPPORTUNITY, len(sql)),
        rng.poisson(card.MEETINGS_WITHOUT_OPPORTUNITY, len(sql)),
    )
    window_end = np.where(has_opportunity, funnel.close[sql], sql_at + 14 * DAY)
    meeting_lead = np.repeat(sql, meetings)
    span = np.repeat(window_end - sql_at, meetings)
    meeting_at = np.repeat(sql_at, meetings) + 3600 + (rng.random(len(meeting_lead)) * span).astype(np.int64)

    lead = np.concatenate([sql, call_lead, meeting_lead])
    at = np.concatenate([first_call, follow_up_at, meeting_at])
    type_index = np.concatenate(
        [np.full(len(sql) + len(call_lead), TYPE_INDEX["call"]), np.full(len(meeting_lead), TYPE_INDEX["meeting"])]
    )
    keep = at < end
    return _Events(lead[keep], at[keep], type_index[keep], _details(rng, type_index[keep]))


# --- tables ----------------------------------------------------------------------------


def _categorical(codes: np.ndarray, categories) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=list(categories))


def _timestamps(seconds: np.ndarray) -> np.ndarray:
    return seconds.astype("datetime64[s]")


def _stage_frame(lead_ids: np.ndarray, created: np.ndarray, funnel: _Funnel) -> pd.DataFrame:
    parts = [(np.arange(len(created)), created, "lead")]
    for stage in ("mql", "sql", "opportunity", "customer", "disqualified"):
        at = getattr(funnel, stage)
        reached = np.flatnonzero(_reached(at, funnel.end))
        parts.append((reached, at[reached], stage))
    lead = np.concatenate([p[0] for p in parts])
    at = np.concatenate([p[1] for p in parts])
    codes = [stage.code for stage in vocabulary.STAGES]
    stage = np.concatenate([np.full(len(p[0]), codes.index(p[2])) for p in parts])
    order = order_by_lead_and_time(lead, at)
    return pd.DataFrame(
        {
            "lead_id": lead_ids[lead[order]],
            "stage": _categorical(stage[order], codes),
            "changed_at": _timestamps(at[order]),
        }
    )


def _leads_frame(
    rng: np.random.Generator,
    lead_ids: np.ndarray,
    created: np.ndarray,
    channel: np.ndarray,
    profile: _Profile,
    funnel: _Funnel,
    start: date,
) -> pd.DataFrame:
    n = len(lead_ids)
    channel_codes = [c.code for c in card.CHANNELS]
    seniority_codes = list(card.SENIORITIES)
    department_codes = list(card.DEPARTMENTS)

    titles = []
    for seniority in seniority_codes:
        for department in department_codes:
            if seniority == "c_level":
                titles.append(names.C_LEVEL_TITLE[department])
            else:
                titles.append(names.SENIORITY_TITLE[seniority].format(dept=names.DEPARTMENT_TITLE[department]))
    # Several (seniority, department) pairs share a title, e.g. every student is "Student".
    titles, title_of_pair = np.unique(titles, return_inverse=True)
    title_code = title_of_pair[profile.seniority * len(department_codes) + profile.department]

    free_domain = rng.integers(0, len(names.FREE_EMAIL_DOMAINS), n)
    email_domain = np.where(
        profile.free_email,
        np.asarray(names.FREE_EMAIL_DOMAINS, dtype=object)[free_domain],
        profile.company_domain[profile.company],
    )

    themes, theme_code = _campaigns(rng, channel, created)

    stage_codes = [stage.code for stage in vocabulary.STAGES]
    lifecycle = np.full(n, stage_codes.index("lead"))
    latest = np.full(n, -1, dtype=np.int64)
    for stage in ("mql", "sql", "opportunity", "customer", "disqualified"):
        at = getattr(funnel, stage)
        later = _reached(at, funnel.end) & (at >= latest)
        lifecycle[later] = stage_codes.index(stage)
        latest[later] = at[later]
    reached_mql = _reached(funnel.mql, funnel.end)
    reached_sql = _reached(funnel.sql, funnel.end)
    sdr = np.asarray(names.SDR_OWNERS, dtype=object)[rng.integers(0, len(names.SDR_OWNERS), n)]
    ae = np.asarray(names.AE_OWNERS, dtype=object)[rng.integers(0, len(names.AE_OWNERS), n)]
    owner = np.where(reached_sql, ae, np.where(reached_mql, sdr, None))

    return pd.DataFrame(
        {
            "id": lead_ids,
            "created_at": _timestamps(created),
            "channel": _categorical(channel, channel_codes),
            "campaign": _categorical(theme_code, themes),
            "company": profile.company_name[profile.company],
            "industry": _categorical(profile.industry, card.INDUSTRIES),
            "company_size": _categorical(profile.size, card.COMPANY_SIZES),
            "country": _categorical(profile.country, card.COUNTRIES),
            "job_title": _categorical(title_code, titles),
            "seniority": _categorical(profile.seniority, seniority_codes),
            "department": _categorical(profile.department, department_codes),
            "email_domain": email_domain,
            "lifecycle_stage": _categorical(lifecycle, stage_codes),
            "owner": owner,
        }
    )


def _campaigns(rng: np.random.Generator, channel: np.ndarray, created: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Campaign names: the channel's theme and the quarter, e.g. 'Webinar: From MQL to revenue 2024-Q3'."""
    month = created.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)
    year = 1970 + month // 12
    quarter = (month % 12) // 3 + 1
    quarters = np.unique(year * 10 + quarter)
    labels, offsets = [], {}
    for code, channel_card in enumerate(card.CHANNELS):
        offsets[code] = len(labels)
        for theme in names.CAMPAIGN_THEMES[channel_card.code]:
            labels.extend(f"{theme} {key // 10}-Q{key % 10}" for key in quarters)
    theme_count = np.array([len(names.CAMPAIGN_THEMES[c.code]) for c in card.CHANNELS])
    theme = (rng.random(len(channel)) * theme_count[channel]).astype(np.int64)
    quarter_position = np.searchsorted(quarters, year * 10 + quarter)
    base = np.array([offsets[code] for code in range(len(card.CHANNELS))])
    return labels, base[channel] + theme * len(quarters) + quarter_position


def _activities_frame(rng: np.random.Generator, lead_ids: np.ndarray, events: _Events, sales: _Events) -> pd.DataFrame:
    lead = np.concatenate([events.lead, sales.lead])
    at = np.concatenate([events.at, sales.at])
    type_index = np.concatenate([events.type, sales.type])
    detail = np.concatenate([events.detail, sales.detail])
    order = order_by_lead_and_time(lead, at)
    lead, at, type_index, detail = lead[order], at[order], type_index[order], detail[order]

    texts: list[str] = []
    position: dict[str, int] = {}
    widest = max(len(v) for v in names.ACTIVITY_DETAILS.values())
    lookup = np.zeros((len(vocabulary.ACTIVITY_TYPES), widest), dtype=np.int64)
    for t, activity in enumerate(vocabulary.ACTIVITY_TYPES):
        for d, text in enumerate(names.ACTIVITY_DETAILS[activity.code]):
            lookup[t, d] = position.setdefault(text, len(texts))
            if lookup[t, d] == len(texts):
                texts.append(text)
    return pd.DataFrame(
        {
            "lead_id": lead_ids[lead],
            "occurred_at": _timestamps(at),
            "type": _categorical(type_index, [a.code for a in vocabulary.ACTIVITY_TYPES]),
            "detail": _categorical(lookup[type_index, detail], texts),
        }
    )


def _costs_frame(
    rng: np.random.Generator, channel: np.ndarray, month: np.ndarray, config: SimulationConfig
) -> pd.DataFrame:
    n_channels = len(card.CHANNELS)
    volume = np.bincount(month * n_channels + channel, minlength=config.months * n_channels).reshape(
        config.months, n_channels
    )
    cost_per_lead = np.array([c.cost_per_lead for c in card.CHANNELS])
    noise = np.exp(card.COST_NOISE * rng.standard_normal((config.months, n_channels)))
    months = np.datetime64(config.start, "M") + np.arange(config.months)
    in_q4 = np.isin(months.astype(np.int64) % 12 + 1, (10, 11, 12))
    paid = np.isin([c.code for c in card.CHANNELS], card.PAID_MEDIA)
    markup = np.where(in_q4[:, None] & paid[None, :], card.Q4_PAID_MEDIA_MARKUP, 1.0)
    cost = np.round(volume * cost_per_lead[None, :] * noise * markup, 2)
    return pd.DataFrame(
        {
            "channel": np.tile([c.code for c in card.CHANNELS], config.months),
            "month": np.repeat(months.astype("datetime64[D]").astype(object), n_channels),
            "cost": cost.ravel(),
        }
    )
