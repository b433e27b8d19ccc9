"""HubSpot: lead scores as CRM API v3 batch updates of at most 100 records, and what HubSpot said of each.

The rules followed, from HubSpot's CRM API reference and usage guidelines:

* ``POST /crm/v3/objects/{objectType}/batch/update`` with ``{"inputs": [{"id", "idProperty"?, "properties"}]}``,
  at most 100 inputs. ``id`` is the record id (``hs_object_id``), or, with ``idProperty``, the value of a
  property whose values are unique. An update never creates a record, so a score cannot invent a contact.
* Property values are strings; an empty string clears a property; a datetime property takes UNIX
  milliseconds.
* 200 when every input was updated; 207 Multi-Status when some were not, each error naming the ids it
  concerns in ``context.ids`` (results come in any order, so inputs are matched by id, never by position);
  400 refuses the whole batch: a property that does not exist or a value it does not allow, duplicate ids,
  more than 100 inputs. 429 when the app's ten-second or daily limit is reached, with ``Retry-After`` or
  not: the burst limit of a private app is 100 to 250 requests per ten seconds depending on the account's
  tier, and the requests here go one at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pandas as pd
from leadscore.crm.export import Delivery, Part
from leadscore.crm.export_keys import KeyMapping, RecordIds
from leadscore.crm.remote import Waits, request, short

BATCH_INPUTS = 100
REQUESTS_PER_FILE = 1_000  # 100,000 records a file: one line per request, so a file replays with any HTTP tool
OBJECT = "contacts"
REASONS_LENGTH = 65_536  # the most a HubSpot text property holds
PROPERTIES = {
    "probability": "leadscore_probability",
    "tier": "leadscore_tier",
    "fit_score": "leadscore_fit_score",
    "engagement_score": "leadscore_engagement_score",
    "reason_text": "leadscore_reasons",
    "model_version": "leadscore_model_version",
    "scored_at": "leadscore_scored_at",
}
RECORD_IDS = RecordIds("hs_object_id", lambda ids: ids.str.fullmatch(r"[1-9]\d{0,17}"),
                       "whole numbers: HubSpot's record ids", can_be_lead_ids=True)
# Whole-batch refusals that no retry mends: the account's properties differ from what leadscore sends.
_SETUP_FAULTS = ("Property values were not valid", "non-unique", "Unable to infer object type")


def key_property_problem(name: str) -> str | None:
    """Why ``name`` cannot be the unique property an update matches on, or None."""
    if name != name.lower():
        return "HubSpot's internal property names are lower case, such as leadscore_lead_id."
    return None


@dataclass(frozen=True)
class HubSpotTarget:
    """Where the scores go in HubSpot, and how its files are cut."""

    key: KeyMapping
    object: str = OBJECT
    reasons_length: int = REASONS_LENGTH
    requests_per_file: int = REQUESTS_PER_FILE
    crm: str = "HubSpot"
    suffix: str = ".jsonl"

    @property
    def name(self) -> str:
        return f"hubspot:{self.object}"

    @property
    def stem(self) -> str:
        return f"hubspot-{self.object}"

    @property
    def path(self) -> str:
        return f"/crm/v3/objects/{self.object}/batch/update"

    def describe(self) -> str:
        return f"HubSpot {self.object}, batch update on {self.key.describe()}"

    def how_to_load(self) -> str:
        return f"POST each line of each file, as it is, to https://api.hubapi.com{self.path}"

    def parts(self, rows: pd.DataFrame) -> Iterator[Part]:
        return jsonl_parts(rows, self.key, self.requests_per_file)


# --- the files ------------------------------------------------------------------------------------------


def property_values(rows: pd.DataFrame) -> dict[str, list[str]]:
    """Each property's values as HubSpot takes them: text, an empty string where leadscore has none."""
    formats = {
        "probability": lambda values: values.map("{:.4f}".format),
        "fit_score": lambda values: values.astype("int64").astype(str),
        "engagement_score": lambda values: values.astype("int64").astype(str),
        "scored_at": lambda values: pd.Series(values.to_numpy(dtype="datetime64[ms]").astype(np.int64),
                                              index=values.index).astype(str),
    }
    columns = {}
    for name, prop in PROPERTIES.items():
        values = rows[name]
        present = values.notna()
        text = pd.Series("", index=rows.index, dtype=object)
        if present.any():
            text[present] = formats.get(name, lambda series: series.astype(str))(values[present]).astype(object)
        columns[prop] = text.tolist()
    return columns


def batch_bodies(rows: pd.DataFrame, key: KeyMapping) -> list[dict]:
    """The batch update requests for ``rows``, at most ``BATCH_INPUTS`` each, in the rows' order."""
    columns = property_values(rows)
    names = list(columns)
    keys = rows["record_key"].astype(str).tolist()
    extra = {} if key.by_record_id else {"idProperty": key.field}
    inputs = [{"id": record, **extra, "properties": dict(zip(names, values))}
              for record, values in zip(keys, zip(*columns.values()))]
    return [{"inputs": inputs[start:start + BATCH_INPUTS]} for start in range(0, len(inputs), BATCH_INPUTS)]


def jsonl_parts(rows: pd.DataFrame, key: KeyMapping, requests_per_file: int) -> Iterator[Part]:
    """The rows as JSON Lines files: one batch update request a line, ``requests_per_file`` lines a file."""
    per_file = requests_per_file * BATCH_INPUTS
    for start in range(0, len(rows), per_file):
        chunk = rows.iloc[start:start + per_file]
        lines = [json.dumps(body, ensure_ascii=False, separators=(",", ":")) for body in batch_bodies(chunk, key)]
        yield Part(("\n".join(lines) + "\n").encode("utf-8"), start, start + len(chunk), requests=len(lines))


# --- the requests ---------------------------------------------------------------------------------------


class BatchUpdate:
    """Sends a file's batch updates one request at a time and says what HubSpot did with each record."""

    def __init__(self, client: httpx.Client, waits: Waits | None = None) -> None:
        self.client, self.waits = client, waits or Waits()

    def deliver(self, target: HubSpotTarget, part: Part, keys: list[str]) -> Delivery:
        """Send ``part``'s lines; its record ``keys`` are read from the lines themselves, which are what is sent."""
        found = {"key": [], "accepted": [], "error": []}
        for line in part.content.splitlines():
            # The ids come from the request itself; the line goes out as written, not serialised again.
            sent = [str(entry["id"]) for entry in json.loads(line)["inputs"]]
            response = request(self.client, "HubSpot", "POST", target.path, self.waits, content=line,
                               headers={"Content-Type": "application/json"})
            outcomes, stop, fault = batch_outcomes(sent, response)
            for column, values in outcomes.items():
                found[column].extend(values)
            if stop or fault:
                return Delivery(pd.DataFrame(found), stop=stop, fault=fault)
        return Delivery(pd.DataFrame(found))


def batch_outcomes(keys: list[str], response: httpx.Response) -> tuple[dict[str, list], str | None, str | None]:
    """Each key's outcome from HubSpot's answer to one batch (``key``, ``accepted``, ``error`` lists), and why to
    stop (``stop``, ``fault``) if so."""
    status = response.status_code
    said = _said(response)
    if status in (200, 201):
        return _outcomes(keys, set(), {}), None, None
    if status == 207:
        refused, errors = set(), {}
        for error in _json(response).get("errors", []):
            ids = [str(value) for value in (error.get("context") or {}).get("ids", [])]
            message = f"{error.get('category', 'ERROR')}: {error.get('message', '')}"
            if not ids:  # an error HubSpot does not tie to inputs: none of them can count as updated
                return _outcomes(keys, set(keys), dict.fromkeys(keys, message)), None, None
            refused.update(ids)
            errors.update(dict.fromkeys(ids, message))
        return _outcomes(keys, refused, errors), None, None
    # A refused token, scope or object type concerns no record: the batch counts as not sent.
    if status == 401:
        return _no_outcomes(), None, (f"HubSpot refused the access token ({said}). Set HUBSPOT_ACCESS_TOKEN to the "
                                      "token of a private app with the scope crm.objects.contacts.write (or the "
                                      "object's).")
    if status == 403:
        return _no_outcomes(), None, f"HubSpot refused the request ({said}): the app lacks a write scope for the object."
    if status == 404:
        return _no_outcomes(), None, f"HubSpot has no such endpoint ({said}). Check --object and --base-url."
    everyone = _outcomes(keys, set(keys), dict.fromkeys(keys, said))
    if status == 400 and any(marker in said for marker in _SETUP_FAULTS):
        return everyone, None, (f"HubSpot refused the batch: {said}. Create the leadscore properties as "
                                "docs/salesforce-hubspot.md lists them (names, types and the tier's options), and a "
                                "key property with unique values.")
    if status == 429 or status >= 500:
        return everyone, f"HubSpot answered {status} ({said}); the next export sends the rest", None
    return everyone, None, None


def _outcomes(keys: list[str], refused: set[str], errors: dict[str, str]) -> dict[str, list]:
    accepted = [key not in refused for key in keys]
    return {"key": keys, "accepted": accepted,
            "error": [None if ok else errors.get(key, "HubSpot refused it.") for key, ok in zip(keys, accepted)]}


def _no_outcomes() -> dict[str, list]:
    return {"key": [], "accepted": [], "error": []}


def _json(response: httpx.Response) -> dict:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _said(response: httpx.Response) -> str:
    payload = _json(response)
    if payload.get("message"):
        category = payload.get("category") or payload.get("errorType") or "ERROR"
        return f"{category}: {short(payload['message'])}"
    return f"HTTP {response.status_code}: {short(response.text)}"
