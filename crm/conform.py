"""Making a CRM's records conform to leadscore's data model, the same way for every command.

The funnel report, the feature layer and training all read the CRM through
these rules, so they can never disagree about what the CRM says:

* a lead without a channel is counted under ``(unknown)``, never dropped;
* each lead id appears once: duplicated ids are refused, never counted twice;
* a stage leadscore does not know (``won``) is mapped by the user's
  ``--map-stage won=customer`` or refused, never read as "no stage";
* ids must be whole numbers and times real dates: anything else is refused
  with the column, the number of rows and an example;
* activities and stage changes of leads that are not in ``leads`` are left
  out, with a note.

No database code here: the SQL reader, the simulator and any later
connector hand their frames to ``conform``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from leadscore.arrays import as_category, category_type
from leadscore.crm.vocabulary import STAGES
from leadscore.errors import LeadscoreError

UNKNOWN_CHANNEL = "(unknown)"
STAGE_CODES = tuple(stage.code for stage in STAGES)
STAGE_TYPE = category_type(STAGE_CODES)
# Earlier or later than this is a unit or format mistake (Julian days, milliseconds), not CRM history.
PLAUSIBLE_FROM = np.datetime64("1970-01-02", "s")
PLAUSIBLE_UNTIL = np.datetime64("2200-01-01", "s")
TIME_COLUMNS = {"leads": "created_at", "activities": "occurred_at", "stage_changes": "changed_at"}
STAGE_MAP_HINT = "--map-stage VALUE=STAGE"

Example = Callable[[str, str], tuple[int, object] | None]  # (table, column) -> (rows, an example raw value)


def parse_stage_map(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``("won=customer", "lost=disqualified")`` as a mapping, each target checked against leadscore's stages."""
    mapping = {}
    for pair in pairs:
        source, separator, target = pair.partition("=")
        source, target = source.strip(), target.strip().lower()
        if not separator or not source:
            raise LeadscoreError(f"--map-stage {pair!r}: write it as THEIR_STAGE=STAGE, e.g. --map-stage won=customer.")
        if target not in STAGE_CODES:
            raise LeadscoreError(f"--map-stage {pair!r}: {target!r} is not a leadscore stage; choose one of {', '.join(STAGE_CODES)}.")
        mapping[source] = target
    return mapping


def conform(
    leads: pd.DataFrame,
    activities: pd.DataFrame,
    stage_changes: pd.DataFrame,
    stage_map: Mapping[str, str] | None = None,
    bad_time_example: Example | None = None,
    rejects: list[tuple[int, str]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]:
    """The three frames made to follow leadscore's rules (module docstring), and notes on what was changed.

    Times arrive as seconds since the epoch (or datetimes), missing where the
    source could not read a date; ``bad_time_example`` fetches an unreadable
    raw value for the message.

    By default a bad row refuses the whole CRM, as a report or a training run
    must. Given a ``rejects`` list (the nightly job's), the leads concerned
    are left out instead, each appended as ``(lead id, reason)``, so that one
    bad record does not stop the scoring of every other lead.
    """
    strict = rejects is None
    notes: list[str] = []
    rejected: dict[int, str] = {}
    leads = leads.copy()
    ids, bad = _whole_numbers(leads["id"])
    if bad.any():
        if strict:
            raise _not_whole_error(leads["id"], bad, "leads", "id")
        notes.append(f"Left out {int(bad.sum()):,} leads whose id is not a whole number (e.g. {leads['id'][bad].iloc[0]!r}).")
        leads, ids = leads[~bad], ids[~bad]
    leads["id"] = ids.astype(np.int64)
    if len(leads) > 1 and not leads["id"].is_unique:
        duplicated = leads["id"][leads["id"].duplicated(keep=False)]
        if strict:
            examples = ", ".join(str(value) for value in duplicated.drop_duplicates().head(3))
            raise LeadscoreError(
                f"leads.id repeats {duplicated.nunique():,} lead ids on {len(duplicated):,} rows (e.g. {examples}): each "
                "lead must appear once, or it would be counted twice. Merge or delete the duplicated leads in the CRM, "
                "e.g. find them with SELECT id, count(*) FROM leads GROUP BY id HAVING count(*) > 1."
            )
        for lead, count in duplicated.value_counts().items():
            rejected.setdefault(int(lead), f"the lead id appears {count} times in leads: merge the duplicates")
        leads = leads[~leads["id"].duplicated(keep=False)]
    created, bad_created = _time_values(leads["created_at"])
    if bad_created.any():
        if strict:
            raise _bad_time_error(leads["created_at"], bad_created, "leads", "created_at", bad_time_example)
        for lead in leads["id"][bad_created]:
            rejected.setdefault(int(lead), "leads.created_at is not a timestamp between 1970 and 2200")
    leads["created_at"] = created
    leads["channel"] = known_channels(leads["channel"])

    frames = {}
    for table, frame in (("activities", activities), ("stage_changes", stage_changes)):
        frame = frame.copy()
        column = TIME_COLUMNS[table]
        lead_ids, bad = _whole_numbers(frame["lead_id"])
        if bad.any():
            if strict:
                raise _not_whole_error(frame["lead_id"], bad, table, "lead_id")
            notes.append(f"Left out {int(bad.sum()):,} {table.replace('_', ' ')} whose lead id is not a whole number "
                         f"(e.g. {frame['lead_id'][bad].iloc[0]!r}).")
            frame, lead_ids = frame[~bad], lead_ids[~bad]
        frame["lead_id"] = lead_ids.astype(np.int64)
        times, bad_times = _time_values(frame[column])
        if bad_times.any():
            if strict:
                raise _bad_time_error(frame[column], bad_times, table, column, bad_time_example)
            for lead in frame["lead_id"][bad_times].unique():
                rejected.setdefault(int(lead), f"its {table.replace('_', ' ')} include an {column} that is not a "
                                               "timestamp between 1970 and 2200")
        frame[column] = times
        orphans = ~frame["lead_id"].isin(leads["id"]).to_numpy()
        if orphans.any():
            notes.append(
                f"Left out {int(orphans.sum()):,} {table.replace('_', ' ')} of lead ids that are not in leads "
                f"(e.g. {frame['lead_id'][orphans].iloc[0]})."
            )
            frame = frame[~orphans]
        frames[table] = frame
    if rejected:
        out = pd.Index(list(rejected))
        leads = leads[~leads["id"].isin(out)]
        frames = {table: frame[~frame["lead_id"].isin(out)] for table, frame in frames.items()}
        rejects.extend(rejected.items())
    leads = leads.reset_index(drop=True)
    activities, stage_changes = (frames[table].reset_index(drop=True) for table in ("activities", "stage_changes"))
    stage_changes["stage"] = mapped_stages(stage_changes["stage"], stage_map or {}, "stage_changes.stage")
    if "lifecycle_stage" in leads.columns:
        # Never a feature, but shown: mapped by the same rule, unknown values kept as they are.
        lifecycle = leads["lifecycle_stage"].to_numpy(dtype=object)
        if stage_map:
            lifecycle = np.array([stage_map.get(value, value) for value in lifecycle.tolist()], dtype=object)
        leads["lifecycle_stage"] = as_category(lifecycle)
    return leads, activities, stage_changes, notes


def mapped_stages(stages: pd.Series, stage_map: Mapping[str, str], column: str) -> pd.Series:
    """Stages as leadscore's codes through ``stage_map``; unknown ones refused, naming them and the option."""
    if not len(stages):
        return pd.Series(pd.Categorical.from_codes(np.empty(0, np.int8), dtype=STAGE_TYPE), index=stages.index,
                         name=stages.name)
    values = stages.astype(object)
    if stage_map:
        values = values.map(lambda value: stage_map.get(value, value) if isinstance(value, str) else value)
    unknown = values[~values.isin(STAGE_CODES)]
    if len(unknown):
        counts = unknown.astype(str).value_counts()
        listing = ", ".join(f"{value!r} ({count:,} rows)" for value, count in counts.head(8).items())
        raise LeadscoreError(
            f"{column} holds {len(unknown):,} rows with stages leadscore does not know: {listing}. Map each onto "
            f"{', '.join(STAGE_CODES)} with {STAGE_MAP_HINT} (repeatable, e.g. --map-stage won=customer "
            "--map-stage lost=disqualified), or fix those rows in the CRM."
        )
    return values.astype(STAGE_TYPE)


def known_channels(channels: pd.Series) -> pd.Series:
    """The channels as categories, a missing or blank one as ``UNKNOWN_CHANNEL``."""
    text = channels.to_numpy(dtype=object, copy=True)
    blank = pd.isna(text) | np.fromiter((isinstance(value, str) and not value.strip() for value in text), bool, len(text))
    text[blank] = UNKNOWN_CHANNEL
    return pd.Series(as_category(text), index=channels.index, name=channels.name)


def _whole_numbers(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """The values as whole numbers (NaN where they are not), and which are not."""
    if pd.api.types.is_integer_dtype(values.dtype):
        return values, np.zeros(len(values), dtype=bool)
    numbers = pd.to_numeric(values, errors="coerce")
    bad = (numbers.isna() | (numbers != np.floor(numbers.fillna(0)))).to_numpy()
    return numbers.where(~bad), bad


def _not_whole_error(values: pd.Series, bad: np.ndarray, table: str, column: str) -> LeadscoreError:
    example = values[bad].iloc[0]
    what = "empty" if pd.isna(example) else f"not whole-number lead ids (e.g. {example!r})"
    return LeadscoreError(
        f"{table}.{column} holds {int(bad.sum()):,} of {len(values):,} values that are {what}: leadscore "
        "identifies leads by whole numbers. Fix or delete those rows, or map your CRM's ids onto numbers "
        "when loading it."
    )


def _time_values(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Seconds (or datetimes) as datetime64[s], and which values are unreadable or outside 1970-2200."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        # In arrays: a request's few times would pay pandas' fixed cost for each of six Series steps.
        raw = values.to_numpy(dtype="datetime64[s]")
        unreadable = np.isnat(raw)
        times = np.where(unreadable, np.datetime64(0, "s"), raw)
    else:
        numbers = pd.to_numeric(values, errors="coerce")
        unreadable = numbers.isna().to_numpy()
        times = numbers.fillna(0).to_numpy(dtype=np.int64).astype("datetime64[s]")
    bad = unreadable | (times < PLAUSIBLE_FROM) | (times >= PLAUSIBLE_UNTIL)
    return np.where(bad, np.datetime64("NaT", "s"), times), bad


def _bad_time_error(
    values: pd.Series, bad: np.ndarray, table: str, column: str, example: Example | None
) -> LeadscoreError:
    numbers = pd.to_numeric(values, errors="coerce") if not pd.api.types.is_datetime64_any_dtype(values.dtype) else None
    if numbers is not None and numbers.isna().any():
        found = example(table, column) if example is not None else None
        rows, sample = found if found else (int(numbers.isna().sum()), None)
        what = f" (e.g. {sample!r})" if sample is not None else ""
        return LeadscoreError(
            f"{table}.{column} holds {rows:,} values that are not timestamps{what}: leadscore reads ISO 8601 times "
            "such as 2024-03-01T09:30:00 (naive UTC). Fix or delete those rows."
        )
    first = values[bad].iloc[0]
    shown = np.datetime64(int(first), "s") if numbers is not None else first
    return LeadscoreError(
        f"{table}.{column} holds {int(bad.sum()):,} times outside 1970-2200 (e.g. {shown}): they are not dates in "
        "leadscore's format (numbers stored as days or milliseconds?). Store ISO 8601 times such as "
        "2024-03-01T09:30:00."
    )
