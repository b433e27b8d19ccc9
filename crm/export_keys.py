"""How a leadscore lead finds its record in another CRM.

leadscore's ``leads.id`` is a whole number. Two rules, chosen with ``--key``:

* **a key field**: the CRM record holds leadscore's lead id in a field of its own (a Salesforce External ID
  field such as ``Leadscore_Lead_Id__c``, a HubSpot property with unique values). The key sent is the lead id.
  For HubSpot, whose contact ids are whole numbers, ``hs_object_id`` says that leadscore's lead id *is* the
  record id, as when the CRM was loaded from HubSpot (docs/crm-mapping.md);
* **a mapping file**: a CSV with a column ``lead_id`` and a column with the CRM's own record id (``Id`` for
  Salesforce, ``hs_object_id`` for HubSpot), such as the key table the Salesforce load builds.

A mapping file is checked whole before anything is written: every lead id a whole number, every record id of
the CRM's form, one record per lead and one lead per record (two leads on one record would overwrite each
other's score, and a CRM refuses a record twice in one batch).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from leadscore.errors import LeadscoreError

LEAD_ID_COLUMN = "lead_id"
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,79}")


@dataclass(frozen=True)
class KeyMapping:
    """Where each lead's key goes in the CRM (``field``) and where the key comes from.

    ``by_record_id``: ``field`` is the CRM's own record id rather than a field holding leadscore's lead id.
    ``keys``: record ids by lead id, from a mapping file; without it the key is the lead id itself.
    """

    field: str
    by_record_id: bool
    keys: pd.Series | None = None
    source: str = ""

    def record_keys(self, lead_ids: pd.Series) -> pd.Series:
        """Each lead's key as text; missing where a mapping file has no row for the lead."""
        if self.keys is None:
            return lead_ids.astype("int64").astype(str).astype(object)
        return lead_ids.map(self.keys).astype(object)

    def describe(self) -> str:
        if self.keys is not None:
            return f"{self.field} from {self.source}"
        if self.by_record_id:
            return f"{self.field} = leadscore's lead id"
        return f"{self.field} holding leadscore's lead id"


@dataclass(frozen=True)
class RecordIds:
    """A CRM's record ids: the column a mapping file names them by, and what a valid one looks like."""

    column: str
    is_valid: Callable[[pd.Series], pd.Series]
    looks_like: str  # "15 or 18 letters and digits", said when a value is not one
    can_be_lead_ids: bool  # whether leadscore's whole-number lead ids can be the record ids themselves


def key_mapping(key: str, record_ids: RecordIds, key_field_rule: Callable[[str], str | None]) -> KeyMapping:
    """The mapping ``--key`` names: a ``.csv`` mapping file, ``record_ids.column`` itself, or a key field.

    ``key_field_rule`` returns why a name cannot be the CRM's key field, or None when it can.
    """
    if key.lower().endswith(".csv") or "/" in key or "\\" in key:
        return KeyMapping(record_ids.column, True, read_key_file(Path(key), record_ids), f"the file {key}")
    if not _FIELD_NAME.fullmatch(key):
        raise LeadscoreError(
            f"--key {key!r} is neither a field name nor a .csv mapping file. Give the API name of the field that "
            f"holds leadscore's lead id, or a CSV file with the columns {LEAD_ID_COLUMN} and {record_ids.column}."
        )
    if key == record_ids.column:
        if not record_ids.can_be_lead_ids:
            raise LeadscoreError(
                f"--key {key}: leadscore's lead ids are whole numbers, and {key} values are {record_ids.looks_like}. "
                f"Give a mapping file with the columns {LEAD_ID_COLUMN} and {key}, or the External ID field that "
                "holds leadscore's lead id."
            )
        return KeyMapping(key, True, None, key)
    problem = key_field_rule(key)
    if problem:
        raise LeadscoreError(f"--key {key}: {problem}")
    return KeyMapping(key, False, None, key)


def read_key_file(path: Path, record_ids: RecordIds) -> pd.Series:
    """The record id of each lead from the mapping file at ``path``, indexed by lead id; refused whole when any
    row is wrong, with the column, the row count and the fix."""
    shown = f"--key {path}"
    if not path.is_file():
        raise LeadscoreError(f"{shown}: there is no such file. Give the CSV that maps {LEAD_ID_COLUMN} to "
                             f"{record_ids.column}, or the name of a key field.")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise LeadscoreError(f"{shown} is not a readable CSV file ({error}). Write it as UTF-8 CSV with a header "
                             f"row: {LEAD_ID_COLUMN},{record_ids.column}.") from None
    table.columns = [str(column).strip() for column in table.columns]
    for column in (LEAD_ID_COLUMN, record_ids.column):
        if column not in table.columns:
            close = difflib.get_close_matches(column, table.columns, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}? Rename it." if close else ""
            raise LeadscoreError(
                f"{shown} has no column {column!r}; its columns are: {', '.join(map(repr, table.columns))}.{hint} "
                f"The file needs a header row {LEAD_ID_COLUMN},{record_ids.column}."
            )
    total = len(table)
    if total == 0:
        raise LeadscoreError(f"{shown} has a header and no rows: it maps no lead. Fill it, one row per lead.")
    lead_ids = table[LEAD_ID_COLUMN].str.strip()
    records = table[record_ids.column].str.strip()
    not_whole = ~lead_ids.str.fullmatch(r"\d{1,18}")
    if not_whole.any():
        raise _bad_rows(shown, LEAD_ID_COLUMN, not_whole, lead_ids, total,
                        "that are not whole numbers (leadscore's leads.id)", "Fix or remove those rows.")
    invalid = ~record_ids.is_valid(records)
    if invalid.any():
        raise _bad_rows(shown, record_ids.column, invalid, records, total, f"that are not record ids "
                        f"({record_ids.looks_like})", "Export the ids again from the CRM, or remove those rows.")
    pairs = pd.DataFrame({"lead_id": lead_ids.astype("int64"), "record": records}).drop_duplicates()
    twice = pairs["lead_id"].duplicated(keep=False)
    if twice.any():
        lead = pairs.loc[twice, "lead_id"].iloc[0]
        given = ", ".join(pairs.loc[pairs["lead_id"] == lead, "record"].head(3))
        raise LeadscoreError(
            f"{shown}: column {LEAD_ID_COLUMN} gives {pairs.loc[twice, 'lead_id'].nunique():,} leads more than one "
            f"{record_ids.column} ({twice.sum():,} of {total:,} rows), e.g. lead {lead}: {given}. Keep one record per "
            "lead: the one that should show its score."
        )
    shared = pairs["record"].duplicated(keep=False)
    if shared.any():
        record = pairs.loc[shared, "record"].iloc[0]
        leads = ", ".join(map(str, pairs.loc[pairs["record"] == record, "lead_id"].head(3)))
        raise LeadscoreError(
            f"{shown}: column {record_ids.column} gives {pairs.loc[shared, 'record'].nunique():,} records to more "
            f"than one lead ({shared.sum():,} of {total:,} rows), e.g. {record} for leads {leads}. One record can "
            "show one lead's score: merge those leads in leadscore's CRM, or keep one row for each record."
        )
    return pairs.set_index("lead_id")["record"]


def _bad_rows(shown: str, column: str, bad: pd.Series, values: pd.Series, total: int, what: str,
              fix: str) -> LeadscoreError:
    example = values[bad].iloc[0]
    return LeadscoreError(
        f"{shown}: column {column} holds {int(bad.sum()):,} of {total:,} rows {what}, e.g. {example!r}. {fix}"
    )
