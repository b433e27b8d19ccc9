"""Reading the dates of a flat lead table: one format per column, decided on all its values.

CRM exports write dates as 03/04/2025. Read value by value, a date column
comes out half day-first and half month-first. So each column gets one
format, chosen on every value, and where two formats fit the same values
differently leadscore says so instead of guessing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.errors import LeadscoreError


def _text(values: pd.Series) -> pd.Series:
    """Stripped text, missing kept missing, whatever the column's dtype (Parquet may hold mixed objects)."""
    if not isinstance(values.dtype, pd.StringDtype):
        values = values.where(values.notna()).map(str, na_action="ignore").astype("str")
    return values.str.strip()


def _rows(count: int, total: int) -> str:
    return f"{count:,} of {total:,} rows"


ISO = "ISO8601"  # pandas' own: 2024-03-01, 2024/03/01, 2024-03-01T10:00:00+01:00, 20240301
CLOCKS = ("", " %H:%M", " %H:%M:%S", " %H:%M:%S.%f", " %I:%M %p", " %I:%M:%S %p")
DATE_FORMATS = (ISO,) + tuple(
    f"{first}{separator}{second}{separator}{year}{clock}"
    for separator in "/-."
    for year in ("%Y", "%y")
    for first, second in (("%d", "%m"), ("%m", "%d"))
    for clock in CLOCKS
)
EPOCHS = ("s", "ms")  # seconds and milliseconds since 1970
# Epoch numbers are believed only between these: the number 2024 is a year, not 2024 s after 1970.
EPOCH_RANGE = (pd.Timestamp("1990-01-01"), pd.Timestamp("2100-01-01"))
SAMPLE = 200  # distinct values a format must read before it is tried on all of them


def _dates(text: pd.Series, date_format: str) -> pd.Series:
    if date_format in EPOCHS:
        numbers = pd.to_numeric(text, errors="coerce")
        times = pd.to_datetime(numbers.where(numbers.abs() < 1e14), unit=date_format, errors="coerce")
        return times.where((times >= EPOCH_RANGE[0]) & (times < EPOCH_RANGE[1]))
    if date_format == ISO:
        return pd.to_datetime(text, format=ISO, errors="coerce", utc=True).dt.tz_convert(None)
    return pd.to_datetime(text, format=date_format, errors="coerce")


def _candidates(distinct: pd.Series) -> list[str]:
    if distinct.str.fullmatch(r"\d+(\.\d+)?").all():
        return [*DATE_FORMATS, *EPOCHS]
    return list(DATE_FORMATS)


def _complete_formats(distinct: pd.Series) -> tuple[dict[str, pd.Series], str | None]:
    """Every format that reads all of ``distinct``, with its dates; else the format reading the most."""
    sample = distinct.iloc[:SAMPLE]
    complete, best, best_count = {}, None, 0
    for date_format in _candidates(distinct):
        read = _dates(sample, date_format).notna().sum()
        if read == len(sample):
            dates = _dates(distinct, date_format)
            if dates.notna().all():
                complete[date_format] = dates
        if read > best_count:
            best, best_count = date_format, read
    return complete, best


def looks_like_dates(values: pd.Series) -> bool:
    """Whether every value of a text column is a date in one of the formats leadscore knows (not epochs)."""
    distinct = pd.Series(_text(values).dropna().unique(), dtype="str")
    # Every date has a digit and a separator; this spares the formats' trials on ordinary text.
    if distinct.empty or not distinct.str.contains(r"\d\D").all():
        return False
    return bool(_complete_formats(distinct)[0])


def _day(moment: pd.Timestamp) -> str:
    clock = "" if moment == moment.normalize() else f" {moment:%H:%M}"
    return f"{moment.day} {moment:%B %Y}{clock}"


def read_times(values: pd.Series, column: str, source: str, time_format: str | None = None) -> pd.Series:
    """The time column as naive timestamps, read with ``time_format`` or the one format fitting every value."""
    if pd.api.types.is_datetime64_any_dtype(values):
        times = values.dt.tz_convert(None) if getattr(values.dt, "tz", None) is not None else values
    else:
        text = _text(values)
        if pd.api.types.is_numeric_dtype(values) and time_format:
            whole = values.dropna() % 1 == 0
            text = _text(values.astype("Int64")) if whole.all() else text
        times = _formatted(text, column, source, time_format) if time_format else _inferred(text, column, source)
    missing = int(times.isna().sum())
    if missing:
        raise LeadscoreError(
            f"The time column {column!r} is empty on {missing:,} of {len(values):,} rows of {source}: a forward-in-time "
            "split needs a date on every row. Fill or remove those rows, or leave out --time."
        )
    return times.reset_index(drop=True)


def _formatted(text: pd.Series, column: str, source: str, time_format: str) -> pd.Series:
    hint = "Write it in strftime codes, e.g. --time-format %d/%m/%Y for 31/12/2025."
    if "%" not in time_format:
        raise LeadscoreError(f"--time-format {time_format!r} holds no date code such as %d, %m or %Y. {hint}")
    try:
        times = pd.to_datetime(text, format=time_format, errors="coerce")
    except ValueError as error:
        raise LeadscoreError(f"--time-format {time_format!r} is not a date format ({error}). {hint}") from None
    unmatched = text.notna() & times.isna()
    if unmatched.any():
        raise LeadscoreError(
            f"The time column {column!r} of {source} does not match --time-format {time_format} on "
            f"{_rows(int(unmatched.sum()), len(text))} (e.g. {text[unmatched].iloc[0]!r}). Fix those rows, or give "
            "the format they are written in."
        )
    return times


def _inferred(text: pd.Series, column: str, source: str) -> pd.Series:
    distinct = pd.Series(text.dropna().unique(), dtype="str")
    if distinct.empty:
        return pd.Series(pd.NaT, index=text.index, dtype="datetime64[us]")
    complete, best = _complete_formats(distinct)
    if not complete:
        readable = _dates(distinct, best) if best else pd.Series(pd.NaT, index=distinct.index)
        unreadable = text.isin(distinct[readable.isna()])
        written = {ISO: "hold ISO dates such as 2024-03-01", "s": "are epoch seconds", "ms": "are epoch milliseconds"}
        written = written.get(best, f"are written {best}")
        fix = (
            f" (its other rows {written}). Fix those rows, or choose another --time column."
            if best
            else ". If it holds dates, give their format with --time-format (e.g. --time-format %d/%m/%Y); "
            "otherwise choose another --time column."
        )
        raise LeadscoreError(
            f"The time column {column!r} of {source} is not a date on {_rows(int(unreadable.sum()), len(text))}, "
            f"e.g. {text[unreadable].iloc[0]!r}{fix}"
        )
    formats = list(complete)
    reference = complete[formats[0]]
    disagree = np.zeros(len(distinct), dtype=bool)
    for date_format in formats[1:]:
        disagree |= (complete[date_format] != reference).to_numpy()
    if disagree.any():
        example = distinct[disagree].iloc[0]
        readings = " but ".join(f"{_day(complete[f][disagree].iloc[0])} with {f}" for f in formats)
        rows = int(text.isin(distinct[disagree]).sum())
        raise LeadscoreError(
            f"The time column {column!r} of {source} has {_rows(rows, len(text))} whose date depends on the "
            f"format: {example!r} is {readings}. Say which format the column uses with --time-format, "
            f"e.g. --time-format {formats[0]}."
        )
    dates = pd.Series(reference.to_numpy(), index=distinct.to_numpy())
    return pd.Series(text.map(dates).to_numpy(), index=text.index, dtype=reference.dtype)
