"""Flat lead tables: one row per lead, exported from a CRM as CSV or Parquet.

A ``ColumnRoles`` mapping says which column is the target, the optional id
and time, which to drop and which values mean "missing". Every other
column becomes a feature: numeric when its values read as numbers (see
``features.parsing`` for decimal marks and placeholders), categorical
otherwise. Columns that cannot help (a single value, dates, a distinct value
on every row like an identifier) are dropped with a note saying so; ``keep``
keeps an identifier-like column on purpose.

A table without an id column numbers its leads by row (``row_number``, 1 for
the first row under the header); ``leadscore predict`` numbers the rows of
the file it scores the same way, so each prediction names its row.

Each feature's label, family and sentence come from a labels file when it
names the column (``features.column_labels``), its family from ``fit`` first;
otherwise the label is made from the column's name and the family follows
the name-and-shape rule of ``features.column_labels``.
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
from leadscore.features.column_labels import ColumnLabels, default_family
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
ROW_NUMBER = "row_number"
IDENTIFIER_ROWS = 50  # below this many rows, a distinct value on every row says little


class ColumnRoles(BaseModel):
    """What the columns of a flat lead table are for.

    Without ``id`` the leads are numbered by row. ``fit`` names columns that
    describe who the lead is, whatever their name suggests. ``keep`` names
    columns to keep although they look like identifiers. ``positive`` is the
    target value meaning "converted" when it is not one of 1, yes, true.
    ``time_format`` is how the time column writes dates (strftime codes);
    without it the one format fitting every value is found, and dates it
    cannot tell apart refused.
    """

    model_config = ConfigDict(frozen=True)

    target: str
    id: str | None = None
    time: str | None = None
    time_format: str | None = None
    drop: tuple[str, ...] = ()
    na_values: tuple[str, ...] = ()
    fit: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
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


def load_flat_table(path: str | Path, roles: ColumnRoles, labels: ColumnLabels | None = None) -> FeatureTable:
    """Read ``path`` and turn it into a feature table according to ``roles`` and ``labels``."""
    frame = read_table_file(path, roles.na_values)
    return flat_feature_table(frame, roles, source=Path(path).name, labels=labels)


def flat_feature_table(
    frame: pd.DataFrame, roles: ColumnRoles, source: str = "table", labels: ColumnLabels | None = None
) -> FeatureTable:
    """Validate ``frame`` against ``roles`` and infer one feature per remaining column, worded by ``labels``."""
    frame = missing_as_nan(frame, roles.na_values)
    _check_columns(frame, roles, source)
    labels = labels or ColumnLabels(source="")
    labels.check_columns([str(c) for c in frame.columns], source)
    if len(frame) == 0:
        raise LeadscoreError(
            f"{source} has no rows, only column names: there is no lead to learn from. Export the table again with its rows."
        )
    id_column = roles.id or ROW_NUMBER
    ids = _checked_ids(frame[roles.id], roles.id, source) if roles.id else _row_numbers(frame, source)
    target = _binary_target(frame[roles.target], roles, source)
    columns: dict[str, pd.Series] = {id_column: ids}
    if roles.time:
        columns[roles.time] = read_times(frame[roles.time], roles.time, source, roles.time_format)

    registry = FeatureRegistry()
    reserved = {roles.id, roles.target, roles.time, *roles.drop}
    candidates = [column for column in frame.columns if column not in reserved]
    formats, notes = number_formats(frame[candidates], source)
    if not roles.id:
        notes.insert(0, f"No id column: leads are numbered by their row in {source} ({ROW_NUMBER}, 1 for the first "
                        "row under the header), and `leadscore predict` numbers the rows of the file it scores the "
                        "same way. Name an id column with --id to carry it into predictions instead.")
    numbers: dict[str, NumberFormat] = {}
    for column in candidates:
        values = formats[column].read(frame[column])[0] if column in formats else frame[column]
        inferred = _infer(values, column, len(frame), notes, roles)
        if inferred is None:
            continue
        values, kind = inferred
        columns[column] = values
        if kind == "numeric":
            numbers[column] = formats.get(column, NumberFormat())
        registry.add(_spec(column, values, kind, roles, labels, source))
    if len(registry) == 0:
        unusable = f" and those that cannot help ({', '.join(map(repr, candidates))})" if candidates else ""
        raise LeadscoreError(
            f"{source} has no usable feature column left after removing the id, target, time and dropped "
            f"columns{unusable}. Check --drop, or keep an identifier-like column with --keep."
        )
    _check_field_families(registry, labels)
    notes.append(_family_note(registry, roles, labels))
    columns[roles.target] = target
    for column in labels.name:
        # Kept as the file wrote them, for naming example leads; a name column that is a feature is there already.
        columns.setdefault(column, frame[column].astype("string"))
    if not roles.time:
        notes.append("No time column: training will use a stratified split, not a forward-in-time one.")
    return FeatureTable(
        frame=pd.DataFrame(columns),
        registry=registry,
        id_column=id_column,
        target_column=roles.target,
        time_column=roles.time,
        source=source,
        notes=tuple(notes),
        reading=ReadingRule(roles.na_values, numbers),
        name_columns=labels.name,
    )


def _spec(
    column: str, values: pd.Series, kind: str, roles: ColumnRoles, labels: ColumnLabels, source: str
) -> FeatureSpec:
    """The column's registry entry: the labels file's words where it has them, defaults elsewhere, --fit first."""
    words = labels.words(column)
    labels.check_sentence(column, kind)
    if column in roles.fit:
        family = "fit"
    else:
        family = words.family or default_family(column, values, kind)
    return FeatureSpec(
        name=column,
        label=words.label or readable(column),
        family=family,
        description=words.description or f"Column {column!r} of {source}, read as {kind}.",
        kind=kind,
        sentence=words.sentence,
        field_name=words.field,
        field_label=words.field,
    )


def _check_field_families(registry: FeatureRegistry, labels: ColumnLabels) -> None:
    """A field's columns make one reason, counted in one sub-score: they cannot be part fit, part engagement."""
    families: dict[str, dict[str, list[str]]] = {}
    for name in registry.names:
        spec = registry[name]
        if spec.field_name:
            families.setdefault(spec.field_name, {}).setdefault(spec.family, []).append(name)
    for business_field, by_family in families.items():
        if business_field in registry.names and registry[business_field].field_name != business_field:
            raise LeadscoreError(
                f"{labels.source}: field {business_field!r} has the name of a column outside it. Name the field "
                "differently, or give that column the same field."
            )
        if len(by_family) > 1:
            listing = "; ".join(f"{family}: {', '.join(map(repr, names))}" for family, names in by_family.items())
            raise LeadscoreError(
                f"{labels.source}: the columns of field {business_field!r} fall in two families ({listing}). Give them "
                "one family (family: fit or family: engagement on each) or put them in separate fields."
            )


def _family_note(registry: FeatureRegistry, roles: ColumnRoles, labels: ColumnLabels) -> str:
    fit = [spec.name for spec in registry if spec.family == "fit"]
    if not fit:
        return ("No column reads as describing who the lead is (country, industry, occupation, ...), so every "
                "feature counts as engagement and fit scores say nothing. Name such columns with --fit COLUMN or "
                "in a labels file (--labels FILE).")
    if len(fit) == len(registry):
        return ("Every feature counts as fit (who the lead is), so engagement scores say nothing. Give the columns "
                "about what the lead did family: engagement in a labels file (--labels FILE).")
    by_name = [name for name in fit if name not in roles.fit and labels.words(name).family is None]
    if len(by_name) == len(fit):
        how = ", by their names"
    else:
        how = f" ({', '.join(map(repr, by_name))} by their names)" if by_name else ""
    return (f"Fit (who the lead is): {', '.join(map(repr, fit))}{how}; the other {len(registry) - len(fit)} features "
            "count as engagement (what the lead did). Set a column's family with --fit COLUMN or in a labels file "
            "(--labels FILE).")


def _row_numbers(frame: pd.DataFrame, source: str) -> pd.Series:
    if ROW_NUMBER in frame.columns:
        raise LeadscoreError(
            f"{source} has a column {ROW_NUMBER!r}, the name leadscore gives the row numbers of a table without "
            f"an id. Pass --id {ROW_NUMBER} if it identifies the leads, or rename it."
        )
    return pd.Series(np.arange(1, len(frame) + 1), name=ROW_NUMBER)


def numbered_rows(frame: pd.DataFrame, id_column: str) -> pd.DataFrame:
    """``frame`` with its rows numbered as training numbered a table without an id, when ``id_column`` says so.

    A file that holds the column itself keeps its own numbers.
    """
    if id_column != ROW_NUMBER or ROW_NUMBER in frame.columns:
        return frame
    return frame.assign(**{ROW_NUMBER: np.arange(1, len(frame) + 1)})


def _check_columns(frame: pd.DataFrame, roles: ColumnRoles, source: str) -> None:
    if roles.time_format and not roles.time:
        raise LeadscoreError(f"--time-format {roles.time_format} needs the column it describes: add --time COLUMN.")
    named = [("--id", roles.id)] if roles.id else []
    named.append(("--target", roles.target))
    if roles.time:
        named.append(("--time", roles.time))
    named += [(option, c) for option, columns in (("--drop", roles.drop), ("--fit", roles.fit), ("--keep", roles.keep))
              for c in columns]
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
        if column in roles.keep:
            raise LeadscoreError(f"--drop {column!r} and --keep {column!r}: say one or the other.")


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


def _infer(
    values: pd.Series, column: str, rows: int, notes: list[str], roles: ColumnRoles
) -> tuple[pd.Series, str] | None:
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
        whole = bool((numbers.dropna() % 1 == 0).all())
        if _identifier_like(distinct, rows, whole, column, "a distinct whole number on every row, like an identifier",
                            notes, roles):
            return None
        return numbers, "numeric"
    if looks_like_dates(values):
        notes.append(f"Dropped {column!r}: it holds dates. Name it with --time, or derive numbers from it.")
        return None
    if _identifier_like(distinct, rows, True, column, "a distinct text value on every row (an identifier or free "
                        "text)", notes, roles):
        return None
    return values.astype(object).astype("category"), "categorical"


def _identifier_like(
    distinct: int, rows: int, whole: bool, column: str, what: str, notes: list[str], roles: ColumnRoles
) -> bool:
    """Whether to drop the column as an identifier: a distinct value on every row, unless --keep keeps it."""
    if not (whole and distinct == rows and rows >= IDENTIFIER_ROWS):
        return False
    if column in roles.keep:
        notes.append(f"Kept {column!r} as a feature (--keep), although it holds {what}.")
        return False
    as_id = "" if roles.id else f", or name it with --id {column!r} to carry it into predictions"
    notes.append(f"Dropped {column!r}: {what}. Keep it with --keep {column!r} if it is a feature{as_id}.")
    return True
