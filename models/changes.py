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

import io
import json
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as quoted

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

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
    """Each row's fields with their log-odds, as JSON, leaving out the ones that round to zero.

    Arrow writes and joins the numbers in C, a field at a time over every row: several times faster than a
    Python loop over each row's fields, which took seconds for a million leads.
    """
    rounded = np.round(np.asarray(log_odds, dtype=float).reshape(len(log_odds), len(fields)), 5)
    rounded[~np.isfinite(rounded)] = 0.0
    if not len(fields):
        return ["{}"] * len(rounded)
    # Each present entry ends with its comma, trimmed off the last one. (Arrow 25's null_handling="skip" drops
    # a row whose entries are all null instead of joining it to "", so absent entries are replaced, not skipped.)
    entries = [
        pc.binary_join_element_wise(f"{json.dumps(field)}:",
                                    pc.cast(pa.array(rounded[:, position], mask=rounded[:, position] == 0.0), pa.string()),
                                    ",", "")
        for position, field in enumerate(fields)
    ]
    joined = pc.utf8_rtrim(pc.binary_join_element_wise(*entries, "", null_handling="replace", null_replacement=""),
                           characters=",")
    texts = pc.binary_join_element_wise("{", joined, "}", "").to_pylist()
    if len(texts) != len(rounded):
        raise AssertionError(f"field log-odds: {len(texts)} texts for {len(rounded)} rows")
    return texts


def field_matrix(stored, fields: list[str]) -> np.ndarray:
    """Stored field log-odds (JSON text, a dict, or nothing per lead) as a (leads, fields) matrix of floats.

    A field a lead's text leaves out rounded to zero when it was written, and reads 0. Arrow parses the
    texts in C: a million of them in about a second, where ``json.loads`` one at a time takes ten.
    """
    lines = [text if isinstance(text, str) and text else json.dumps(text) if isinstance(text, dict) else "{}"
             for text in stored]
    if not lines or not fields:
        return np.zeros((len(lines), len(fields)))
    schema = pa.schema([(field, pa.float64()) for field in fields])
    table = pa_json.read_json(
        io.BytesIO("\n".join(lines).encode()),
        read_options=pa_json.ReadOptions(block_size=1 << 24),
        parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
    )
    if table.num_rows != len(lines):
        raise AssertionError(f"field log-odds: {table.num_rows} rows read from {len(lines)} texts")
    columns = [table.column(field).to_numpy(zero_copy_only=False) for field in fields]
    return np.nan_to_num(np.column_stack(columns).astype(float), nan=0.0)


def describe_changes(
    probability: np.ndarray,
    tier: np.ndarray,
    now: np.ndarray,
    previous_probability: np.ndarray,
    previous_tier: np.ndarray,
    before: np.ndarray,
    fields: list[str],
    version: str,
    labels: dict[str, str],
    threshold_points: float,
) -> tuple[list[str], list[str], list[str], np.ndarray]:
    """``describe_change`` for many leads whose last score came from this same model, which is every lead on
    most nights: (trends, the changes as JSON, their sentences, which are material).

    ``now`` and ``before`` are the leads' field log-odds as (leads, fields) matrices (see ``field_matrix``).
    The shares and their order are computed for all leads at once; only the named terms of each lead are
    written one lead at a time.
    """
    moved = 100.0 * (np.asarray(probability, dtype=float) - np.asarray(previous_probability, dtype=float))
    trends = np.where(moved >= threshold_points, "rising", np.where(moved <= -threshold_points, "falling", "steady"))
    material = (np.asarray(tier) != np.asarray(previous_tier)) | (np.abs(moved) >= threshold_points)
    changes = np.asarray(now, dtype=float) - np.asarray(before, dtype=float)
    margin = changes.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = np.where(np.abs(margin)[:, None] < 1e-9, 0.0, moved[:, None] * changes / margin[:, None])
    # _strongest's order: terms in the change's direction first, then the largest, then by name.
    aligned = np.where(moved >= 0, 1.0, -1.0)[:, None] * shares > 0
    group = np.where(np.abs(shares) >= MOVING, np.where(aligned, 0, 1), 2)
    names = np.broadcast_to(np.argsort(np.argsort(np.array(fields, dtype=object))), shares.shape)
    order = np.lexsort((names, -np.abs(shares), group), axis=1)[:, :TOP_CHANGES]
    chosen = np.take_along_axis(shares, order, axis=1)
    named = np.take_along_axis(group, order, axis=1) < 2
    field_text = {field: quoted(field) for field in fields}
    label_text = {field: quoted(_label(field, labels, version)) for field in fields}
    data, texts = [], []
    for row, (points, change, before_probability, before_tier) in enumerate(
        zip(moved.tolist(), chosen.tolist(), np.asarray(previous_probability, dtype=float).tolist(),
            np.asarray(previous_tier).tolist())
    ):
        terms = [(fields[column], share) for column, share, kept in zip(order[row].tolist(), change, named[row].tolist())
                 if kept]
        # json.dumps of describe_change's data, written out: it took half of this loop's time.
        listed = ", ".join(f'{{"field": {field_text[field]}, "label": {label_text[field]}, "points": {round(share, 2)!r}}}'
                           for field, share in terms)
        data.append(f'{{"points": {round(points, 2)!r}, "previous_probability": {before_probability!r}, '
                    f'"previous_tier": {quoted(before_tier)}, "previous_model_version": {quoted(str(version))}, '
                    f'"terms": [{listed}]}}')
        texts.append(_sentence(points, terms, labels, version, False))
    return trends.tolist(), data, texts, material
