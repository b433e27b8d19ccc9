"""Hand-set scoring: the points marketing teams set by hand today, the baseline leadscore must beat.

A rule file is YAML::

    name: Marketing automation points
    mql_threshold: 65
    rules:
      - when: pricing_page_views_30d >= 1
        points: 15
      - when: seniority in [director, vp, c_level]
        points: 10
      - when: "`Total Time Spent on Website` > 300"
        points: 5

A lead's score is the sum of the points of the rules it matches. Conditions
are parsed here, never evaluated as Python or ``DataFrame.query``, so a rule
file cannot run code.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from leadscore.errors import LeadscoreError

OPERATORS = (">=", ">", "<=", "<", "==", "!=", "in", "not in")
NUMERIC_OPERATORS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
DEFAULT_RULES = Path(__file__).with_name("rules_simulated_crm.yaml")

_FORMS = "Write it as `feature >= 1`, `channel == demo_request` or `seniority in [vp, director]`."
_TOP_KEYS = ("name", "mql_threshold", "rules")
_RULE_KEYS = ("when", "points")
_EXAMPLE = "rules:\n  - when: pricing_page_views_30d >= 1\n    points: 15"

# A bare feature name may hold dots ("emp.var.rate"); any other name goes in backticks.
_CONDITION = re.compile(
    r"\s*(?:`(?P<quoted>[^`]*)`|(?P<bare>[^\W\d][\w.]*))"
    r"\s*(?P<operator>>=|<=|==|!=|>|<|not\s+in\b|in\b)?\s*(?P<value>.*?)\s*",
    re.DOTALL,
)
_ITEM = re.compile(r"""\s*(?:"(?P<double>[^"]*)"|'(?P<single>[^']*)'|(?P<bare>[^\s\[\],'"`]+))\s*(?P<end>,|\Z)""")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")

Value = float | int | str


class _Problem(Exception):
    """What is wrong with one rule and how to fix it; the caller adds the file and the rule's number."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix


@dataclass(frozen=True)
class Rule:
    """One hand-set rule: ``points`` for every lead whose ``feature`` satisfies ``operator value``.

    ``value`` is a number or a string, or a tuple of them for ``in`` and
    ``not in``; ``text`` is the condition as written.
    """

    feature: str
    operator: str
    value: object
    points: float
    text: str

    def __post_init__(self) -> None:
        if self.operator not in OPERATORS:
            raise ValueError(f"rule {self.text!r}: operator must be one of {OPERATORS}, got {self.operator!r}")
        if (self.operator in ("in", "not in")) != isinstance(self.value, tuple):
            raise ValueError(f"rule {self.text!r}: a tuple value goes with `in` and `not in`, and only with them")


@dataclass(frozen=True)
class HandSetScoring:
    """Hand-set lead scoring: rules that each add points, and the points at which a lead is an MQL today.

    Missing never earns points: a lead whose value is missing (NaN, None)
    matches no rule on that feature, not even ``!=`` or ``not in``.
    Comparisons: ``>=``, ``>``, ``<=``, ``<`` need a numeric column and a
    number; ``==``, ``!=``, ``in`` and ``not in`` compare numbers numerically
    on a numeric column, and compare text exactly, as ``str()`` of both
    sides, on a text or categorical column. Quote a value to keep it text
    (``zip == '0042'``).

    Examples
    --------
    >>> scoring = HandSetScoring.from_text(
    ...     "rules:\\n"
    ...     "  - when: pricing_page_views_30d >= 1\\n"
    ...     "    points: 15\\n"
    ...     "  - when: seniority in [director, vp]\\n"
    ...     "    points: 10\\n"
    ... )
    >>> frame = pd.DataFrame({"pricing_page_views_30d": [2, 0, None], "seniority": ["vp", "vp", "student"]})
    >>> scoring.score(frame)
    array([25., 10.,  0.])
    """

    name: str
    rules: tuple[Rule, ...]
    mql_threshold: float | None
    source: str

    @classmethod
    def from_yaml(cls, path: str | Path) -> HandSetScoring:
        """Read a rule file (the ``--rules FILE`` format)."""
        path = Path(path)
        if not path.exists():
            raise LeadscoreError(f"Cannot read the rules file {path}: there is no such file. Check the path.")
        if path.is_dir():
            raise LeadscoreError(f"Cannot read the rules file {path}: it is a folder. Pass the YAML file inside it.")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise LeadscoreError(
                f"Cannot read the rules file {path}: it is not UTF-8 text ({error.reason}). Save it as UTF-8 YAML."
            ) from error
        except OSError as error:
            raise LeadscoreError(f"Cannot read the rules file {path}: {error.strerror}. Check its permissions.") from error
        return cls.from_text(text, source=str(path))

    @classmethod
    def from_text(cls, text: str, source: str = "<text>") -> HandSetScoring:
        """Parse rules from YAML text; ``source`` names it in error messages."""
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise LeadscoreError(
                f"{source} is not valid YAML: {error}. Fix the line it names; put a `when` in quotes when it "
                "starts with a backtick or contains ': ' or ' #'."
            ) from error
        if not isinstance(document, dict):
            raise LeadscoreError(
                f"{source}: the top level must be a mapping with `name`, `mql_threshold` and `rules`, but it is "
                f"{_kind(document)}. Start the file like this:\n{_EXAMPLE}"
            )
        _refuse_unknown_keys(document, _TOP_KEYS, f"{source}:", "at the top level")
        rules = document.get("rules")
        if not isinstance(rules, list) or not rules:
            found = "missing or empty" if rules is None else ("empty" if rules == [] else _kind(rules))
            raise LeadscoreError(
                f"{source}: `rules` must be a list with at least one rule, but it is {found}. "
                f"Write each rule as an item with `when` and `points`:\n{_EXAMPLE}"
            )
        return cls(
            name=_name(document.get("name", "Hand-set scoring"), source),
            rules=tuple(_rule(item, number, source) for number, item in enumerate(rules, start=1)),
            mql_threshold=_threshold(document.get("mql_threshold"), source),
            source=source,
        )

    @classmethod
    def default(cls) -> HandSetScoring:
        """The marketing-automation points a team would set by hand for the simulated CRM."""
        return cls.from_yaml(DEFAULT_RULES)

    def check(self, columns: Iterable[object]) -> None:
        """Raise a ``LeadscoreError`` naming every rule whose feature is not one of ``columns``."""
        columns = list(columns)
        known = set(columns)
        # Case-insensitive suggestions: rule files are typed by hand, feature tables written by code.
        lowered = {str(column).lower(): str(column) for column in columns}
        lines = []
        for number, rule in enumerate(self.rules, start=1):
            if rule.feature in known:
                continue
            close = difflib.get_close_matches(rule.feature.lower(), list(lowered), n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(repr(lowered[c]) for c in close)}?" if close else ""
            lines.append(f"{_where(self.source, number, rule.text)}: there is no feature {rule.feature!r}.{hint}")
        if lines:
            raise LeadscoreError(
                "\n".join(lines) + "\nFix the feature names in the rules file (`leadscore features` writes the "
                "table whose columns the rules use), or remove those rules."
            )

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """Points per row of ``frame``: the sum of the points of the rules each row matches."""
        self.check(frame.columns)
        points = np.zeros(len(frame), dtype=float)
        for number, rule in enumerate(self.rules, start=1):
            try:
                matches = _matches(rule, frame[rule.feature])
            except _Problem as problem:
                raise LeadscoreError(f"{_where(self.source, number, rule.text)}: {problem.what}. {problem.fix}") from None
            points[matches] += rule.points
        return points

    def to_frame(self) -> pd.DataFrame:
        """One row per rule, numbered from 1 as in messages: the condition as written and its points."""
        return pd.DataFrame(
            {"text": [rule.text for rule in self.rules], "points": [rule.points for rule in self.rules]},
            index=pd.RangeIndex(1, len(self.rules) + 1, name="rule"),
        )


# --- reading a rule file ---------------------------------------------------------------------


def _where(source: str, number: int, text: str | None) -> str:
    return f"{source}, rule {number}" + (f" ({text!r})" if text else "")


def _refuse_unknown_keys(mapping: dict, allowed: tuple[str, ...], where: str, place: str) -> None:
    # A misspelt key (`point:`, `threshold:`) would otherwise be ignored and silently change the scores.
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise LeadscoreError(
                f"{where} unknown key {key!r} {place}.{hint} The keys are: {', '.join(allowed)}."
            )


def _kind(value: object) -> str:
    if value is None:
        return "empty"
    if isinstance(value, str):
        return f"the text {value!r}"
    return {dict: "a mapping", list: "a list"}.get(type(value), f"the value {value!r}")


def _is_number(value: object) -> bool:
    # YAML reads `yes`/`true` as booleans, which are ints to Python but never meant as points.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _name(value: object, source: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise LeadscoreError(f"{source}: `name` must be a non-empty text, got {value!r}. Write e.g. `name: MQL points`.")
    return value.strip()


def _threshold(value: object, source: str) -> float | None:
    if value is None:
        return None
    if not _is_number(value) or not math.isfinite(value):
        raise LeadscoreError(
            f"{source}: `mql_threshold` must be a number of points, got {value!r}. Write e.g. `mql_threshold: 65`, "
            "or leave it out."
        )
    return float(value)


def _rule(item: object, number: int, source: str) -> Rule:
    if not isinstance(item, dict):
        raise LeadscoreError(
            f"{_where(source, number, None)}: a rule must be a mapping with `when` and `points`, got {item!r}. "
            "Write it as `- when: pricing_page_views_30d >= 1` with `points: 15` on the next line, indented."
        )
    when = item.get("when")
    where = _where(source, number, when if isinstance(when, str) else None)
    _refuse_unknown_keys(item, _RULE_KEYS, f"{where}:", "in the rule")
    if when is None:
        raise LeadscoreError(f"{where}: the rule has no `when`. Add the condition that earns the points. {_FORMS}")
    if not isinstance(when, str):
        raise LeadscoreError(
            f"{where}: `when` must be a condition written as text, got {when!r}. {_FORMS} Put it in quotes if "
            "YAML reads it as something else."
        )
    if "points" not in item:
        raise LeadscoreError(f"{where}: the rule has no `points`. Add e.g. `points: 10` (negative to subtract).")
    points = item["points"]
    if not _is_number(points) or not math.isfinite(points):
        raise LeadscoreError(
            f"{where}: `points` must be a number, got {points!r}. Write e.g. `points: 10` or `points: -20`, "
            "without quotes."
        )
    try:
        feature, op, value = _parse_condition(when)
    except _Problem as problem:
        raise LeadscoreError(f"{where}: {problem.what}. {problem.fix}") from None
    return Rule(feature=feature, operator=op, value=value, points=float(points), text=when.strip())


def _parse_condition(when: str) -> tuple[str, str, object]:
    match = _CONDITION.fullmatch(when)
    if match is None:
        if when.lstrip().startswith("`"):
            raise _Problem(
                "the backtick before the feature name is not closed",
                "Put a backtick on each side of the name: `Page Views` > 3.",
            )
        raise _Problem("it does not start with a feature name (put a name with spaces in `backticks`)", _FORMS)
    feature = match["bare"] if match["quoted"] is None else match["quoted"]
    if not feature:
        raise _Problem("the feature name between the backticks is empty", _FORMS)
    if match["operator"] is None:
        rest = match["value"]
        found = f"'{rest}' follows the feature name {feature!r}" if rest else "there is nothing after the feature name"
        raise _Problem(
            f"{found}, not one of the operators {', '.join(OPERATORS)}",
            f"{_FORMS} Put a feature name that holds spaces between backticks: `Page Views` > 3.",
        )
    op = " ".join(match["operator"].split())
    text = match["value"]
    if not text:
        raise _Problem(f"there is no value after `{op}`", _FORMS)
    if op in ("in", "not in"):
        if not text.startswith("["):
            raise _Problem(f"`{op}` needs a list of values in brackets", "Write it as `seniority in [vp, director]`.")
        return feature, op, _parse_list(text)
    if text.startswith("["):
        raise _Problem(f"a list of values goes with `in` or `not in`, not with `{op}`", _FORMS)
    value = _parse_scalar(text, f"{feature} {op}")
    if op in NUMERIC_OPERATORS and isinstance(value, str):
        raise _Problem(
            f"`{op}` compares numbers, but {value!r} is not a number",
            f"Write a number (`{feature} {op} 1`), or compare text with == or in.",
        )
    return feature, op, value


def _parse_scalar(text: str, comparison: str) -> Value:
    match = _ITEM.fullmatch(text)
    if match is None or match["end"]:
        if text[0] in "'\"":
            raise _Problem(f"cannot read the value {text}: a quote is not closed, or text follows it", _FORMS)
        if any(character.isspace() for character in text):
            raise _Problem(
                f"the value {text!r} has spaces", f'Put it in quotes: `{comparison} "{text}"`.'
            )
        raise _Problem(f"cannot read the value {text!r}", _FORMS)
    return _item_value(match)


def _parse_list(text: str) -> tuple[Value, ...]:
    if not text.endswith("]"):
        raise _Problem("the list of values is not closed with ']'", "Write it as `seniority in [vp, director]`.")
    inner = text[1:-1]
    if not inner.strip():
        raise _Problem("the list of values is empty", "Put at least one value between the brackets.")
    values: list[Value] = []
    position = 0
    while True:
        match = _ITEM.match(inner, position)
        if match is None:
            rest = inner[position:].strip()
            raise _Problem(
                f"cannot read the list [{inner}] from '{rest}' on" if rest else "the list ends with a comma",
                "Separate values with commas and quote values that hold spaces: `country in [France, \"United "
                "Kingdom\"]`.",
            )
        values.append(_item_value(match))
        if not match["end"]:
            return tuple(values)
        position = match.end()


def _item_value(match: re.Match) -> Value:
    if match["bare"] is None:
        return match["double"] if match["double"] is not None else match["single"]
    bare = match["bare"]
    if _INTEGER.fullmatch(bare):
        return int(bare)
    if _NUMBER.fullmatch(bare):
        return float(bare)
    return bare


# --- scoring ---------------------------------------------------------------------------------


def _matches(rule: Rule, column: pd.Series) -> np.ndarray:
    values = rule.value if isinstance(rule.value, tuple) else (rule.value,)
    present = column.notna().to_numpy()
    dtype = column.dtype
    if pd.api.types.is_numeric_dtype(dtype):
        texts = [value for value in values if isinstance(value, str)]
        if texts:
            raise _Problem(
                f"{rule.feature!r} holds numbers, but {texts[0]!r} is text",
                "Compare it with a number (without quotes), or check that the rule names the right feature.",
            )
        numbers = column.to_numpy(dtype=float, na_value=np.nan)
        if rule.operator in NUMERIC_OPERATORS:
            hit = NUMERIC_OPERATORS[rule.operator](numbers, rule.value)
        else:
            hit = np.isin(numbers, np.asarray(values, dtype=float))
    elif isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
        if rule.operator in NUMERIC_OPERATORS:
            raise _Problem(
                f"`{rule.operator}` compares numbers, but {rule.feature!r} holds text",
                "Compare text with ==, !=, in or not in.",
            )
        wanted = [str(value) for value in values]
        if isinstance(dtype, pd.CategoricalDtype):
            # Compare each category once, then spread the answer over the rows through the codes; the
            # appended False is what code -1 (missing) picks.
            in_category = np.isin(np.asarray([str(c) for c in dtype.categories], dtype=object), wanted)
            hit = np.append(in_category, False)[column.cat.codes.to_numpy()]
        else:
            hit = np.isin(np.asarray([str(v) for v in column.to_numpy(dtype=object)], dtype=object), wanted)
    else:
        raise _Problem(
            f"{rule.feature!r} holds {dtype} values, which rules cannot compare",
            "Rules compare numbers and text; turn the column into one of them (dates into days since).",
        )
    if rule.operator in ("!=", "not in"):
        hit = ~hit
    return present & hit
