"""A fake HubSpot account that answers ``POST /crm/v3/objects/contacts/batch/update`` as HubSpot's CRM API
reference and usage guidelines describe it.

What it enforces, as documented: a private app's bearer token; at most 100 inputs a batch; ids unique within a
batch; ``idProperty`` naming a property with unique values; every property existing, writable and of a valid
value (numbers, an enumeration's options, datetimes in UNIX milliseconds), an empty string clearing it; 200 when
every input was updated, 207 Multi-Status with ``errors[].context.ids`` for inputs whose record does not exist,
results in an order of their own; 429 with HubSpot's rate-limit body when a test queues one, with or without
``Retry-After``. The message texts are HubSpot's as its API returns them.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from dataclasses import dataclass

import httpx

BATCH_LIMIT = 100


@dataclass(frozen=True)
class Property:
    type: str  # string, number, enumeration, datetime
    options: tuple[str, ...] = ()
    unique: bool = False
    read_only: bool = False


# Contact properties of this account: standard ones, and those the leadscore guide tells an admin to create.
CONTACT_PROPERTIES = {
    "email": Property("string"),
    "firstname": Property("string"),
    "hs_object_id": Property("number", read_only=True),
    "leadscore_lead_id": Property("string", unique=True),
    "leadscore_probability": Property("number"),
    "leadscore_tier": Property("enumeration", options=("sql", "mql", "none")),
    "leadscore_fit_score": Property("number"),
    "leadscore_engagement_score": Property("number"),
    "leadscore_reasons": Property("string"),
    "leadscore_model_version": Property("string"),
    "leadscore_scored_at": Property("datetime"),
}


class FakeHubSpot:
    """Contacts, and the answers a test asks for: ``throttle`` holds the ``Retry-After`` (seconds, or None for a 429
    without one) of the next answers, each a 429 before the request is looked at."""

    def __init__(self, token: str, properties: dict[str, Property] | None = None, portal: int = 21939747,
                 seed: int = 0) -> None:
        self.token, self.portal = token, portal
        self.properties = dict(properties or CONTACT_PROPERTIES)
        self.contacts: dict[str, dict] = {}
        self.throttle: list[float | None] = []
        self.requests: list[dict] = []
        self.random = random.Random(seed)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def add_contacts(self, lead_ids) -> None:
        """A contact per lead whose HubSpot id is the lead id, as when the CRM was loaded from HubSpot."""
        for lead in lead_ids:
            self.contacts[str(lead)] = {"hs_object_id": str(lead), "leadscore_lead_id": str(lead)}

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, "INVALID_AUTHENTICATION", "Authentication credentials not found. This API supports "
                          "OAuth 2.0 authentication and you can find more details at "
                          "https://developers.hubspot.com/docs/methods/auth/oauth-overview")
        if self.throttle:
            wait = self.throttle.pop(0)
            headers = {"Retry-After": str(wait)} if wait is not None else {}
            return httpx.Response(429, headers=headers, json={
                "status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT", "correlationId": str(uuid.uuid4()), "policyName": "TEN_SECONDLY_ROLLING"})
        match = re.fullmatch(r"/crm/v3/objects/(\w+)/batch/update", request.url.path)
        if request.method != "POST" or not match:
            return _error(404, "OBJECT_NOT_FOUND", f"Unknown endpoint: {request.method} {request.url.path}")
        if match.group(1) != "contacts":
            return _error(400, "VALIDATION_ERROR", f"Unable to infer object type from: {match.group(1)}")
        body = json.loads(request.content)
        self.requests.append(body)
        return self._update(body.get("inputs", []))

    def _update(self, inputs: list[dict]) -> httpx.Response:
        if len(inputs) > BATCH_LIMIT:
            return _error(400, "VALIDATION_ERROR", "The maximum number of inputs supported in a batch is 100. Please "
                                                   "reduce the number of items and try again")
        ids = [str(entry.get("id")) for entry in inputs]
        twice = sorted({value for value in ids if ids.count(value) > 1})
        if twice:
            return _error(400, "VALIDATION_ERROR", f"Duplicate IDs found in batch input: [{', '.join(twice)}]. IDs must "
                                                   "be unique", context={"ids": twice})
        for entry in inputs:
            id_property = entry.get("idProperty")
            if id_property and not (id_property in self.properties and self.properties[id_property].unique):
                return _error(400, "VALIDATION_ERROR", f"Unable to perform update/upsert by non-unique 0-1 property "
                                                       f"{id_property} in portal ID {self.portal}")
        invalid = [problem for entry in inputs for name, value in entry.get("properties", {}).items()
                   if (problem := self._invalid(name, value))]
        if invalid:
            return _error(400, "VALIDATION_ERROR", f"Property values were not valid: {json.dumps(invalid)}")
        results, missing = [], []
        for entry in inputs:
            contact = self._find(str(entry["id"]), entry.get("idProperty"))
            if contact is None:
                missing.append(str(entry["id"]))
                continue
            contact.update({name: (value if value != "" else None) for name, value in entry["properties"].items()})
            results.append({"id": contact["hs_object_id"], "properties": dict(contact), "archived": False,
                            "createdAt": "2026-01-05T10:00:00Z", "updatedAt": "2026-11-28T02:00:00Z"})
        self.random.shuffle(results)  # the order is HubSpot's own: inputs are matched by id
        payload = {"status": "COMPLETE", "results": results, "startedAt": "2026-11-28T02:00:00.000Z",
                   "completedAt": "2026-11-28T02:00:00.050Z"}
        if not missing:
            return httpx.Response(200, json=payload)
        payload["numErrors"] = 1
        payload["errors"] = [{"status": "error", "category": "OBJECT_NOT_FOUND",
                              "message": "Could not get some CONTACT objects, they may be deleted or not exist. Check "
                                         "that ids are valid.", "context": {"ids": missing}}]
        return httpx.Response(207, json=payload)

    def _find(self, key: str, id_property: str | None) -> dict | None:
        if id_property is None:
            return self.contacts.get(key)
        return next((contact for contact in self.contacts.values() if contact.get(id_property) == key), None)

    def _invalid(self, name: str, value: str) -> dict | None:
        spec = self.properties.get(name)

        def problem(code: str, message: str) -> dict:
            return {"isValid": False, "message": message, "error": code, "name": name,
                    "localizedErrorMessage": message, "portalId": self.portal}

        if spec is None:
            return problem("PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist')
        if spec.read_only:
            return problem("READ_ONLY_VALUE", f'Property "{name}" is read-only')
        if value == "":
            return None  # clears the property
        if spec.type == "number" and not re.fullmatch(r"-?\d+(\.\d+)?", value):
            return problem("INVALID_FLOAT", f"{json.dumps(value)} is not a valid number")
        if spec.type == "enumeration" and value not in spec.options:
            return problem("INVALID_OPTION", f"{value} was not one of the allowed options: [{', '.join(spec.options)}]")
        if spec.type == "datetime" and not re.fullmatch(r"\d{10,13}", value):
            return problem("INVALID_DATE", f"{json.dumps(value)} is not a valid datetime: give UNIX milliseconds")
        return None


def _error(status: int, category: str, message: str, context: dict | None = None) -> httpx.Response:
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category}
    if context:
        body["context"] = context
    return httpx.Response(status, json=body)
