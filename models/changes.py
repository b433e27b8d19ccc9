"""Why a lead's score changed since its last score, field by field, in points a marketer reads.

Every score stores each business field's contribution to the model's
margin (``field_log_odds``); with one model, the change of the margin is
exactly the sum of the fields' changes. The change of the probability is
split in the same proportions, so the terms add up to it and a field that
did not move (the lead's channel) gets nothing, or only what its
interactions with the fields that did move give it: "Score rose 12 pts:
Pricing-page views +9 pts, Demo requests +4 pts".

When the model itself changed, the new model's verdict on the same lead is a
separate term. Scoring today's record with the previous model as well splits
the change exactly: the new model's probability minus the previous model's
on today's record is the model's term, and the previous model's fields
today minus its fields at the last score are the record's terms. Without
the previous model (deleted from the registry), the whole change is the
model's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

MOVING = 0.05  # points: a field whose share of the change is smaller than this is not named
TOP_CHANGES = 3
MODEL_TERM = "(model)"


@dataclass(frozen=True)
class Change:
    trend: str  # new, rising, steady, falling
    data: dict | None  # the change as data: points, terms (field, label, points), previous version
    text: str
    material: bool  # goes to the history: tier changed, moved by the threshold, or a new model


def describe_change(
    probability: float,
    tier: str,
    fields: dict[str, float],
    version: str,
    previous: dict | None,
    labels: dict[str, str],
    threshold_points: float,
    previous_model_today: tuple[float, dict[str, float]] | None = None,
) -> Change:
    """The change from ``previous`` (the lead's last stored score: probability, tier, field_log_odds,
    model_version) to this score, whose fields' log-odds are ``fields``; ``previous_model_today`` is the
    previous model's probability and field log-odds on today's record, when the model changed and that
    model could be loaded."""
    if previous is None:
        return Change("new", None, "First score", True)
    moved = 100.0 * (probability - previous["probability"])
    trend = "rising" if moved >= threshold_points else "falling" if moved <= -threshold_points else "steady"
    new_model = str(previous["model_version"]) != str(version)
    material = new_model or tier != previous["tier"] or abs(moved) >= threshold_points
    terms = []
    before = previous.get("field_log_odds") or {}
    if new_model:
        if previous_model_today is not None:
            old_probability, old_fields = previous_model_today
            terms.append((MODEL_TERM, 100.0 * (probability - old_probability)))
            terms += _field_terms(old_fields, before, 100.0 * (old_probability - previous["probability"]))
        else:
            terms.append((MODEL_TERM, moved))
    else:
        terms += _field_terms(fields, before, moved)
    terms = _strongest(terms, moved)
    data = {
        "points": round(moved, 2),
        "previous_probability": previous["probability"],
        "previous_tier": previous["tier"],
        "previous_model_version": str(previous["model_version"]),
        "terms": [{"field": field, "label": _label(field, labels, version), "points": round(points, 2)}
                  for field, points in terms],
    }
    return Change(trend, data, _sentence(moved, terms, labels, version, new_model), material)


def _field_terms(now: dict[str, float], before: dict[str, float], moved: float) -> list[tuple[str, float]]:
    """Each field's share of ``moved`` points: its change of log-odds over the margin's change."""
    changes = {field: now.get(field, 0.0) - before.get(field, 0.0) for field in set(now) | set(before)}
    margin = sum(changes.values())
    if abs(margin) < 1e-9:
        return []
    return [(field, moved * change / margin) for field, change in changes.items()]


def _strongest(terms: list[tuple[str, float]], moved: float) -> list[tuple[str, float]]:
    """The model's term always; the fields that moved most, in the direction of the change first."""
    model = [term for term in terms if term[0] == MODEL_TERM]
    fields = [term for term in terms if term[0] != MODEL_TERM and abs(term[1]) >= MOVING]
    direction = 1.0 if moved >= 0 else -1.0
    fields.sort(key=lambda term: (-(direction * term[1] > 0), -abs(term[1]), term[0]))
    return model + fields[:TOP_CHANGES]


def _label(field: str, labels: dict[str, str], version: str) -> str:
    return f"New model (version {version})" if field == MODEL_TERM else labels.get(field, field)


def _sentence(moved: float, terms: list[tuple[str, float]], labels: dict[str, str], version: str, new_model: bool) -> str:
    if abs(moved) < MOVING and not new_model:
        return "Score unchanged"
    verb = "rose" if moved > 0 else "fell" if moved < 0 else "held"
    head = f"Score {verb} {_points(abs(moved))}" if verb != "held" else "Score held"
    if not terms:
        return head
    parts = [f"{_label(field, labels, version)} {_points(points, signed=True)}" for field, points in terms]
    return f"{head}: {', '.join(parts)}"


def _points(points: float, signed: bool = False) -> str:
    size = abs(points)
    digits = 0 if size >= 9.95 else 1 if size >= 0.95 else 2
    return f"{points:+.{digits}f} pts" if signed else f"{points:.{digits}f} pts"


def field_log_odds_json(log_odds: np.ndarray, fields: list[str]) -> list[str]:
    """Each row's fields with their log-odds, as JSON, leaving out the ones that round to zero."""
    keys = [f"{json.dumps(field)}:" for field in fields]
    rounded = np.round(log_odds, 5)
    rounded[~np.isfinite(rounded)] = 0.0
    return ["{" + ",".join(key + repr(value) for key, value in zip(keys, row) if value != 0.0) + "}"
            for row in rounded.tolist()]
