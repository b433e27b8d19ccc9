"""A fake Salesforce org that answers Bulk API 2.0 ingest jobs on Lead as the Bulk API 2.0 and Bulk API Developer
Guide describes them.

What it enforces, as documented: the job lifecycle (Open, UploadComplete, InProgress, JobComplete; an upload
only while Open), one object per job, ``externalIdFieldName`` naming an External ID field for upsert, the CSV
rules (UTF-8, the header naming fields of the object, the declared line ending, ``#N/A`` to clear a field and an
empty value to leave it), at most 150 MB per upload once base64-encoded, results in three CSV files
(``sf__Id``/``sf__Created``, ``sf__Id``/``sf__Error``, the original fields) in an order of their own.

Row errors in Salesforce's ``CODE:message:fields --`` form. Their codes are Salesforce's; the messages follow
what the API returns as reported by its users (STRING_TOO_LONG, INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST,
UNABLE_TO_LOCK_ROW, REQUIRED_FIELD_MISSING on an upsert that would create a Lead without LastName and
Company, DUPLICATE_VALUE for a key twice in one job, CANNOT_UPDATE_CONVERTED_LEAD). The refusal of an
oversized upload is the fake's own wording.
"""

from __future__ import annotations

import base64
import csv
import io
import itertools
import json
import random
import re
from dataclasses import dataclass, field

import httpx

VERSION = "v62.0"
MAX_UPLOAD_BASE64_BYTES = 150_000_000
NULL = "#N/A"
DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?(Z|[+-]\d{2}:?\d{2})")
RECORD_ID = re.compile(r"[A-Za-z0-9]{15}|[A-Za-z0-9]{18}")


@dataclass(frozen=True)
class Field:
    label: str
    type: str  # id, text, textarea, number, picklist, datetime
    length: int = 0  # text: characters
    digits: int = 0  # number: digits before the decimal point
    scale: int = 0  # number: digits after it
    values: tuple[str, ...] = ()  # restricted picklist
    external_id: bool = False


# The Lead fields this org has: a few standard ones, and the custom fields the leadscore guide tells an admin to
# create (docs/salesforce-hubspot.md), with their types and lengths.
LEAD_FIELDS = {
    "Id": Field("Lead ID", "id"),
    "LastName": Field("Last Name", "text", length=80),
    "Company": Field("Company", "text", length=255),
    "Leadscore_Lead_Id__c": Field("Leadscore Lead Id", "text", length=18, external_id=True),
    "Leadscore_Probability__c": Field("Leadscore Probability", "number", digits=1, scale=4),
    "Leadscore_Tier__c": Field("Leadscore Tier", "picklist", values=("sql", "mql", "none")),
    "Leadscore_Fit_Score__c": Field("Leadscore Fit Score", "number", digits=3),
    "Leadscore_Engagement_Score__c": Field("Leadscore Engagement Score", "number", digits=3),
    "Leadscore_Reasons__c": Field("Leadscore Reasons", "textarea", length=255),
    "Leadscore_Model_Version__c": Field("Leadscore Model Version", "text", length=40),
    "Leadscore_Scored_At__c": Field("Leadscore Scored At", "datetime"),
}


@dataclass
class Job:
    id: str
    settings: dict
    state: str = "Open"
    data: bytes = b""
    polls_left: int = 0
    error: str | None = None
    successful: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    unprocessed: list[dict] = field(default_factory=list)
    header: list[str] = field(default_factory=list)


class FakeSalesforce:
    """Leads, ingest jobs, and the quirks a test asks for: ``lock_once`` (keys whose next row meets a record lock),
    ``converted`` (lead Ids converted, which refuse updates), ``polls_before_done`` (InProgress answers first)."""

    def __init__(self, token: str, fields: dict[str, Field] | None = None, polls_before_done: int = 1,
                 seed: int = 0) -> None:
        self.token, self.fields = token, dict(fields or LEAD_FIELDS)
        self.polls_before_done = polls_before_done
        self.records: dict[str, dict] = {}
        self.jobs: dict[str, Job] = {}
        self.lock_once: set[str] = set()
        self.converted: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        self.random = random.Random(seed)
        self._ids = itertools.count(1)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def add_leads(self, lead_ids) -> dict[int, str]:
        """A Lead per leadscore lead, holding its id in Leadscore_Lead_Id__c; returns each lead's Salesforce Id."""
        ids = {}
        for lead in lead_ids:
            record = f"00Q5g{next(self._ids):010d}AAA"
            self.records[record] = {"Id": record, "LastName": f"Lead {lead}", "Company": "Acme",
                                    "Leadscore_Lead_Id__c": str(lead)}
            ids[int(lead)] = record
        return ids

    def lead(self, lead_id) -> dict:
        return next(record for record in self.records.values() if record.get("Leadscore_Lead_Id__c") == str(lead_id))

    # --- HTTP ---------------------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append((request.method, path))
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _errors(401, "INVALID_SESSION_ID", "Session expired or invalid")
        base = f"/services/data/{VERSION}/jobs/ingest"
        match = re.fullmatch(rf"{base}(?:/(\w+))?(?:/(batches|successfulResults|failedResults|unprocessedrecords))?/?",
                             path)
        if not match:
            return _errors(404, "NOT_FOUND", "The requested resource does not exist")
        job_id, resource = match.groups()
        if job_id is None:
            return self._create(json.loads(request.content)) if request.method == "POST" else _errors(
                405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed. Allowed are POST,GET")
        job = self.jobs.get(job_id)
        if job is None:
            return _errors(404, "NOT_FOUND", "The requested resource does not exist")
        if resource == "batches" and request.method == "PUT":
            return self._upload(job, request)
        if resource is None and request.method == "PATCH":
            return self._change_state(job, json.loads(request.content))
        if resource is None and request.method == "GET":
            return self._info(job)
        if resource and request.method == "GET":
            return self._results(job, resource)
        return _errors(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed.")

    def _create(self, settings: dict) -> httpx.Response:
        if settings.get("object") != "Lead":
            return _errors(400, "INVALIDENTITY", f"sObject type '{settings.get('object')}' is not supported.")
        if settings.get("operation") not in ("insert", "update", "upsert", "delete"):
            return _errors(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {settings.get('operation')}")
        if settings.get("operation") == "upsert":
            external = settings.get("externalIdFieldName", "")
            spec = self.fields.get(external)
            if spec is None or not (spec.external_id or external == "Id"):
                return _errors(400, "INVALIDJOB", f"InvalidJob : Field name provided, {external} does not match an "
                                                  "External ID, Salesforce Id, or indexed field for Lead")
        if settings.get("contentType", "CSV") != "CSV" or settings.get("lineEnding", "LF") not in ("LF", "CRLF"):
            return _errors(400, "INVALIDJOB", "InvalidJob : unsupported contentType or lineEnding")
        job = Job(f"7505g{next(self._ids):013d}", {"lineEnding": "LF", **settings})
        self.jobs[job.id] = job
        return httpx.Response(200, json=self._describe(job))

    def _upload(self, job: Job, request: httpx.Request) -> httpx.Response:
        if job.state != "Open":
            return _errors(409, "INVALIDJOBSTATE", f"Job {job.id} is not Open: its state is {job.state}")
        if not request.headers.get("Content-Type", "").startswith("text/csv"):
            return _errors(400, "INVALIDCONTENTTYPE", "Content-Type must be text/csv")
        if len(base64.b64encode(request.content)) > MAX_UPLOAD_BASE64_BYTES:
            return _errors(400, "INVALIDBATCH", "The upload exceeds 150 MB once base64-encoded")
        job.data += request.content
        return httpx.Response(201)

    def _change_state(self, job: Job, change: dict) -> httpx.Response:
        wanted = change.get("state")
        if wanted == "Aborted" and job.state not in ("JobComplete", "Failed", "Aborted"):
            job.state = "Aborted"
        elif wanted == "UploadComplete" and job.state == "Open":
            job.state, job.polls_left = "UploadComplete", self.polls_before_done
            self._process(job)
        else:
            return _errors(400, "INVALIDJOBSTATE", f"Can't change the state of job {job.id} from {job.state} to {wanted}")
        return httpx.Response(200, json=self._describe(job))

    def _info(self, job: Job) -> httpx.Response:
        if job.state in ("UploadComplete", "InProgress"):
            if job.polls_left > 0:
                job.polls_left, job.state = job.polls_left - 1, "InProgress"
            else:
                job.state = "Failed" if job.error else "JobComplete"
        return httpx.Response(200, json=self._describe(job))

    def _describe(self, job: Job) -> dict:
        info = {"id": job.id, "operation": job.settings["operation"], "object": job.settings["object"],
                "state": job.state, "contentType": "CSV", "apiVersion": float(VERSION[1:]),
                "lineEnding": job.settings["lineEnding"], "columnDelimiter": "COMMA",
                "contentUrl": f"services/data/{VERSION}/jobs/ingest/{job.id}/batches",
                "numberRecordsProcessed": len(job.successful) + len(job.failed),
                "numberRecordsFailed": len(job.failed)}
        if "externalIdFieldName" in job.settings:
            info["externalIdFieldName"] = job.settings["externalIdFieldName"]
        if job.state == "Failed":
            info["errorMessage"] = job.error
        return info

    def _results(self, job: Job, resource: str) -> httpx.Response:
        if job.state not in ("JobComplete", "Failed", "Aborted"):
            return _errors(400, "INVALIDJOBSTATE", f"Job {job.id} is not complete")
        rows, extra = {"successfulResults": (job.successful, ["sf__Id", "sf__Created"]),
                       "failedResults": (job.failed, ["sf__Id", "sf__Error"]),
                       "unprocessedrecords": (job.unprocessed, [])}[resource]
        shuffled = list(rows)
        self.random.shuffle(shuffled)  # Salesforce keeps no order: a client must match rows by key
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, [*extra, *job.header], lineterminator="\n")
        writer.writeheader()
        writer.writerows(shuffled)
        return httpx.Response(200, content=buffer.getvalue().encode("utf-8"), headers={"Content-Type": "text/csv"})

    # --- the work -----------------------------------------------------------------------------------------

    def _process(self, job: Job) -> None:
        text = job.data.decode("utf-8")
        ending = job.settings["lineEnding"]
        if ending == "LF" and "\r\n" in text:
            job.error = "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is LF"
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        job.header = next(reader, [])
        rows = [dict(zip(job.header, values)) for values in reader]
        unknown = [name for name in job.header if name not in self.fields]
        if unknown and not job.error:
            job.error = f"InvalidBatch : Field name not found : {unknown[0]}"
        if job.error:
            job.unprocessed = rows
            return
        key = "Id" if job.settings["operation"] == "update" else job.settings["externalIdFieldName"]
        counts: dict[str, int] = {}
        for row in rows:
            counts[row.get(key, "")] = counts.get(row.get(key, ""), 0) + 1
        holders: dict[str, list[str]] = {}  # the records holding each value of the key field, as an index finds them
        for record, values in self.records.items():
            holders.setdefault(values.get(key, ""), []).append(record)
        for row in rows:
            record, error = self._apply(job.settings["operation"], key, row, counts, holders)
            if error:
                job.failed.append({"sf__Id": record or "", "sf__Error": error, **row})
            else:
                job.successful.append({"sf__Id": record, "sf__Created": "false", **row})

    def _apply(self, operation: str, key: str, row: dict, counts: dict[str, int],
               holders: dict[str, list[str]]) -> tuple[str | None, str | None]:
        value = row.get(key, "")
        if counts[value] > 1:
            what = "id" if key == "Id" else "external id"
            return None, f"DUPLICATE_VALUE:Duplicate {what} specified: {value}:--"
        if operation == "update":
            if not RECORD_ID.fullmatch(value):
                return None, f"MALFORMED_ID:Lead ID: id value of incorrect type: {value}:Id --"
            matches = [value] if value in self.records else []
        else:
            matches = holders.get(value, [])
        if not matches:
            if operation == "update":
                return None, "INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--"
            return None, "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName, Company]:LastName Company --"
        if len(matches) > 1:
            return None, (f"DUPLICATE_EXTERNAL_ID:{self.fields[key].label}: more than one record found for "
                          f"external id field: {matches}:--")
        record = matches[0]
        if record in self.converted:
            return record, "CANNOT_UPDATE_CONVERTED_LEAD:cannot reference converted lead:--"
        if value in self.lock_once:
            self.lock_once.discard(value)
            return record, f"UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record or 1 records: {record}:--"
        changes = {}
        for name, text in row.items():
            if name == key or text == "":
                continue  # an empty value leaves the field as it was
            if text == NULL:
                changes[name] = None
                continue
            problem = self._invalid(name, self.fields[name], text)
            if problem:
                return record, problem
            changes[name] = text
        self.records[record].update(changes)
        return record, None

    @staticmethod
    def _invalid(name: str, spec: Field, text: str) -> str | None:
        if spec.type == "number":
            try:
                number = float(text)
            except ValueError:
                return f"INVALID_TYPE_ON_FIELD_IN_RECORD:{spec.label}: value not of required type: {text}:{name} --"
            if abs(number) >= 10 ** spec.digits:
                return f"NUMBER_OUTSIDE_VALID_RANGE:{spec.label}: value outside of valid range on numeric field: " \
                       f"{text}:{name} --"
        elif spec.type in ("text", "textarea") and len(text) > spec.length:
            return f"STRING_TOO_LONG:{spec.label}: data value too large: {text[:40]}... (max length={spec.length}):{name} --"
        elif spec.type == "picklist" and text not in spec.values:
            return f"INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST:{spec.label}: bad value for restricted picklist field: " \
                   f"{text}:{name} --"
        elif spec.type == "datetime" and not DATETIME.fullmatch(text):
            return f"INVALID_TYPE_ON_FIELD_IN_RECORD:{spec.label}: value not of required type: {text}:{name} --"
        return None


def _errors(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json=[{"errorCode": code, "message": message}])
