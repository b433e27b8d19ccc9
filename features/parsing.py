"""Reading the dates and numbers of a flat lead table: one reading per column, decided on all its values.

CRM exports write dates as 03/04/2025 and numbers as 1.234,56, with '?' for
unknown. Read value by value, a date column comes out half day-first and half
month-first, and a numeric column with three placeholders becomes a category
of a thousand levels. So each column gets one format, chosen on every value,
and where two formats fit the same values differently leadscore says so
instead of guessing.

A numeric column's reading (decimal mark, placeholders read as missing)
travels with the model in a ``ReadingRule``: scoring reads new rows exactly
as training read its table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from leadscore.errors import LeadscoreError

POINT, COMMA = ".", ","
# A number as exports write it with each decimal mark. Thousands groups never start with 0, so that
# 0,125 and 0.125 can only be decimals.
NUMBER_PATTERNS = {
    POINT: re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d*)?"),
    COMMA: re.compile(r"[+-]?(?:\d+,?\d*|,\d+)|[+-]?[1-9]\d{0,2}(?:\.\d{3})+(?:,\d*)?"),
}
MARK_NAMES = {POINT: "decimal points", COMMA: "decimal commas"}
# A column is numeric with a few placeholders when at least this share of its values are numbers and the
# rest are at most this many distinct tokens without digits: '?', '-', 'unknown'. A token with a digit ('65+')
# carries information, so it is never read as missing unless the user says so with --na-value.
NUMBER_SHARE = 0.95
MAX_PLACEHOLDERS = 5
MOSTLY_NUMBERS = 0.5  # below this share a column is text, and nothing about numbers needs saying


def _text(values: pd.Series) -> pd.Series:
    """Stripped text, missing kept missing, whatever the column's dtype (Parquet may hold mixed objects)."""
    if not isinstance(values.dtype, pd.StringDtype):
        values = values.where(values.notna()).map(str, na_action="ignore").astype("str")
    return values.str.strip()


def _rows(count: int, total: int) -> str:
    return f"{count:,} of {total:,} rows"


DOT_GROUPED = r"^[+-]?[1-9]\d{0,2}\.\d{3}$"  # 1.234: a decimal point, or a thousands dot with decimal commas
LONGEST_DOT_GROUPED = len("-123.456")


def _plain_numbers(text: pd.Series, decimal: str) -> pd.Series | None:
    """The same reading as ``_numbers`` when every value is a plain number (12, -0.5, 3e4); else None.

    Reading a million-row, forty-column export value by value through
    regular expressions took minutes, yet nearly every numeric column of a
    real export is plain numbers, which Arrow's cast checks and reads in C++.
    A plain number has no comma, so with decimal commas it reads only when
    it is whole or its one dot groups thousands (1.234).
    """
    array = pa.array(text, type=pa.string(), from_pandas=True)
    try:
        point = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        return None
    present = ~pd.isna(text).to_numpy()
    if not np.isfinite(point[present]).all():
        return None  # 'nan', 'inf' and '1e999' are not numbers an export writes: the exact reading decides
    if decimal == POINT:
        return pd.Series(point, index=text.index, dtype=float)
    has_dot = pc.match_substring(array, ".").to_numpy(zero_copy_only=False)
    has_exponent = pc.match_substring(array, "e", ignore_case=True).to_numpy(zero_copy_only=False)
    whole = present & ~np.asarray(has_dot, dtype=bool) & ~np.asarray(has_exponent, dtype=bool)
    comma = np.where(whole, point, np.nan)
    short = np.flatnonzero(present & np.asarray(has_dot, dtype=bool)
                           & (pc.utf8_length(array).to_numpy(zero_copy_only=False) <= LONGEST_DOT_GROUPED))
    if len(short):  # only a short value can group thousands: "0.123456" never does
        candidates = array.take(pa.array(short))
        grouped = np.asarray(pc.match_substring_regex(candidates, DOT_GROUPED).to_numpy(zero_copy_only=False), dtype=bool)
        digits = pc.cast(pc.replace_substring(candidates.filter(pa.array(grouped)), ".", ""), pa.float64())
        comma[short[grouped]] = digits.to_numpy(zero_copy_only=False)
    return pd.Series(comma, index=text.index, dtype=float)


def _numbers(text: pd.Series, decimal: str) -> pd.Series:
    """``text`` read as numbers written with ``decimal``; NaN where a value is not such a number."""
    plain = _plain_numbers(text, decimal)
    if plain is not None:
        return plain
    # Each distinct value once: columns repeat their values, and reading text as numbers is the slow part.
    codes, distinct = pd.factorize(text)
    distinct = pd.Series(distinct, dtype="str")
    written = distinct.where(distinct.str.fullmatch(NUMBER_PATTERNS[decimal]).fillna(False).astype(bool))
    grouping = COMMA if decimal == POINT else POINT
    plain = written.str.replace(grouping, "", regex=False)
    if decimal == COMMA:
        plain = plain.str.replace(COMMA, POINT, regex=False)
    numbers = np.append(pd.to_numeric(plain, errors="coerce").to_numpy(dtype=float), np.nan)
    return pd.Series(numbers[codes], index=text.index)  # code -1, a missing value, picks the NaN at the end


def _counted(values: pd.Series, shown: int = MAX_PLACEHOLDERS) -> str:
    counts = values.value_counts()
    listed = ", ".join(f"{value!r} ×{count:,}" for value, count in counts.head(shown).items())
    return listed + (f" and {len(counts) - shown:,} more" if len(counts) > shown else "")


@dataclass(frozen=True)
class NumberFormat:
    """How one column writes its numbers: the decimal mark, and the placeholders meaning unknown ('?')."""

    decimal: str = POINT
    missing: tuple[str, ...] = ()

    def read(self, values: pd.Series) -> tuple[pd.Series, pd.Series]:
        """The values as floats, and which of them are neither numbers nor placeholders."""
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            return values.astype(float), pd.Series(False, index=values.index)
        text = _text(values)
        numbers = _numbers(text, self.decimal)
        return numbers, text.notna() & numbers.isna() & ~text.isin(self.missing)

    def describe(self) -> str:
        placeholders = f", {' and '.join(map(repr, self.missing))} as missing" if self.missing else ""
        return f"{MARK_NAMES[self.decimal]}{placeholders}"


@dataclass(frozen=True)
class ReadingRule:
    """How training read its table's text, so that scoring reads new rows the same way.

    ``na_values`` are the values read as missing in every text column
    (``--na-value``); ``numbers`` the format of each numeric column.
    """

    na_values: tuple[str, ...] = ()
    numbers: dict[str, NumberFormat] = field(default_factory=dict, hash=False)

    def apply(self, frame: pd.DataFrame, source: str, used: Iterable[str] | None = None) -> pd.DataFrame:
        """``frame`` with its missing markers as missing and its numeric columns (those ``used``) read as numbers.

        A value that is neither a number nor one of the placeholders training
        read as missing is refused: guessing it would score the lead wrongly.
        A column the model does not use is left as it is, whatever it holds.
        """
        frame = missing_as_nan(frame, self.na_values)
        used = set(frame.columns if used is None else used) & set(frame.columns)
        columns = {}
        for column, number_format in self.numbers.items():
            if column not in used:
                continue
            numbers, unreadable = number_format.read(frame[column])
            if unreadable.any():
                raise LeadscoreError(
                    f"Column {column!r} of {source} is not a number on {_rows(int(unreadable.sum()), len(frame))} "
                    f"(e.g. {frame[column][unreadable].iloc[0]!r}); the model was trained reading it with "
                    f"{number_format.describe()}. Fix those values or leave them empty."
                )
            columns[column] = numbers
        return frame.assign(**columns)

    def to_json(self) -> dict:
        return {"na_values": list(self.na_values), "numbers": {c: asdict(f) for c, f in self.numbers.items()}}

    @classmethod
    def from_json(cls, about: dict) -> ReadingRule:
        numbers = {c: NumberFormat(f["decimal"], tuple(f["missing"])) for c, f in about.get("numbers", {}).items()}
        return cls(tuple(about.get("na_values", ())), numbers)


def missing_as_nan(frame: pd.DataFrame, na_values: tuple[str, ...]) -> pd.DataFrame:
    if not na_values:
        return frame
    text = [c for c in frame.columns if pd.api.types.is_object_dtype(frame[c]) or pd.api.types.is_string_dtype(frame[c])]
    return frame.assign(**{c: frame[c].where(~frame[c].isin(na_values)) for c in text})


class _Readings:
    """A text column read with each decimal mark, and what its values say about which mark it uses."""

    def __init__(self, values: pd.Series):
        self.text = _text(values).dropna()
        self.numbers = {mark: _numbers(self.text, mark) for mark in (POINT, COMMA)}
        point, comma = self.numbers[POINT], self.numbers[COMMA]
        self.only = {POINT: point.notna() & comma.isna(), COMMA: comma.notna() & point.isna()}
        self.evidence = {mark for mark, fits in self.only.items() if fits.any()}
        self.ambiguous = point.notna() & comma.notna() & (point != comma)
        self.share = max(numbers.notna().mean() for numbers in self.numbers.values()) if len(self.text) else 0.0


def number_formats(frame: pd.DataFrame, source: str) -> tuple[dict[str, NumberFormat], list[str]]:
    """The format of every text column of ``frame`` that holds numbers, and notes on what was decided.

    A column's decimal mark comes from its own values ('1,5' and '0,25' can
    only have decimal commas, '1.5' and '1,234.5' only points). Values that
    fit both marks differently ('1,234': 1234 or 1.234) follow the mark the
    file's other columns show; when nothing says, the column stays text and
    a note says why.
    """
    readings = {
        column: _Readings(frame[column])
        for column in frame.columns
        if not (pd.api.types.is_bool_dtype(frame[column]) or pd.api.types.is_numeric_dtype(frame[column]))
        and not pd.api.types.is_datetime64_any_dtype(frame[column])
    }
    readings = {column: reading for column, reading in readings.items() if reading.share >= MOSTLY_NUMBERS}
    marks_shown = set().union(*(reading.evidence for reading in readings.values()))
    file_mark = next(iter(marks_shown)) if len(marks_shown) == 1 else None
    formats, notes = {}, []
    for column, reading in readings.items():
        number_format, note = _column_format(column, reading, file_mark, source)
        if number_format is not None:
            formats[column] = number_format
        if note:
            notes.append(note)
    return formats, notes


def _column_format(column: str, reading: _Readings, file_mark: str | None, source: str) -> tuple[NumberFormat | None, str]:
    if len(reading.evidence) == 2:
        examples = " and ".join(f"{reading.text[reading.only[mark]].iloc[0]!r}" for mark in (POINT, COMMA))
        return None, (
            f"Did not read {column!r} as numbers: it mixes decimal points and decimal commas ({examples}). "
            "Export it again with one decimal mark to use it as a number."
        )
    decided = ""
    if reading.evidence:
        mark = next(iter(reading.evidence))
        if mark == COMMA:
            example, number = reading.text[reading.only[COMMA]].iloc[0], reading.numbers[COMMA][reading.only[COMMA]].iloc[0]
            decided = f"Read {column!r} with decimal commas, as its values show ({example!r} is {number:g})."
    elif reading.ambiguous.any():
        example = reading.text[reading.ambiguous].iloc[0]
        point, comma = (reading.numbers[mark][reading.ambiguous].iloc[0] for mark in (POINT, COMMA))
        both = f"{example!r} is {point:g} with a decimal point or {comma:g} with a decimal comma"
        if file_mark is None:
            return None, (
                f"Did not read {column!r} as numbers: {both}, and no column of {source} shows which. Export it again "
                "without thousands separators to use it as a number."
            )
        mark = file_mark
        decided = f"Read {column!r} with {MARK_NAMES[mark]}, as the other columns of {source} write numbers: {both}."
    else:
        mark = POINT  # whole numbers and placeholders read the same with either mark
    numbers = reading.numbers[mark]
    others = reading.text[numbers.isna()]
    if others.empty:
        return NumberFormat(mark), decided
    tokens = others.unique()
    placeholders = len(tokens) <= MAX_PLACEHOLDERS and not others.str.contains(r"\d").any()
    if numbers.notna().mean() >= NUMBER_SHARE and placeholders:
        note = f"Read {len(others):,} values of {column!r} as missing, not numbers: {_counted(others)}."
        return NumberFormat(mark, tuple(sorted(tokens))), " ".join(filter(None, (decided, note)))
    return None, (
        f"Did not read {column!r} as numbers: {len(others):,} of its {len(reading.text):,} values are not numbers "
        f"({_counted(others, 3)}). To use it as a number, fix those values, or name the ones meaning unknown "
        "with --na-value."
    )


# Dates: one format per column ---------------------------------------------------------------------------

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
