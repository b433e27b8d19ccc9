"""Flat lead tables: one row per lead, exported from a CRM as CSV or Parquet.

A ``ColumnRoles`` mapping says which column is the id, the target, the
optional time, which to drop and which values mean "missing". Every other
column becomes a feature: numeric when its values read as numbers (see
``features.parsing`` for decimal marks and placeholders), categorical
otherwise. Columns that cannot help (a single value, a distinct text value on
every row, dates) are dropped with a note saying so.
"""

from __future__ import annotations

import csv
import difflib
import re
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from leadscore.errors import LeadscoreError
from leadscore.features.parsing import (
    NumberFormat,
    ReadingRule,
    looks_like_dates,
    missing_as_nan,
    number_formats,
    read_times,
)
from leadscore.features.registry import FeatureRegistry, FeatureSpec
from leadscore.features.table import FeatureTable

CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
BOOLEAN_WORDS = {"True": True, "TRUE": True, "true": True, "False": False, "FALSE": False, "false": False}
TRUE_WORDS = {"1", "yes", "y", "true", "t", "converted", "won"}
FALSE_WORDS = {"0", "no", "n", "false", "f", "not converted", "lost"}


class ColumnRoles(BaseModel):
    """What the columns of a flat lead table are for.

    ``fit`` names the columns that describe who the lead is; every other
    feature counts as engagement. ``positive`` is the target value meaning
    "converted" when it is not one of 1, yes, true. ``time_format`` is how the
    time column writes dates (strftime codes); without it the one format
    fitting every value is found, and dates it cannot tell apart refused.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    target: str
    time: str | None = None
    time_format: str | None = None
    drop: tuple[str, ...] = ()
    na_values: tuple[str, ...] = ()
    fit: tuple[str, ...] = ()
    positive: str | None = None


def readable(column: str) -> str:
    """A label from a column name: 'TotalVisits' -> 'Total Visits', 'emp.var.rate' -> 'Emp var rate'."""
    text = re.sub(r"[_.]+", " ", column)
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)
    text = " ".join(text.split())
    return text[:1].upper() + text[1:]


def read_table_file(path: str | Path, na_values: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a CSV (delimiter sniffed) or Parquet file, with clear errors for what cannot be read."""
    path = Path(path)
    if not path.exists():
        raise LeadscoreError(f"Cannot read {path}: there is no such file. Check the path.")
    if path.is_dir():
        raise LeadscoreError(f"Cannot read {path}: it is a folder. Pass the CSV or Parquet file inside it.")
    suffixes = {s.lower() for s in path.suffixes}
    try:
        if suffixes & PARQUET_SUFFIXES:
            frame = pd.read_parquet(path)
            return missing_as_nan(frame, na_values)
        if suffixes & CSV_SUFFIXES:
            return _read_csv(path, na_values)
    except PermissionError as error:
        raise LeadscoreError(f"Cannot read {path}: permission denied. Check the file's permissions.") from error
    except pd.errors.EmptyDataError as error:
        raise LeadscoreError(f"Cannot read {path}: the file is empty.") from error
    except pd.errors.ParserError as error:
        raise LeadscoreError(
            f"Cannot read {path} as CSV: {error}. Check its delimiter and quoting, or export it again."
        ) from error
    except (OSError, ValueError) as error:
        raise LeadscoreError(
            f"Cannot read {path}: {error}. Is it really a {'Parquet' if suffixes & PARQUET_SUFFIXES else 'CSV'} file?"
        ) from error
    raise LeadscoreError(
        f"Cannot read {path}: leadscore reads CSV (.csv, .tsv, .txt) and Parquet (.parquet) files. "
        "Export the table in one of these formats."
    )


def _read_csv(path: Path, na_values: tuple[str, ...]) -> pd.DataFrame:
    with path.open("rb") as handle:
        head = handle.read(64 * 1024)
    encoding = "utf-8"
    try:
        sample = head.decode(encoding)
    except UnicodeDecodeError:
        # A truncated multi-byte character at the end of the sample is not an error.
        try:
            sample = head[:-4].decode(encoding)
        except UnicodeDecodeError:
            encoding = "latin-1"
            sample = head.decode(encoding)
    if not sample.strip():
        raise pd.errors.EmptyDataError("empty")
    try:
        delimiter = csv.Sniffer().sniff(sample.split("\n", 1)[0], delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = ","
    # Every value as written: pandas would read 1.234 as a number before anyone could see that the file
    # writes decimal commas, and would turn the id 007 into 7.
    frame = pd.read_csv(path, sep=delimiter, encoding=encoding, na_values=list(na_values), dtype=str, low_memory=False)
    booleans = {
        column: frame[column].map(BOOLEAN_WORDS).astype("boolean")
        for column in frame.columns
        if frame[column].notna().any() and frame[column].dropna().isin(BOOLEAN_WORDS).all()
    }
    return frame.assign(**booleans)


def load_flat_table(path: str | Path, roles: ColumnRoles) -> FeatureTable:
    """Read ``path`` and turn it into a feature table according to ``roles``."""
    frame = read_table_file(path, roles.na_values)
    return flat_feature_table(frame, roles, source=Path(path).name)


def flat_feature_table(frame: pd.DataFrame, roles: ColumnRoles, source: str = "table") -> FeatureTable:
    """Validate ``frame`` against ``roles`` and infer one feature per remaining column."""
    frame = missing_as_nan(frame, roles.na_values)
    _check_columns(frame, roles, source)
    if len(frame) == 0:
        raise LeadscoreError(
            f"{source} has no rows, only column names: there is no lead to learn from. Export the table again with its rows."
        )
    ids = _checked_ids(frame[roles.id], roles.id, source)
    target = _binary_target(frame[roles.target], roles, source)
    columns: dict[str, pd.Series] = {roles.id: ids}
    if roles.time:
        columns[roles.time] = read_times(frame[roles.time], roles.time, source, roles.time_format)

    registry = FeatureRegistry()
    reserved = {roles.id, roles.target, roles.time, *roles.drop}
    candidates = [column for column in frame.columns if column not in reserved]
    formats, notes = number_formats(frame[candidates], source)
    numbers: dict[str, NumberFormat] = {}
    for column in candidates:
        values = formats[column].read(frame[column])[0] if column in formats else frame[column]
        inferred = _infer(values, column, len(frame), notes)
        if inferred is None:
            continue
        values, kind = inferred
        columns[column] = values
        if kind == "numeric":
            numbers[column] = formats.get(column, NumberFormat())
        registry.add(
            FeatureSpec(
                name=column,
                label=readable(column),
                family="fit" if column in roles.fit else "engagement",
                description=f"Column {column!r} of {source}, read as {kind}.",
                kind=kind,
            )
        )
    if len(registry) == 0:
        raise LeadscoreError(
            f"{source} has no usable feature column left after removing the id, target, time and dropped "
            "columns. Check --drop."
        )
    columns[roles.target] = target
    if not roles.time:
        notes.append("No time column: training will use a stratified split, not a forward-in-time one.")
    return FeatureTable(
        frame=pd.DataFrame(columns),
        registry=registry,
        id_column=roles.id,
        target_column=roles.target,
        time_column=roles.time,
        source=source,
        notes=tuple(notes),
        reading=ReadingRule(roles.na_values, numbers),
    )


def _check_columns(frame: pd.DataFrame, roles: ColumnRoles, source: str) -> None:
    if roles.time_format and not roles.time:
        raise LeadscoreError(f"--time-format {roles.time_format} needs the column it describes: add --time COLUMN.")
    named = [("--id", roles.id), ("--target", roles.target)]
    if roles.time:
        named.append(("--time", roles.time))
    named += [("--drop", c) for c in roles.drop] + [("--fit", c) for c in roles.fit]
    available = [str(c) for c in frame.columns]
    for option, column in named:
        if column in frame.columns:
            continue
        lowered = {c.lower(): c for c in available}
        close = difflib.get_close_matches(column.lower(), list(lowered), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(lowered[c]) for c in close)}?" if close else ""
        listing = ", ".join(repr(c) for c in available[:40]) + (" ..." if len(available) > 40 else "")
        raise LeadscoreError(
            f"{option} {column!r}: {source} has no such column.{hint} Its columns are: {listing}."
        )
    roles_used = [roles.id, roles.target, roles.time]
    for column in roles.drop:
        if column in roles_used:
            raise LeadscoreError(f"--drop {column!r}: that column is the id, target or time column; it cannot be dropped.")


def _checked_ids(ids: pd.Series, column: str, source: str) -> pd.Series:
    missing = int(ids.isna().sum())
    if missing:
        raise LeadscoreError(
            f"The id column {column!r} is empty on {missing:,} of {len(ids):,} rows of {source}: every lead needs "
            "an id. Fill or remove those rows."
        )
    duplicated = ids[ids.duplicated(keep=False)]
    if len(duplicated):
        examples = ", ".join(repr(v) for v in duplicated.drop_duplicates().head(3))
        raise LeadscoreError(
            f"The id column {column!r} repeats {duplicated.nunique():,} ids on {len(duplicated):,} rows of "
            f"{source} (e.g. {examples}): a flat table holds each lead once. Remove the duplicates "
            "(keep the latest row of each lead), or choose a column that is unique with --id."
        )
    return ids.reset_index(drop=True)


def _binary_target(values: pd.Series, roles: ColumnRoles, source: str) -> pd.Series:
    column = roles.target
    missing = int(values.isna().sum())
    if missing:
        raise LeadscoreError(
            f"The target column {column!r} is empty on {missing:,} of {len(values):,} rows of {source}: "
            "training needs a known outcome on every row. Remove those rows (they are leads to score, not to learn from)."
        )
    text = values.astype(str).str.strip().str.lower()
    distinct = sorted(text.unique())
    if roles.positive is not None:
        positive = roles.positive.strip().lower()
        if positive not in distinct:
            raise LeadscoreError(
                f"--positive {roles.positive!r} never occurs in the target column {column!r} of {source}; "
                f"its values are {', '.join(map(repr, distinct[:10]))}."
            )
        target = text == positive
    elif pd.api.types.is_bool_dtype(values):
        target = values.astype(bool)
    elif set(np.unique(numbers := NumberFormat().read(values)[0])) <= {0, 1}:
        target = numbers == 1
    elif set(distinct) <= TRUE_WORDS | FALSE_WORDS and len(set(distinct) & TRUE_WORDS) <= 1:
        target = text.isin(TRUE_WORDS)
    else:
        raise LeadscoreError(
            f"The target column {column!r} of {source} holds {len(distinct):,} distinct values "
            f"({', '.join(map(repr, distinct[:8]))}{' ...' if len(distinct) > 8 else ''}), not yes/no or 1/0. "
            "Say which value means converted with --positive VALUE."
        )
    classes = target.nunique()
    if classes < 2:
        only = "converted" if target.iloc[0] else "not converted"
        raise LeadscoreError(
            f"The target column {column!r} says {only!r} on all {len(target):,} rows of {source}: a model needs "
            "leads that converted and leads that did not. Check the target column"
            f"{' and --positive' if roles.positive else ''}."
        )
    return target.reset_index(drop=True)


def _infer(values: pd.Series, column: str, rows: int, notes: list[str]) -> tuple[pd.Series, str] | None:
    """The column as a numeric or categorical feature, or None (with a note) when it cannot help."""
    values = values.reset_index(drop=True)
    distinct = values.nunique(dropna=True)
    if distinct <= 1:
        notes.append(f"Dropped {column!r}: it holds {'no value' if distinct == 0 else 'a single value'}.")
        return None
    if pd.api.types.is_datetime64_any_dtype(values):
        notes.append(f"Dropped {column!r}: it holds dates. Name it with --time, or derive numbers from it.")
        return None
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        numbers = values.astype(float)
        if distinct == rows and rows >= 50 and (numbers % 1 == 0).all():
            notes.append(
                f"{column!r} holds a distinct whole number on every row, like an identifier: "
                f"drop it with --drop {column!r} if it is one."
            )
        return numbers, "numeric"
    if looks_like_dates(values):
        notes.append(f"Dropped {column!r}: it holds dates. Name it with --time, or derive numbers from it.")
        return None
    if distinct == rows and rows >= 50:
        notes.append(f"Dropped {column!r}: a distinct text value on every row (an identifier or free text).")
        return None
    return values.astype(object).astype("category"), "categorical"
