"""Salesforce: lead scores as Bulk API 2.0 ingest CSV, and the ingest job that sends a file and says, row by
row, what Salesforce did with it.

The rules followed, from Salesforce's Bulk API 2.0 and Bulk API Developer Guide:

* CSV in UTF-8, a header row of field API names, comma-delimited, LF line endings (declared in the job); a
  value holding a comma, a quote or a line break is quoted, its quotes doubled.
* An empty value leaves a field as it was on update; ``#N/A`` sets it to null.
* dateTime values as ``yyyy-MM-ddTHH:mm:ss.SSSZ``.
* One upload per job, at most 150 MB once Salesforce has base64-encoded it (a third more): files of at most
  100 MB of CSV. Salesforce splits a job into internal batches of 10,000 records, each counted against the
  org's 15,000 batches a day.
* A job goes Open -> UploadComplete -> InProgress -> JobComplete (or Failed, Aborted). Its successful,
  failed and unprocessed records come back as CSV in any order, each row carrying the fields it was sent
  with: rows are matched to leads by their key column, never by position.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pandas as pd
from leadscore.crm.export import Delivery, Part
from leadscore.crm.export_keys import KeyMapping, RecordIds
from leadscore.crm.remote import WAITED_STATUSES, Waits, request, short

from leadscore.errors import LeadscoreError

API_VERSION = "v62.0"
OBJECT = "Lead"
KEY_FIELD = "Leadscore_Lead_Id__c"
MAX_FILE_BYTES = 100_000_000
REASONS_LENGTH = 255  # a Text Area field; a Long Text Area takes --reasons-length up to 131,072
NULL = "#N/A"
FIELDS = {
    "probability": "Leadscore_Probability__c",
    "tier": "Leadscore_Tier__c",
    "fit_score": "Leadscore_Fit_Score__c",
    "engagement_score": "Leadscore_Engagement_Score__c",
    "reason_text": "Leadscore_Reasons__c",
    "model_version": "Leadscore_Model_Version__c",
    "scored_at": "Leadscore_Scored_At__c",
}
FINAL_STATES = ("JobComplete", "Failed", "Aborted")
RECORD_IDS = RecordIds(
    "Id", lambda ids: ids.str.fullmatch(r"[A-Za-z0-9]{15}|[A-Za-z0-9]{18}"),
    "15 or 18 letters and digits, such as 00Q5g00000AbCdEFGH", can_be_lead_ids=False,
)


def key_field_problem(name: str) -> str | None:
    """Why ``name`` cannot be the External ID field an upsert matches on, or None."""
    if not name.endswith("__c"):
        return (f"an External ID field is a custom field, whose API name ends in __c (such as {KEY_FIELD}). To key "
                "on the records' own Salesforce Id, give a mapping file with the columns lead_id and Id.")
    return None


@dataclass(frozen=True)
class SalesforceTarget:
    """Where the scores go in Salesforce, and how its files are cut."""

    key: KeyMapping
    object: str = OBJECT
    reasons_length: int = REASONS_LENGTH
    max_file_bytes: int = MAX_FILE_BYTES
    crm: str = "Salesforce"
    suffix: str = ".csv"

    @property
    def name(self) -> str:
        return f"salesforce:{self.object}"

    @property
    def stem(self) -> str:
        return f"salesforce-{self.object}"

    @property
    def operation(self) -> str:
        # Salesforce's Id can only update; matching leadscore's id in an External ID field takes an upsert.
        return "update" if self.key.by_record_id else "upsert"

    def job_settings(self) -> dict:
        settings = {"object": self.object, "operation": self.operation, "contentType": "CSV", "lineEnding": "LF",
                    "columnDelimiter": "COMMA"}
        if self.operation == "upsert":
            settings["externalIdFieldName"] = self.key.field
        return settings

    def describe(self) -> str:
        return f"Salesforce {self.object}, {self.operation} on {self.key.describe()}"

    def how_to_load(self) -> str:
        external = f", externalIdFieldName {self.key.field}" if self.operation == "upsert" else ""
        return (f"load each file as one Bulk API 2.0 ingest job (object {self.object}, operation {self.operation}"
                f"{external}, lineEnding LF), e.g. `sf data upsert bulk --sobject {self.object} --file FILE "
                f"--external-id {self.key.field} --line-ending LF --wait 30` (the Salesforce CLI)")

    def parts(self, rows: pd.DataFrame) -> Iterator[Part]:
        return csv_parts(rows, self.key.field, self.max_file_bytes)


# --- the files ------------------------------------------------------------------------------------------


def csv_columns(rows: pd.DataFrame, key_field: str) -> dict[str, pd.Series]:
    """Each CSV column's text by field API name: the key first, nulls as ``#N/A`` so that they clear the field."""
    columns = {key_field: rows["record_key"].astype(str)}
    formats = {
        "probability": lambda values: values.map("{:.4f}".format),
        "tier": lambda values: values.astype(str),
        "fit_score": lambda values: values.astype("int64").astype(str),
        "engagement_score": lambda values: values.astype("int64").astype(str),
        "reason_text": lambda values: values.astype(str),
        "model_version": lambda values: values.astype(str),
        "scored_at": lambda values: pd.Series(np.datetime_as_string(values.to_numpy(dtype="datetime64[ms]"),
                                                                    unit="ms"), index=values.index) + "Z",
    }
    for name, field in FIELDS.items():
        values = rows[name]
        present = values.notna()
        text = pd.Series(NULL, index=rows.index, dtype=object)
        if present.any():
            text[present] = formats[name](values[present]).astype(object)
        columns[field] = text
    return columns


def csv_lines(columns: dict[str, pd.Series]) -> pd.Series:
    """One CSV line per row, without its line break; values quoted only where the format needs it."""
    quoted = [_quoted(values.astype(str)) for values in columns.values()]
    return quoted[0].str.cat(quoted[1:], sep=",")


def _quoted(values: pd.Series) -> pd.Series:
    needs = values.str.contains(r'[",\r\n]', regex=True)
    if not needs.any():
        return values
    return values.where(~needs, '"' + values.str.replace('"', '""', regex=False) + '"')


def csv_parts(rows: pd.DataFrame, key_field: str, max_bytes: int) -> Iterator[Part]:
    """The rows as CSV files of at most ``max_bytes`` each, every one with the header, no row split."""
    columns = csv_columns(rows, key_field)
    header = (",".join(columns) + "\n").encode("utf-8")
    lines = csv_lines(columns).str.encode("utf-8")
    sizes = lines.str.len().to_numpy(dtype=np.int64) + 1  # and its line break
    for start, stop in split_by_size(sizes, max_bytes - len(header)):
        yield Part(header + b"\n".join(lines.iloc[start:stop]) + b"\n", start, stop)


def split_by_size(sizes: np.ndarray, room: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` ranges whose ``sizes`` add up to at most ``room`` each."""
    ends = np.cumsum(sizes)
    ranges, start, before = [], 0, 0
    while start < len(sizes):
        stop = int(np.searchsorted(ends, before + room, side="right"))
        if stop == start:
            raise ValueError(f"row {start} alone takes {sizes[start]:,} bytes, more than the {room:,} a file has")
        ranges.append((start, stop))
        start, before = stop, int(ends[stop - 1])
    return ranges


# --- the job --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Poll:
    """How to wait for a job: the first wait, doubling up to ``longest``, giving up after ``timeout`` seconds."""

    first: float = 2.0
    longest: float = 30.0
    timeout: float = 3600.0
    sleep: object = time.sleep
    clock: object = time.monotonic


class BulkIngest:
    """Sends one CSV file as one Bulk API 2.0 ingest job and reads back what Salesforce did with each row."""

    def __init__(self, client: httpx.Client, waits: Waits | None = None, poll: Poll | None = None,
                 api_version: str = API_VERSION) -> None:
        self.client, self.waits, self.poll = client, waits or Waits(), poll or Poll()
        self.jobs = f"/services/data/{api_version}/jobs/ingest"

    def deliver(self, target: SalesforceTarget, part: Part, keys: list[str]) -> Delivery:
        """Run ``part`` as one job and say what became of each of its record ``keys``."""
        created = self._call("POST", self.jobs, json=target.job_settings())
        if created.status_code in WAITED_STATUSES:
            return Delivery(_nothing(), stop=f"Salesforce answered {created.status_code} ({_said(created)}) for longer "
                                             "than the waits allow")
        if created.status_code not in (200, 201):
            raise LeadscoreError(_refused_job(target, created, self.client.base_url, self.jobs))
        job = created.json()
        job_id = job["id"]
        job_path = f"{self.jobs}/{job_id}"
        upload = "/" + job["contentUrl"].lstrip("/") if job.get("contentUrl") else f"{job_path}/batches"
        uploaded = self._call("PUT", upload, content=part.content, headers={"Content-Type": "text/csv"})
        if uploaded.status_code != 201:
            self._call("PATCH", job_path, json={"state": "Aborted"})
            if uploaded.status_code in WAITED_STATUSES:
                return Delivery(_nothing(), job=job_id, stop=f"Salesforce answered {uploaded.status_code} to the "
                                                             f"upload of job {job_id}, which was aborted")
            raise LeadscoreError(f"Salesforce refused the upload of job {job_id} ({_said(uploaded)}); the job was "
                                 "aborted and nothing of it was processed. The next export sends these rows again.")
        closed = self._call("PATCH", job_path, json={"state": "UploadComplete"})
        if closed.status_code != 200:
            raise LeadscoreError(f"Salesforce did not start job {job_id} ({_said(closed)}). Nothing of it was "
                                 "processed; the next export sends these rows again.")
        info = self._wait_for(job_path)
        state = info.get("state", "")
        if state not in FINAL_STATES:
            return Delivery.all_failed(keys, f"Job {job_id} was still {state} after {self.poll.timeout:.0f} s; its "
                                             "results were not read.", job=job_id,
                                       stop=f"Salesforce job {job_id} did not finish within {self.poll.timeout:.0f} s")
        message = info.get("errorMessage") or None
        outcomes = row_outcomes(keys, target.key.field, *(self._results(job_path, name) for name in
                                                           ("successfulResults", "failedResults", "unprocessedrecords")),
                                job_message=message)
        if state == "JobComplete":
            return Delivery(outcomes, job=job_id)
        if message and "Field name not found" in message:
            field = message.rsplit(":", 1)[-1].strip()
            return Delivery(outcomes, job=job_id, fault=(
                f"Salesforce failed job {job_id}: {message}. Create the field {field} on {target.object} (see the "
                "custom fields in docs/salesforce-hubspot.md) and give the integration user edit access to it: "
                "Salesforce reports a field the user cannot see as not found."))
        return Delivery(outcomes, job=job_id, stop=f"Salesforce job {job_id} ended {state}: {message or 'no reason given'}"
                                                   " (Setup > Bulk Data Load Jobs shows it)")

    def _call(self, method: str, url: str, **kwargs) -> httpx.Response:
        response = request(self.client, "Salesforce", method, url, self.waits, **kwargs)
        if response.status_code == 401:
            raise LeadscoreError(
                f"Salesforce refused the access token ({_said(response)}). Set SALESFORCE_ACCESS_TOKEN to a current "
                "one: `sf org display --target-org ORG --json` shows accessToken and instanceUrl. Rows already sent "
                "are recorded; the others go with the next export."
            )
        if response.status_code == 403:
            raise LeadscoreError(
                f"Salesforce refused the request ({_said(response)}). The integration user needs API access and edit "
                "access to the object and its Leadscore fields; REQUEST_LIMIT_EXCEEDED means the org's daily API "
                "requests are used up. Rows already sent are recorded; the others go with the next export."
            )
        return response

    def _wait_for(self, job_path: str) -> dict:
        began, wait = self.poll.clock(), self.poll.first
        while True:
            response = self._call("GET", job_path)
            if response.status_code != 200:
                raise LeadscoreError(f"Salesforce did not say how job {job_path.rsplit('/', 1)[-1]} went "
                                     f"({_said(response)}). Its rows are sent again by the next export.")
            info = response.json()
            if info.get("state") in FINAL_STATES or self.poll.clock() - began >= self.poll.timeout:
                return info
            self.poll.sleep(wait)
            wait = min(wait * 2, self.poll.longest)

    def _results(self, job_path: str, name: str) -> bytes:
        response = self._call("GET", f"{job_path}/{name}/")
        return response.content if response.status_code == 200 else b""


def row_outcomes(keys: list[str], key_field: str, successful: bytes, failed: bytes, unprocessed: bytes,
                 job_message: str | None = None) -> pd.DataFrame:
    """What Salesforce did with each key sent, from a job's three result files, matched by ``key_field``.

    A key in no result file (Salesforce records no results past the daily batch allocation) counts as not
    accepted, and a key both accepted and refused counts as refused: either way it is sent again, which is
    harmless.
    """
    sent = pd.Series([str(key) for key in keys], dtype=object)
    accepted = pd.Series(False, index=sent.index)
    error = pd.Series("Salesforce reported no result for this row.", index=sent.index, dtype=object)
    done = sent.isin(_column(successful, key_field))
    accepted[done], error[done] = True, None
    skipped = sent.isin(_column(unprocessed, key_field))
    accepted[skipped] = False
    error[skipped] = (f"Salesforce did not process this row: {job_message}" if job_message
                      else "Salesforce did not process this row (its job ended first).")
    refusals = _result_table(failed)
    if refusals is not None and key_field in refusals.columns:
        said = sent.map(refusals.drop_duplicates(key_field).set_index(key_field)["sf__Error"])
        refused = said.notna()
        accepted[refused], error[refused] = False, said[refused]
    return pd.DataFrame({"key": sent, "accepted": accepted, "error": error})


def _column(content: bytes, name: str) -> pd.Series:
    table = _result_table(content)
    return table[name] if table is not None and name in table.columns else pd.Series([], dtype=object)


def _nothing() -> pd.DataFrame:
    """No row's outcome: nothing reached Salesforce, so nothing is recorded and the rows go again."""
    return pd.DataFrame({"key": pd.Series([], dtype=object), "accepted": pd.Series([], dtype=bool),
                         "error": pd.Series([], dtype=object)})


def _result_table(content: bytes) -> pd.DataFrame | None:
    if not content.strip():
        return None  # no rows of that kind: Salesforce answers with an empty body, or a header alone
    return pd.read_csv(io.BytesIO(content), dtype=str, keep_default_na=False)


def _said(response: httpx.Response) -> str:
    """Salesforce's own words: ``[{"errorCode": ..., "message": ...}]``, else the body."""
    try:
        errors = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {short(response.text)}"
    if isinstance(errors, dict):
        errors = [errors]
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return "; ".join(f"{error.get('errorCode', 'ERROR')}: {short(error.get('message', ''))}" for error in errors[:3])
    return f"HTTP {response.status_code}: {short(response.text)}"


def _refused_job(target: SalesforceTarget, response: httpx.Response, base_url, jobs: str) -> str:
    if response.status_code == 404:
        return (f"There is no Bulk API 2.0 at {base_url}{jobs} ({_said(response)}). Set SALESFORCE_INSTANCE_URL to "
                "your org's address (https://MyDomain.my.salesforce.com) and check the API version.")
    fix = f"Check --object {target.object}"
    if target.operation == "upsert":
        fix += f" and that {target.key.field} exists on {target.object} as an External ID field"
    return f"Salesforce refused to create the ingest job ({_said(response)}). {fix}. Nothing was sent."
