"""The words marketing reads for a flat table's columns: business labels, families and sentences.

A labels file (``--labels FILE``) is YAML, one entry per column::

    columns:
      TotalVisits:
        label: Website visits
        family: engagement
        sentence:
          "0": Never visited the website
          "1": Visited the website once
          value: Visited the website {value} times
          missing: Website visits unknown
      Lead Source: Where the lead came from     # a label alone
      visits_7d:
        label: Website visits, last 7 days
        field: Website visits                   # one reason with visits_30d
      visits_30d:
        label: Website visits, last 30 days
        field: Website visits
    name: [Company, Job title]                  # what the report names a lead by

``family`` is ``fit`` (who the lead is) or ``engagement`` (what the lead
did). ``sentence`` is how a reason about the column reads, in the format of
``FeatureSpec.sentence``: one template for every value, or templates keyed
by the value as a sentence writes it ("0", "1,532", "Yes"), by ``missing``
and by ``value`` for any other value, plus ``digits`` to round numbers
first. ``{value}`` stands for the lead's value and ``{label}`` for the
label. Every value is read as text (``Yes`` stays "Yes", ``0`` stays "0").
``field`` names the business field a column measures with others (counts
over several windows, the days since the last time): columns of one field
make one reason and one importance, under the field's name, and must share
a family.
``name`` lists the columns a person knows a lead by (company, job title):
the report's example leads are named by them instead of an opaque id. They
need not be features.
Columns the file does not name keep a label made from their name. The file
fills the feature registry; nothing else carries these words.

Without a family from ``--fit`` or the file, a column's family comes from its
name and values, by one rule a person can check:

1. Its name is split into words ("TotalVisits" -> total, visits;
   "day_of_week" -> day, of, week). A behaviour word (visits, page, views,
   time, calls, email, contact, activity, last, campaign, source, ...) makes
   it engagement: "Company page views" is something the lead did.
2. Otherwise a profile word (country, city, industry, occupation, company,
   size, job, title, age, education, marital, specialization, income,
   loan, ...) or a question put to the lead ("What is your current
   occupation") makes it fit: it describes who the lead is.
3. Data shape vetoes rule 2 for a tally of events: a numeric column of
   whole numbers, none negative, where 0 is the most common value, counts
   what the lead did ("Job applications"), so it stays engagement.
4. Every other column is engagement.
"""

from __future__ import annotations

import difflib
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from leadscore.errors import LeadscoreError
from leadscore.features.registry import FAMILIES, Family
from leadscore.features.sentences import readable_number

SHIPPED = {"x-education": Path(__file__).with_name("x_education_labels.yaml")}
ENTRY_KEYS = ("label", "family", "sentence", "description", "field")
TEMPLATE_FIELDS = ("value", "label")
SENTENCE_WORDS = ("value", "missing", "digits")

BEHAVIOUR_WORDS = frozenset(
    """
    visit visits view views page pages pageview pageviews session sessions click clicks clicked open opens opened
    time spent minutes seconds duration website site web online email mail mails newsletter unsubscribed call calls
    called phone sms chat contact contacts contacted activity activities last recent previous campaign campaigns
    event events webinar webinars download downloads downloaded form forms submission submitted search ad ads
    advertisement advertisements newspaper magazine forum forums recommendation recommendations referral referred
    source origin channel medium utm hear heard touch touches engagement interaction interactions meeting meetings
    demo trial signup updates month day days week weekday hour
    """.split()
)
PROFILE_WORDS = frozenset(
    """
    age gender sex marital married education degree occupation job title role position profession seniority
    department specialization specialisation industry sector vertical company employer organization organisation
    employees employee employment headcount size revenue turnover country city region province location zip postcode
    postal nationality language income salary housing loan loans mortgage credit default profile you your
    """.split()
)


@dataclass(frozen=True)
class ColumnWords:
    """What a labels file says about one column; empty fields fall back to the defaults."""

    label: str = ""
    family: Family | None = None
    sentence: dict[str, str] | None = field(default=None, hash=False)
    description: str = ""
    field: str = ""  # the business field it measures with other columns; empty: the column is one


@dataclass(frozen=True)
class ColumnLabels:
    """The entries of one labels file, checked against a table once its columns are known."""

    source: str
    columns: dict[str, ColumnWords] = field(default_factory=dict, hash=False)
    name: tuple[str, ...] = ()  # the columns a lead is known by, for the report's example leads

    def words(self, column: str) -> ColumnWords:
        return self.columns.get(column, ColumnWords())

    def check_columns(self, available: list[str], table: str) -> None:
        """Refuse an entry or a ``name`` column ``table`` does not have, with the closest names."""
        for column in [*self.columns, *self.name]:
            if column in available:
                continue
            close = difflib.get_close_matches(column, available, n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise LeadscoreError(
                f"{self.source}: the entry {column!r} names no column of {table}.{hint} Write the column's name "
                "exactly as the file's header does, or remove the entry."
            )

    def check_sentence(self, column: str, kind: str) -> None:
        """Refuse a numeric column's value key that no number is written as (sentences write 1532 as '1,532')."""
        sentence = self.words(column).sentence
        if kind != "numeric" or not sentence:
            return
        for key in sentence:
            if key in SENTENCE_WORDS:
                continue
            try:
                written = readable_number(float(key.replace(",", "")))
            except ValueError:
                written = None
            if written != key:
                fix = f"write it {written!r}" if written else "key it by a number, 'missing' or 'value'"
                raise LeadscoreError(
                    f"{self.source}: column {column!r}: the sentence for {key!r} would never be used, since "
                    f"{column!r} holds numbers and a sentence writes them as 1, 2.5, 1,532: {fix}."
                )


def read_column_labels(where: str | Path) -> ColumnLabels:
    """Read a labels file, or a shipped one by name (``x-education``)."""
    path = Path(where)
    if not path.exists() and str(where) in SHIPPED:
        path = SHIPPED[str(where)]
    if not path.exists():
        raise LeadscoreError(
            f"--labels {where}: there is no such file. Pass a YAML labels file, or the name of a shipped one: "
            f"{', '.join(SHIPPED)}."
        )
    if path.is_dir():
        raise LeadscoreError(f"--labels {where}: it is a folder. Pass the YAML file inside it.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise LeadscoreError(f"Cannot read the labels file {path}: it is not UTF-8 text. Save it as UTF-8.") from error
    except OSError as error:
        raise LeadscoreError(f"Cannot read the labels file {path}: {error.strerror}. Check its permissions.") from error
    return parse_column_labels(text, path.name)


class _TextLoader(yaml.BaseLoader):
    """Every scalar as text, as written (``Yes``, ``0``); a key written twice is refused, not overwritten."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key_node.value!r} is written twice", key_node.start_mark
                )
            seen.add(key_node.value)
        return super().construct_mapping(node, deep)


def parse_column_labels(text: str, source: str = "labels file") -> ColumnLabels:
    """Check a labels file's YAML text; ``source`` names it in every error."""
    try:
        document = yaml.load(text, Loader=_TextLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(getattr(error, "problem", None) or error).split())
        raise LeadscoreError(f"{source} is not valid YAML{at}: {problem}. Fix that line.") from error
    example = "columns:\n  Country:\n    label: Country\n    family: fit"
    if (not isinstance(document, dict) or "columns" not in document or not set(document) <= {"columns", "name"}
            or not isinstance(document["columns"], dict)):
        raise LeadscoreError(
            f"{source}: the file must hold one mapping, `columns`, from column names to their words, and optionally "
            f"`name`, the columns a lead is known by. Start it like this:\n{example}"
        )
    entries = {column: _entry(column, entry, source) for column, entry in document["columns"].items()}
    return ColumnLabels(source, entries, _name_columns(document.get("name", []), source))


def _name_columns(name: object, source: str) -> tuple[str, ...]:
    columns = [name] if isinstance(name, str) else name
    if not isinstance(columns, list) or not all(isinstance(c, str) and c.strip() for c in columns):
        raise LeadscoreError(f"{source}: name must list the columns a lead is known by (name: [Company, Job title]).")
    return tuple(dict.fromkeys(c.strip() for c in columns))


def _entry(column: str, entry: object, source: str) -> ColumnWords:
    where = f"{source}: column {column!r}"
    if isinstance(entry, str):
        return ColumnWords(label=_label(entry, where))
    if not isinstance(entry, dict):
        raise LeadscoreError(f"{where}: write a label, or a mapping with {', '.join(ENTRY_KEYS)}.")
    unknown = sorted(set(entry) - set(ENTRY_KEYS))
    if unknown:
        raise LeadscoreError(f"{where}: unknown key {unknown[0]!r}. An entry knows {', '.join(ENTRY_KEYS)}.")
    family = entry.get("family")
    if family is not None and family not in FAMILIES:
        raise LeadscoreError(
            f"{where}: family {family!r} is not one of {', '.join(FAMILIES)}. Write family: fit for a column "
            "describing who the lead is, family: engagement for what the lead did."
        )
    description = entry.get("description", "")
    if not isinstance(description, str):
        raise LeadscoreError(f"{where}: description must be text.")
    business_field = entry.get("field", "")
    if not isinstance(business_field, str) or ("field" in entry and not business_field.strip()):
        raise LeadscoreError(f"{where}: field must be the name of the business field, as text (field: Website visits).")
    return ColumnWords(
        label=_label(entry["label"], where) if "label" in entry else "",
        family=family,
        sentence=_sentence(entry["sentence"], where) if "sentence" in entry else None,
        description=description,
        field=business_field.strip(),
    )


def _label(label: object, where: str) -> str:
    if not isinstance(label, str) or not label.strip():
        raise LeadscoreError(f"{where}: the label must be non-empty text.")
    return label.strip()


def _sentence(sentence: object, where: str) -> dict[str, str]:
    if isinstance(sentence, str):
        sentence = {"value": sentence}
    if not isinstance(sentence, dict) or not sentence:
        raise LeadscoreError(
            f"{where}: sentence must be a template (\"Came through {{value}}\") or a mapping from values, "
            "'missing' and 'value' to templates."
        )
    for key, template in sentence.items():
        if key == "digits":
            if not (isinstance(template, str) and template.isdigit() and int(template) <= 6):
                raise LeadscoreError(f"{where}: digits {template!r} must be a whole number from 0 to 6.")
            continue
        _check_template(template, f"{where}, sentence for {key!r}")
    return dict(sentence)


def _check_template(template: object, where: str) -> None:
    if not isinstance(template, str) or not template.strip():
        raise LeadscoreError(f"{where}: the template must be non-empty text.")
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
    except ValueError:
        raise LeadscoreError(
            f"{where}: {template!r} has a lone brace. Write {{value}} or {{label}} for the lead's value or the "
            "column's label, and {{{{ or }}}} for a brace itself."
        ) from None
    for name, spec, conversion in fields:
        if name not in TEMPLATE_FIELDS or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise LeadscoreError(
                f"{where}: {template!r} uses {shown}, but a template knows only {{value}} (the lead's value, "
                "already written as a sentence shows it) and {label}. Use one of these."
            )


def name_words(column: str) -> set[str]:
    """The lower-case words of a column name, split at spaces, punctuation and camelCase."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", column)
    return set(re.findall(r"[a-z0-9]+", spaced.lower()))


def default_family(column: str, values: pd.Series, kind: str) -> Family:
    """The family of a column without one from ``--fit`` or a labels file; see the module's rule."""
    words = name_words(column)
    if words & BEHAVIOUR_WORDS or not words & PROFILE_WORDS:
        return "engagement"
    return "engagement" if kind == "numeric" and _tally_of_events(values) else "fit"


def _tally_of_events(values: pd.Series) -> bool:
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    if numbers.empty or (numbers < 0).any() or (numbers % 1 != 0).any():
        return False
    return numbers.mode().iloc[0] == 0
