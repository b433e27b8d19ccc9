"""Explanations in words: each lead's reasons as data (JSON) and as sentences, fast enough for a million leads.

A reason is a business field. Its data: ``field``, ``label`` (the field's),
``feature`` and ``value`` (its strongest feature, as the lead's record holds
it: the raw category, not the model's "(other)" level), ``log_odds``,
``points``, ``family``, ``sentence``, and ``features``: the one or two
features the sentence names, each with its own share (and ``"unseen": true``
for a value the model never saw at training, whose sentence says so).

Only material fields are reasons (see ``ReasonRule``). A lead with none says
so in one sentence, as ``nothing_stands_out`` in its data (null otherwise)
and as its first reason sentence: "Nothing stands out: no single field moves
this lead's score by 0.5 pts or more."

The nightly job writes these for every open lead, so the JSON is assembled
as text from fragments encoded once per field, feature and value, never
through a dict per reason and ``json.dumps``; ``reason_records`` reads the
same text back for the few leads a report shows.
"""

from __future__ import annotations

import gc
import json
import math
from contextlib import contextmanager
from json.encoder import encode_basestring as quoted

import numpy as np
import pandas as pd

from leadscore.arrays import FEW_VALUES, object_array
from leadscore.features.registry import FeatureRegistry
from leadscore.features.sentences import Phrasing
from leadscore.models.explain import TOP_REASONS, Explanations, ReasonRule, business_fields, first_of_each

# A value training never saw is scored like the rare ones; its reason must not read as learned.
NEW_TO_THE_MODEL = ", new to the model, scored like rare values"
UNSEEN_FLAG = ',"unseen":true'


def format_points(points: float) -> str:
    """"+12 pts", "+1.2 pts", "-0.04 pts": enough digits to tell reasons apart, no more."""
    return f"{points:+.{int(_point_digits(abs(points)))}f} pts"


def _point_digits(size):
    """Decimals for a number of points of this size (a number or an array): 0 from 9.95, 1 from 0.095, else 2."""
    return np.where(size >= 9.95, 0, np.where(size >= 0.095, 1, 2))


def format_percent(probability: float) -> str:
    """"34 %", "5.3 %", "0.042 %": two significant digits below 10 %, where small probabilities differ."""
    percent = 100 * probability
    if percent >= 9.95:
        return f"{percent:.0f} %"
    if percent >= 0.995 or percent == 0:
        return f"{percent:.1f} %"
    return f"{percent:.2g} %"


def nothing_stands_out(rule: ReasonRule, spread: bool) -> str:
    """The sentence of a lead with no material field: none moves it enough, or the movement is ``spread`` thin."""
    if spread:
        return (f"Nothing stands out: many fields move this lead's score a little each, none by {100 * rule.min_share:g} % "
                "of their combined effect or more.")
    return f"Nothing stands out: no single field moves this lead's score by {rule.shown_points:g} pts or more."


def field_labels(registry: FeatureRegistry, features: list[str]) -> dict[str, str]:
    """Business field name to its label, for the fields of ``features``."""
    return {registry[name].business_field: registry[name].business_label for name in features}


class ReasonWriter:
    """Builds every row's reasons as JSON text, with the sentences of its top reasons and its tier's carriers."""

    def __init__(self, registry: FeatureRegistry, features: list[str]) -> None:
        self.features = features
        self.fields, self.field_index = business_fields(registry, features)
        self.specs = [registry[name] for name in features]
        self.phrasings = [Phrasing(spec) for spec in self.specs]
        field_specs = [self.specs[first] for first in first_of_each(self.field_index)]
        # The parts of a reason that depend on its field or feature only, encoded once.
        self.field_head = [f'{{"field":{quoted(field)},' for field in self.fields]
        self.field_tail = [f'"label":{quoted(spec.business_label)},"family":{quoted(spec.family)},'
                           for spec in field_specs]
        self.field_name = [spec.name for spec in field_specs]
        self.feature_head = [f'{{"feature":{quoted(spec.name)},"label":{quoted(spec.label)},' for spec in self.specs]
        self.feature_name = [quoted(spec.name) for spec in self.specs]
        self.labels = field_labels(registry, features)
        self.quoted_fields = [quoted(field) for field in self.fields]

    def write(self, explanations: Explanations, frame: pd.DataFrame, unseen: np.ndarray | None = None):
        """(reasons as JSON per row, the top three sentences for per row, the labels that carried each row)."""
        with _collector_paused():
            return self._write(explanations, frame, unseen)

    def _write(self, explanations, frame, unseen):
        # Only the features that some reason shows are read: most leads have no material reason at all.
        used = np.union1d(explanations.top_for_features, explanations.top_against_features)
        used = used[used >= 0].tolist()
        values = dict(zip(used, _plain_columns(frame, [self.features[index] for index in used])))
        encoded_values: dict[tuple[int, object], str] = {}
        sentences: dict[tuple[int, object, bool], str] = {}
        scale = explanations.points_per_log_odds
        sides = []
        # Every number is written as text for the whole batch at once; the loop below only joins pieces.
        for top, log_odds, members, member_log_odds in (
            (explanations.top_for, explanations.top_for_log_odds, explanations.top_for_features,
             explanations.top_for_feature_log_odds),
            (explanations.top_against, explanations.top_against_log_odds, explanations.top_against_features,
             explanations.top_against_feature_log_odds),
        ):
            points = log_odds * scale[:, None]
            member_points = member_log_odds * scale[:, None, None]
            sides.append((top.tolist(), json_numbers(np.round(log_odds, 6)).tolist(),
                          json_numbers(np.round(points, 4)).tolist(), points_text(points).tolist(), members.tolist(),
                          json_numbers(np.round(member_log_odds, 6)).tolist(),
                          json_numbers(np.round(member_points, 4)).tolist()))
        texts, tops = [], []
        rule = explanations.rule
        quiet = (explanations.top_for < 0).all(axis=1) & (explanations.top_against < 0).all(axis=1)
        spread = explanations.strongest_points >= rule.shown_points
        said = np.array(["", nothing_stands_out(rule, False), nothing_stands_out(rule, True)], dtype=object)
        kind = np.where(quiet, 1 + spread, 0)
        notes = said[kind].tolist()
        notes_data = np.array(["null", *map(quoted, said[1:])], dtype=object)[kind].tolist()
        carried = [[self.labels[self.fields[i]] for i in row if i >= 0] for row in explanations.carried_by.tolist()]
        tiers = [quoted(str(tier)) for tier in explanations.tier.tolist()]
        carriers_of = [",".join(self.quoted_fields[i] for i in row if i >= 0)
                       for row in explanations.carried_by.tolist()]
        for row in range(len(explanations)):
            parts, firsts = [], []
            for side, (top, log_odds, points, exact, members, member_log_odds, member_points) in enumerate(sides):
                reasons = []
                for slot, field in enumerate(top[row]):
                    if field < 0:
                        continue
                    shown, words = [], []
                    first_value = None
                    for index, share, share_points in zip(members[row][slot], member_log_odds[row][slot],
                                                          member_points[row][slot]):
                        if index < 0:
                            continue
                        value = values[index][row]
                        if shown and _absent(value) and _absent(first_value):
                            continue  # "Never viewed the pricing page; no pricing-page views ever" says it twice
                        is_new = unseen is not None and bool(unseen[row, index])
                        key = (index, value, is_new)
                        sentence = sentences.get(key)
                        if sentence is None:
                            sentence = sentences[key] = self.phrasings[index](value) + (NEW_TO_THE_MODEL if is_new else "")
                        words.append(sentence if not words else _lower_first(sentence))
                        encoded = encoded_values.get((index, value))
                        if encoded is None:
                            encoded = encoded_values[(index, value)] = _json_value(value)
                        if not shown:
                            first_value = value
                            first = (self.feature_name[index], encoded)
                        shown.append(f'{self.feature_head[index]}"value":{encoded},"log_odds":{share},'
                                     f'"points":{share_points}{UNSEEN_FLAG if is_new else ""}}}')
                    said = f"{'; '.join(words)} ({exact[row][slot]})"
                    feature, value_text = first if shown else (quoted(self.field_name[field]), "null")
                    reasons.append(
                        f'{self.field_head[field]}"feature":{feature},{self.field_tail[field]}"value":{value_text},'
                        f'"log_odds":{log_odds[row][slot]},"points":{points[row][slot]},'
                        f'"sentence":{quoted(said)},"features":[{",".join(shown)}]}}'
                    )
                    if side == 0:
                        firsts.append(said)
                parts.append(",".join(reasons))
            texts.append(f'{{"for":[{parts[0]}],"against":[{parts[1]}],"nothing_stands_out":{notes_data[row]},'
                         f'"tier":{tiers[row]},"carried_by":[{carriers_of[row]}]}}')
            tops.append([notes[row]] if notes[row] else firsts)
        return texts, tops, carried


def json_numbers(numbers: np.ndarray) -> np.ndarray:
    """Floats as JSON writes them (repr), NaN and infinities as null, for a whole array at once."""
    text = np.array(list(map(repr, numbers.ravel().tolist())), dtype=object).reshape(numbers.shape)
    text[~np.isfinite(numbers)] = "null"
    return text


def points_text(points: np.ndarray) -> np.ndarray:
    """``format_points`` of every element."""
    digits = _point_digits(np.abs(points))
    text = np.empty(points.shape, dtype=object)
    for count in (0, 1, 2):
        chosen = digits == count
        text[chosen] = [f"{value:+.{count}f} pts" for value in points[chosen].tolist()]
    return text


def reason_records(
    explanations: Explanations,
    frame: pd.DataFrame,
    registry: FeatureRegistry,
    features: list[str],
    unseen: np.ndarray | None = None,
) -> list[dict]:
    """Per row: the reasons for and against as data (see the module docstring), and what carried it into its tier."""
    texts, _, _ = ReasonWriter(registry, features).write(explanations, frame, unseen)
    return [json.loads(text) for text in texts]


def explanation_arrays(
    explanations: Explanations,
    frame: pd.DataFrame,
    registry: FeatureRegistry,
    features: list[str],
    unseen: np.ndarray | None = None,
    writer: ReasonWriter | None = None,
) -> dict[str, np.ndarray]:
    """The scoring file's explanation columns, as arrays (text as objects): tier, fit and engagement scores,
    reason_1..3 and all reasons as JSON."""
    texts, tops, carried = (writer or ReasonWriter(registry, features)).write(explanations, frame, unseen)
    columns = {
        "tier": explanations.tier,
        "fit_score": _whole_scores(explanations.fit_score),
        "engagement_score": _whole_scores(explanations.engagement_score),
    }
    for k in range(TOP_REASONS):
        columns[f"reason_{k + 1}"] = object_array([sentences[k] if len(sentences) > k else "" for sentences in tops])
    columns["tier_reasons"] = object_array([", ".join(labels) for labels in carried])
    columns["reasons"] = object_array(texts)
    return columns


def _whole_scores(scores: np.ndarray) -> np.ndarray:
    """Sub-scores rounded to whole numbers: int64, or float where one is missing (a model without sub-scores)."""
    return pd.array(np.round(scores), dtype="Int64").to_numpy()


def text_as_objects(columns: dict, index: pd.Index | None = None) -> dict:
    """Lists and object arrays as object Series: pandas 3 would copy every string into Arrow memory, which for a
    million JSON texts costs seconds and gains nothing (they are written out, not computed on)."""
    return {name: pd.Series(values, index=index, dtype=object) if isinstance(values, list) or getattr(values, "dtype", None) == object
            else values for name, values in columns.items()}


@contextmanager
def _collector_paused():
    """Building millions of small strings and lists (no cycles among them) sets off full garbage collections
    that walk every object alive; pausing the collector took the explanation columns of 100,000 rows
    from 15 s to 9 s."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _json_value(value) -> str:
    """A plain value (see ``_plain_columns``) as ``json.dumps`` writes it, without its generic dispatch."""
    kind = type(value)
    if kind is str:
        return quoted(value)
    if value is None:
        return "null"
    if kind is int:
        return str(value)
    if kind is float and math.isfinite(value):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


def _absent(value) -> bool:
    """No value or none of it: the lead never did the thing the feature counts."""
    return value is None or value == 0


def _lower_first(sentence: str) -> str:
    """The second part of a joined reason: "...; last viewed the pricing page 3 days ago"."""
    return sentence[:1].lower() + sentence[1:] if sentence[:2] != sentence[:2].upper() else sentence


def _plain_columns(frame: pd.DataFrame, names: list[str]) -> list[list]:
    """Each of ``names`` as JSON holds it; the numeric columns made plain together, as one block."""
    if not names:
        return []
    kinds = frame.dtypes.to_dict()  # the dtypes alone: selecting the columns would copy them
    numeric = [name for name, kind in zip(names, map(kinds.get, names))
               if pd.api.types.is_numeric_dtype(kind) and not pd.api.types.is_bool_dtype(kind)]
    block = _plain_numbers(frame[numeric].to_numpy(dtype=float, na_value=np.nan)) if numeric else None
    plain = {name: block[:, position].tolist() for position, name in enumerate(numeric)}
    return [plain[name] if name in plain else _plain_column(frame[name]) for name in names]


def _plain_numbers(numbers: np.ndarray) -> np.ndarray:
    """Whole numbers as int, others as float, missing as None: an array of Python objects of the same shape."""
    whole = np.isfinite(numbers) & (np.floor(numbers) == numbers) & (np.abs(numbers) < 2**53)
    plain = numbers.astype(object)
    plain[whole] = numbers[whole].astype(np.int64).tolist()
    plain[np.isnan(numbers)] = None
    return plain


def _plain_column(values: pd.Series) -> list:
    """A column other than numbers (``_plain_numbers``) as JSON holds it: missing as None, the rest as text."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return [None if pd.isna(v) else bool(v) for v in values.tolist()]
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        if len(codes) <= FEW_VALUES:  # only the levels the rows hold: a vocabulary has dozens
            levels = values.cat.categories
            return [None if code < 0 else _plain(levels[code]) for code in codes.tolist()]
        # Each level made plain once; code -1 (missing) reads the appended None.
        levels = [_plain(level) for level in values.cat.categories.tolist()] + [None]
        return np.array(levels, dtype=object)[values.cat.codes.to_numpy()].tolist()
    if isinstance(values.dtype, pd.StringDtype):
        plain = values.to_numpy(dtype=object)
        plain[values.isna().to_numpy()] = None
        return plain.tolist()
    return [_plain(value) for value in values.astype(object).tolist()]


def _plain(value):
    """A value JSON can hold: numbers as float or int, missing as None, the rest as text."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    return str(value)
